//! Quickstart: a list server and two archive servers in one process,
//! archiving an mbox end to end, on the in-memory backend (default) or Redis.
//!
//! ```text
//! cargo run --release -p archiver-examples --bin quickstart -- --mbox ../shared/corpus/lists.mbox
//! cargo run --release -p archiver-examples --bin quickstart -- --backend redis --url redis://127.0.0.1:6379
//! ```
//!
//! Over ZeroMQ the list server and each archive server can also run as
//! separate processes, with no broker at all (`--role`):
//!
//! ```text
//! quickstart --backend zeromq --role archive-server --subscriber maildir &
//! quickstart --backend zeromq --role archive-server --subscriber thread-index &
//! quickstart --backend zeromq --role list-server
//! ```
//!
//! With `ARCHIVER_ZMQ_USER` and `ARCHIVER_ZMQ_PASSWORD` set, the hub
//! requires those ZAP PLAIN credentials and the archive servers send them.
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
    /// Which part this process plays; the parts other than `all` run as
    /// separate processes over `--backend zeromq`.
    #[arg(long, value_enum, default_value = "all")]
    role: Role,
    /// The archive server to run with `--role archive-server`.
    #[arg(long, value_enum)]
    subscriber: Option<ArchiveKind>,
    /// Where the ZeroMQ list server keeps its journal and queues.
    #[arg(long, default_value = "quickstart-hub")]
    hub_dir: PathBuf,
    /// An archive server process stops after this many seconds without a
    /// delivery, once it has had one.
    #[arg(long, default_value_t = 5)]
    idle_exit: u64,
}

/// The parts of the quickstart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// List server and both archive servers in this process.
    All,
    /// Only the list server: binds the ZeroMQ hub, publishes the mbox,
    /// waits until both archive servers have taken everything.
    ListServer,
    /// Only one archive server (`--subscriber`), connecting to the hub.
    ArchiveServer,
}

/// The two archive servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ArchiveKind {
    /// Stores mails in a Maildir per list.
    Maildir,
    /// Indexes threads and events.
    ThreadIndex,
}

/// The subscribers the list server waits for in `--role list-server`.
const SUBSCRIBERS: [&str; 2] = ["maildir", "thread-index"];

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

    if args.role != Role::All && args.backend != BackendKind::Zeromq {
        return Err("--role list-server and archive-server run over --backend zeromq".into());
    }
    match args.role {
        Role::All => {}
        Role::ListServer => return run_list_server_process(&args, &mbox).await,
        Role::ArchiveServer => return run_archive_server_process(&args).await,
    }
    let prefix = format!("quickstart-{}", uuid::Uuid::now_v7().simple());
    let broker = if args.backend == BackendKind::Zeromq {
        // One process: a fresh hub on a free loopback port.
        let dir = args.out.join("hub");
        let _ = std::fs::remove_dir_all(&dir);
        Broker::zeromq_hub("tcp://127.0.0.1:*", &dir)?
    } else {
        Broker::new(args.backend, args.url.clone(), &prefix)
    };
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
async fn run_list_server<P: archiver_core::Publisher + 'static>(
    archiver: &QueueArchiver<P>,
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

/// `--role list-server`: binds the hub, publishes the mbox, and serves
/// until both archive servers have taken (and acked) everything.
async fn run_list_server_process(
    args: &Args,
    mbox: &PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let endpoint = args
        .url
        .clone()
        .unwrap_or_else(|| archiver_examples::broker::DEFAULT_ZMQ_ENDPOINT.to_owned());
    let mut config = backend_zeromq::HubConfig::new(&endpoint, &args.hub_dir);
    if let Some(credentials) = archiver_examples::broker::zmq_credentials_from_env() {
        config = config.allow(credentials);
    }
    let hub = backend_zeromq::ZmqHub::bind(config)?;
    println!(
        "list server: hub on {} (queues in {})",
        hub.endpoint(),
        args.hub_dir.display()
    );
    let archiver = QueueArchiver::new(
        "mq-archiver",
        hub.clone(),
        ArchiveUrls::new(&args.base_url)?,
    );
    let published = run_list_server(&archiver, mbox, &args.default_list).await?;
    println!(
        "list server: published {} mails and {} list events (skipped {}, refused {}); waiting for {} to take them",
        published.mails,
        published.events,
        published.skipped,
        published.refused,
        SUBSCRIBERS.join(" and ")
    );
    let deadline = Instant::now() + FINISH_WITHIN;
    loop {
        let status = hub.status().await?;
        let done = SUBSCRIBERS.iter().all(|name| {
            status
                .iter()
                .any(|q| q.name.as_str() == *name && q.is_drained())
        });
        if done {
            for q in &status {
                println!(
                    "  {:<13} drained; {} dead letters",
                    q.name.as_str(),
                    q.dead_letters
                );
            }
            break;
        }
        if Instant::now() >= deadline {
            return Err(format!("the archive servers did not take everything: {status:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    hub.close().await?;
    println!("  time          {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `--role archive-server`: one archive server consuming from the hub,
/// from the start of its journal (so it may start before or after the list
/// server), until idle.
async fn run_archive_server_process(args: &Args) -> Result<(), Box<dyn std::error::Error>> {
    let kind = args
        .subscriber
        .ok_or("--role archive-server needs --subscriber maildir or thread-index")?;
    let broker = Broker::new(BackendKind::Zeromq, args.url.clone(), "");
    let idle = Duration::from_secs(args.idle_exit);
    let (server, report): (ArchiveServer, Box<dyn Fn() -> String>) = match kind {
        ArchiveKind::Maildir => {
            let maildir = Arc::new(MaildirArchive::new(args.out.join("maildir"), !args.no_sync));
            let server = ArchiveServer::start(
                &broker,
                Subscription::new("maildir".parse()?)
                    .select(Selection::all().only(Kind::Mail))
                    .start(archiver_core::StartPosition::Beginning),
                Arc::clone(&maildir),
            )
            .await?;
            let report = move || {
                format!(
                    "{} stored, {} already there",
                    maildir.stored(),
                    maildir.duplicates()
                )
            };
            (server, Box::new(report))
        }
        ArchiveKind::ThreadIndex => {
            let index = Arc::new(ThreadIndex::open(args.out.join("threads"), !args.no_sync)?);
            let server = ArchiveServer::start(
                &broker,
                Subscription::new("thread-index".parse()?)
                    .start(archiver_core::StartPosition::Beginning),
                Arc::clone(&index),
            )
            .await?;
            let report = move || {
                let threads = index.write_threads().unwrap_or_default();
                format!(
                    "{} mails and {} events indexed, {threads} threads",
                    index.mail_count(),
                    index.event_count()
                )
            };
            (server, Box::new(report))
        }
    };
    println!("archive server {kind:?}: connected to the hub, consuming");
    let counters = server.counters();
    let mut last = counters.snapshot();
    let mut quiet_since = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = counters.snapshot();
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if last.acked > 0 && quiet_since.elapsed() >= idle {
            break;
        }
    }
    let stats = server.stop().await?;
    println!(
        "archive server {kind:?}: acked {}: {}; idle for {} s, stopping",
        stats.acked,
        report(),
        args.idle_exit
    );
    Ok(())
}
