//! The measurements, each the same for every contender: throughput with
//! competing consumers, latency at an offered rate, publisher throughput
//! with many durable subscribers.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::corpus::Corpus;
use crate::system::{Arrival, Producer, System};

/// How a producer pipelines: batches of `batch` mails, `in_flight` batches
/// outstanding at once.
#[derive(Debug, Clone, Copy)]
pub struct Pipelining {
    pub batch: usize,
    pub in_flight: usize,
}

/// The longest any one measurement may take before it is called failed.
const DEADLINE: Duration = Duration::from_secs(900);

/// Mails moved in a time.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub mails: u64,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn mails_per_s(&self) -> f64 {
        self.mails as f64 / self.elapsed.as_secs_f64()
    }

    pub fn mib_per_s(&self) -> f64 {
        self.bytes as f64 / self.elapsed.as_secs_f64() / (1024.0 * 1024.0)
    }
}

/// What consumers received, each mail counted once.
#[derive(Default)]
struct Tally {
    seen: Mutex<Seen>,
    complete: Notify,
}

#[derive(Default)]
struct Seen {
    at: HashMap<u128, Instant>,
    bytes: u64,
    duplicates: u64,
    complete_at: Option<Instant>,
}

impl Tally {
    /// Counts `arrivals` (already acked); wakes the waiter at `target`.
    fn add(&self, arrivals: &[Arrival], target: usize) {
        let mut seen = self.seen.lock().expect("not poisoned");
        for arrival in arrivals {
            if seen.at.insert(arrival.id, arrival.at).is_none() {
                seen.bytes += arrival.bytes as u64;
            } else {
                seen.duplicates += 1;
            }
        }
        if seen.at.len() >= target && seen.complete_at.is_none() {
            seen.complete_at = Some(Instant::now());
            self.complete.notify_one();
        }
    }
}

/// Consumers of subscriber 0 counting into `tally` until it is complete.
async fn start_consumers(
    system: &dyn System,
    consumers: usize,
    tally: &Arc<Tally>,
    target: usize,
) -> anyhow::Result<JoinSet<anyhow::Result<()>>> {
    let mut tasks = JoinSet::new();
    for _ in 0..consumers {
        let mut consumer = system.consumer(0).await?;
        let tally = Arc::clone(tally);
        tasks.spawn(async move {
            let mut arrivals = Vec::new();
            loop {
                arrivals.clear();
                consumer.receive(&mut arrivals).await?;
                tally.add(&arrivals, target);
            }
        });
    }
    Ok(tasks)
}

/// Waits until `tally` is complete; a consumer's error ends the wait.
async fn wait_complete(
    tally: &Tally,
    consumers: &mut JoinSet<anyhow::Result<()>>,
    target: usize,
) -> anyhow::Result<Instant> {
    let outcome = tokio::time::timeout(DEADLINE, async {
        tokio::select! {
            () = tally.complete.notified() => Ok(()),
            Some(ended) = consumers.join_next() => match ended? {
                Ok(()) => bail!("a consumer stopped"),
                Err(error) => Err(error),
            },
        }
    })
    .await;
    let seen = tally.seen.lock().expect("not poisoned");
    match outcome {
        Ok(result) => result?,
        Err(_) => bail!(
            "only {} of {target} mails arrived within {DEADLINE:?}",
            seen.at.len()
        ),
    }
    ensure!(
        seen.duplicates == 0,
        "{} mails arrived twice (nothing failed, so none should)",
        seen.duplicates
    );
    Ok(seen.complete_at.expect("complete"))
}

/// Sends mails `range` of the corpus through `producer`, pipelined.
pub async fn send_range(
    producer: &dyn Producer,
    corpus: &Corpus,
    range: std::ops::Range<u64>,
    pipelining: Pipelining,
) -> anyhow::Result<()> {
    let starts: Vec<u64> = range.clone().step_by(pipelining.batch).collect();
    futures::stream::iter(starts)
        .map(|start| {
            let end = (start + pipelining.batch as u64).min(range.end);
            let batch: Vec<_> = (start..end).map(|i| corpus.envelope(i)).collect();
            async move { producer.send(&batch).await }
        })
        .buffer_unordered(pipelining.in_flight)
        .try_collect::<()>()
        .await
}

/// `producers` producers send `mails` mails between them while `consumers`
/// competing consumers of one subscriber receive and ack them: from the
/// first send to the last ack.
pub async fn throughput(
    system: &dyn System,
    corpus: &Arc<Corpus>,
    producers: usize,
    consumers: usize,
    mails: u64,
    pipelining: Pipelining,
) -> anyhow::Result<Rate> {
    system.prepare(1).await?;
    let target = mails as usize;
    let tally = Arc::new(Tally::default());
    let mut consumer_tasks = start_consumers(system, consumers, &tally, target).await?;
    let mut senders = Vec::new();
    for _ in 0..producers {
        senders.push(system.producer().await?);
    }
    let start = Instant::now();
    let share = mails.div_ceil(producers as u64);
    let sends = senders.iter().enumerate().map(|(p, producer)| {
        let from = p as u64 * share;
        send_range(
            producer.as_ref(),
            corpus,
            from..(from + share).min(mails),
            pipelining,
        )
    });
    futures::future::try_join_all(sends).await?;
    let end = wait_complete(&tally, &mut consumer_tasks, target).await?;
    consumer_tasks.abort_all();
    let bytes = tally.seen.lock().expect("not poisoned").bytes;
    drop(senders);
    system.cleanup().await?;
    Ok(Rate {
        mails,
        bytes,
        elapsed: end - start,
    })
}

/// Sorted durations, read as percentiles.
#[derive(Debug, Clone)]
pub struct Percentiles(Vec<Duration>);

impl Percentiles {
    fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    /// The `p`-th percentile (0 < p ≤ 100).
    pub fn at(&self, p: f64) -> Duration {
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1]
    }

    pub fn max(&self) -> Duration {
        *self.0.last().expect("samples")
    }
}

/// Latencies at an offered rate.
#[derive(Debug, Clone)]
pub struct Latency {
    /// From the publish call to the consumer having the mail.
    pub end_to_end: Percentiles,
    /// Of the publish call itself (until durability is confirmed).
    pub publish: Percentiles,
}

/// Mails at the start of a latency run left out of the figures (or one
/// pass of the corpus if that is more, so every list has been seen): the
/// connections' first round trips and each list's first mail, not the
/// steady state. On Redis a consumer finds a list's new stream within its
/// poll interval (200 ms), which the first mails of each list wait.
const WARM_UP: u64 = 1_000;

/// Publishes `mails` mails one by one at `rate` per second, each at its
/// scheduled time whether or not the previous one returned, to one
/// consumer.
pub async fn latency(
    system: &dyn System,
    corpus: &Arc<Corpus>,
    rate: u32,
    mails: u64,
) -> anyhow::Result<Latency> {
    system.prepare(1).await?;
    let warm_up_mails = WARM_UP.max(corpus.len() as u64);
    let total = mails + warm_up_mails;
    let tally = Arc::new(Tally::default());
    let mut consumer_tasks = start_consumers(system, 1, &tally, total as usize).await?;
    let producer: Arc<dyn Producer> = Arc::from(system.producer().await?);
    let sent = Arc::new(Mutex::new(HashMap::new()));
    let mut publishes = JoinSet::new();
    let interval = Duration::from_secs(1) / rate;
    let start = tokio::time::Instant::now();
    for i in 0..total {
        tokio::time::sleep_until(start + interval * i as u32).await;
        let envelope = corpus.envelope(i);
        let producer = Arc::clone(&producer);
        let sent = Arc::clone(&sent);
        publishes.spawn(async move {
            let id = envelope.id.as_uuid().as_u128();
            let called = Instant::now();
            sent.lock().expect("not poisoned").insert(id, called);
            producer.send(std::slice::from_ref(&envelope)).await?;
            anyhow::Ok((i, id, called.elapsed()))
        });
    }
    let mut publish = Vec::new();
    let mut warm_up: HashSet<u128> = HashSet::new();
    while let Some(done) = publishes.join_next().await {
        let (i, id, took) = done??;
        if i < warm_up_mails {
            warm_up.insert(id);
        } else {
            publish.push(took);
        }
    }
    wait_complete(&tally, &mut consumer_tasks, total as usize).await?;
    consumer_tasks.abort_all();
    let end_to_end = {
        let sent = sent.lock().expect("not poisoned");
        let seen = tally.seen.lock().expect("not poisoned");
        sent.iter()
            .filter(|(id, _)| !warm_up.contains(*id))
            .map(|(id, called)| seen.at[id] - *called)
            .collect()
    };
    drop(producer);
    system.cleanup().await?;
    Ok(Latency {
        end_to_end: Percentiles::new(end_to_end),
        publish: Percentiles::new(publish),
    })
}

/// Publisher throughput with `subscribers` durable subscribers, none of
/// them consuming: until every publish is confirmed.
pub async fn fan_out(
    system: &dyn System,
    corpus: &Arc<Corpus>,
    subscribers: usize,
    mails: u64,
    pipelining: Pipelining,
) -> anyhow::Result<Rate> {
    system.prepare(subscribers).await?;
    let producer = system.producer().await?;
    let start = Instant::now();
    send_range(producer.as_ref(), corpus, 0..mails, pipelining).await?;
    let elapsed = start.elapsed();
    drop(producer);
    system.cleanup().await?;
    let bytes = (0..mails)
        .map(|i| corpus.envelope(i).body.len() as u64)
        .sum();
    Ok(Rate {
        mails,
        bytes,
        elapsed,
    })
}
