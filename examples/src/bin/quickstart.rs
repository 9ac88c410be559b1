//! Quickstart: a list server and two archive servers in one process,
//! archiving an mbox end to end, on the in-memory backend (default) or Redis.
//!
//! ```text
//! cargo run --release -p archiver-examples --bin quickstart -- --mbox ../shared/corpus/lists.mbox
//! cargo run --release -p archiver-examples --bin quickstart -- --backend redis --url redis://127.0.0.1:6379
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
    ArchiveError, ArchiveUrls, ArchivedMail, Archiver, Backend, BackendError, Handler, Kind,
    ListChange, ListEvent, ListId, MailingList, MboxReader, Outcome, QueueArchiver, RunCounters,
    RunStats, Runner, RunningRunner, Selection, Subscription,
};
use archiver_examples::broker::{BackendKind, Broker};
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
    /// The backend the mails travel through.
    #[arg(long, value_enum, default_value = "memory")]
    backend: BackendKind,
    /// The broker's URL (credentials may come from the environment instead).
    #[arg(long)]
    url: Option<String>,
    /// Keep what the run left on the broker (by default a broker run uses
    /// fresh key names and deletes them at the end).
    #[arg(long)]
    keep: bool,
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
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("quickstart: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    archiver_core::admin::init_logging();
    let args = Args::parse();
    let mbox = args
        .mbox
        .clone()
        .unwrap_or_else(|| PathBuf::from(SAMPLE_MBOX));
    let started = Instant::now();

    let prefix = format!("quickstart-{}", uuid::Uuid::now_v7().simple());
    let broker = Broker::new(args.backend, args.url.clone(), &prefix);
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

    let list_server = broker.client().await?;
    let archiver = QueueArchiver::new(
        "mq-archiver",
        Arc::clone(&list_server),
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
        dead += list_server.dead_letters(&name.parse()?).await?.len();
    }
    list_server.close().await?;
    let elapsed = started.elapsed();
    if !args.keep {
        broker.purge().await?;
    }

    println!(
        "quickstart: {} archived into {} through the {:?} backend",
        mbox.display(),
        args.out.display(),
        args.backend
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
    archiver: &QueueArchiver<Arc<dyn Backend>>,
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
    client: Arc<dyn Backend>,
}

impl ArchiveServer {
    /// Starts a runner on its own client of the broker; returns once its
    /// queue exists, so nothing published afterwards can miss it.
    async fn start<H: Handler>(
        broker: &Broker,
        subscription: Subscription,
        handler: H,
    ) -> Result<Self, BackendError> {
        let (stop, stopped) = oneshot::channel::<()>();
        let client = broker.client().await?;
        let running = Runner::new(Arc::clone(&client), subscription)
            .concurrency(8)
            .spawn(handler, async {
                let _ = stopped.await;
            })
            .await?;
        Ok(Self {
            stop,
            running,
            client,
        })
    }

    fn counters(&self) -> Arc<RunCounters> {
        Arc::clone(self.running.counters())
    }

    async fn stop(self) -> Result<RunStats, BackendError> {
        let _ = self.stop.send(());
        let stats = self.running.join().await?;
        self.client.close().await?;
        Ok(stats)
    }
}
