//! Settling a Redis delivery: XACK, a delayed retry, or the dead letters.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use archiver_core::{BackendError, Envelope, Settle, SubscriberName};
use async_trait::async_trait;
use bytes::Bytes;
use redis::aio::ConnectionManager;
use tokio::sync::OwnedSemaphorePermit;

use crate::Shared;
use crate::batcher::Batcher;
use crate::dead_letters::{PendingRef, bury};
use crate::entry::EntryId;
use crate::error::backend_error;

/// An ack waiting for its batch.
pub(crate) struct Ack {
    stream: String,
    group: String,
    id: EntryId,
    /// Replayed entries are deleted once settled.
    delete_after: bool,
}

impl Ack {
    fn of(pending: &PendingRef<'_>) -> Self {
        Self {
            stream: pending.stream.to_owned(),
            group: pending.group.as_str().to_owned(),
            id: pending.id,
            delete_after: pending.delete_after,
        }
    }
}

/// The client's acking task, on its multiplexed connection.
pub(crate) fn ack_batcher(conn: ConnectionManager) -> Batcher<Ack> {
    Batcher::start(move |acks: Vec<Ack>| {
        let mut conn = conn.clone();
        let pipe = ack_pipeline(&acks);
        async move {
            pipe.query_async::<()>(&mut conn)
                .await
                .map_err(backend_error)
        }
    })
}

/// One XACK per (stream, group) with all its ids, then the XDELs.
fn ack_pipeline(acks: &[Ack]) -> redis::Pipeline {
    let mut by_group: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for ack in acks {
        let id = ack.id.to_string();
        if ack.delete_after {
            deletes.entry(&ack.stream).or_default().push(id.clone());
        }
        by_group
            .entry((&ack.stream, &ack.group))
            .or_default()
            .push(id);
    }
    let mut pipe = redis::pipe();
    for ((stream, group), ids) in by_group {
        pipe.cmd("XACK").arg(stream).arg(group).arg(ids).ignore();
    }
    for (stream, ids) in deletes {
        pipe.cmd("XDEL").arg(stream).arg(ids).ignore();
    }
    pipe
}

/// One pending entry handed to a consumer; holds its in-flight permit.
pub(crate) struct RedisSettle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) group: SubscriberName,
    pub(crate) stream: String,
    pub(crate) id: EntryId,
    pub(crate) envelope: Envelope,
    /// The entry's fields as read (the body's buffer shared with the
    /// envelope's): burying writes them as they are, never a re-encoding
    /// that would drop fields this version does not know.
    pub(crate) fields: Vec<(String, Bytes)>,
    pub(crate) from_replay: bool,
    pub(crate) _permit: OwnedSemaphorePermit,
}

impl RedisSettle {
    fn pending(&self) -> PendingRef<'_> {
        PendingRef {
            stream: &self.stream,
            group: &self.group,
            id: self.id,
            delete_after: self.from_replay,
        }
    }

    /// The delayed-set member naming this entry.
    fn delayed_member(&self) -> String {
        format!("{}\n{}", self.stream, self.id)
    }
}

#[async_trait]
impl Settle for RedisSettle {
    async fn ack(self: Box<Self>) -> Result<(), BackendError> {
        self.shared.acks.submit(Ack::of(&self.pending())).await
    }

    async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
        // The entry stays pending; a consumer claims it once it is due.
        let due = chrono::Utc::now().timestamp_millis() + delay.as_millis() as i64;
        redis::cmd("ZADD")
            .arg(self.shared.keys.delayed(&self.group))
            .arg(due)
            .arg(self.delayed_member())
            .query_async::<()>(&mut self.shared.conn.clone())
            .await
            .map_err(backend_error)
    }

    async fn bury(self: Box<Self>, reason: String, attempts: u32) -> Result<(), BackendError> {
        // Delivered only when it came from its own stream.
        let origin = self.shared.keys.stream_of(&self.envelope).key;
        bury(
            &mut self.shared.conn.clone(),
            &self.shared.keys,
            &self.pending(),
            &self.fields,
            Some(&origin),
            attempts,
            &reason,
        )
        .await
        .map_err(backend_error)
    }

    async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
        self.requeue(Duration::ZERO).await
    }
}
