//! A broker process of a test's own, for the tests that kill it, restart it,
//! or configure it (a password, TLS): started on a spare loopback port with
//! its data in a temporary directory, killed -9 by its own pid, never any
//! other process. A backend says only how its broker is launched
//! ([`Broker`]); starting, waiting, killing and restarting are here.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port free right now on the loopback.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a spare loopback port")
        .port()
}

/// Whether something accepts TCP connections on 127.0.0.1:`port`.
pub fn listening(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

/// How one kind of broker is launched: what a backend's tests know of
/// their broker, and all they need to say.
pub trait Broker {
    /// The program, for messages and the log file's name.
    const PROGRAM: &'static str;
    /// How long it may take to serve after a start.
    const STARTUP: Duration;

    /// Writes what the broker reads at start (its configuration) into
    /// `dir`; called once, before the first start.
    fn prepare(&self, _port: u16, _dir: &Path) {}

    /// The command that runs the broker on 127.0.0.1:`port` with its data
    /// in `dir`.
    fn command(&self, port: u16, dir: &Path) -> Command;

    /// The file the broker writes its pid to, when [`command`](Self::command)
    /// runs a wrapper that starts the broker as another process: kill -9
    /// must reach the broker itself.
    fn pid_file(&self, _dir: &Path) -> Option<PathBuf> {
        None
    }

    /// Whether the broker serves on `port` (by default: accepts TCP).
    fn serves(&self, port: u16) -> bool {
        listening(port)
    }
}

/// A broker this test started; killed when dropped.
pub struct BrokerProcess<B: Broker> {
    /// The plain-text port it listens on.
    pub port: u16,
    /// How it is launched.
    pub broker: B,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl<B: Broker> BrokerProcess<B> {
    /// Starts `broker` on a spare port in a new temporary directory;
    /// returns once it serves.
    pub fn start(broker: B) -> Self {
        let port = spare_port();
        let dir = tempfile::tempdir().expect("a temporary directory");
        broker.prepare(port, dir.path());
        let mut process = Self {
            port,
            broker,
            dir,
            child: None,
        };
        process.start_again();
        process
    }

    /// Its data directory (configuration, data, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts it (again, after [`kill`](Self::kill)) on the same port and
    /// data; returns once it serves.
    pub fn start_again(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log())
            .expect("the broker's log file");
        let child = self
            .broker
            .command(self.port, self.dir.path())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{} must be installed (scripts/test installs it): {e}",
                    B::PROGRAM
                )
            });
        self.child = Some(child);
        let (broker, port) = (&self.broker, self.port);
        self.wait_for(|| broker.serves(port), "serve");
    }

    /// Polls until `port` (another listener of this broker, e.g. TLS)
    /// accepts connections, failing the test after [`Broker::STARTUP`].
    pub fn wait_listening(&self, port: u16) {
        self.wait_for(|| listening(port), &format!("listen on {port}"));
    }

    /// kill -9 of its own pid, as a crash; returns once it is gone.
    pub fn kill(&mut self) {
        if let Some(pid_file) = self.broker.pid_file(self.dir.path()) {
            if let Ok(pid) = std::fs::read_to_string(&pid_file) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
                let _ = std::fs::remove_file(&pid_file);
            }
            // The wrapper ends with the broker; reap it.
            if let Some(mut wrapper) = self.child.take() {
                let _ = wrapper.wait();
            }
        } else if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
        }
    }

    /// kill -9, then starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join(format!("{}.log", B::PROGRAM))
    }

    fn wait_for(&self, mut done: impl FnMut() -> bool, what: &str) {
        let deadline = Instant::now() + B::STARTUP;
        while !done() {
            assert!(
                Instant::now() < deadline,
                "{} did not {what} within {:?}: see {}",
                B::PROGRAM,
                B::STARTUP,
                self.log().display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl<B: Broker> Drop for BrokerProcess<B> {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A broker stand-in: a process that only sleeps, taken as serving
    /// at once.
    struct Sleeper;

    impl Broker for Sleeper {
        const PROGRAM: &'static str = "sleep";
        const STARTUP: Duration = Duration::from_secs(10);

        fn command(&self, _port: u16, _dir: &Path) -> Command {
            let mut command = Command::new("sleep");
            command.arg("600");
            command
        }

        fn serves(&self, _port: u16) -> bool {
            true
        }
    }

    fn alive(pid: u32) -> bool {
        // A reaped process has no /proc entry.
        Path::new(&format!("/proc/{pid}")).exists()
    }

    #[test]
    fn kill_ends_its_own_process_and_restart_starts_another() {
        let mut process = BrokerProcess::start(Sleeper);
        let first = process.child.as_ref().expect("started").id();
        assert!(alive(first));
        process.restart();
        assert!(!alive(first), "kill -9 ended the first process");
        let second = process.child.as_ref().expect("started again").id();
        assert_ne!(first, second);
        let dir = process.dir().to_owned();
        drop(process);
        assert!(!alive(second), "dropping it kills it");
        assert!(!dir.exists(), "and removes its directory");
    }
}
