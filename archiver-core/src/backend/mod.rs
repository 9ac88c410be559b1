//! The message patterns every backend implements, one trait each, and the
//! [`Backend`] that bundles them.
//!
//! | pattern | trait |
//! |---|---|
//! | durable publish | [`Publisher`] |
//! | durable named subscription, fan-out, competing consumers, routing, acks | [`Subscriber`] |
//! | dead letters: list and replay | [`DeadLetters`] |
//! | transient live tail | [`LiveTail`] |

mod capabilities;
mod close_flag;
mod dead_letter;
mod delivery;
mod error;
mod lazy;
mod prefix;
mod redact;
mod subscription;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use capabilities::Capabilities;
pub use close_flag::CloseFlag;
pub use dead_letter::{DeadLetter, RawDeadLetter, Replay, malformed_reason};
pub use delivery::{Delivery, Settle, attempt_limit_reached};
pub use error::BackendError;
pub use lazy::LazyPublisher;
pub use prefix::{DEFAULT_PREFIX, InvalidPrefix, Prefix};
pub use redact::redact_url;
pub use subscription::{
    DEFAULT_MAX_ATTEMPTS, DEFAULT_PREFETCH, InvalidSubscriberName, StartPosition, SubscriberName,
    Subscription,
};

use crate::envelope::Envelope;
use crate::selection::Selection;

/// Deliveries of a durable subscription, in the order the backend hands
/// them out. An `Err` item reports a problem the backend recovered from
/// (the broker was lost and reconnected, the broker lost data, a malformed
/// message was dead-lettered) and the stream goes on; it ends when the
/// client is closed or the subscription deleted.
pub type Deliveries = BoxStream<'static, Result<Delivery, BackendError>>;

/// Envelopes of a live tail; nothing is kept for it while it is not polled
/// past the backend's small buffer.
pub type Tail = BoxStream<'static, Result<Envelope, BackendError>>;

/// Durable publish.
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Hands the envelope to the backend. Returns Ok only once the backend
    /// holds it durably as its [`Capabilities::publish_durability`] says; on
    /// an error nothing was taken and the caller may retry.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError>;
}

/// Durable named subscriptions: fan-out between names, competing consumers
/// within a name, routing by [`Selection`], acks, redelivery.
#[async_trait]
pub trait Subscriber: Send + Sync {
    /// Creates the subscriber's queue if needed (so that from now on it keeps
    /// what it selects while nobody consumes) and starts consuming it.
    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError>;

    /// Deletes the subscriber's queue and dead letters: for an archive server
    /// that is retired. What was in them is gone.
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError>;
}

/// Dead letters of durable subscribers.
#[async_trait]
pub trait DeadLetters: Send + Sync {
    /// The subscriber's dead letters, oldest first.
    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError>;

    /// Puts dead letters back into the subscriber's queue, attempts reset;
    /// returns how many.
    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError>;
}

/// Transient pub/sub: a live tail that keeps nothing.
#[async_trait]
pub trait LiveTail: Send + Sync {
    /// Envelopes published from now on while the stream is held: returns
    /// only once attached, so whatever is published after it returns is
    /// seen. A tail that falls behind loses envelopes rather than making
    /// anything grow.
    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError>;
}

/// A complete backend: every pattern, its capabilities, and close.
#[async_trait]
pub trait Backend: Publisher + Subscriber + DeadLetters + LiveTail + 'static {
    /// What this backend guarantees.
    fn capabilities(&self) -> Capabilities;

    /// Closes this client: later calls fail with [`BackendError::Closed`],
    /// its streams end, and unsettled deliveries go back for redelivery.
    async fn close(&self) -> Result<(), BackendError>;
}

#[async_trait]
impl<T: Publisher + ?Sized> Publisher for Arc<T> {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        (**self).publish(envelope).await
    }
}

#[async_trait]
impl<T: Subscriber + ?Sized> Subscriber for Arc<T> {
    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        (**self).subscribe(subscription).await
    }

    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        (**self).unsubscribe(name).await
    }
}
