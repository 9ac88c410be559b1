//! A delivery: one envelope handed to one consumer, to be settled once.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use super::BackendError;
use crate::envelope::Envelope;

/// The attempt-limit rule every backend applies: once a delivery that was
/// `how` (nacked, abandoned) has had `attempt` of `max_attempts` attempts,
/// it goes to the dead letters with this reason instead of coming back.
pub fn attempt_limit_reached(how: &str, attempt: u32, max_attempts: u32) -> Option<String> {
    (attempt >= max_attempts)
        .then(|| format!("{how} on attempt {attempt} of {max_attempts}: attempt limit reached"))
}

/// How a backend settles one delivery. Implemented by each backend; users
/// call the methods on [`Delivery`].
#[async_trait]
pub trait Settle: Send + Sync {
    /// Done: remove it from the subscriber's queue.
    async fn ack(self: Box<Self>) -> Result<(), BackendError>;
    /// Failed for now: deliver again after `delay` with attempt + 1, or
    /// dead-letter it when the attempt limit is reached.
    async fn nack(self: Box<Self>, delay: Duration) -> Result<(), BackendError>;
    /// Cannot ever succeed: move it to the subscriber's dead letters.
    async fn reject(self: Box<Self>, reason: String) -> Result<(), BackendError>;
    /// The delivery was dropped unsettled: give it back for redelivery if the
    /// backend can do so without waiting; otherwise the backend redelivers it
    /// when the consumer is gone (see `Capabilities::abandoned_redelivery`).
    fn release(self: Box<Self>);
}

/// One envelope delivered to a consumer, with its attempt number.
///
/// Settle it with [`ack`](Self::ack), [`nack`](Self::nack) or
/// [`reject`](Self::reject). Dropping it unsettled is not a loss: it is
/// delivered again (to this or another instance) with attempt + 1.
pub struct Delivery {
    envelope: Envelope,
    attempt: u32,
    settle: Option<Box<dyn Settle>>,
}

impl Delivery {
    /// Made by backends: `attempt` counts from 1.
    pub fn new(envelope: Envelope, attempt: u32, settle: Box<dyn Settle>) -> Self {
        Self {
            envelope,
            attempt,
            settle: Some(settle),
        }
    }

    /// The envelope delivered.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// 1 for the first delivery, 2 for the first redelivery, and so on.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Acknowledges: the subscriber has it for good.
    pub async fn ack(mut self) -> Result<(), BackendError> {
        self.take_settle().ack().await
    }

    /// Asks for redelivery after `delay` (or dead-lettering at the limit).
    pub async fn nack(mut self, delay: Duration) -> Result<(), BackendError> {
        self.take_settle().nack(delay).await
    }

    /// Sends it to the dead letters with a reason an operator will read.
    pub async fn reject(mut self, reason: impl Into<String>) -> Result<(), BackendError> {
        self.take_settle().reject(reason.into()).await
    }

    fn take_settle(&mut self) -> Box<dyn Settle> {
        self.settle
            .take()
            .expect("a Delivery is settled only once: its settling methods take it by value")
    }
}

impl Drop for Delivery {
    fn drop(&mut self) {
        if let Some(settle) = self.settle.take() {
            settle.release();
        }
    }
}

impl fmt::Debug for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("envelope_id", &self.envelope.id)
            .field("list_id", &self.envelope.list_id)
            .field("attempt", &self.attempt)
            .finish()
    }
}
