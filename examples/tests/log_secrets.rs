//! No ZAP PLAIN password and no mail body in any log, at `RUST_LOG=trace`,
//! of the ZeroMQ list server and archive servers (the quickstart's
//! `--role` processes): the archive servers start before any hub exists
//! (they cannot connect), a list server publishes an mbox and exits once
//! both have taken it, a second list server on the same hub directory
//! publishes it again (the archive servers reconnect to it), and all their
//! output is searched for the password and each body as text, as a
//! decimal byte list and as hex. (The backend has no CURVE keys; PLAIN's
//! password is its only secret.)

use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use mq_archiver::conformance::leaks::{captured_output, leaks};

const PASSWORD: &str = "Zap9-logcapture-c1e7f3a9";
const MAILS: usize = 10;

/// Mail `i` of the test's mbox, with a body of its own.
fn body(i: usize) -> String {
    format!("Body line of mail {i}, private to the list: lorem ipsum dolor {i}.\n")
}

fn mbox(path: &Path) {
    let mut text = String::new();
    for i in 0..MAILS {
        text.push_str(&format!(
            "From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nFrom: a@example.org\nMessage-ID: <log-{i}@example.org>\nList-Id: <dev.lists.example.org>\nSubject: {i}\n\n{}\n",
            body(i)
        ));
    }
    std::fs::write(path, text).unwrap();
}

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn quickstart(dir: &Path, name: &str, args: &[&str]) -> Process {
    let file = |ext: &str| std::fs::File::create(dir.join(format!("{name}.{ext}"))).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_quickstart"))
        .args(["--backend", "zeromq", "--no-sync"])
        .args(args)
        .env("RUST_LOG", "trace")
        .env("ARCHIVER_ZMQ_USER", "archiver")
        .env("ARCHIVER_ZMQ_PASSWORD", PASSWORD)
        .stdout(file("out"))
        .stderr(file("err"))
        .spawn()
        .expect("quickstart runs");
    Process(child)
}

/// Waits for a list server to exit, successfully, within two minutes.
fn finishes(mut process: Process, dir: &Path, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = process.0.try_wait().unwrap() {
            assert!(
                status.success(),
                "{name} failed: {}",
                std::fs::read_to_string(dir.join(format!("{name}.out"))).unwrap()
            );
            return;
        }
        assert!(Instant::now() < deadline, "{name} did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn zeromq_logs_show_no_password_and_no_body() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("tcp://127.0.0.1:{port}");
    let mbox_path = dir.path().join("mails.mbox");
    mbox(&mbox_path);
    let out = dir.path().join("archive");
    let hub = dir.path().join("hub");
    let (out, hub, mbox_path) = (
        out.to_str().unwrap(),
        hub.to_str().unwrap(),
        mbox_path.to_str().unwrap(),
    );

    let archive_args = |kind: &'static str| {
        [
            "--role",
            "archive-server",
            "--subscriber",
            kind,
            "--url",
            &url,
            "--out",
            out,
            "--idle-exit",
            "600",
        ]
    };
    let maildir = quickstart(dir.path(), "maildir", &archive_args("maildir"));
    let index = quickstart(dir.path(), "thread-index", &archive_args("thread-index"));
    let list_args = [
        "--role",
        "list-server",
        "--url",
        &url,
        "--hub-dir",
        hub,
        "--mbox",
        mbox_path,
    ];
    // The archive servers have no hub to reach until this list server binds.
    let first = quickstart(dir.path(), "list-server-1", &list_args);
    finishes(first, dir.path(), "list-server-1");
    let second = quickstart(dir.path(), "list-server-2", &list_args);
    finishes(second, dir.path(), "list-server-2");
    drop((maildir, index));

    let stored = std::fs::read_dir(dir.path().join("archive/maildir/dev.lists.example.org/new"))
        .unwrap()
        .count();
    assert_eq!(stored, MAILS);
    let output = captured_output(dir.path());
    assert!(
        output.contains("DEBUG"),
        "nothing logged at debug: the test would prove nothing"
    );
    let bodies: Vec<String> = (0..MAILS).map(body).collect();
    let leaks = leaks(
        &output,
        PASSWORD.as_bytes(),
        bodies.iter().map(String::as_bytes).enumerate(),
    );
    assert!(leaks.is_empty(), "ZeroMQ logs at trace show: {leaks:?}");
}
