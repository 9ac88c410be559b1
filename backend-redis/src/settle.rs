//! Settling a Redis delivery: XACK, a delayed retry, or the dead letters.

use std::sync::Arc;
use std::time::Duration;

use archiver_core::{BackendError, Envelope, Settle, SubscriberName, attempt_limit_reached};
use async_trait::async_trait;
use tokio::sync::OwnedSemaphorePermit;

use crate::Shared;
use crate::dead_letters::{PendingRef, bury};
use crate::entry::{EntryId, envelope_fields};
use crate::error::backend_error;

/// One pending entry handed to a consumer; holds its in-flight permit.
pub(crate) struct RedisSettle {
    pub(crate) shared: Arc<Shared>,
    pub(crate) group: SubscriberName,
    pub(crate) stream: String,
    pub(crate) id: EntryId,
    pub(crate) envelope: Envelope,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
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

    async fn bury(&self, reason: &str) -> Result<(), BackendError> {
        let fields = envelope_fields(&self.envelope);
        bury(
            &mut self.shared.conn.clone(),
            &self.shared.keys,
            &self.pending(),
            &fields,
            self.attempt,
            reason,
        )
        .await
        .map_err(backend_error)
    }

    /// The delayed-set member naming this entry.
    fn delayed_member(&self) -> String {
        format!("{}\n{}", self.stream, self.id)
    }
}

#[async_trait]
impl Settle for RedisSettle {
    async fn ack(self: Box<Self>) -> Result<(), BackendError> {
        self.shared.ensure_open()?;
        self.shared.acks.ack(&self.pending()).await
    }

    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
        self.shared.ensure_open()?;
        if let Some(reason) = attempt_limit_reached("nacked", self.attempt, self.max_attempts) {
            return self.bury(&reason).await;
        }
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

    async fn reject(self: Box<Self>, reason: String) -> Result<(), BackendError> {
        self.shared.ensure_open()?;
        self.bury(&reason).await
    }

    fn release(self: Box<Self>) {
        if self.shared.closed.is_cancelled() {
            return; // reclaimed by another consumer after `claim_idle`
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let envelope_id = self.envelope.id;
                if let Err(error) = self.nack(Duration::ZERO).await {
                    tracing::warn!(%envelope_id, %error, "could not hand back a dropped delivery; it is reclaimed after the claim idle time");
                }
            });
        }
    }
}
