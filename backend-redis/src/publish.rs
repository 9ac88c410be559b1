//! Publish: one XADD into the stream of the envelope's kind and list, with
//! the stream registered so consumers find it; its reply (and WAIT or
//! WAITAOF when configured) is the durability point.

use archiver_core::{BackendError, Envelope};
use redis::Value;

use crate::Shared;
use crate::config::Durability;
use crate::entry::{envelope_fields, int, items, text};
use crate::error::backend_error;
use crate::keys::Keys;

pub(crate) async fn publish(shared: &Shared, envelope: &Envelope) -> Result<(), BackendError> {
    shared.ensure_open()?;
    BackendError::check_size(envelope, shared.config.max_envelope_bytes)?;
    let key = shared.keys.stream(envelope.kind, &envelope.list_id);
    let mut pipe = redis::pipe();
    pipe.cmd("SADD")
        .arg(shared.keys.streams())
        .arg(Keys::stream_member(envelope.kind, &envelope.list_id))
        .ignore();
    let xadd = pipe.cmd("XADD").arg(&key).arg("*");
    for (field, value) in envelope_fields(envelope) {
        xadd.arg(field).arg(value);
    }
    match shared.config.durability {
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
    let replies: Vec<Value> = pipe
        .query_async(&mut shared.conn.clone())
        .await
        .map_err(backend_error)?;
    let entry_id = replies.first().and_then(text).unwrap_or_default();
    tracing::debug!(envelope_id = %envelope.id, stream = %key, %entry_id, "published");
    check_durability(shared.config.durability, replies.get(1))
}

/// Whether WAIT / WAITAOF saw enough copies.
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
