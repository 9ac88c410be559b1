//! The hub's ZAP handler (ZeroMQ RFC 27): checks the PLAIN user name and
//! password, or the CURVE public key, of every connecting peer against
//! the allowlist, so a peer without a valid login never gets a connection,
//! let alone a mail.
//! It answers with the principal's name as the ZAP user id, which libzmq
//! attaches to every message of that connection (`User-Id`): the hub
//! looks up the principal's grant per message. On the live tail's domain
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

/// The ZAP domain of the hub's ROUTER (durable subscribers, requests).
pub const DOMAIN: &str = "mq-archiver";

/// The ZAP domain of the hub's live tail: a tail cannot be filtered per
/// peer, so only principals that may see all of it connect.
pub const TAIL_DOMAIN: &str = "mq-archiver-tail";

/// Who may connect, as whom, and to which domains.
#[derive(Clone)]
pub struct Gate {
    /// Credentials and the principal each logs in as.
    pub logins: Vec<(Credentials, String)>,
    /// CURVE client public keys and the principal each logs in as.
    pub keys: Vec<(CurveKey, String)>,
    /// Principals admitted on [`TAIL_DOMAIN`].
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
            let _ = thread.join();
        }
    }
}

fn serve(socket: &zmq::Socket, gate: &SharedGate, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match socket.poll(zmq::POLLIN, 100) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(request) = socket.recv_multipart(0) else {
            return;
        };
        let reply = answer(&request, &gate.read().unwrap_or_else(|p| p.into_inner()));
        if socket.send_multipart(reply, 0).is_err() {
            return;
        }
    }
}

/// The reply to one ZAP request: 200 with the principal as user id, or
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
        Ok(principal) => {
            tracing::debug!(user, principal, domain, address, "peer authenticated");
            ("200", "OK", principal)
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
