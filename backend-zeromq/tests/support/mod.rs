//! What the ZeroMQ tests share: a hub of their own on loopback TCP, in a
//! temporary directory, and child processes of the test binary (a hub, an
//! archive server) to kill or to measure.

#![allow(dead_code)] // each test binary uses part of this

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use backend_zeromq::{ClientConfig, HubConfig, Login, ZmqClient, ZmqHub};
use tokio::sync::mpsc;

/// A hub on loopback with a live tail and the default settings, open to
/// anonymous peers (loopback only) unless a test adds credentials, which
/// replace anonymous access.
pub fn hub_config(dir: &std::path::Path) -> HubConfig {
    HubConfig::new("tcp://127.0.0.1:*", dir)
        .tail("tcp://127.0.0.1:*")
        .allow_anonymous()
}

/// A new archive server's client of `hub`: its endpoint, its tail, its
/// first allowed credentials (a CURVE hub's tests make their own clients).
pub fn client_of(hub: &ZmqHub) -> ZmqClient {
    let mut config = ClientConfig::new(hub.endpoint());
    if let Some(tail) = hub.tail_endpoint() {
        config = config.tail(tail);
    }
    if let Some(Login::Plain(credentials)) = hub.config().allowed.first().map(|a| &a.login) {
        config = config.credentials(credentials.clone());
    }
    ZmqClient::connect(config).expect("the hub's endpoints are valid")
}

/// How long a test waits for a line from a child process.
pub const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// A free loopback port (a restarted hub must bind the same one).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process of this test binary in a role (the binary's `child`
/// test, with `FAULT_ROLE` set), with its stdout lines.
pub struct Role {
    pub child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
}

impl Role {
    pub fn start(role: &str, env: &[(&str, String)]) -> Self {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "child", "--nocapture", "--test-threads=1"])
            .env("FAULT_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            // The child's own lines are marked "@ " (libtest may print
            // "test child ... " before the first one); others are libtest's.
            let lines = BufReader::new(stdout).lines().map_while(Result::ok);
            for line in lines.filter_map(|l| l.split_once("@ ").map(|(_, ours)| ours.to_owned())) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        Self {
            child,
            stdin,
            lines,
        }
    }

    /// The next line, failing the test at the deadline.
    pub async fn line(&mut self, what: &str) -> Option<String> {
        tokio::time::timeout(CHILD_DEADLINE, self.lines.recv())
            .await
            .unwrap_or_else(|_| panic!("{what}: no line from the child within {CHILD_DEADLINE:?}"))
    }

    pub fn say(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    pub fn kill(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    /// A line of the child's `/proc/<pid>/status` in KiB, e.g. `VmHWM`
    /// (its peak resident memory) or `VmRSS`.
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
            .unwrap_or_else(|| panic!("no {field} in the child's /proc status"))
    }
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How long a raw-socket test waits for the hub's answer.
pub const RAW_DEADLINE: Duration = Duration::from_secs(30);

/// Receives one message on a raw socket, failing the test after
/// [`RAW_DEADLINE`].
pub fn recv_raw(socket: &zmq::Socket, what: &str) -> Vec<Vec<u8>> {
    assert!(
        socket
            .poll(zmq::POLLIN, RAW_DEADLINE.as_millis() as i64)
            .unwrap()
            > 0,
        "{what}: nothing received within {RAW_DEADLINE:?}"
    );
    socket.recv_multipart(0).unwrap()
}
