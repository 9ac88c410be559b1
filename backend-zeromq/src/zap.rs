//! The hub's ZAP handler (ZeroMQ RFC 27): checks the PLAIN user name and
//! password, or the CURVE public key, of every connecting peer against
//! the allowlist, so a peer without a valid login never gets a connection,
//! let alone a mail.
//! It answers with a user id naming the principal and the login (see
//! `hub::access::user_id`), which libzmq attaches to every message of that
//! connection (`User-Id`): the hub looks up the grant of the login per
//! message, so a connection made with a login since rotated or revoked is
//! no longer served. On the live tail's domain
//! it admits only the principals that may tail ([`Gate::tail`]). The gate
//! is shared with the hub, which swaps it when the allowlist is reloaded.
//!
//! libzmq asks the handler bound at `inproc://zeromq.zap.01` in the socket's
//! context; the hub runs one per context, on its own thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;

use crate::config::{Credentials, CurveKey};

/// Where libzmq sends authentication requests.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// `ZMQ_ZAP_ENFORCE_DOMAIN` of libzmq 4.3's `zmq.h` (a draft option, so
/// neither `zmq` nor `zmq-sys` names it; Debian's libzmq5 takes it).
const ZMQ_ZAP_ENFORCE_DOMAIN: std::ffi::c_int = 93;

/// The ZAP domain of the hub's ROUTER (durable subscribers, requests).
pub const DOMAIN: &str = "mq-archiver";

/// The ZAP domain of the hub's live tail: a tail cannot be filtered per
/// peer, so only principals that may see all of it connect.
pub const TAIL_DOMAIN: &str = "mq-archiver-tail";

/// The principal part of a ZAP user id (the hub's user ids are the
/// principal, `#` and a fingerprint of the login), for logs.
pub fn principal_of(user_id: &str) -> &str {
    user_id
        .rsplit_once('#')
        .map_or(user_id, |(principal, _)| principal)
}

/// Who may connect, as whom, and to which domains.
#[derive(Clone)]
pub struct Gate {
    /// Credentials and the user id (principal and login fingerprint)
    /// each logs in as.
    pub logins: Vec<(Credentials, String)>,
    /// CURVE client public keys and the user id each logs in as.
    pub keys: Vec<(CurveKey, String)>,
    /// User ids admitted on [`TAIL_DOMAIN`].
    pub tail: Vec<String>,
}

/// The gate the handler reads at each request, which the hub replaces on
/// an allowlist reload.
pub type SharedGate = Arc<RwLock<Gate>>;

/// A running handler; stops when dropped.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the handler in `context` (before any socket that needs it
    /// binds) and starts answering.
    pub fn start(context: &zmq::Context, gate: SharedGate) -> zmq::Result<Self> {
        let socket = context.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(ZAP_ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("zmq-zap".into())
            .spawn(move || serve(&socket, &gate, &stopping))
            .expect("spawning the ZAP thread");
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ZapHandler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// Answers ZAP requests until stopped. An interrupted call (EINTR, a
/// signal) is retried. Any other error closes the handler for good, at
/// error level, but keeps its socket bound: libzmq 4.3's CURVE and PLAIN
/// servers admit every peer when no handler is bound at
/// [`ZAP_ENDPOINT`] (unless the socket enforces its domain, which
/// [`secure`] sets too), so a handler that stops answering must keep the
/// endpoint, and handshakes then wait unanswered and fail.
fn serve(socket: &zmq::Socket, gate: &SharedGate, stop: &AtomicBool) {
    let mut closed = false;
    while !stop.load(Ordering::Relaxed) {
        if closed {
            // Until the hub drops the handler (which unparks it).
            std::thread::park();
            continue;
        }
        let served = socket.poll(zmq::POLLIN, 100).and_then(|ready| {
            if ready == 0 {
                return Ok(());
            }
            let request = socket.recv_multipart(0)?;
            let reply = answer(&request, &gate.read().unwrap_or_else(|p| p.into_inner()));
            socket.send_multipart(reply, 0)
        });
        match served {
            Err(error) if closes_on(&error) => {
                tracing::error!(%error, "the hub's ZAP handler failed: it admits no peer from now on (restart the hub)");
                closed = true;
            }
            _ => {}
        }
    }
}

/// Whether an error of the handler's socket closes it: any but an
/// interrupted call (EINTR, a signal delivered to its thread), which is
/// retried.
fn closes_on(error: &zmq::Error) -> bool {
    *error != zmq::Error::EINTR
}

/// Makes `socket` a CURVE (under `curve`, the hub's key pair) or PLAIN
/// server whose peers the ZAP handler checks on `domain`, and enforces
/// the domain: without a ZAP handler libzmq then refuses every handshake
/// rather than admitting any peer (`ZMQ_ZAP_ENFORCE_DOMAIN`, which the
/// `zmq` crate does not expose: set through `zmq-sys`).
pub fn secure(
    socket: &mut zmq::Socket,
    curve: Option<&crate::config::CurveKeyPair>,
    domain: &str,
) -> zmq::Result<()> {
    match curve {
        Some(pair) => {
            socket.set_curve_server(true)?;
            socket.set_curve_secretkey(pair.secret_bytes())?;
        }
        None => socket.set_plain_server(true)?,
    }
    socket.set_zap_domain(domain)?;
    let on: std::ffi::c_int = 1;
    // SAFETY: a live socket, an int option of the size given.
    let rc = unsafe {
        zmq_sys::zmq_setsockopt(
            socket.as_mut_ptr(),
            ZMQ_ZAP_ENFORCE_DOMAIN,
            (&on as *const std::ffi::c_int).cast(),
            std::mem::size_of::<std::ffi::c_int>(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    // SAFETY: reads this thread's errno of the call just made.
    match zmq::Error::from_raw(unsafe { zmq_sys::zmq_errno() }) {
        // A libzmq built without draft options (the bundled one of
        // `zmq-sys` may be): the handler's socket staying bound is then
        // the only guard.
        zmq::Error::EINVAL => {
            tracing::warn!(
                domain,
                "this libzmq cannot enforce the ZAP domain (ZMQ_ZAP_ENFORCE_DOMAIN): peers are checked only while the hub's ZAP handler runs"
            );
            Ok(())
        }
        other => Err(other),
    }
}

/// The reply to one ZAP request: 200 with the login's user id, or
/// 400 for unknown credentials or key, another mechanism, or a principal
/// not admitted on the domain.
fn answer(request: &[Vec<u8>], gate: &Gate) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let text = |i: usize| {
        request
            .get(i)
            .and_then(|f| std::str::from_utf8(f).ok())
            .unwrap_or("")
    };
    let (version, domain, address, mechanism) = (text(0), text(2), text(3), text(5));
    // PLAIN: frames 6 and 7 are the user and password; CURVE: frame 6 is
    // the client's 32-byte public key. Logged: the user name, or that it
    // was a key (never a password, nor a key).
    let (user, principal) = match (version, mechanism) {
        ("1.0", "PLAIN") => {
            let (user, password) = (text(6), text(7));
            let principal = gate
                .logins
                .iter()
                .find(|(c, _)| c.user == user && c.password == password)
                .map(|(_, principal)| principal.as_str());
            (user, principal)
        }
        ("1.0", "CURVE") => {
            let key = request
                .get(6)
                .and_then(|f| <[u8; 32]>::try_from(f.as_slice()).ok())
                .map(CurveKey::from_bytes);
            let principal = key.and_then(|key| {
                gate.keys
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, principal)| principal.as_str())
            });
            ("(a CURVE key)", principal)
        }
        _ => ("", None),
    };
    let admitted = match (principal, domain) {
        (Some(principal), DOMAIN) => Ok(principal),
        (Some(principal), TAIL_DOMAIN) if gate.tail.iter().any(|p| p == principal) => Ok(principal),
        (Some(_), _) => Err("not granted this endpoint"),
        (None, _) if mechanism == "CURVE" => Err("unknown client key"),
        (None, _) => Err("unknown user or wrong password"),
    };
    // The user name helps the operator; the password is never logged.
    let (code, status, user_id) = match admitted {
        Ok(user_id) => {
            let principal = principal_of(user_id);
            tracing::debug!(user, principal, domain, address, "peer authenticated");
            ("200", "OK", user_id)
        }
        Err(why) => {
            tracing::warn!(user, domain, address, mechanism, why, "peer refused");
            ("400", why, "")
        }
    };
    vec![
        b"1.0".to_vec(),
        request_id,
        code.as_bytes().to_vec(),
        status.as_bytes().to_vec(),
        user_id.as_bytes().to_vec(),
        Vec::new(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(domain: &str, user: &str, password: &str) -> Vec<Vec<u8>> {
        ["1.0", "7", domain, "127.0.0.1", "", "PLAIN", user, password]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    fn gate() -> Gate {
        Gate {
            logins: vec![
                (Credentials::new("web", "right"), "web-principal".into()),
                (Credentials::new("ops", "other"), "ops".into()),
            ],
            keys: vec![(CurveKey::from_bytes([7; 32]), "keyed".into())],
            tail: vec!["ops".into()],
        }
    }

    #[test]
    fn only_listed_credentials_pass_and_name_their_principal() {
        let ok = answer(&request(DOMAIN, "web", "right"), &gate());
        assert_eq!(
            (&ok[2][..], &ok[4][..]),
            (&b"200"[..], &b"web-principal"[..])
        );
        for refused in [
            request(DOMAIN, "web", "wrong"),
            request(DOMAIN, "other", "right"),
            Vec::new(),
        ] {
            let reply = answer(&refused, &gate());
            assert_eq!((&reply[2][..], &reply[4][..]), (&b"400"[..], &b""[..]));
        }
    }

    #[test]
    fn only_listed_curve_keys_pass_and_name_their_principal() {
        let curve = |key: &[u8]| {
            let mut frames: Vec<Vec<u8>> = ["1.0", "7", DOMAIN, "127.0.0.1", "", "CURVE"]
                .iter()
                .map(|s| s.as_bytes().to_vec())
                .collect();
            frames.push(key.to_vec());
            frames
        };
        let ok = answer(&curve(&[7; 32]), &gate());
        assert_eq!((&ok[2][..], &ok[4][..]), (&b"200"[..], &b"keyed"[..]));
        for refused in [curve(&[8; 32]), curve(&[7; 31]), curve(b"")] {
            let reply = answer(&refused, &gate());
            assert_eq!((&reply[2][..], &reply[4][..]), (&b"400"[..], &b""[..]));
            assert_eq!(reply[3], b"unknown client key");
        }
    }

    /// What a CURVE client with `own` keys gets from a tail made by
    /// [`secure`] in a context whose ZAP handler has stopped: whether its
    /// handshake succeeded, by the client's monitor.
    fn unknown_key_admitted_without_a_handler() -> bool {
        use crate::config::CurveKeyPair;
        let context = zmq::Context::new();
        let (hub, stranger) = (
            CurveKeyPair::generate().unwrap(),
            CurveKeyPair::generate().unwrap(),
        );
        let shared = SharedGate::new(RwLock::new(gate()));
        // Started, then stopped: nothing answers on the ZAP endpoint.
        drop(ZapHandler::start(&context, shared).unwrap());
        let mut tail = context.socket(zmq::XPUB).unwrap();
        tail.set_linger(0).unwrap();
        secure(&mut tail, Some(&hub), TAIL_DOMAIN).unwrap();
        tail.bind("tcp://127.0.0.1:*").unwrap();
        let endpoint = tail.get_last_endpoint().unwrap().unwrap();
        let sub = context.socket(zmq::SUB).unwrap();
        sub.set_linger(0).unwrap();
        sub.set_curve_serverkey(hub.public.as_bytes()).unwrap();
        sub.set_curve_publickey(stranger.public.as_bytes()).unwrap();
        sub.set_curve_secretkey(stranger.secret_bytes()).unwrap();
        sub.monitor(
            "inproc://zap-test-monitor",
            zmq::SocketEvent::HANDSHAKE_SUCCEEDED as i32
                | zmq::SocketEvent::HANDSHAKE_FAILED_AUTH as i32
                | zmq::SocketEvent::HANDSHAKE_FAILED_PROTOCOL as i32
                | zmq::SocketEvent::HANDSHAKE_FAILED_NO_DETAIL as i32,
        )
        .unwrap();
        let monitor = context.socket(zmq::PAIR).unwrap();
        monitor.set_linger(0).unwrap();
        monitor.connect("inproc://zap-test-monitor").unwrap();
        sub.connect(&endpoint).unwrap();
        assert_eq!(
            monitor.poll(zmq::POLLIN, 20_000).unwrap(),
            1,
            "no handshake outcome within 20 s"
        );
        let head = monitor.recv_multipart(0).unwrap().remove(0);
        u16::from_ne_bytes([head[0], head[1]]) == zmq::SocketEvent::HANDSHAKE_SUCCEEDED as u16
    }

    #[test]
    fn without_a_running_handler_an_unknown_key_is_not_admitted_to_the_tail() {
        assert!(
            !unknown_key_admitted_without_a_handler(),
            "an unknown CURVE key was admitted to the tail with the ZAP handler stopped"
        );
    }

    #[test]
    fn an_interrupted_call_is_retried_and_other_errors_close_the_handler() {
        // The decision `serve` makes, on the errors it can meet.
        assert!(!closes_on(&zmq::Error::EINTR));
        for error in [zmq::Error::ETERM, zmq::Error::EFSM, zmq::Error::ENOTSOCK] {
            assert!(closes_on(&error), "{error}");
        }
    }

    #[test]
    fn the_tail_domain_admits_only_tail_principals() {
        assert_eq!(
            answer(&request(TAIL_DOMAIN, "ops", "other"), &gate())[2],
            b"200"
        );
        let refused = answer(&request(TAIL_DOMAIN, "web", "right"), &gate());
        assert_eq!(refused[2], b"400");
        assert_eq!(refused[3], b"not granted this endpoint");
        assert_eq!(
            answer(&request("elsewhere", "ops", "other"), &gate())[2],
            b"400"
        );
    }
}
