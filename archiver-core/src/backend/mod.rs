//! The message patterns every backend implements, as one trait per role
//! (who calls them), on a common [`Connection`]; [`Backend`] is a client of
//! every role.
//!
//! | role | trait | patterns |
//! |---|---|---|
//! | list server | [`Publisher`] | durable publish |
//! | archive server | [`Subscriber`] | durable named subscription, fan-out, competing consumers, routing, acks; transient live tail |
//! | operator | [`Operator`] | dead letters: list, replay and purge; unsubscribe |
//!
//! Symmetric brokers (Redis, RabbitMQ, the in-memory backend) give one
//! client of every role. ZeroMQ has no broker: the list server's hub is its
//! [`Publisher`], and the archive servers' client is [`Subscriber`] and
//! [`Operator`].

mod capabilities;
mod close_flag;
mod dead_letter;
mod delivery;
mod endpoint;
mod error;
mod lazy;
mod prefix;
mod redact;
mod subscription;

use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;

pub use capabilities::{PublisherCapabilities, SubscriberCapabilities};
pub use close_flag::CloseFlag;
pub use dead_letter::{DeadLetter, RawDeadLetter, Replay, malformed_reason};
pub use delivery::{Delivery, Settle, attempt_limit_reached};
pub use endpoint::{check_url, read_ca_file};
pub use error::{BackendError, ErrorDetail};
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

/// What a client of any role has. Each role's trait builds on it, so a
/// client that plays several roles (a Redis or RabbitMQ client, the
/// in-memory backend) is closed once.
#[async_trait]
pub trait Connection: Send + Sync {
    /// Closes this client: later calls fail with [`BackendError::Closed`],
    /// its streams end, and unsettled deliveries go back for redelivery.
    async fn close(&self) -> Result<(), BackendError>;
}

/// The list server's side: durable publish.
#[async_trait]
pub trait Publisher: Connection {
    /// What publishing through this client guarantees. (Each role's
    /// capabilities have their own method name, so a client of every role
    /// has no ambiguous `capabilities`.)
    fn publisher_capabilities(&self) -> PublisherCapabilities;

    /// Hands the envelope to the backend. Returns Ok only once the backend
    /// holds it durably as its
    /// [`PublisherCapabilities::publish_durability`] says; on an error
    /// nothing was taken and the caller may retry.
    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError>;
}

/// The archive server's side: durable named subscriptions (fan-out between
/// names, competing consumers within a name, routing by [`Selection`],
/// acks, redelivery) and the live tail that keeps nothing.
#[async_trait]
pub trait Subscriber: Connection {
    /// What subscriptions of this client guarantee.
    fn subscriber_capabilities(&self) -> SubscriberCapabilities;

    /// Creates the subscriber's queue if needed (so that from now on it keeps
    /// what it selects while nobody consumes) and starts consuming it.
    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError>;

    /// Envelopes published from now on while the stream is held: returns
    /// only once attached, so whatever is published after it returns is
    /// seen. A tail that falls behind loses envelopes rather than making
    /// anything grow.
    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError>;
}

/// The operator's actions on durable subscribers: what is done by hand
/// (look at and replay dead letters, retire an archive server), not by the
/// archive server's consuming loop.
#[async_trait]
pub trait Operator: Connection {
    /// The subscriber's dead letters, oldest first.
    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError>;

    /// Puts dead letters back into the subscriber's queue, attempts reset;
    /// returns how many.
    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError>;

    /// Deletes every dead letter of the subscriber (malformed ones too),
    /// for those an operator looked at and does not want back; the queue
    /// is untouched. Returns how many were deleted.
    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError>;

    /// Deletes the subscriber's queue and dead letters: for an archive
    /// server that is retired. What was in them is gone.
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError>;
}

/// A client of every role, as a symmetric broker's client is (Redis,
/// RabbitMQ, the in-memory backend): what code that plays list server,
/// archive server and operator in one process takes. Implemented for
/// every type that has the three roles.
pub trait Backend: Publisher + Subscriber + Operator + 'static {}

impl<T: Publisher + Subscriber + Operator + 'static> Backend for T {}

#[async_trait]
impl<T: Connection + ?Sized> Connection for Arc<T> {
    async fn close(&self) -> Result<(), BackendError> {
        (**self).close().await
    }
}

#[async_trait]
impl<T: Publisher + ?Sized> Publisher for Arc<T> {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        (**self).publisher_capabilities()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        (**self).publish(envelope).await
    }
}

#[async_trait]
impl<T: Subscriber + ?Sized> Subscriber for Arc<T> {
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        (**self).subscriber_capabilities()
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        (**self).subscribe(subscription).await
    }

    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        (**self).tail(selection).await
    }
}
