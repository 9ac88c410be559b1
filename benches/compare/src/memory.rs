//! Peak memory of ours while a backlog is drained: the list server (the
//! publisher) and the archive server (the consumer) are each a process of
//! their own (this program re-run in a role), so each reports its own peak
//! resident set (`VmHWM`).
//!
//! The publisher publishes the whole backlog before the consumer starts.
//! On Redis and RabbitMQ it then exits; a ZeroMQ hub is the list server,
//! so it stays up and serves the backlog until the parent says the
//! consumer has drained it (a line on its stdin). Waiting for the hub's
//! status to show the queue drained instead could wait forever: acks the
//! consumer sent as it exited may never reach the hub, and the mails they
//! settled then wait for a consumer that is gone.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use mq_archiver::{BackendKind, Config, Connection, PublisherClient, Subscriber, SubscriberClient};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::corpus::Corpus;
use crate::ours::{OursConsumer, OursProducer, subscription};
use crate::scenario::Pipelining;
use crate::system::Consumer as _;

/// Key prefix of the backlog on Redis and RabbitMQ.
const PREFIX: &str = "benchbacklog";

/// What a role prints for the parent, one `@ key value` line each.
const MARK: &str = "@ ";

/// The two roles a child process plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// Publishes the backlog (and, as a ZeroMQ hub, serves it).
    Publisher,
    /// Drains the backlog.
    Consumer,
}

/// Where the backlog lives: the facade URL of the broker, or of the hub
/// (its endpoint) and the hub's journal.
#[derive(Debug, Clone)]
pub struct Place {
    pub url: String,
    pub hub_dir: PathBuf,
}

impl Place {
    /// The publisher's client: for ZeroMQ, it binds the hub.
    async fn publisher(&self) -> anyhow::Result<PublisherClient> {
        let mut options = vec![("prefix", PREFIX.to_owned())];
        if Config::parse(&self.url, options.clone())?.backend() == BackendKind::Zeromq {
            options.push(("hub-dir", self.hub_dir.display().to_string()));
            options.push(("anonymous", "true".into()));
        }
        Ok(Config::parse(&self.url, options)?
            .connect_publisher()
            .await?)
    }

    /// An archive server's client of `url` (for ZeroMQ, the hub's endpoint).
    async fn subscriber(url: &str) -> anyhow::Result<SubscriberClient> {
        Ok(Config::parse(url, [("prefix", PREFIX)])?
            .connect_subscriber()
            .await?)
    }

    fn args(&self) -> Vec<String> {
        vec![
            "--child-url".into(),
            self.url.clone(),
            "--child-hub-dir".into(),
            self.hub_dir.display().to_string(),
        ]
    }
}

/// Peak memory of each side, and how fast the backlog drained.
#[derive(Debug, Clone, Copy)]
pub struct Footprint {
    pub backlog: u64,
    pub publisher_peak_kib: u64,
    pub consumer_peak_kib: u64,
    pub drain: Duration,
}

/// Runs both roles as child processes of `exe`.
pub async fn measure(
    exe: &Path,
    place: &Place,
    corpus: &Path,
    backlog: u64,
    prefetch: u16,
) -> anyhow::Result<Footprint> {
    let common = |role: &str| {
        let mut command = Command::new(exe);
        command
            .args(["--child", role, "--backlog", &backlog.to_string()])
            .args(["--prefetch", &prefetch.to_string()])
            .arg("--corpus")
            .arg(corpus)
            .args(place.args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true);
        command
    };
    let mut publisher = Reporter::spawn(common("publisher"))?;
    publisher.expect("filled").await?;
    let mut consumer = Reporter::spawn(common("consumer"))?;
    let drain_secs: f64 = consumer.expect("drained").await?.parse()?;
    let consumer_peak_kib = consumer.expect("peak-kib").await?.parse()?;
    publisher.close_stdin();
    let publisher_peak_kib = publisher.expect("peak-kib").await?.parse()?;
    publisher.finish().await?;
    consumer.finish().await?;
    Ok(Footprint {
        backlog,
        publisher_peak_kib,
        consumer_peak_kib,
        drain: Duration::from_secs_f64(drain_secs),
    })
}

/// A child process whose `@` lines are read in order.
struct Reporter {
    child: Child,
    lines: tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
}

impl Reporter {
    fn spawn(mut command: Command) -> anyhow::Result<Self> {
        let mut child = command.spawn()?;
        let stdout = child.stdout.take().context("child stdout")?;
        Ok(Self {
            child,
            lines: BufReader::new(stdout).lines(),
        })
    }

    /// The value of the next `@ key value` line, which must be `key`.
    async fn expect(&mut self, key: &str) -> anyhow::Result<String> {
        while let Some(line) = self.lines.next_line().await? {
            if let Some(rest) = line.strip_prefix(MARK) {
                let (got, value) = rest.split_once(' ').unwrap_or((rest, ""));
                ensure!(got == key, "the child said {got:?} where {key:?} was due");
                return Ok(value.to_owned());
            }
        }
        let status = self.child.wait().await?;
        bail!("the child ended ({status}) before saying {key:?}")
    }

    /// Closes the child's stdin: the publisher's cue that the consumer
    /// has drained the backlog.
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    async fn finish(mut self) -> anyhow::Result<()> {
        let status = self.child.wait().await?;
        ensure!(status.success(), "the child failed: {status}");
        Ok(())
    }
}

/// This process's peak resident set, from `/proc/self/status`.
fn peak_kib() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .context("no VmHWM in /proc/self/status")?;
    Ok(line
        .trim_start_matches("VmHWM:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()?)
}

/// Plays `role` in a child process.
pub async fn play(
    role: Role,
    place: &Place,
    corpus: &Path,
    backlog: u64,
    prefetch: u16,
) -> anyhow::Result<()> {
    match role {
        Role::Publisher => publish(place, corpus, backlog, prefetch).await?,
        Role::Consumer => consume(Place::subscriber(&place.url).await?, backlog, prefetch).await?,
    }
    println!("{MARK}peak-kib {}", peak_kib()?);
    Ok(())
}

async fn publish(place: &Place, corpus: &Path, backlog: u64, prefetch: u16) -> anyhow::Result<()> {
    let corpus = Arc::new(Corpus::load(corpus)?);
    let client = place.publisher().await?;
    // The durable queue exists before the backlog is published; the
    // publisher's client cannot subscribe, so an archive server's does.
    let url = client
        .hub_handle()
        .map_or(place.url.clone(), |hub| hub.endpoint().to_owned());
    let queues = Place::subscriber(&url).await?;
    drop(queues.subscribe(&subscription(0, prefetch)).await?);
    queues.close().await?;
    let producer = OursProducer(client.clone());
    let pipelining = Pipelining {
        batch: 32,
        in_flight: 8,
    };
    crate::scenario::send_range(&producer, &corpus, 0..backlog, pipelining).await?;
    println!("{MARK}filled");
    if client.hub_handle().is_some() {
        // The hub serves the backlog until the parent closes our stdin.
        tokio::task::spawn_blocking(|| std::io::stdin().read_line(&mut String::new())).await??;
        client.close().await?;
    }
    Ok(())
}

async fn consume(client: SubscriberClient, backlog: u64, prefetch: u16) -> anyhow::Result<()> {
    let deliveries = client.subscribe(&subscription(0, prefetch)).await?;
    let mut consumer = OursConsumer {
        deliveries,
        prefetch: usize::from(prefetch),
    };
    let start = Instant::now();
    // A count, not a set of ids: the set would be most of what is measured.
    // Nothing fails here, so nothing is delivered twice (the throughput
    // runs check that).
    let mut acked = 0;
    let mut arrivals = Vec::new();
    while acked < backlog {
        arrivals.clear();
        consumer.receive(&mut arrivals).await?;
        acked += arrivals.len() as u64;
    }
    println!("{MARK}drained {}", start.elapsed().as_secs_f64());
    drop(consumer);
    client.purge().await?;
    Ok(())
}
