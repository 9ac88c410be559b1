//! The list server's spool: when the broker is unreachable or slower than a
//! deadline, envelopes go to a local [`Journal`] and a background task
//! publishes them, in order, as soon as the broker answers again.
//!
//! Mailman's HyperKitty plugin loses a mail from the archive when the
//! archive server is down. With a spool, `archive_message` returning `Ok`
//! means the mail is either held by the broker or synced to the local disk,
//! and it will reach every durable subscriber, whatever crashes in between:
//! a restarted list server finds its spool and drains it.
//!
//! While the spool holds anything, new envelopes are spooled behind it
//! rather than published directly, so subscribers receive them in the
//! order the list server archived them. Draining publishes a batch at a
//! time and moves the journal's `drain` cursor past what the broker
//! confirmed; a crash between the confirm and the cursor move publishes
//! those again on restart (at least once: archives de-duplicate by
//! Message-ID-Hash).
//!
//! A record leaves the spool only when the broker confirmed it, or when
//! the broker refused it for good and it is durably set aside in
//! `rejected/` (`<seq>.envelope` and `<seq>.reason`, each synced, the
//! directory synced). While a record can be neither, because setting it
//! aside fails or the journal cannot be read, the drain stays on it,
//! retrying with back-off, and [`SpoolStatus::stuck_at`] says where and
//! why (logged at error level every report interval).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use futures::future::join_all;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backend::{BackendError, Publisher};
use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::journal::{
    Journal, JournalError, JournalOptions, Record, create_dir_durably, write_durably,
};
use crate::wire;

/// The journal cursor of the drain.
const DRAIN_CURSOR: &str = "drain";

/// How a spool behaves.
#[derive(Debug, Clone)]
pub struct SpoolOptions {
    /// The journal's directory; one list-server process at a time.
    pub dir: PathBuf,
    /// A publish slower than this is abandoned and the envelope spooled
    /// (default 2 s): a list server's delivery pipeline must not stall on
    /// a slow broker.
    pub publish_timeout: Duration,
    /// Waits between failed drain attempts (default 200 ms doubling to 30 s).
    pub backoff: Backoff,
    /// Envelopes published concurrently per drain step (default 64).
    pub drain_batch: usize,
    /// How often a non-empty spool reports its depth and age (default 10 s).
    pub report_interval: Duration,
    /// The journal's own options (sync before `Ok` by default).
    pub journal: JournalOptions,
}

impl SpoolOptions {
    /// Defaults, spooling into `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            publish_timeout: Duration::from_secs(2),
            backoff: Backoff::new(Duration::from_millis(200), Duration::from_secs(30)),
            drain_batch: 64,
            report_interval: Duration::from_secs(10),
            journal: JournalOptions::default(),
        }
    }

    /// Sets [`publish_timeout`](Self::publish_timeout): how long a publish
    /// may take before its envelope is spooled instead.
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Sets [`backoff`](Self::backoff): the waits between failed drain
    /// attempts.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets [`drain_batch`](Self::drain_batch): envelopes published
    /// concurrently per drain step.
    pub fn drain_batch(mut self, batch: usize) -> Self {
        self.drain_batch = batch;
        self
    }

    /// Sets [`report_interval`](Self::report_interval): how often a
    /// non-empty spool reports its depth and age.
    pub fn report_interval(mut self, every: Duration) -> Self {
        self.report_interval = every;
        self
    }

    /// Sets [`journal`](Self::journal): the spool's journal options.
    pub fn journal(mut self, options: JournalOptions) -> Self {
        self.journal = options;
        self
    }
}

/// What the spool holds and has done since it was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolStatus {
    /// Envelopes waiting to be published.
    pub depth: u64,
    /// How long the oldest waiting envelope has waited.
    pub oldest_age: Option<Duration>,
    /// Envelopes spooled since the spool was opened.
    pub spooled: u64,
    /// Envelopes the drain published since the spool was opened.
    pub drained: u64,
    /// Envelopes the broker refused for good (e.g. too large for it); kept
    /// as files in `<dir>/rejected/` for an operator.
    pub rejected: u64,
    /// The record the drain cannot get past, when it cannot: neither
    /// published nor set aside (e.g. `rejected/` cannot be written), or
    /// unreadable. It is retried with back-off; nothing behind it moves.
    pub stuck_at: Option<Stuck>,
}

/// Where the drain is stuck, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    /// The journal sequence of the record.
    pub seq: u64,
    /// The last error.
    pub error: String,
}

/// Counters shared by the spool and its drain task.
#[derive(Default)]
struct Counters {
    spooled: AtomicU64,
    drained: AtomicU64,
    rejected: AtomicU64,
    stuck: Mutex<Option<Stuck>>,
}

/// A spool and its running drain task. Dropping it stops the task and
/// releases the directory at once, so it can be reopened right away.
pub(crate) struct Spool {
    journal: Journal,
    options: SpoolOptions,
    counters: Arc<Counters>,
    publish_timeout: Duration,
    stop: CancellationToken,
    drain: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    /// Where the drain has got to (the journal's `drain` cursor).
    drained_to: watch::Sender<u64>,
}

impl Spool {
    /// Opens the spool's journal and starts draining it (at once, if a
    /// previous process left envelopes in it).
    pub fn open<P: Publisher + 'static>(
        options: SpoolOptions,
        publisher: Arc<P>,
    ) -> Result<Self, JournalError> {
        let journal = Journal::open(&options.dir, options.journal.clone())?;
        if journal.cursor(DRAIN_CURSOR).is_none() {
            journal.set_cursor(DRAIN_CURSOR, journal.first_seq())?;
        }
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let drained_to = watch::Sender::new(journal.cursor(DRAIN_CURSOR).unwrap_or(0));
        let left = depth(&journal);
        if left > 0 {
            tracing::warn!(
                depth = left,
                dir = %options.dir.display(),
                "spool: envelopes left by a previous run; draining them first"
            );
        }
        let drain = Drain {
            journal: journal.clone(),
            publisher,
            counters: counters.clone(),
            options: options.clone(),
            stop: stop.clone(),
            drained_to: drained_to.clone(),
        };
        Ok(Self {
            journal,
            publish_timeout: options.publish_timeout,
            options,
            counters,
            stop,
            drain: tokio::sync::Mutex::new(Some(tokio::spawn(drain.run()))),
            drained_to,
        })
    }

    /// How long a direct publish may take before the envelope is spooled.
    pub fn publish_timeout(&self) -> Duration {
        self.publish_timeout
    }

    /// Whether envelopes are waiting (new ones must queue behind them).
    pub fn is_empty(&self) -> bool {
        depth(&self.journal) == 0
    }

    /// Keeps `envelope` on disk for the drain; durable when it returns.
    pub async fn append(&self, envelope: &Envelope) -> Result<(), JournalError> {
        let was_empty = self.is_empty();
        let seq = self.journal.append(wire::to_bytes(envelope)).await?;
        self.counters.spooled.fetch_add(1, Ordering::Relaxed);
        if was_empty {
            tracing::warn!(envelope_id = %envelope.id, seq, "spool: broker unavailable or slow; spooling");
        } else {
            tracing::debug!(envelope_id = %envelope.id, seq, "spooled");
        }
        Ok(())
    }

    /// Takes over the spool in `dir` that no live process holds (e.g. one
    /// a list server with another spool name left behind): appends its
    /// undrained envelopes, in order, to this spool (each synced), marks
    /// them drained there, and deletes its journal, and `dir` unless
    /// something else is in it (set-aside envelopes). Returns how many
    /// were adopted. A crash midway adopts some twice (at least once).
    /// `Locked` when a process holds `dir`; `NotAJournal` when `dir` holds
    /// no journal, so a wrong path is never emptied.
    pub async fn adopt(&self, dir: &Path) -> Result<u64, JournalError> {
        if !Journal::exists(dir) {
            return Err(JournalError::NotAJournal(dir.to_owned()));
        }
        // Read with the widest limit, so a record the orphan took under a
        // larger `max_record` is read, not taken for damage and cut; if it
        // is too large for this spool, the append below refuses it and the
        // orphan stays where it is.
        let options = JournalOptions {
            max_record: u32::MAX as usize,
            ..self.options.journal.clone()
        };
        let orphan = Journal::open(dir, options)?;
        let mut adopted = 0;
        let moved = async {
            let mut next = orphan.cursor(DRAIN_CURSOR).unwrap_or(0);
            loop {
                let records = orphan.read(next, self.options.drain_batch, 8 << 20)?;
                let Some(last) = records.last().map(|r| r.seq) else {
                    return Ok(());
                };
                for record in records {
                    self.journal.append(record.payload).await?;
                    self.counters.spooled.fetch_add(1, Ordering::Relaxed);
                    adopted += 1;
                }
                next = last + 1;
                orphan.set_cursor(DRAIN_CURSOR, next)?;
            }
        }
        .await;
        // Closed whatever happened, so a failed adoption can be tried again.
        orphan.close().await?;
        moved?;
        let removed = Journal::remove(dir)?;
        tracing::warn!(dir = %dir.display(), adopted, removed, "spool: adopted an orphaned spool");
        Ok(adopted)
    }

    /// Depth, age and counters.
    pub fn status(&self) -> SpoolStatus {
        status(&self.journal, &self.counters)
    }

    /// Waits (at most `within`) for the spool to be drained, then stops the
    /// drain and closes the journal (releasing its directory). Returns what
    /// was left.
    pub async fn shutdown(&self, within: Duration) -> SpoolStatus {
        let mut drained_to = self.drained_to.subscribe();
        let end = self.journal.next_seq();
        let _ = tokio::time::timeout(within, drained_to.wait_for(|to| *to >= end)).await;
        self.stop.cancel();
        if let Some(task) = self.drain.lock().await.take() {
            let _ = task.await;
        }
        let left = self.status();
        if left.depth > 0 {
            tracing::warn!(
                depth = left.depth,
                "spool: shut down with envelopes left; the next start drains them"
            );
        }
        if let Err(error) = self.journal.clone().close().await {
            tracing::error!(%error, "spool: closing the journal failed");
        }
        left
    }
}

fn depth(journal: &Journal) -> u64 {
    let drained_to = journal.cursor(DRAIN_CURSOR).unwrap_or(0);
    journal.next_seq().saturating_sub(drained_to)
}

fn status(journal: &Journal, counters: &Counters) -> SpoolStatus {
    let depth = depth(journal);
    let oldest_age = if depth == 0 {
        None
    } else {
        journal
            .appended_at(journal.cursor(DRAIN_CURSOR).unwrap_or(0))
            .ok()
            .flatten()
            .map(|at| SystemTime::now().duration_since(at).unwrap_or_default())
    };
    SpoolStatus {
        depth,
        oldest_age,
        spooled: counters.spooled.load(Ordering::Relaxed),
        drained: counters.drained.load(Ordering::Relaxed),
        rejected: counters.rejected.load(Ordering::Relaxed),
        stuck_at: counters.stuck.lock().expect("spool lock").clone(),
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(task) = self.drain.get_mut().take() {
            task.abort();
        }
        // After `shutdown` the journal is closed already.
        let _ = self.journal.close_blocking();
    }
}

/// The directory under the spool's where refused envelopes are set aside.
const REJECTED: &str = "rejected";

/// The background task publishing the spool's envelopes in order.
struct Drain<P> {
    journal: Journal,
    publisher: Arc<P>,
    counters: Arc<Counters>,
    options: SpoolOptions,
    stop: CancellationToken,
    drained_to: watch::Sender<u64>,
}

/// What became of a record.
enum Done {
    /// The broker confirmed it.
    Published,
    /// Refused for good, and durably set aside.
    SetAside,
}

/// How far one drain step got.
enum Step {
    /// Nothing to drain.
    Idle,
    /// Everything read was published.
    Published,
    /// The broker failed this record; what came before it is done.
    Failed(BackendError),
    /// This record can be neither published nor set aside, or the journal
    /// failed; what came before it is done.
    Stuck(Stuck),
}

/// Why a record was not done.
enum NotDone {
    /// The broker may take it later.
    Transient(BackendError),
    /// Refused for good, and setting it aside failed.
    NotSetAside(String),
}

impl<P: Publisher> Drain<P> {
    async fn run(self) {
        let mut failures = 0u32;
        let mut last_report = Instant::now();
        let mut backlog_since: Option<Instant> = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let step = self.step().await.unwrap_or_else(|error| {
                Step::Stuck(Stuck {
                    seq: self.journal.cursor(DRAIN_CURSOR).unwrap_or(0),
                    error: format!("the spool's journal: {error}"),
                })
            });
            if !matches!(step, Step::Stuck(_)) {
                self.set_stuck(None);
            }
            match step {
                Step::Idle => {
                    if let Some(since) = backlog_since.take() {
                        tracing::info!(
                            took = ?since.elapsed(),
                            drained = self.counters.drained.load(Ordering::Relaxed),
                            "spool: drained"
                        );
                    }
                    failures = 0;
                    // Waits for the record the cursor points at: returns at
                    // once if it was appended since the step looked.
                    let wanted = self.journal.cursor(DRAIN_CURSOR).unwrap_or(0);
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = self.journal.wait_for(wanted) => {}
                    }
                }
                Step::Published => {
                    failures = 0;
                    backlog_since.get_or_insert_with(Instant::now);
                }
                Step::Failed(error) => {
                    failures += 1;
                    backlog_since.get_or_insert_with(Instant::now);
                    let wait = self.options.backoff.delay(failures);
                    tracing::debug!(%error, attempt = failures, ?wait, "spool: broker still unavailable");
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Step::Stuck(stuck) => {
                    failures += 1;
                    backlog_since.get_or_insert_with(Instant::now);
                    let wait = self.options.backoff.delay(failures);
                    if self.set_stuck(Some(stuck.clone())) {
                        // Newly stuck: said at once, then with each report.
                        last_report = Instant::now();
                        tracing::error!(seq = stuck.seq, error = %stuck.error, "spool: stuck; retrying with back-off");
                    }
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
            }
            if backlog_since.is_some() && last_report.elapsed() >= self.options.report_interval {
                last_report = Instant::now();
                let status = status(&self.journal, &self.counters);
                match &status.stuck_at {
                    Some(stuck) => tracing::error!(
                        depth = status.depth,
                        seq = stuck.seq,
                        error = %stuck.error,
                        "spool: stuck; a record can be neither published nor set aside"
                    ),
                    None => tracing::warn!(
                        depth = status.depth,
                        oldest_age = ?status.oldest_age,
                        drained = status.drained,
                        "spool: waiting for the broker"
                    ),
                }
            }
        }
    }

    /// Publishes the next batch concurrently and moves the cursor past the
    /// longest prefix the broker confirmed.
    async fn step(&self) -> Result<Step, JournalError> {
        let from = self.journal.cursor(DRAIN_CURSOR).unwrap_or(0);
        let records = self.journal.read(from, self.options.drain_batch, 8 << 20)?;
        if records.is_empty() {
            return Ok(Step::Idle);
        }
        let results = join_all(records.iter().map(|record| self.publish(record))).await;
        let mut done = from;
        let mut set_aside = 0;
        let mut failure = None;
        for (record, result) in records.iter().zip(results) {
            match result {
                Ok(Done::Published) => done = record.seq + 1,
                Ok(Done::SetAside) => {
                    done = record.seq + 1;
                    set_aside += 1;
                }
                Err(error) => {
                    failure = Some((record.seq, error));
                    break;
                }
            }
        }
        if done > from {
            self.journal.set_cursor(DRAIN_CURSOR, done)?;
            self.counters
                .drained
                .fetch_add(done - from - set_aside, Ordering::Relaxed);
            self.counters
                .rejected
                .fetch_add(set_aside, Ordering::Relaxed);
            self.drained_to.send_replace(done);
        }
        Ok(match failure {
            Some((_, NotDone::Transient(error))) => Step::Failed(error),
            Some((seq, NotDone::NotSetAside(error))) => Step::Stuck(Stuck { seq, error }),
            None => Step::Published,
        })
    }

    /// Records where the drain is stuck (None: not stuck); true when that
    /// is news.
    fn set_stuck(&self, stuck: Option<Stuck>) -> bool {
        let mut current = self.counters.stuck.lock().expect("spool lock");
        let news = current.as_ref().map(|s| s.seq) != stuck.as_ref().map(|s| s.seq);
        *current = stuck;
        news && current.is_some()
    }

    /// Publishes one record; one that can never be published is durably
    /// set aside in `rejected/` and counts as done.
    async fn publish(&self, record: &Record) -> Result<Done, NotDone> {
        let envelope = match wire::from_bytes(record.payload.clone()) {
            Ok(envelope) => envelope,
            Err(error) => return self.reject(record, &format!("unreadable: {error}")),
        };
        let published = tokio::time::timeout(
            self.options.publish_timeout,
            self.publisher.publish(&envelope),
        )
        .await
        .unwrap_or_else(|_| {
            Err(BackendError::Unavailable(
                format!("no confirm within {:?}", self.options.publish_timeout).into(),
            ))
        });
        match published {
            Ok(()) => Ok(Done::Published),
            Err(error) if !error.is_transient() => self.reject(record, &error.to_string()),
            Err(error) => Err(NotDone::Transient(error)),
        }
    }

    /// Sets a refused record aside: its reason, then its bytes, each
    /// written durably (file and directory synced).
    fn reject(&self, record: &Record, reason: &str) -> Result<Done, NotDone> {
        let dir = self.options.dir.join(REJECTED);
        let path = dir.join(format!("{:020}.envelope", record.seq));
        let kept = create_dir_durably(&dir)
            .and_then(|()| write_durably(&path.with_extension("reason"), reason.as_bytes()))
            .and_then(|()| write_durably(&path, &record.payload));
        match kept {
            Ok(()) => {
                tracing::error!(seq = record.seq, path = %path.display(), reason, "spool: envelope refused for good; set aside");
                Ok(Done::SetAside)
            }
            Err(error) => Err(NotDone::NotSetAside(format!(
                "refused for good ({reason}), and setting it aside failed: {error}"
            ))),
        }
    }
}
