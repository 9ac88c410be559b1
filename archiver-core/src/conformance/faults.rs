//! Backends' fault tests (which kill brokers and processes, so each backend
//! brings its own fault): test mail from the corpus, waiting on a condition
//! with a deadline, a small file system that fills up, and the shared runs
//! the faults strike (10,000 publishes, a consumer process killed -9).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;

use super::corpus::corpus_mbox;
use crate::backend::{BackendError, Deliveries, Publisher};
use crate::envelope::{Envelope, EnvelopeId};
use crate::list::{ListId, MailingList};
use crate::mail::mbox::MboxReader;
use crate::mail::{ArchivedMail, MailLimits};

/// `count` envelopes cycling through the corpus mails (each its own
/// envelope id), on each mail's own list; None when the corpus is absent.
pub fn corpus_envelopes(count: usize) -> Option<Vec<Envelope>> {
    let mbox = corpus_mbox("corpus_envelopes")?;
    let mails: Vec<ArchivedMail> = MboxReader::open(mbox)
        .expect("corpus opens")
        .map(|raw| {
            ArchivedMail::parse(raw.expect("corpus reads"), &MailLimits::default())
                .expect("corpus mail parses")
        })
        .collect();
    let fallback = ListId::new("fault.lists.example.org").expect("valid list id");
    Some(
        mails
            .iter()
            .cycle()
            .take(count)
            .map(|mail| {
                let list = mail
                    .meta()
                    .list_id
                    .clone()
                    .unwrap_or_else(|| fallback.clone());
                Envelope::mail(mail, &MailingList::public(list))
            })
            .collect(),
    )
}

/// Polls `done` every 20 ms; false if it still does not hold after `within`.
pub async fn poll_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Like [`poll_until`], failing the test with `what` at the deadline.
pub async fn wait_until(what: &str, within: Duration, done: impl FnMut() -> bool) {
    assert!(
        poll_until(within, done).await,
        "{what}: not reached within {within:?}"
    );
}

/// A tmpfs mounted on a directory for a test of a full disk, unmounted
/// when dropped. Needs root.
pub struct Tmpfs {
    dir: std::path::PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (as `mount -o size=`, e.g. `"20m"`) on the
    /// existing directory `dir`. None when this machine cannot (the test
    /// says so and skips), except under CI (`CI=true`), where that fails
    /// the test: a skipped disk-full test must not pass unnoticed there.
    pub fn mount(dir: &std::path::Path, size: &str) -> Option<Self> {
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status();
        match mounted {
            Ok(status) if status.success() => Some(Self {
                dir: dir.to_owned(),
            }),
            other => {
                let why = format!(
                    "cannot mount a tmpfs on {} (needs root): {other:?}",
                    dir.display()
                );
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipped: {why}");
                None
            }
        }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &std::path::Path {
        &self.dir
    }

    /// Fills the file system with one file until no space is left, then
    /// frees `room` bytes of it; returns the file, to delete to free the
    /// rest.
    pub fn fill_up(&self, room: u64) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.dir.join("ballast");
        let mut file = std::fs::File::create(&path).expect("ballast file");
        let chunk = vec![0xa5u8; 64 << 10];
        let mut size = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(n) => size += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        file.set_len(size.saturating_sub(room))
            .expect("ballast shrinks");
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy, so a file a failed test left open cannot keep it mounted.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.dir)
            .status();
    }
}

/// A small mail with a unique Message-ID on `list`.
pub fn small_mail(list: &ListId, seq: usize) -> Envelope {
    let raw = bytes::Bytes::from(format!(
        "Message-ID: <{seq}.{}@faults.example.org>\r\nSubject: {seq}\r\n\r\nbody {seq}\r\n",
        EnvelopeId::new()
    ));
    let mail = ArchivedMail::parse(raw, &MailLimits::default()).expect("test mail parses");
    Envelope::mail(&mail, &MailingList::public(list.clone()))
}

/// Publishers that retry each envelope until the backend takes it, as a
/// list server must while the broker is away.
pub struct Publishing {
    ok: Arc<Mutex<Vec<EnvelopeId>>>,
    failures: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Publishing {
    /// Starts `concurrency` publishers sharing `envelopes`, in order.
    pub fn start<P: Publisher + 'static>(
        publisher: Arc<P>,
        envelopes: Vec<Envelope>,
        concurrency: usize,
    ) -> Self {
        let envelopes = Arc::new(envelopes);
        let next = Arc::new(AtomicUsize::new(0));
        let ok = Arc::default();
        let failures = Arc::default();
        let tasks = (0..concurrency)
            .map(|_| {
                let (publisher, envelopes, next) =
                    (publisher.clone(), envelopes.clone(), next.clone());
                let (ok, failures): (Arc<Mutex<Vec<_>>>, Arc<AtomicU64>) =
                    (Arc::clone(&ok), Arc::clone(&failures));
                tokio::spawn(async move {
                    while let Some(envelope) = envelopes.get(next.fetch_add(1, Ordering::Relaxed)) {
                        while let Err(error) = publisher.publish(envelope).await {
                            assert!(
                                matches!(
                                    error,
                                    BackendError::Unavailable(_) | BackendError::Broker(_)
                                ),
                                "only broker trouble may fail a publish here: {error:?}"
                            );
                            failures.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                        ok.lock().expect("not poisoned").push(envelope.id);
                    }
                })
            })
            .collect();
        Self {
            ok,
            failures,
            tasks,
        }
    }

    /// Envelopes whose publish returned Ok so far.
    pub fn published(&self) -> usize {
        self.ok.lock().expect("not poisoned").len()
    }

    /// Publishes that failed (and were retried) so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Waits for every publisher; returns the ids whose publish returned Ok
    /// and how many publishes failed and were retried.
    pub async fn finish(self) -> (Vec<EnvelopeId>, u64) {
        let failures = Arc::clone(&self.failures);
        for task in self.tasks {
            task.await.expect("publisher task");
        }
        let failures = failures.load(Ordering::Relaxed);
        (self.ok.lock().expect("not poisoned").clone(), failures)
    }
}

/// A consumer that records every delivery and acks it, counting what went
/// wrong; the broker, not an ack's reply, judges what is left.
pub struct Collector {
    delivered: Arc<Mutex<HashSet<EnvelopeId>>>,
    counts: Arc<CollectorCounts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct CollectorCounts {
    deliveries: AtomicU64,
    ack_errors: AtomicU64,
    stream_errors: AtomicU64,
}

impl Collector {
    /// Consumes `deliveries` on a task of its own.
    pub fn start(mut deliveries: Deliveries) -> Self {
        let delivered: Arc<Mutex<HashSet<_>>> = Arc::default();
        let counts: Arc<CollectorCounts> = Arc::default();
        let task = {
            let (delivered, counts) = (Arc::clone(&delivered), Arc::clone(&counts));
            tokio::spawn(async move {
                while let Some(item) = deliveries.next().await {
                    let Ok(delivery) = item else {
                        counts.stream_errors.fetch_add(1, Ordering::Relaxed);
                        continue;
                    };
                    counts.deliveries.fetch_add(1, Ordering::Relaxed);
                    delivered
                        .lock()
                        .expect("not poisoned")
                        .insert(delivery.envelope().id);
                    if delivery.ack().await.is_err() {
                        counts.ack_errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        };
        Self {
            delivered,
            counts,
            task,
        }
    }

    /// Whether every one of `ids` was delivered.
    pub fn has_all(&self, ids: &[EnvelopeId]) -> bool {
        let delivered = self.delivered.lock().expect("not poisoned");
        ids.iter().all(|id| delivered.contains(id))
    }

    /// How many of `ids` were never delivered.
    pub fn missing(&self, ids: &[EnvelopeId]) -> usize {
        let delivered = self.delivered.lock().expect("not poisoned");
        ids.iter().filter(|id| !delivered.contains(id)).count()
    }

    /// (deliveries, distinct envelopes, failed acks, errors the stream reported).
    pub fn counts(&self) -> (u64, usize, u64, u64) {
        let distinct = self.delivered.lock().expect("not poisoned").len();
        (
            self.counts.deliveries.load(Ordering::Relaxed),
            distinct,
            self.counts.ack_errors.load(Ordering::Relaxed),
            self.counts.stream_errors.load(Ordering::Relaxed),
        )
    }

    /// Stops consuming.
    pub fn stop(&self) {
        self.task.abort();
    }
}

/// What [`publishes_survive_two_faults`] counted, for the test's output
/// line and any assertion of the backend's own.
#[derive(Debug)]
pub struct FaultRun {
    /// Envelopes whose publish returned Ok.
    pub published: usize,
    /// Publishes that failed and were retried.
    pub failures: u64,
    /// Deliveries, redeliveries included.
    pub deliveries: u64,
    /// Distinct envelopes delivered.
    pub distinct: usize,
    /// Acks that failed.
    pub ack_errors: u64,
    /// Errors the delivery stream reported (a reconnect, a loss report).
    pub stream_errors: u64,
    /// Messages the broker still holds for the subscriber at the end.
    pub left: u64,
    /// Published envelopes never delivered.
    pub lost: usize,
}

impl std::fmt::Display for FaultRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published Ok {} | publish errors retried {} | deliveries {} | distinct delivered {} | redelivered {} | ack errors {} | errors reported by the stream {} | left unacknowledged in the broker {} | lost {}",
            self.published,
            self.failures,
            self.deliveries,
            self.distinct,
            self.deliveries.saturating_sub(self.distinct as u64),
            self.ack_errors,
            self.stream_errors,
            self.left,
            self.lost
        )
    }
}

/// `envelopes` are published by 8 retrying publishers while a subscriber
/// `archive` (prefetch 256) collects them; `fault` strikes the broker
/// twice, at 30 % and 65 % of the publishes. Every publish must come back
/// Ok, every envelope be delivered, and the broker (`left`, polled until
/// it is 0 or the deadline passes) hold nothing unacknowledged.
pub async fn publishes_survive_two_faults<H: super::Harness>(
    harness: &H,
    envelopes: Vec<Envelope>,
    mut fault: impl AsyncFnMut(&Publishing),
    mut left: impl AsyncFnMut() -> u64,
) -> FaultRun {
    const WAIT: Duration = Duration::from_secs(120);
    let count = envelopes.len();
    let subscriber = harness.subscriber().await;
    let subscription = crate::backend::Subscription::new("archive".parse().expect("valid name"));
    let collector = Collector::start(
        crate::backend::Subscriber::subscribe(&subscriber, &subscription.prefetch(256))
            .await
            .expect("subscribe"),
    );
    let publishing = Publishing::start(Arc::new(harness.publisher().await), envelopes, 8);
    for at in [count * 3 / 10, count * 13 / 20] {
        wait_until("publishing progress", WAIT, || publishing.published() >= at).await;
        fault(&publishing).await;
    }
    let (published, failures) = publishing.finish().await;
    poll_until(WAIT, || collector.has_all(&published)).await;
    let deadline = Instant::now() + WAIT;
    let mut remaining = left().await;
    while remaining > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        remaining = left().await;
    }
    collector.stop();
    let (deliveries, distinct, ack_errors, stream_errors) = collector.counts();
    let run = FaultRun {
        published: published.len(),
        failures,
        deliveries,
        distinct,
        ack_errors,
        stream_errors,
        left: remaining,
        lost: collector.missing(&published),
    };
    println!("{run}");
    assert_eq!(run.published, count, "every publish came back Ok");
    assert_eq!(run.left, 0, "every delivery is acknowledged in the broker");
    assert_eq!(run.lost, 0);
    run
}

/// A consumer child process is killed -9 while it holds deliveries; another
/// instance of the subscriber gets every one of them, those the child held
/// as attempt 2. `child` is the backend tool's `consume --name <name>
/// --prefetch 5 --no-ack` (it prints `ready`, then `delivered <id> ...`).
/// Returns the figures as a line for the test's output.
pub async fn killed_child_consumer<H: super::Harness>(
    harness: &H,
    mut child: std::process::Command,
    name: &str,
) -> String {
    use std::io::{BufRead, BufReader};
    const WAIT: Duration = Duration::from_secs(120);
    let mut child = child
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("the backend's tool runs");
    let (lines, received) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("piped stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    assert_eq!(
        received.recv_timeout(WAIT).expect("the child starts"),
        "ready"
    );

    let publisher = harness.publisher().await;
    let list = ListId::new("child.lists.example.org").expect("valid list id");
    let mut published = HashSet::new();
    for i in 0..20 {
        let envelope = small_mail(&list, i);
        publisher.publish(&envelope).await.expect("publish");
        published.insert(envelope.id);
    }
    let mut held = HashSet::new();
    while held.len() < 5 {
        let line = received
            .recv_timeout(WAIT)
            .expect("the child reports its deliveries");
        let id = line
            .split_whitespace()
            .nth(1)
            .and_then(|id| id.parse::<EnvelopeId>().ok());
        held.insert(id.unwrap_or_else(|| panic!("unexpected child output {line:?}")));
    }
    child.kill().expect("kill -9 the child"); // SIGKILL: no chance to hand anything back
    child.wait().expect("reap the child");

    let survivor = harness.subscriber().await;
    let subscription = crate::backend::Subscription::new(name.parse().expect("valid name"));
    let mut deliveries = crate::backend::Subscriber::subscribe(&survivor, &subscription)
        .await
        .expect("subscribe");
    let (mut got, mut redelivered) = (HashSet::new(), 0);
    while got.len() < published.len() {
        let delivery = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("deliveries before the deadline")
            .expect("stream goes on")
            .expect("a delivery");
        let id = delivery.envelope().id;
        if held.contains(&id) {
            assert_eq!(
                delivery.attempt(),
                2,
                "a delivery the killed child held comes back as attempt 2"
            );
            redelivered += 1;
        }
        got.insert(id);
        delivery.ack().await.expect("ack");
    }
    assert_eq!(got, published);
    assert_eq!(redelivered, held.len());
    format!(
        "published {} | held by the killed child {} | redelivered to the survivor {redelivered} | delivered {} | lost {}",
        published.len(),
        held.len(),
        got.len(),
        published.difference(&got).count()
    )
}
