//! No password and no mail body in any log, at `RUST_LOG=trace`, of the
//! list-server and archive-server processes of Redis and RabbitMQ, through
//! a connect failure, a reconnect and a normal run: the archive server
//! subscribes, the broker (this test's own, password-protected) goes away
//! (Redis is stopped; RabbitMQ's connections are cut and refused by a
//! forwarder, as a restarted node is slow to confirm again), the list
//! server starts and cannot connect (it spools), the broker comes back,
//! both reconnect and every mail is archived. All their
//! output is then searched for the password and for each mail's body as
//! text, as a decimal byte list (lapin's frame traces) and as hex.
//!
//! Redis is reached through `redis+unix:///...?pass=`, the URL form whose
//! password `redact_url` once missed. The ZeroMQ processes are covered by
//! `examples/tests/log_secrets.rs` (they are the quickstart's roles).

#[path = "../../backend-rabbitmq/tests/support/mod.rs"]
mod rabbit_support;
#[path = "../../backend-redis/tests/support/mod.rs"]
mod redis_support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use archiver_tests::{chaos_mail, corpus};
use mq_archiver::conformance::leaks::{captured_output, leaks};

/// Mails per run: enough for bodies to cross in several frames.
const MAILS: usize = 20;
/// The brokers' password: distinctive, so any trace of it is found.
const PASSWORD: &str = "Pw9-logcapture-7f3a9c1e";

/// A process of this test with its stdout and stderr in files, killed on
/// drop.
struct Process {
    child: Child,
    stdout: PathBuf,
}

impl Process {
    fn spawn(binary: &str, args: &[String], dir: &Path, name: &str) -> Self {
        let file = |ext: &str| std::fs::File::create(dir.join(format!("{name}.{ext}"))).unwrap();
        let child = Command::new(binary)
            .args(args)
            .env("RUST_LOG", "trace")
            .stdout(file("out"))
            .stderr(file("err"))
            .spawn()
            .expect("the test's binaries are built");
        Self {
            child,
            stdout: dir.join(format!("{name}.out")),
        }
    }

    fn lines_starting(&self, prefix: &str) -> usize {
        std::fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.starts_with(prefix))
            .count()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The body of a mail: what follows its header block.
fn body(raw: &[u8]) -> &[u8] {
    let at = |sep: &[u8]| {
        raw.windows(sep.len())
            .position(|w| w == sep)
            .map(|i| i + sep.len())
    };
    at(b"\r\n\r\n")
        .or_else(|| at(b"\n\n"))
        .map_or(&[], |i| &raw[i..])
}

/// The run: archive server subscribed, broker stopped, list server started
/// (connect failure, spooling), broker back (reconnect), every mail
/// archived; then the output is searched.
fn run(backend: &str, url: &str, stop: &mut dyn FnMut(), start: &mut dyn FnMut()) {
    let Some(corpus) = corpus(&format!("log secrets {backend}")) else {
        return;
    };
    // Kept when the test fails, for its logs; removed at the end otherwise.
    let dir = tempfile::Builder::new()
        .prefix("log-secrets-")
        .disable_cleanup(true)
        .tempdir()
        .unwrap();
    let prefix = format!("logtest{}", uuid::Uuid::now_v7().simple());
    let common = |extra: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = ["--url", url, "--prefix", &prefix]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let root = dir.path().join("archive");
    let archive = Process::spawn(
        env!("CARGO_BIN_EXE_chaos-archive-server"),
        &common(&["--name", "archive", "--root", root.to_str().unwrap()]),
        dir.path(),
        "archive-server",
    );
    wait_until(
        "the archive server subscribed",
        Duration::from_secs(60),
        || archive.lines_starting("ready") == 1,
    );

    stop();
    let spool = dir.path().join("spool");
    let list = Process::spawn(
        env!("CARGO_BIN_EXE_chaos-list-server"),
        &common(&[
            "--spool",
            spool.to_str().unwrap(),
            "--count",
            &MAILS.to_string(),
            "--concurrency",
            "2",
        ]),
        dir.path(),
        "list-server",
    );
    wait_until("the list server to spool", Duration::from_secs(60), || {
        list.lines_starting("ok ") == MAILS
    });
    start();
    wait_until(
        "the list server's spool drained",
        Duration::from_secs(120),
        || list.lines_starting("done 0 ") == 1,
    );
    wait_until("every mail stored", Duration::from_secs(120), || {
        archive.lines_starting("stored ") == MAILS
    });
    drop((archive, list));

    let output = captured_output(dir.path());
    assert!(
        output.contains("DEBUG"),
        "the processes did not log at debug: the test would prove nothing (output in {})",
        dir.path().display()
    );
    assert!(
        output.contains("spooled"),
        "the list server never failed to connect"
    );
    let mails: Vec<_> = (0..MAILS).map(|i| chaos_mail(&corpus, i)).collect();
    let samples = mails.iter().enumerate().filter_map(|(i, raw)| {
        let body = body(raw);
        let sample = &body[..body.len().min(48)];
        (sample.len() >= 16).then_some((i, sample))
    });
    let leaks = leaks(&output, PASSWORD.as_bytes(), samples);
    assert!(
        leaks.is_empty(),
        "{backend} logs at trace show: {leaks:?} (output kept in {})",
        dir.path().display()
    );
    std::fs::remove_dir_all(dir.path()).unwrap();
}

#[test]
fn redis_logs_show_no_password_and_no_body() {
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("redis.sock");
    let mut server = redis_support::RedisServer::start(
        true,
        &[
            "--requirepass",
            PASSWORD,
            "--unixsocket",
            socket.to_str().unwrap(),
        ],
    );
    let url = format!("redis+unix://{}?pass={PASSWORD}", socket.display());
    let server = std::cell::RefCell::new(&mut server);
    run(
        "redis",
        &url,
        &mut || server.borrow_mut().kill(),
        &mut || server.borrow_mut().start_again(),
    );
}

/// A TCP forwarder to the RabbitMQ node that the test can cut (every
/// connection shut, nothing listening: what clients see of a broker
/// outage) and restore on the same port, without restarting the node.
struct Cuttable {
    port: u16,
    target: u16,
    open: std::sync::Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Cuttable {
    fn new(target: u16) -> Self {
        let forwarder = Self {
            port: archiver_core::conformance::server::spare_port(),
            target,
            open: Default::default(),
            running: Default::default(),
        };
        forwarder.restore();
        forwarder
    }

    fn restore(&self) {
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind(("127.0.0.1", self.port)).unwrap();
        listener.set_nonblocking(true).unwrap();
        self.running.store(true, Ordering::SeqCst);
        let (running, open, target) = (self.running.clone(), self.open.clone(), self.target);
        std::thread::spawn(move || {
            while running.load(Ordering::SeqCst) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                };
                client.set_nonblocking(false).unwrap();
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else {
                    continue;
                };
                let mut open = open.lock().unwrap();
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server.try_clone().unwrap(), client.try_clone().unwrap()),
                ] {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
                open.extend([client, server]);
            }
        });
    }

    fn cut(&self) {
        self.running
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        // The accept loop sees the flag within its 20 ms poll and drops the
        // listener; connecting is refused from then on.
        wait_until("the forwarder closed", Duration::from_secs(5), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err()
        });
    }
}

#[test]
fn rabbitmq_logs_show_no_password_and_no_body() {
    let node = rabbit_support::RabbitNode::start(&format!(
        "default_user = archiver\ndefault_pass = {PASSWORD}\n"
    ));
    let forwarder = Cuttable::new(node.port);
    let url = format!(
        "amqp://archiver:{PASSWORD}@127.0.0.1:{}/%2f",
        forwarder.port
    );
    run("rabbitmq", &url, &mut || forwarder.cut(), &mut || {
        forwarder.restore()
    });
}
