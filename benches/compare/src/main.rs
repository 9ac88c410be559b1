//! `archiver-bench`: our three backends side by side with raw clients and
//! omniqueue, on real mails with durable settings, in one run; see
//! `docs/benchmarks.md`. Run it with `scripts/bench [--quick]`.

mod corpus;
mod memory;
mod omni;
mod ours;
mod raw_lapin;
mod raw_redis;
mod raw_zmq;
mod redis_server;
mod report;
mod scenario;
mod system;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;

use crate::corpus::Corpus;
use crate::memory::{Place, Role};
use crate::redis_server::RedisServer;
use crate::report::{LatencyRow, MemoryRow, Outcome, RateRow, Report, Targets};
use crate::scenario::Pipelining;
use crate::system::System;

/// The backends a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Which {
    Redis,
    Rabbitmq,
    Zeromq,
}

/// Our backends against raw clients and omniqueue: throughput, latency,
/// fan-out and memory, written as a Markdown table.
#[derive(Debug, Parser)]
#[command(name = "archiver-bench")]
struct Args {
    /// Small counts, for a run of under two minutes.
    #[arg(long)]
    quick: bool,
    /// Backends to measure.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["redis", "rabbitmq", "zeromq"])]
    backends: Vec<Which>,
    /// Contenders to measure (for profiling one of them).
    #[arg(long, value_delimiter = ',', default_values = ["ours", "raw", "omniqueue"])]
    contenders: Vec<String>,
    /// Mails per throughput run [default: 100000, quick 5000].
    #[arg(long)]
    mails: Option<u64>,
    /// Offered rate of the latency runs, mails per second.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Mails per latency run [default: ten seconds' worth, quick two].
    #[arg(long)]
    latency_mails: Option<u64>,
    /// Mails per fan-out run [default: 5000, quick 500].
    #[arg(long)]
    fan_out_mails: Option<u64>,
    /// Durable subscriber counts of the fan-out runs.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32])]
    fan_out: Vec<usize>,
    /// Mails in the backlog whose draining is measured for memory
    /// [default: 200000, quick 10000].
    #[arg(long)]
    backlog: Option<u64>,
    /// Most unacked deliveries per consumer.
    #[arg(long, default_value_t = 256)]
    prefetch: u16,
    /// Mails per producer batch.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Batches each producer has outstanding.
    #[arg(long, default_value_t = 8)]
    in_flight: usize,
    /// `appendfsync` of the bench's own Redis (`always`: a reply means
    /// the mail is on disk).
    #[arg(long, default_value = "always")]
    redis_fsync: String,
    /// RabbitMQ to use (its queues are durable quorum queues).
    #[arg(
        long,
        env = "ARCHIVER_AMQP_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    amqp_url: String,
    /// The mbox of real mails [default: the shared corpus].
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Where the Markdown report is written.
    #[arg(long, default_value = "target/benchmarks.md")]
    out: PathBuf,

    /// Internal: play a role of the memory measurement.
    #[arg(long, value_enum, hide = true)]
    child: Option<Role>,
    #[arg(long, hide = true)]
    child_url: Option<String>,
    #[arg(long, hide = true)]
    child_hub_dir: Option<PathBuf>,
}

/// The counts of a run.
struct Counts {
    mails: u64,
    latency_mails: u64,
    fan_out_mails: u64,
    backlog: u64,
}

impl Args {
    fn counts(&self) -> Counts {
        let pick = |given: Option<u64>, full: u64, quick: u64| {
            given.unwrap_or(if self.quick { quick } else { full })
        };
        Counts {
            mails: pick(self.mails, 100_000, 5_000),
            latency_mails: pick(
                self.latency_mails,
                u64::from(self.rate) * 10,
                u64::from(self.rate) * 2,
            ),
            fan_out_mails: pick(self.fan_out_mails, 5_000, 500),
            backlog: pick(self.backlog, 200_000, 10_000),
        }
    }

    fn corpus(&self) -> PathBuf {
        self.corpus
            .clone()
            .unwrap_or_else(|| mq_archiver::conformance::corpus_dir().join("lists.mbox"))
    }

    fn pipelining(&self) -> Pipelining {
        Pipelining {
            batch: self.batch,
            in_flight: self.in_flight,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(role) = args.child {
        let place = Place {
            url: args.child_url.clone().context("--child-url")?,
            hub_dir: args.child_hub_dir.clone().context("--child-hub-dir")?,
        };
        let backlog = args.backlog.context("--backlog")?;
        return memory::play(role, &place, &args.corpus(), backlog, args.prefetch).await;
    }
    let started = Instant::now();
    let report = run(&args).await?;
    let text = report.render();
    println!("{text}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &text)?;
    eprintln!(
        "report written to {} ({:.0} s in all)",
        args.out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One backend's contenders: ours, the raw client, omniqueue if it runs
/// there.
struct Contenders {
    backend: &'static str,
    ours: Box<dyn System>,
    raw: Box<dyn System>,
    omniqueue: Option<Box<dyn System>>,
    targets: Targets,
    /// Where ours' memory is measured.
    place: Place,
    /// The bench's Redis, emptied after each run.
    redis: Option<RedisServer>,
    /// The contenders `--contenders` chose.
    chosen: Vec<String>,
}

impl Contenders {
    fn all(&self) -> Vec<(&'static str, &dyn System)> {
        let mut all: Vec<(&'static str, &dyn System)> =
            vec![("ours", self.ours.as_ref()), ("raw", self.raw.as_ref())];
        if let Some(omniqueue) = &self.omniqueue {
            all.push(("omniqueue", omniqueue.as_ref()));
        }
        all
    }

    fn reset(&self) {
        if let Some(redis) = &self.redis
            && let Err(error) = redis.reset()
        {
            eprintln!("  could not empty the bench's Redis: {error:#}");
        }
    }
}

fn contenders(which: Which, args: &Args, scratch: &Path) -> anyhow::Result<Contenders> {
    let prefetch = args.prefetch;
    Ok(match which {
        Which::Redis => {
            let redis = RedisServer::start(&args.redis_fsync)?;
            let url = redis.url();
            Contenders {
                backend: "Redis",
                ours: Box::new(ours::Ours::new(&url, scratch.to_owned(), prefetch)),
                raw: Box::new(raw_redis::RawRedis::new(&url, prefetch)?),
                omniqueue: Some(Box::new(omni::OmniRedis::new(&url, prefetch)?)),
                targets: Targets {
                    raw_ratio: 0.8,
                    omniqueue_ratio: Some(3.0),
                    p99: Duration::from_millis(2),
                },
                place: Place {
                    url,
                    hub_dir: scratch.to_owned(),
                },
                redis: Some(redis),
                chosen: args.contenders.clone(),
            }
        }
        Which::Rabbitmq => Contenders {
            backend: "RabbitMQ",
            ours: Box::new(ours::Ours::new(
                &args.amqp_url,
                scratch.to_owned(),
                prefetch,
            )),
            raw: Box::new(raw_lapin::RawLapin::new(&args.amqp_url, prefetch)),
            omniqueue: Some(Box::new(omni::OmniRabbit::new(&args.amqp_url, prefetch))),
            targets: Targets {
                raw_ratio: 0.9,
                omniqueue_ratio: Some(1.0),
                p99: Duration::from_millis(5),
            },
            place: Place {
                url: args.amqp_url.clone(),
                hub_dir: scratch.to_owned(),
            },
            redis: None,
            chosen: args.contenders.clone(),
        },
        Which::Zeromq => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            Contenders {
                backend: "ZeroMQ",
                ours: Box::new(ours::Ours::new(
                    "tcp://127.0.0.1:*",
                    scratch.join("hubs"),
                    prefetch,
                )),
                raw: Box::new(raw_zmq::RawZmq::new(prefetch)),
                omniqueue: None,
                targets: Targets {
                    raw_ratio: 0.5,
                    omniqueue_ratio: None,
                    p99: Duration::from_millis(1),
                },
                place: Place {
                    url: format!("tcp://127.0.0.1:{port}"),
                    hub_dir: scratch.join("backlog-hub"),
                },
                redis: None,
                chosen: args.contenders.clone(),
            }
        }
    })
}

/// Runs one measurement for each contender, in turn (`fans_out`: one that
/// needs several durable subscribers).
async fn each<T, F>(
    contenders: &Contenders,
    fans_out: bool,
    what: &str,
    show: impl Fn(&T) -> String,
    measure: F,
) -> Vec<Outcome<T>>
where
    F: AsyncFn(&dyn System) -> anyhow::Result<T>,
{
    let mut outcomes = Vec::new();
    for (name, system) in contenders.all() {
        if !contenders.chosen.iter().any(|chosen| chosen == name) {
            outcomes.push(Outcome::NotApplicable("not chosen in this run"));
            continue;
        }
        if let (Some(why), true) = (system.no_fan_out(), fans_out) {
            outcomes.push(Outcome::NotApplicable(why));
            continue;
        }
        let outcome = Outcome::from_result(measure(system).await);
        match &outcome {
            Outcome::Done(value) => eprintln!("  {name:>9} · {what}: {}", show(value)),
            Outcome::Failed(error) => eprintln!("  {name:>9} · {what}: FAILED {error}"),
            Outcome::NotApplicable(_) => {}
        }
        if let Outcome::Failed(_) = outcome {
            // Leave nothing behind for the next contender.
            let _ = system.cleanup().await;
        }
        contenders.reset();
        outcomes.push(outcome);
    }
    outcomes
}

fn rate_row(
    contenders: &Contenders,
    measure: String,
    mut outcomes: Vec<Outcome<scenario::Rate>>,
) -> RateRow {
    let omniqueue = if contenders.omniqueue.is_some() {
        outcomes.pop().expect("omniqueue's outcome")
    } else {
        Outcome::NotApplicable("omniqueue has no ZeroMQ backend")
    };
    let raw = outcomes.pop().expect("raw's outcome");
    let ours = outcomes.pop().expect("ours' outcome");
    RateRow {
        backend: contenders.backend,
        measure,
        ours,
        raw,
        omniqueue,
        targets: contenders.targets,
    }
}

fn show_rate(rate: &scenario::Rate) -> String {
    format!(
        "{:.0} mails/s, {:.1} MiB/s",
        rate.mails_per_s(),
        rate.mib_per_s()
    )
}

async fn run(args: &Args) -> anyhow::Result<Report> {
    let counts = args.counts();
    let corpus_path = args.corpus();
    let corpus = Arc::new(Corpus::load(&corpus_path).with_context(|| {
        format!(
            "the corpus of real mail is needed (set ARCHIVER_CORPUS_DIR or --corpus); tried {}",
            corpus_path.display()
        )
    })?);
    let exe = std::env::current_exe()?;
    let scratch = tempfile::tempdir()?;
    let pipelining = args.pipelining();
    let mut report = Report {
        preamble: preamble(args, &counts, &corpus),
        ..Report::default()
    };
    for which in &args.backends {
        let contenders = contenders(*which, args, scratch.path())?;
        eprintln!("{}", contenders.backend);
        for (producers, consumers) in [(1, 1), (4, 4)] {
            let what = format!("{producers} → {consumers}, {} mails", counts.mails);
            let outcomes = each(&contenders, false, &what, show_rate, async |system| {
                scenario::throughput(
                    system,
                    &corpus,
                    producers,
                    consumers,
                    counts.mails,
                    pipelining,
                )
                .await
            })
            .await;
            let measure = if consumers == 1 {
                "1 publisher → 1 consumer".to_owned()
            } else {
                format!("{producers} publishers → {consumers} competing consumers")
            };
            report.rates.push(rate_row(&contenders, measure, outcomes));
        }
        for subscribers in &args.fan_out {
            let what = format!("fan-out to {subscribers}, {} mails", counts.fan_out_mails);
            let outcomes = each(&contenders, true, &what, show_rate, async |system| {
                scenario::fan_out(
                    system,
                    &corpus,
                    *subscribers,
                    counts.fan_out_mails,
                    pipelining,
                )
                .await
            })
            .await;
            let measure = format!("publish only, {subscribers} durable subscriber(s)");
            report.rates.push(rate_row(&contenders, measure, outcomes));
        }
        let what = format!("latency at {}/s, {} mails", args.rate, counts.latency_mails);
        let outcomes = each(
            &contenders,
            false,
            &what,
            |l: &scenario::Latency| {
                format!(
                    "p50 {:?}, p99 {:?}, publish p99 {:?}",
                    l.end_to_end.at(50.0),
                    l.end_to_end.at(99.0),
                    l.publish.at(99.0)
                )
            },
            async |system| {
                scenario::latency(system, &corpus, args.rate, counts.latency_mails).await
            },
        )
        .await;
        for ((name, _), latency) in contenders.all().into_iter().zip(outcomes) {
            report.latencies.push(LatencyRow {
                backend: contenders.backend,
                contender: name,
                latency,
                p99_target: (name == "ours").then_some(contenders.targets.p99),
            });
        }
        if !args.contenders.iter().any(|chosen| chosen == "ours") {
            continue;
        }
        eprintln!("  memory: a backlog of {} mails", counts.backlog);
        let footprint = memory::measure(
            &exe,
            &contenders.place,
            &corpus_path,
            counts.backlog,
            args.prefetch,
        )
        .await;
        if let Err(error) = &footprint {
            eprintln!("  memory: FAILED {error:#}");
        }
        contenders.reset();
        report.memory.push(MemoryRow {
            backend: contenders.backend,
            footprint: Outcome::from_result(footprint),
        });
    }
    Ok(report)
}

/// What the report says of its run: the command, the machine, the counts.
fn preamble(args: &Args, counts: &Counts, corpus: &Corpus) -> Vec<String> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let first_line = |program: &str, arguments: &[&str]| {
        std::process::Command::new(program)
            .args(arguments)
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.lines().next().map(str::to_owned))
            .unwrap_or_else(|| "unknown".into())
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    vec![
        format!(
            "- Run: `archiver-bench {}` on {}",
            command.join(" "),
            first_line("date", &["-u", "+%Y-%m-%d %H:%M UTC"])
        ),
        format!(
            "- Machine: {cores} cores ({cpu}), {}, kernel {}",
            first_line("sh", &["-c", "free -h | awk '/Mem:/ {print $2\" RAM\"}'"]),
            first_line("uname", &["-r"])
        ),
        format!(
            "- Brokers: {}; RabbitMQ {}",
            first_line("redis-server", &["--version"]),
            first_line("sh", &["-c", "rabbitmqctl version 2>/dev/null"])
        ),
        format!(
            "- Mails: {} real mails from the corpus, cycled with unique Message-IDs, {:.1} KiB on average",
            corpus.len(),
            corpus.mean_bytes() / 1024.0
        ),
        format!(
            "- Counts: {} mails per throughput run, {} per fan-out run, {} at {}/s per latency run, a backlog of {}",
            counts.mails, counts.fan_out_mails, counts.latency_mails, args.rate, counts.backlog
        ),
        format!(
            "- Settings: prefetch {}, producers send batches of {} with {} batches in flight; Redis with `appendfsync {}`; RabbitMQ quorum queues, persistent messages, publisher confirms; ZeroMQ hub journal fsynced before `publish` returns",
            args.prefetch, args.batch, args.in_flight, args.redis_fsync
        ),
    ]
}
