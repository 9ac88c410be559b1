//! One socket connected to one hub, with a monitor that turns a refused
//! security handshake into a clear error on this side (ZeroMQ otherwise
//! just retries in silence).

use std::cell::Cell;

use archiver_core::{BackendError, ErrorDetail};

use crate::config::ClientConfig;

/// A connected socket and its handshake monitor.
pub struct Link {
    /// The hub's endpoint.
    pub endpoint: String,
    /// The socket (DEALER or SUB).
    pub socket: zmq::Socket,
    monitor: zmq::Socket,
    /// Whether the handshake is CURVE (for what a failure means).
    curve: bool,
    /// Whether a handshake of this link ever succeeded.
    succeeded: Cell<bool>,
    /// Handshakes failed without detail since the last one that
    /// succeeded.
    failures: Cell<u32>,
}

/// Handshakes in a row that fail without detail, on a link whose
/// handshake once succeeded, before it reports a wrong key or mechanism:
/// a connection cut mid-handshake (the hub restarting, the tail rebinding
/// on a reload) fails one, then the next succeeds. On a link that never
/// got through, the first such failure is reported (a wrong hub key: then
/// libzmq 4.3.4 was seen to retry only once or twice, 100 ms apart, and
/// then not within a 10 s connect timeout), as is any refusal by the hub
/// or protocol error (another mechanism).
const FAILURES_BEFORE_AUTH: u32 = 2;

impl Link {
    /// Connects a new socket of `kind` to `endpoint`. ZeroMQ connects in
    /// the background; a hub that is not up yet is reached when it is.
    pub fn open(
        context: &zmq::Context,
        endpoint: &str,
        config: &ClientConfig,
        kind: zmq::SocketType,
    ) -> Result<Self, BackendError> {
        let socket = context.socket(kind).map_err(crate::setup_error)?;
        // A goodbye or last acks get half a second to leave at close.
        socket.set_linger(500).map_err(crate::setup_error)?;
        socket.set_reconnect_ivl(100).map_err(crate::setup_error)?;
        socket
            .set_reconnect_ivl_max(2000)
            .map_err(crate::setup_error)?;
        if let Some(credentials) = &config.credentials {
            socket
                .set_plain_username(Some(&credentials.user))
                .map_err(crate::setup_error)?;
            socket
                .set_plain_password(Some(&credentials.password))
                .map_err(crate::setup_error)?;
        }
        if let Some(curve) = &config.curve {
            socket
                .set_curve_serverkey(curve.server.as_bytes())
                .map_err(crate::setup_error)?;
            socket
                .set_curve_publickey(curve.own.public.as_bytes())
                .map_err(crate::setup_error)?;
            socket
                .set_curve_secretkey(curve.own.secret_bytes())
                .map_err(crate::setup_error)?;
        }
        let address = format!("inproc://monitor-{}", uuid::Uuid::now_v7().simple());
        let events = zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
            | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32;
        socket
            .monitor(&address, events)
            .map_err(crate::setup_error)?;
        let monitor = context.socket(zmq::PAIR).map_err(crate::setup_error)?;
        monitor.set_linger(0).map_err(crate::setup_error)?;
        monitor.connect(&address).map_err(crate::setup_error)?;
        socket.connect(endpoint).map_err(|e| {
            BackendError::InvalidUrl(ErrorDetail::caused_by(
                format!("{endpoint}: {e} (use tcp://host:port or ipc:///path)"),
                e,
            ))
        })?;
        Ok(Self {
            endpoint: endpoint.to_owned(),
            socket,
            monitor,
            curve: config.curve.is_some(),
            succeeded: Cell::new(false),
            failures: Cell::new(0),
        })
    }

    /// The monitor socket, to poll beside the link's socket.
    pub fn monitor(&self) -> &zmq::Socket {
        &self.monitor
    }

    /// The handshake failure the monitor reported, if any, as an error: at
    /// once when the hub refused the credentials or key (its ZAP handler
    /// said no), the mechanisms differ (a protocol error), or the link
    /// never got through; on a link that did, once
    /// [`FAILURES_BEFORE_AUTH`] handshakes in a row failed without detail
    /// (a single one is a connection cut mid-handshake, which libzmq
    /// retries).
    pub fn handshake_failure(&self) -> Option<BackendError> {
        let mut failure = None;
        while let Ok(frames) = self.monitor.recv_multipart(zmq::DONTWAIT) {
            let Some(head) = frames.first().filter(|h| h.len() >= 2) else {
                continue;
            };
            let event = u16::from_ne_bytes([head[0], head[1]]);
            if event == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16 {
                self.succeeded.set(true);
                self.failures.set(0);
                continue;
            }
            let refused = event == zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as u16;
            // A protocol error (another mechanism than the hub's) is
            // reported at once: a cut connection fails without detail.
            if event == zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as u16 && self.succeeded.get()
            {
                let failures = self.failures.get() + 1;
                self.failures.set(failures);
                if failures < FAILURES_BEFORE_AUTH {
                    tracing::debug!(hub = %self.endpoint, failures, "a security handshake failed without detail (a connection cut mid-handshake?); retrying");
                    continue;
                }
            }
            let tail = self.socket.get_socket_type().ok() == Some(zmq::SUB);
            let not_on_tail = if tail {
                ", or does not grant its principal the live tail (only principals granted every list may tail)"
            } else {
                ""
            };
            failure = Some(BackendError::Auth(match (self.curve, refused) {
                (false, true) => format!(
                    "the hub at {} refused the user name or password (ZAP PLAIN){not_on_tail}",
                    self.endpoint
                ),
                (false, false) => format!(
                    "the security handshake with {} failed: the hub requires credentials and none were given, or credentials were given and the hub takes none (or takes CURVE keys)",
                    self.endpoint
                ),
                // The hub decrypted the hello (so it holds the secret half
                // of the key this client checks it by) and said no.
                (true, true) => format!(
                    "CURVE handshake with {}: refused: the hub does not know this client's key (unknown client key, or revoked){not_on_tail}",
                    self.endpoint
                ),
                // The hub could not decrypt the hello, or speaks another
                // mechanism.
                (true, false) => format!(
                    "CURVE handshake with {}: failed: wrong hub key (the hub there does not hold the secret half of the configured hub public key), or the hub does not use CURVE",
                    self.endpoint
                ),
            }
            .into()));
        }
        failure
    }
}

/// Validates an endpoint's form before any socket is made.
pub fn check_endpoint(endpoint: &str) -> Result<(), BackendError> {
    let ok = ["tcp://", "ipc://", "inproc://"]
        .iter()
        .any(|scheme| endpoint.len() > scheme.len() && endpoint.starts_with(scheme));
    if ok {
        Ok(())
    } else {
        Err(BackendError::InvalidUrl(
            format!("{endpoint:?} is not a ZeroMQ endpoint: use tcp://host:port or ipc:///path")
                .into(),
        ))
    }
}
