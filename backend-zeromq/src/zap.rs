//! The hub's ZAP handler (ZeroMQ RFC 27): checks the PLAIN user name and
//! password of every connecting peer against the allowlist, so a peer
//! without valid credentials never gets a connection, let alone a mail.
//!
//! libzmq asks the handler bound at `inproc://zeromq.zap.01` in the socket's
//! context; the hub runs one per context, on its own thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use crate::config::Credentials;

/// Where libzmq sends authentication requests.
const ZAP_ENDPOINT: &str = "inproc://zeromq.zap.01";

/// The ZAP domain the hub's sockets declare.
pub const DOMAIN: &str = "mq-archiver";

/// A running handler; stops when dropped.
pub struct ZapHandler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl ZapHandler {
    /// Binds the handler in `context` (before any socket that needs it
    /// binds) and starts answering.
    pub fn start(context: &zmq::Context, allowed: Vec<Credentials>) -> zmq::Result<Self> {
        let socket = context.socket(zmq::REP)?;
        socket.set_linger(0)?;
        socket.bind(ZAP_ENDPOINT)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("zmq-zap".into())
            .spawn(move || serve(&socket, &allowed, &stopping))
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

fn serve(socket: &zmq::Socket, allowed: &[Credentials], stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match socket.poll(zmq::POLLIN, 100) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(_) => return,
        }
        let Ok(request) = socket.recv_multipart(0) else {
            return;
        };
        let reply = answer(&request, allowed);
        if socket.send_multipart(reply, 0).is_err() {
            return;
        }
    }
}

/// The reply to one ZAP request.
fn answer(request: &[Vec<u8>], allowed: &[Credentials]) -> Vec<Vec<u8>> {
    let request_id = request.get(1).cloned().unwrap_or_default();
    let text = |i: usize| {
        request
            .get(i)
            .and_then(|f| std::str::from_utf8(f).ok())
            .unwrap_or("")
    };
    let (version, address, mechanism, user, password) =
        (text(0), text(3), text(5), text(6), text(7));
    let ok = version == "1.0"
        && mechanism == "PLAIN"
        && allowed
            .iter()
            .any(|c| c.user == user && c.password == password);
    if ok {
        tracing::debug!(user, address, "peer authenticated");
    } else {
        // The user name helps the operator; the password is never logged.
        tracing::warn!(
            user,
            address,
            mechanism,
            "peer refused: unknown user or wrong password"
        );
    }
    let (code, status, user_id) = if ok {
        ("200", "OK", user)
    } else {
        ("400", "unknown user or wrong password", "")
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

    fn request(user: &str, password: &str) -> Vec<Vec<u8>> {
        ["1.0", "7", DOMAIN, "127.0.0.1", "", "PLAIN", user, password]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect()
    }

    #[test]
    fn only_listed_credentials_pass() {
        let allowed = vec![Credentials::new("web", "right")];
        assert_eq!(answer(&request("web", "right"), &allowed)[2], b"200");
        assert_eq!(answer(&request("web", "wrong"), &allowed)[2], b"400");
        assert_eq!(answer(&request("other", "right"), &allowed)[2], b"400");
        assert_eq!(answer(&[], &allowed)[2], b"400");
    }
}
