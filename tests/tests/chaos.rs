//! The chaos suite: for Redis and RabbitMQ, a list-server process archives
//! 20,000 corpus mails (each with its own Message-ID) through a spooling
//! `QueueArchiver`, and two durable archive-server processes store them,
//! while the test (a) stops the broker for 20 s, (b) kills the list server
//! with `kill -9` and starts it again on the same spool, (c) kills an
//! archive server holding unacked deliveries and starts it again, or (d)
//! all three. Then every mail whose `archive_message` returned `Ok` must be
//! in both archives, byte for byte; a table gives the counts.
//!
//! Each test starts its own broker on a spare port (Redis with `appendonly
//! yes`, a RabbitMQ node of its own) and stops it by pid. They take about a
//! minute each, so they are `#[ignore]`d for a plain `cargo test`;
//! `scripts/test` (the README's test command, and CI) runs them with
//! `--include-ignored`.

#[path = "../../backend-rabbitmq/tests/support/mod.rs"]
mod rabbit_support;
#[path = "../../backend-redis/tests/support/mod.rs"]
mod redis_support;

use std::collections::HashSet;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archiver_examples::maildir::MaildirArchive;
use archiver_tests::{chaos_list, chaos_mail, corpus, parse};
use mq_archiver::Bytes;

/// Mails per run.
const MAILS: usize = 20_000;
/// The list server's pace (mails/s), so that faults land mid-run.
const RATE: u64 = 1_000;
/// How long the broker stays stopped.
const OUTAGE: Duration = Duration::from_secs(20);

/// Which faults a run injects.
#[derive(Debug, Clone, Copy)]
struct Faults {
    broker_outage: bool,
    kill_list_server: bool,
    kill_archive_server: bool,
}

const A: Faults = Faults {
    broker_outage: true,
    kill_list_server: false,
    kill_archive_server: false,
};
const B: Faults = Faults {
    broker_outage: false,
    kill_list_server: true,
    kill_archive_server: false,
};
const C: Faults = Faults {
    broker_outage: false,
    kill_list_server: false,
    kill_archive_server: true,
};
const D: Faults = Faults {
    broker_outage: true,
    kill_list_server: true,
    kill_archive_server: true,
};

/// A broker this test started and may stop.
enum OwnBroker {
    Redis(redis_support::RedisServer),
    Rabbit(rabbit_support::RabbitNode),
}

impl OwnBroker {
    fn start(backend: &str) -> Self {
        match backend {
            "redis" => Self::Redis(redis_support::RedisServer::start(true, &[])),
            _ => Self::Rabbit(rabbit_support::RabbitNode::start("")),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Redis(server) => server.url(),
            Self::Rabbit(node) => format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port),
        }
    }

    fn stop(&mut self) {
        match self {
            Self::Redis(server) => server.kill(),
            Self::Rabbit(node) => node.kill(),
        }
    }

    fn start_again(&mut self) {
        match self {
            Self::Redis(server) => server.start_again(),
            Self::Rabbit(node) => node.start_again(),
        }
    }
}

/// What a child process (and its restarts) reported on stdout.
#[derive(Default)]
struct Seen {
    /// Mails whose `archive_message` returned Ok (not skipped).
    ok: HashSet<usize>,
    skipped: HashSet<usize>,
    spooled: usize,
    stored: usize,
    duplicates: usize,
    /// Deliveries with an attempt number above 1.
    redelivered: usize,
    /// Mails a killed archive server held unacked.
    held: HashSet<String>,
    /// Mails handled again with an attempt number above 1.
    redelivered_hashes: HashSet<String>,
    ready: bool,
    done: Option<String>,
}

/// A child process of this test, killed on drop.
struct Child {
    process: std::process::Child,
}

impl Child {
    fn spawn(binary: &str, args: &[String], seen: Arc<Mutex<Seen>>, log: &Path) -> Self {
        let mut process = Command::new(binary)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(log)
                    .unwrap(),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("{binary}: {e}"));
        let stdout = process.stdout.take().unwrap();
        seen.lock().unwrap().ready = false;
        let reader_seen = seen.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let mut seen = reader_seen.lock().unwrap();
                let mut words = line.split(' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("ok"), Some(i), Some(outcome)) => {
                        let i: usize = i.parse().unwrap();
                        match outcome {
                            "skipped" => {
                                seen.skipped.insert(i);
                            }
                            _ => {
                                seen.ok.insert(i);
                                seen.spooled += usize::from(outcome == "spooled");
                            }
                        }
                    }
                    (Some(what @ ("stored" | "dup")), Some(hash), Some(attempt)) => {
                        if what == "stored" {
                            seen.stored += 1;
                        } else {
                            seen.duplicates += 1;
                        }
                        if attempt != "1" {
                            seen.redelivered += 1;
                            seen.redelivered_hashes.insert(hash.to_owned());
                        }
                    }
                    (Some("holding"), Some(hash), _) => {
                        seen.held.insert(hash.to_owned());
                    }
                    (Some("ready"), _, _) => seen.ready = true,
                    (Some("done"), _, _) => seen.done = Some(line.clone()),
                    _ => {}
                }
            }
        });
        Self { process }
    }

    fn kill(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `done` every 50 ms; fails the test with `what` after `within`.
fn wait_until(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One run: a broker, a list server, two archive servers.
struct Run {
    broker: OwnBroker,
    dir: tempfile::TempDir,
    prefix: String,
    list_seen: Arc<Mutex<Seen>>,
    archive_seen: [Arc<Mutex<Seen>>; 2],
}

impl Run {
    fn new(backend: &'static str) -> Self {
        Self {
            broker: OwnBroker::start(backend),
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("archiver-chaos-{}", uuid::Uuid::now_v7().simple()),
            list_seen: Arc::default(),
            archive_seen: [Arc::default(), Arc::default()],
        }
    }

    fn archive_root(&self, n: usize) -> PathBuf {
        self.dir.path().join(format!("archive-{n}"))
    }

    fn common_args(&self) -> Vec<String> {
        vec![
            "--url".into(),
            self.broker.url(),
            "--prefix".into(),
            self.prefix.clone(),
        ]
    }

    fn archive_server(&self, n: usize) -> Child {
        let mut args = self.common_args();
        args.extend([
            "--name".into(),
            format!("archive-{n}"),
            "--root".into(),
            self.archive_root(n).display().to_string(),
        ]);
        let seen = self.archive_seen[n].clone();
        let child = Child::spawn(
            env!("CARGO_BIN_EXE_chaos-archive-server"),
            &args,
            seen.clone(),
            &self.dir.path().join(format!("archive-{n}.log")),
        );
        wait_until(
            "archive server subscribed",
            Duration::from_secs(120),
            || seen.lock().unwrap().ready,
        );
        child
    }

    /// Starts the list server at the first mail not yet reported Ok.
    fn list_server(&self) -> Child {
        let from = {
            let seen = self.list_seen.lock().unwrap();
            (0..MAILS)
                .find(|i| !seen.ok.contains(i) && !seen.skipped.contains(i))
                .unwrap_or(MAILS)
        };
        let mut args = self.common_args();
        args.extend([
            "--spool".into(),
            self.dir.path().join("spool").display().to_string(),
            "--count".into(),
            MAILS.to_string(),
            "--from".into(),
            from.to_string(),
            "--rate".into(),
            RATE.to_string(),
        ]);
        Child::spawn(
            env!("CARGO_BIN_EXE_chaos-list-server"),
            &args,
            self.list_seen.clone(),
            &self.dir.path().join("list-server.log"),
        )
    }

    fn ok_count(&self) -> usize {
        self.list_seen.lock().unwrap().ok.len()
    }

    fn wait_ok(&self, count: usize) {
        wait_until(
            &format!("{count} mails archived"),
            Duration::from_secs(120),
            || self.ok_count() >= count,
        );
    }
}

/// Where a mail lands in an archive, relative to the archive's root.
fn archive_path(raw: &Bytes) -> PathBuf {
    let mail = parse(raw.clone());
    MaildirArchive::path_of(
        Path::new(""),
        chaos_list(&mail).list_id.as_str(),
        mail.message_id_hash(),
    )
}

fn chaos(backend: &'static str, scenario: &str, faults: Faults) {
    let Some(corpus) = corpus(&format!("chaos {backend} {scenario}")) else {
        return;
    };
    let started = Instant::now();
    let mut run = Run::new(backend);
    let mut archives = [run.archive_server(0), run.archive_server(1)];
    let mut list_server = run.list_server();
    let mut outage_started = None;

    if faults.kill_archive_server {
        wait_until("archive 0 busy", Duration::from_secs(120), || {
            run.archive_seen[0].lock().unwrap().stored >= 2_000
        });
        // Make it hold its deliveries unacked, then kill it holding them.
        let hold = run.archive_root(0).join("HOLD");
        std::fs::write(&hold, b"").unwrap();
        wait_until(
            "archive 0 holding deliveries",
            Duration::from_secs(60),
            || run.archive_seen[0].lock().unwrap().held.len() >= 8,
        );
        archives[0].kill();
        std::fs::remove_file(&hold).unwrap();
        archives[0] = run.archive_server(0);
    }
    if faults.broker_outage {
        run.wait_ok(5_000);
        run.broker.stop();
        outage_started = Some(Instant::now());
    }
    if faults.kill_list_server {
        run.wait_ok(8_000);
        list_server.kill();
        list_server = run.list_server();
    }
    if let Some(since) = outage_started {
        std::thread::sleep(OUTAGE.saturating_sub(since.elapsed()));
        run.broker.start_again();
    }
    wait_until("the list server finished", Duration::from_secs(300), || {
        run.list_seen.lock().unwrap().done.is_some()
    });
    let status = list_server.process.wait().unwrap();
    let done = run.list_seen.lock().unwrap().done.clone().unwrap();
    assert!(status.success(), "list server: {done}");

    // Every mail reported Ok must reach both archives.
    let (ok, skipped, spooled) = {
        let seen = run.list_seen.lock().unwrap();
        (seen.ok.clone(), seen.skipped.clone(), seen.spooled)
    };
    let expected: Vec<(usize, PathBuf, Bytes)> = ok
        .iter()
        .map(|&i| {
            let raw = chaos_mail(&corpus, i);
            (i, archive_path(&raw), raw)
        })
        .collect();
    for n in 0..2 {
        let root = run.archive_root(n);
        wait_until(
            &format!("archive {n} has every mail archived Ok"),
            Duration::from_secs(300),
            || expected.iter().all(|(_, path, _)| root.join(path).exists()),
        );
    }
    drop(archives);

    let mut rows = Vec::new();
    for n in 0..2 {
        let root = run.archive_root(n);
        let lost: Vec<usize> = expected
            .iter()
            .filter(|(_, path, raw)| {
                std::fs::read(root.join(path)).ok().as_deref() != Some(&raw[..])
            })
            .map(|(i, _, _)| *i)
            .collect();
        let seen = run.archive_seen[n].lock().unwrap();
        rows.push((
            n,
            seen.stored + seen.duplicates,
            seen.duplicates,
            seen.redelivered,
            lost,
        ));
    }
    let skipped_archived = skipped
        .iter()
        .filter(|&&i| {
            run.archive_root(0)
                .join(archive_path(&chaos_mail(&corpus, i)))
                .exists()
        })
        .count();
    let mut table = format!(
        "\nchaos {backend} ({scenario}), {:.0} s\n\
         | archive | published Ok | spooled | delivered | duplicates | redelivered | lost |\n\
         |---|---|---|---|---|---|---|\n",
        started.elapsed().as_secs_f64()
    );
    for (n, delivered, duplicates, redelivered, lost) in &rows {
        table += &format!(
            "| archive-{n} | {} | {spooled} | {delivered} | {duplicates} | {redelivered} | {} |\n",
            ok.len(),
            lost.len()
        );
    }
    println!(
        "{table}(skipped by X-No-Archive: {}; list server: {done})",
        skipped.len()
    );
    for (n, _, _, _, lost) in &rows {
        assert!(
            lost.is_empty(),
            "archive-{n} lost {} mails: {:?}",
            lost.len(),
            &lost[..lost.len().min(20)]
        );
    }
    assert_eq!(
        ok.len() + skipped.len(),
        MAILS,
        "every mail archived or skipped"
    );
    assert_eq!(
        skipped_archived, 0,
        "X-No-Archive mails stay out of the archive"
    );
    if faults.broker_outage {
        assert!(
            spooled > 0,
            "the outage spooled nothing: it did not land mid-run"
        );
    }
    if faults.kill_archive_server {
        let seen = run.archive_seen[0].lock().unwrap();
        let not_redelivered: Vec<_> = seen.held.difference(&seen.redelivered_hashes).collect();
        println!(
            "archive-0 was killed holding {} unacked deliveries; each came back as a redelivery",
            seen.held.len()
        );
        assert!(
            not_redelivered.is_empty(),
            "held by the killed archive server, never redelivered: {not_redelivered:?}"
        );
    }
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn redis_broker_stopped_for_20_s() {
    chaos("redis", "a: broker stopped 20 s", A);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn redis_list_server_killed() {
    chaos("redis", "b: list server kill -9", B);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn redis_archive_server_killed() {
    chaos("redis", "c: archive server kill -9", C);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn redis_all_three() {
    chaos("redis", "d: all three", D);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn rabbitmq_broker_stopped_for_20_s() {
    chaos("rabbitmq", "a: broker stopped 20 s", A);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn rabbitmq_list_server_killed() {
    chaos("rabbitmq", "b: list server kill -9", B);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn rabbitmq_archive_server_killed() {
    chaos("rabbitmq", "c: archive server kill -9", C);
}

#[test]
#[ignore = "chaos, about a minute; scripts/test runs it"]
fn rabbitmq_all_three() {
    chaos("rabbitmq", "d: all three", D);
}
