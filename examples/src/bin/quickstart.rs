//! Quickstart: a list server and two archive servers in one process, on the
//! in-memory backend, archiving an mbox end to end.
//!
//! ```text
//! cargo run --release -p archiver-examples --bin quickstart -- --mbox ../shared/corpus/lists.mbox
//! ```
//!
//! The list server publishes a `list_created` event for each list it meets
//! and every mail through `QueueArchiver`; the `maildir` archive server
//! stores the mails byte for byte, the `thread-index` archive server indexes
//! threads and events. It ends with a summary.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use archiver_core::{
    ArchiveError, ArchiveUrls, ArchivedMail, Archiver, BackendError, DeadLetters, Handler, Kind,
    ListChange, ListEvent, ListId, MailingList, MboxReader, MemoryBackend, Outcome, QueueArchiver,
    RunCounters, RunStats, Runner, RunningRunner, Selection, Subscription,
};
use archiver_examples::maildir::MaildirArchive;
use archiver_examples::thread_index::ThreadIndex;
use clap::Parser;
use tokio::sync::oneshot;

/// Archive an mbox through the message-queue archiver, in one process.
#[derive(Parser)]
struct Args {
    /// The mbox (mboxrd) to archive; default: the sample shipped with the examples.
    #[arg(long)]
    mbox: Option<PathBuf>,
    /// Where the archive servers write: `maildir/` and `threads/`.
    #[arg(long, default_value = "quickstart-archive")]
    out: PathBuf,
    /// Base URL of the archive; `{list_id}` is replaced by the list id.
    #[arg(long, default_value = "https://archive.example.org/list/{list_id}/")]
    base_url: String,
    /// List for mails that carry no List-Id header.
    #[arg(long, default_value = "quickstart.lists.example.org")]
    default_list: ListId,
    /// Skip fsync in the archive servers (faster, not crash-safe).
    #[arg(long)]
    no_sync: bool,
}

const SAMPLE_MBOX: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/sample.mbox");

/// How long the archive servers get to finish once everything is published.
const FINISH_WITHIN: Duration = Duration::from_secs(600);

/// What the list server did.
#[derive(Default)]
struct Published {
    mails: u64,
    events: u64,
    skipped: u64,
    refused: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mbox = args
        .mbox
        .clone()
        .unwrap_or_else(|| PathBuf::from(SAMPLE_MBOX));
    let started = Instant::now();

    let broker = MemoryBackend::new();
    let maildir = Arc::new(MaildirArchive::new(args.out.join("maildir"), !args.no_sync));
    let index = Arc::new(ThreadIndex::open(args.out.join("threads"), !args.no_sync)?);
    let maildir_server = ArchiveServer::start(
        &broker,
        Subscription::new("maildir".parse()?).select(Selection::all().only(Kind::Mail)),
        Arc::clone(&maildir),
    )
    .await?;
    let index_server = ArchiveServer::start(
        &broker,
        Subscription::new("thread-index".parse()?),
        Arc::clone(&index),
    )
    .await?;
    let (maildir_counters, index_counters) = (maildir_server.counters(), index_server.counters());

    let archiver = QueueArchiver::new(
        "mq-archiver",
        broker.connect(),
        ArchiveUrls::new(&args.base_url)?,
    );
    let published = run_list_server(&archiver, &mbox, &args.default_list).await?;

    let finish = async {
        maildir_counters.wait_finished(published.mails).await;
        index_counters
            .wait_finished(published.mails + published.events)
            .await;
    };
    let finished = tokio::time::timeout(FINISH_WITHIN, finish).await.is_ok();
    let maildir_stats = maildir_server.stop().await?;
    let index_stats = index_server.stop().await?;
    let threads = index.write_threads()?;
    let mut dead = 0;
    for name in ["maildir", "thread-index"] {
        dead += broker.dead_letters(&name.parse()?).await?.len();
    }
    let elapsed = started.elapsed();

    println!(
        "quickstart: {} archived into {}",
        mbox.display(),
        args.out.display()
    );
    println!(
        "  list server   published {} mails and {} list events; skipped {} (X-No-Archive / X-Archive: no); refused {}",
        published.mails, published.events, published.skipped, published.refused
    );
    println!(
        "  maildir       acked {}: {} stored, {} already there",
        maildir_stats.acked,
        maildir.stored(),
        maildir.duplicates()
    );
    println!(
        "  thread-index  acked {}: {} mails and {} events indexed, {threads} threads",
        index_stats.acked,
        index.mail_count(),
        index.event_count()
    );
    println!("  dead-lettered {dead}");
    println!(
        "  time          {:.2} s ({:.0} mails/s)",
        elapsed.as_secs_f64(),
        published.mails as f64 / elapsed.as_secs_f64()
    );
    if !finished || dead > 0 || published.refused > 0 {
        return Err(format!(
            "not everything was archived: finished={finished}, dead letters={dead}, refused={}",
            published.refused
        )
        .into());
    }
    Ok(())
}

/// Publishes every mail of the mbox, and a `list_created` event for each list
/// the first time it appears.
async fn run_list_server(
    archiver: &QueueArchiver<MemoryBackend>,
    mbox: &PathBuf,
    default_list: &ListId,
) -> Result<Published, Box<dyn std::error::Error>> {
    let mut published = Published::default();
    let mut lists = HashSet::new();
    let reader =
        MboxReader::open(mbox).map_err(|e| format!("cannot open {}: {e}", mbox.display()))?;
    for raw in reader {
        let raw = raw?;
        // The list server knows the list; an mbox import reads it from List-Id.
        let list_id = ArchivedMail::parse(raw.clone(), archiver.limits())
            .ok()
            .and_then(|mail| mail.meta().list_id.clone())
            .unwrap_or_else(|| default_list.clone());
        if lists.insert(list_id.clone()) {
            let created = ListEvent::now(
                list_id.clone(),
                ListChange::ListCreated {
                    posting_address: None,
                },
            )
            .by("quickstart");
            archiver.archive_event(&created).await?;
            published.events += 1;
        }
        match archiver
            .archive_message(&MailingList::public(list_id), raw)
            .await
        {
            Ok(receipt) if receipt.outcome == Outcome::Published => published.mails += 1,
            Ok(_) => published.skipped += 1,
            Err(ArchiveError::Mail(error)) => {
                eprintln!("refused a mail: {error}");
                published.refused += 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(published)
}

/// A running archive server and the means to stop it.
struct ArchiveServer {
    stop: oneshot::Sender<()>,
    running: RunningRunner,
}

impl ArchiveServer {
    /// Starts a runner on its own client of the broker; returns once its
    /// queue exists, so nothing published afterwards can miss it.
    async fn start<H: Handler>(
        broker: &MemoryBackend,
        subscription: Subscription,
        handler: H,
    ) -> Result<Self, BackendError> {
        let (stop, stopped) = oneshot::channel::<()>();
        let running = Runner::new(broker.connect(), subscription)
            .concurrency(8)
            .spawn(handler, async {
                let _ = stopped.await;
            })
            .await?;
        Ok(Self { stop, running })
    }

    fn counters(&self) -> Arc<RunCounters> {
        Arc::clone(self.running.counters())
    }

    async fn stop(self) -> Result<RunStats, BackendError> {
        let _ = self.stop.send(());
        self.running.join().await
    }
}
