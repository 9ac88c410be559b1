//! Quickstart: a list server and two archive servers in one process,
//! archiving an mbox end to end, on the backend a URL names (through the
//! `mq-archiver` facade; the in-memory backend by default): switching the
//! backend is a change of `--url` only.
//!
//! ```text
//! cargo run --release -p archiver-examples --bin quickstart -- --mbox ../shared/corpus/lists.mbox
//! cargo run --release -p archiver-examples --bin quickstart -- --url redis://127.0.0.1:6379
//! cargo run --release -p archiver-examples --bin quickstart -- --url amqp://guest:guest@127.0.0.1:5672/%2f
//! ```
//!
//! `--backend memory|redis|rabbitmq|zeromq` is a shorthand for a default
//! URL of that backend. Over ZeroMQ the list server and each archive server
//! can also run as separate processes, with no broker at all (`--role`):
//!
//! ```text
//! quickstart --url tcp://127.0.0.1:5555 --role archive-server --subscriber maildir &
//! quickstart --url tcp://127.0.0.1:5555 --role archive-server --subscriber thread-index &
//! quickstart --url tcp://127.0.0.1:5555 --role list-server
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

use archiver_examples::maildir::MaildirArchive;
use archiver_examples::thread_index::ThreadIndex;
use clap::Parser;
use mq_archiver::{
    ArchiveError, ArchiveUrls, ArchivedMail, Archiver, BackendKind, Config, Connection, Handler,
    Kind, ListChange, ListEvent, ListId, MailingList, MboxReader, Operator, Outcome, QueueArchiver,
    RunCounters, RunStats, Runner, RunningRunner, Selection, SubscriberClient, Subscription,
};
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
    /// The backend's URL (`memory:`, `redis://`, `rediss://`,
    /// `redis+unix://`, `amqp://`, `amqps://`, `tcp://`, `ipc://`);
    /// default `$ARCHIVER_URL`, else the `--backend` shorthand's URL.
    #[arg(long)]
    url: Option<String>,
    /// Shorthand for a default URL: memory (`memory:quickstart`), redis
    /// (`$ARCHIVER_REDIS_URL`, else redis://127.0.0.1:6379), rabbitmq
    /// (`$ARCHIVER_AMQP_URL`, else amqp://guest:guest@127.0.0.1:5672/%2f),
    /// zeromq (tcp://127.0.0.1:5555; any free port with `--role all`).
    #[arg(long, value_enum)]
    backend: Option<Shorthand>,
    /// Keep what the run left on the broker (by default a broker run uses
    /// fresh key names and deletes them at the end).
    #[arg(long)]
    keep: bool,
    /// Which part this process plays; the parts other than `all` run as
    /// separate processes over a ZeroMQ URL (`tcp://`, `ipc://`).
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

/// The `--backend` shorthands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Shorthand {
    /// In this process; needs no broker.
    Memory,
    /// Redis on this host.
    Redis,
    /// RabbitMQ on this host.
    Rabbitmq,
    /// ZeroMQ on this host, no broker.
    Zeromq,
}

impl Shorthand {
    /// The URL this shorthand stands for.
    fn url(self, role: Role) -> String {
        let env_or = |name: &str, default: &str| std::env::var(name).unwrap_or(default.into());
        match self {
            Self::Memory => "memory:quickstart".into(),
            Self::Redis => env_or("ARCHIVER_REDIS_URL", "redis://127.0.0.1:6379"),
            Self::Rabbitmq => env_or("ARCHIVER_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"),
            Self::Zeromq if role == Role::All => "tcp://127.0.0.1:*".into(),
            Self::Zeromq => "tcp://127.0.0.1:5555".into(),
        }
    }
}

/// How long a ZeroMQ archive server waits for its hub: in `--role
/// archive-server` it may start well before the list server.
const HUB_WAIT: &str = "120s";

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
    mq_archiver::admin::init_logging();
    let args = Args::parse();
    let mbox = args
        .mbox
        .clone()
        .unwrap_or_else(|| PathBuf::from(SAMPLE_MBOX));
    let started = Instant::now();

    let url = args.url().map_err(|e| format!("--url: {e}"))?;
    let backend = Config::parse(&url, mq_archiver::NO_OPTIONS)?.backend();
    if args.role != Role::All && backend != BackendKind::Zeromq {
        return Err("--role list-server and archive-server run over a tcp:// or ipc:// URL".into());
    }
    match args.role {
        Role::All => {}
        Role::ListServer => return run_list_server_process(&args, &url, &mbox).await,
        Role::ArchiveServer => return run_archive_server_process(&args, &url).await,
    }
    // A fresh prefix, so a broker run starts empty and deletes what it made.
    let prefix = format!("quickstart-{}", uuid::Uuid::now_v7().simple());
    let mut options = vec![("prefix", prefix)];
    if backend == BackendKind::Zeromq {
        // One process: a fresh hub.
        let dir = args.out.join("hub");
        let _ = std::fs::remove_dir_all(&dir);
        options.push(("hub-dir", dir.display().to_string()));
    }
    let list_server = Config::parse(&url, zmq_credentials(&options, backend))?
        .connect_publisher()
        .await?;
    // Over ZeroMQ the archive servers connect to the hub where it is bound.
    let subscriber_url = list_server
        .hub_handle()
        .map_or(url.clone(), |hub| hub.endpoint().to_owned());
    options.retain(|(key, _)| *key != "hub-dir");
    let subscribers = Config::parse(&subscriber_url, zmq_credentials(&options, backend))?;
    let maildir = Arc::new(MaildirArchive::new(args.out.join("maildir"), !args.no_sync));
    let index = Arc::new(ThreadIndex::open(args.out.join("threads"), !args.no_sync)?);
    let maildir_server = ArchiveServer::start(
        &subscribers,
        Subscription::new("maildir".parse()?).select(Selection::all().only(Kind::Mail)),
        Arc::clone(&maildir),
    )
    .await?;
    let index_server = ArchiveServer::start(
        &subscribers,
        Subscription::new("thread-index".parse()?),
        Arc::clone(&index),
    )
    .await?;
    let (maildir_counters, index_counters) = (maildir_server.counters(), index_server.counters());

    let archiver = QueueArchiver::new(
        "mq-archiver",
        list_server.clone(),
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
    let (maildir_stats, maildir_client) = maildir_server.stop().await?;
    let (index_stats, index_client) = index_server.stop().await?;
    let threads = index.write_threads()?;
    // An archive server's client is the operator's too.
    let mut dead = 0;
    for name in ["maildir", "thread-index"] {
        dead += maildir_client.dead_letters(&name.parse()?).await?.len();
    }
    let elapsed = started.elapsed();
    for client in [maildir_client, index_client] {
        if !args.keep {
            client.purge().await?;
        }
        client.close().await?;
    }
    if !args.keep {
        list_server.purge().await?;
    }
    list_server.close().await?;

    println!(
        "quickstart: {} archived into {} through the {backend:?} backend",
        mbox.display(),
        args.out.display(),
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
async fn run_list_server<P: mq_archiver::Publisher + 'static>(
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
        let list = MailingList::public(list_id.clone());
        if lists.insert(list_id.clone()) {
            let created = ListEvent::now(
                list_id.clone(),
                ListChange::ListCreated {
                    posting_address: None,
                },
            )
            .by("quickstart");
            archiver.archive_event(&list, &created).await?;
            published.events += 1;
        }
        match archiver.archive_message(&list, raw).await {
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
    client: SubscriberClient,
}

impl ArchiveServer {
    /// Starts a runner on its own client of the broker; returns once its
    /// queue exists, so nothing published afterwards can miss it.
    async fn start<H: Handler>(
        config: &Config,
        subscription: Subscription,
        handler: H,
    ) -> Result<Self, mq_archiver::Error> {
        let (stop, stopped) = oneshot::channel::<()>();
        let client = config.connect_subscriber().await?;
        let running = Runner::new(client.clone(), subscription)
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

    /// Stops the runner; hands back its client, still open (to purge).
    async fn stop(self) -> Result<(RunStats, SubscriberClient), mq_archiver::BackendError> {
        let _ = self.stop.send(());
        let stats = self.running.join().await?;
        Ok((stats, self.client))
    }
}

/// `--role list-server`: binds the hub, publishes the mbox, and serves
/// until both archive servers have taken (and acked) everything.
async fn run_list_server_process(
    args: &Args,
    url: &str,
    mbox: &PathBuf,
) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let options = [("hub-dir", args.hub_dir.display().to_string())];
    let client = Config::parse(url, zmq_credentials(&options, BackendKind::Zeromq))?
        .connect_publisher()
        .await?;
    let hub = client
        .hub_handle()
        .ok_or("--role list-server binds a ZeroMQ hub")?;
    println!(
        "list server: hub on {} (queues in {})",
        hub.endpoint(),
        args.hub_dir.display()
    );
    let archiver = QueueArchiver::new(
        "mq-archiver",
        client.clone(),
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
    client.close().await?;
    println!("  time          {:.2} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `--role archive-server`: one archive server consuming from the hub,
/// from the start of its journal (so it may start before or after the list
/// server), until idle.
async fn run_archive_server_process(
    args: &Args,
    url: &str,
) -> Result<(), Box<dyn std::error::Error>> {
    let kind = args
        .subscriber
        .ok_or("--role archive-server needs --subscriber maildir or thread-index")?;
    let options = [("connect-timeout", HUB_WAIT.to_owned())];
    let config = Config::parse(url, zmq_credentials(&options, BackendKind::Zeromq))?;
    let idle = Duration::from_secs(args.idle_exit);
    let (server, report): (ArchiveServer, Box<dyn Fn() -> String>) = match kind {
        ArchiveKind::Maildir => {
            let maildir = Arc::new(MaildirArchive::new(args.out.join("maildir"), !args.no_sync));
            let server = ArchiveServer::start(
                &config,
                Subscription::new("maildir".parse()?)
                    .select(Selection::all().only(Kind::Mail))
                    .start(mq_archiver::StartPosition::Beginning),
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
                &config,
                Subscription::new("thread-index".parse()?)
                    .start(mq_archiver::StartPosition::Beginning),
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
    let (stats, client) = server.stop().await?;
    client.close().await?;
    println!(
        "archive server {kind:?}: acked {}: {}; idle for {} s, stopping",
        stats.acked,
        report(),
        args.idle_exit
    );
    Ok(())
}

impl Args {
    /// The backend's URL: `--url`, else `$ARCHIVER_URL`, else the
    /// `--backend` shorthand's (memory by default). A shorthand and a URL
    /// of another backend contradict each other.
    fn url(&self) -> Result<String, mq_archiver::Error> {
        let shorthand = self.backend.unwrap_or(Shorthand::Memory);
        let url = match (&self.url, std::env::var("ARCHIVER_URL")) {
            (Some(url), _) => url.clone(),
            (None, Ok(url)) if self.backend.is_none() => url,
            _ => shorthand.url(self.role),
        };
        let implied = Config::parse(&shorthand.url(self.role), mq_archiver::NO_OPTIONS)?.backend();
        let named = Config::parse(&url, mq_archiver::NO_OPTIONS)?.backend();
        if self.backend.is_some() && implied != named {
            return Err(mq_archiver::Error::InvalidUrl {
                url: mq_archiver::redact_url(&url),
                reason: format!("--backend {shorthand:?} but the URL names {named:?}"),
            });
        }
        Ok(url)
    }
}

/// `options`, and for ZeroMQ the ZAP PLAIN credentials of
/// `ARCHIVER_ZMQ_USER` and `ARCHIVER_ZMQ_PASSWORD` when both are set (the
/// environment, not the command line, which any local user can read);
/// without them the quickstart's hub is anonymous, which it may be on
/// loopback and `ipc://` only (a hub on another interface is refused).
fn zmq_credentials(
    options: &[(&'static str, String)],
    backend: BackendKind,
) -> Vec<(&'static str, String)> {
    let mut options = options.to_vec();
    if backend == BackendKind::Zeromq {
        match (
            std::env::var("ARCHIVER_ZMQ_USER"),
            std::env::var("ARCHIVER_ZMQ_PASSWORD"),
        ) {
            (Ok(user), Ok(password)) => options.extend([("user", user), ("password", password)]),
            _ => options.push(("anonymous", "true".into())),
        }
    }
    options
}
