//! Publish: one XADD into the stream of the envelope's access class,
//! content and list, with the stream registered so consumers find it; its reply (and WAIT or
//! WAITAOF when configured) is the durability point. Concurrent publishes
//! go out together in one pipeline ([`crate::batcher`]): one registration
//! per stream, the XADDs, and one WAIT or WAITAOF that covers them all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use archiver_core::{BackendError, Envelope};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::Shared;
use crate::batcher::Batcher;
use crate::config::{Durability, RedisConfig};
use crate::entry::{add_envelope_fields, int, items, text};
use crate::error::{is_no_perm, refusing};
use crate::keys::{Keys, StreamRef};
use crate::{registry, retention};

pub(crate) async fn publish(shared: &Shared, envelope: &Envelope) -> Result<(), BackendError> {
    shared.ensure_open()?;
    BackendError::check_size(envelope, shared.config.max_envelope_bytes)?;
    shared.publishes.submit(envelope.clone()).await
}

/// The client's publishing task, on its multiplexed connection. A client
/// that publishes also trims every stream every `retention_interval`
/// (in a task of its own, after a publish): archive servers running as
/// ACL users may not, so the list server's client must.
pub(crate) fn batcher(
    conn: ConnectionManager,
    keys: Keys,
    config: &RedisConfig,
) -> Batcher<Envelope> {
    let durability = config.durability;
    let mut trimmer = Trimmer {
        conn: conn.clone(),
        keys: keys.clone(),
        interval: config.retention_interval,
        min_age: config.retention_min_age,
        next: Instant::now() + config.retention_interval,
        busy: Arc::new(AtomicBool::new(false)),
        allowed: Arc::new(AtomicBool::new(true)),
    };
    Batcher::start(move |batch: Vec<Envelope>| {
        trimmer.when_due();
        let mut conn = conn.clone();
        let streams: Vec<StreamRef> = batch.iter().map(|e| keys.stream_of(e)).collect();
        let pipe = pipeline(&keys, durability, &batch, &streams);
        async move {
            let replies: Vec<Value> = match pipe.query_async(&mut conn).await {
                Ok(replies) => replies,
                Err(error) => {
                    let keys: Vec<&str> = streams.iter().map(|s| s.key.as_str()).collect();
                    return Err(refusing(&format!("XADD {}", keys.join(" ")))(error));
                }
            };
            for ((envelope, stream), reply) in batch.iter().zip(&streams).zip(&replies) {
                let entry_id = text(reply).unwrap_or_default();
                tracing::debug!(envelope_id = %envelope.id, stream = %stream.key, %entry_id, "published");
            }
            check_durability(durability, replies.get(batch.len()))
        }
    })
}

/// Trims every stream now and then, one trim at a time, until Redis
/// refuses this user XTRIM.
struct Trimmer {
    conn: ConnectionManager,
    keys: Keys,
    interval: Duration,
    min_age: Duration,
    next: Instant,
    /// A trim is under way.
    busy: Arc<AtomicBool>,
    /// False once Redis refused this user (NOPERM).
    allowed: Arc<AtomicBool>,
}

impl Trimmer {
    /// Starts a trim when one is due and none is under way.
    fn when_due(&mut self) {
        let now = Instant::now();
        if now < self.next
            || !self.allowed.load(Ordering::Relaxed)
            || self.busy.swap(true, Ordering::AcqRel)
        {
            return;
        }
        self.next = now + self.interval;
        let (mut conn, keys, min_age) = (self.conn.clone(), self.keys.clone(), self.min_age);
        let (busy, allowed) = (Arc::clone(&self.busy), Arc::clone(&self.allowed));
        tokio::spawn(async move {
            let trimmed = match registry::streams(&mut conn, &keys).await {
                Ok(streams) => {
                    let streams: Vec<String> = streams.into_iter().map(|s| s.key).collect();
                    retention::trim(&mut conn, &keys, &streams, min_age).await
                }
                Err(error) => Err(error),
            };
            match trimmed {
                Ok(count) => tracing::debug!(count, "the publisher trimmed acknowledged entries"),
                Err(error) if is_no_perm(&error) => {
                    tracing::warn!(
                        "this Redis user may not trim (NOPERM): this client no longer trims; the list server's user must"
                    );
                    allowed.store(false, Ordering::Relaxed);
                }
                Err(error) => tracing::warn!(%error, "trimming failed; will retry"),
            }
            busy.store(false, Ordering::Release);
        });
    }
}

/// SADD of the batch's lists to their registry sets, an XADD per envelope (their replies come
/// first), then the durability wait.
/// `streams` are the envelopes' streams, in order.
fn pipeline(
    keys: &Keys,
    durability: Durability,
    batch: &[Envelope],
    streams: &[StreamRef],
) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let mut sets: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (envelope, stream) in batch.iter().zip(streams) {
        sets.entry(keys.lists(stream.class, stream.content))
            .or_default()
            .insert(envelope.list_id.as_str());
    }
    for (set, lists) in sets {
        pipe.cmd("SADD").arg(set).arg(lists).ignore();
    }
    for (envelope, stream) in batch.iter().zip(streams) {
        let mut xadd = redis::cmd("XADD");
        xadd.arg(&stream.key).arg("*");
        add_envelope_fields(&mut xadd, envelope);
        pipe.add_command(xadd);
    }
    match durability {
        Durability::Reply => {}
        Durability::Replicas { count, timeout } => {
            pipe.cmd("WAIT").arg(count).arg(timeout.as_millis() as u64);
        }
        Durability::Fsync { replicas, timeout } => {
            pipe.cmd("WAITAOF")
                .arg(1)
                .arg(replicas)
                .arg(timeout.as_millis() as u64);
        }
    }
    pipe
}

fn check_durability(durability: Durability, reply: Option<&Value>) -> Result<(), BackendError> {
    match (durability, reply) {
        (Durability::Reply, _) => Ok(()),
        (Durability::Replicas { count, timeout }, Some(reply)) => {
            let acked = int(reply).unwrap_or(0);
            if acked >= i64::from(count) {
                Ok(())
            } else {
                Err(BackendError::Unavailable(
                    format!("only {acked} of {count} replicas had the entry within {timeout:?}")
                        .into(),
                ))
            }
        }
        (Durability::Fsync { replicas, timeout }, Some(reply)) => {
            let counts: Vec<i64> = items(reply).iter().filter_map(int).collect();
            match counts[..] {
                [local, synced] if local >= 1 && synced >= i64::from(replicas) => Ok(()),
                _ => Err(BackendError::Unavailable(format!(
                    "the entry was not fsynced locally and on {replicas} replicas within {timeout:?} (WAITAOF answered {counts:?})"
                ).into())),
            }
        }
        (_, None) => Err(BackendError::Broker("no reply to WAIT / WAITAOF".into())),
    }
}
