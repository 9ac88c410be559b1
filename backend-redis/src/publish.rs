//! Publish: one XADD into the stream of the envelope's access class,
//! content and list, with the stream registered so consumers find it; its reply (and WAIT or
//! WAITAOF when configured) is the durability point. Concurrent publishes
//! go out together in one pipeline ([`crate::batcher`]): one registration
//! per stream, the XADDs, and one WAIT or WAITAOF that covers them all.

use std::collections::{BTreeMap, BTreeSet};

use archiver_core::{BackendError, Envelope, wire};
use redis::Value;
use redis::aio::ConnectionManager;

use crate::Shared;
use crate::batcher::Batcher;
use crate::config::Durability;
use crate::entry::{BODY, int, items, text};
use crate::error::refusing;
use crate::keys::Keys;

pub(crate) async fn publish(shared: &Shared, envelope: &Envelope) -> Result<(), BackendError> {
    shared.ensure_open()?;
    BackendError::check_size(envelope, shared.config.max_envelope_bytes)?;
    shared.publishes.submit(envelope.clone()).await
}

/// The client's publishing task, on its multiplexed connection.
pub(crate) fn batcher(
    conn: ConnectionManager,
    keys: Keys,
    durability: Durability,
) -> Batcher<Envelope> {
    Batcher::start(move |batch: Vec<Envelope>| {
        let mut conn = conn.clone();
        let pipe = pipeline(&keys, durability, &batch);
        let streams: Vec<String> = batch
            .iter()
            .map(|envelope| keys.stream_of(envelope).key)
            .collect();
        let what = format!("XADD {}", streams.join(" "));
        async move {
            let replies: Vec<Value> = pipe.query_async(&mut conn).await.map_err(refusing(&what))?;
            for ((envelope, stream), reply) in batch.iter().zip(&streams).zip(&replies) {
                let entry_id = text(reply).unwrap_or_default();
                tracing::debug!(envelope_id = %envelope.id, %stream, %entry_id, "published");
            }
            check_durability(durability, replies.get(batch.len()))
        }
    })
}

/// SADD of the batch's lists to their registry sets, an XADD per envelope (their replies come
/// first), then the durability wait.
fn pipeline(keys: &Keys, durability: Durability, batch: &[Envelope]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    let mut sets: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for envelope in batch {
        let stream = keys.stream_of(envelope);
        sets.entry(keys.lists(stream.class, stream.content))
            .or_default()
            .insert(envelope.list_id.as_str());
    }
    for (set, lists) in sets {
        pipe.cmd("SADD").arg(set).arg(lists).ignore();
    }
    for envelope in batch {
        let xadd = pipe.cmd("XADD").arg(keys.stream_of(envelope).key).arg("*");
        for (field, value) in wire::to_fields(envelope) {
            xadd.arg(field).arg(value);
        }
        xadd.arg(BODY).arg(&envelope.body[..]);
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
                Err(BackendError::Unavailable(format!(
                    "only {acked} of {count} replicas had the entry within {timeout:?}"
                )))
            }
        }
        (Durability::Fsync { replicas, timeout }, Some(reply)) => {
            let counts: Vec<i64> = items(reply).iter().filter_map(int).collect();
            match counts[..] {
                [local, synced] if local >= 1 && synced >= i64::from(replicas) => Ok(()),
                _ => Err(BackendError::Unavailable(format!(
                    "the entry was not fsynced locally and on {replicas} replicas within {timeout:?} (WAITAOF answered {counts:?})"
                ))),
            }
        }
        (_, None) => Err(BackendError::Broker("no reply to WAIT / WAITAOF".into())),
    }
}
