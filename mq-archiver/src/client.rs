//! The clients a URL gives, one type per role, so code that takes a URL is
//! written once: [`PublisherClient`] for the list server, and
//! [`SubscriberClient`] for an archive server and its operator.

use std::sync::Arc;

use archiver_core::{
    BackendError, Connection, DeadLetter, Deliveries, Envelope, Operator, Publisher,
    PublisherCapabilities, Replay, Selection, Subscriber, SubscriberCapabilities, SubscriberName,
    Subscription, Tail,
};
use async_trait::async_trait;

/// A list server's client of the backend a URL named, from
/// [`connect_publisher`](crate::connect_publisher): it publishes
/// ([`Publisher`]) through the backend's own client (for ZeroMQ, the hub it
/// binds), held as an `Arc<dyn Publisher>`. Clones share the connection.
#[derive(Clone)]
pub struct PublisherClient {
    publisher: Arc<dyn Publisher>,
    extra: Extra,
}

/// An archive server's client of the backend a URL named, from
/// [`connect_subscriber`](crate::connect_subscriber): it subscribes and
/// tails ([`Subscriber`]), and is the operator's client too ([`Operator`]:
/// dead letters, unsubscribe), since those act on what archive servers
/// consume. It delegates to the backend's own client. Clones share the
/// connection.
#[derive(Clone)]
pub struct SubscriberClient {
    archive: Arc<dyn ArchiveSide>,
    extra: Extra,
}

/// The archive server's and operator's roles as one trait object, so one
/// backend client serves both.
trait ArchiveSide: Subscriber + Operator {}

impl<T: Subscriber + Operator> ArchiveSide for T {}

/// The backend-specific handles kept next to the trait object, for what
/// only one backend offers.
#[derive(Clone)]
enum Extra {
    None,
    /// A ZeroMQ list server: the hub it binds.
    #[cfg(feature = "zeromq")]
    Hub(backend_zeromq::ZmqHub),
    #[cfg(feature = "redis")]
    Redis(backend_redis::RedisBackend),
    #[cfg(feature = "rabbitmq")]
    Rabbitmq(backend_rabbitmq::RabbitBackend),
}

impl Extra {
    /// Purges a Redis or RabbitMQ deployment; nothing for the others.
    async fn purge(&self) -> Result<usize, BackendError> {
        match self {
            #[cfg(feature = "redis")]
            Extra::Redis(client) => client.purge().await,
            #[cfg(feature = "rabbitmq")]
            Extra::Rabbitmq(client) => client.purge().await,
            _ => Ok(0),
        }
    }
}

impl PublisherClient {
    /// A client of the in-memory backend.
    pub(crate) fn memory(client: archiver_core::MemoryBackend) -> Self {
        Self {
            publisher: Arc::new(client),
            extra: Extra::None,
        }
    }

    /// A Redis client.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(client: backend_redis::RedisBackend) -> Self {
        Self {
            publisher: Arc::new(client.clone()),
            extra: Extra::Redis(client),
        }
    }

    /// A RabbitMQ client.
    #[cfg(feature = "rabbitmq")]
    pub(crate) fn rabbitmq(client: backend_rabbitmq::RabbitBackend) -> Self {
        Self {
            publisher: Arc::new(client.clone()),
            extra: Extra::Rabbitmq(client),
        }
    }

    /// A ZeroMQ list server: the hub publishes.
    #[cfg(feature = "zeromq")]
    pub(crate) fn hub(hub: backend_zeromq::ZmqHub) -> Self {
        Self {
            publisher: Arc::new(hub.clone()),
            extra: Extra::Hub(hub),
        }
    }

    /// The ZeroMQ hub this list server binds (its status, its bound
    /// endpoint when the URL asked for any free port), else `None`.
    #[cfg(feature = "zeromq")]
    pub fn hub_handle(&self) -> Option<&backend_zeromq::ZmqHub> {
        match &self.extra {
            Extra::Hub(hub) => Some(hub),
            _ => None,
        }
    }

    /// Deletes every key, queue and exchange this deployment (its prefix)
    /// left on a Redis or RabbitMQ broker, for tests and throw-away runs;
    /// nothing for the other backends. Returns how many were deleted.
    pub async fn purge(&self) -> Result<usize, BackendError> {
        self.extra.purge().await
    }
}

impl SubscriberClient {
    /// A client of the in-memory backend.
    pub(crate) fn memory(client: archiver_core::MemoryBackend) -> Self {
        Self {
            archive: Arc::new(client),
            extra: Extra::None,
        }
    }

    /// A Redis client.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(client: backend_redis::RedisBackend) -> Self {
        Self {
            archive: Arc::new(client.clone()),
            extra: Extra::Redis(client),
        }
    }

    /// A RabbitMQ client.
    #[cfg(feature = "rabbitmq")]
    pub(crate) fn rabbitmq(client: backend_rabbitmq::RabbitBackend) -> Self {
        Self {
            archive: Arc::new(client.clone()),
            extra: Extra::Rabbitmq(client),
        }
    }

    /// A ZeroMQ archive server's client of a hub.
    #[cfg(feature = "zeromq")]
    pub(crate) fn zeromq(client: backend_zeromq::ZmqClient) -> Self {
        Self {
            archive: Arc::new(client),
            extra: Extra::None,
        }
    }

    /// The Redis client of a Redis URL, else `None`: for what only Redis
    /// offers (trimming what every subscriber acknowledged, now, as the
    /// operator's tool's `trim` does).
    #[cfg(feature = "redis")]
    pub fn redis_handle(&self) -> Option<&backend_redis::RedisBackend> {
        match &self.extra {
            Extra::Redis(client) => Some(client),
            _ => None,
        }
    }

    /// Deletes every key, queue and exchange this deployment (its prefix)
    /// left on a Redis or RabbitMQ broker, for tests and throw-away runs;
    /// nothing for the other backends. Returns how many were deleted.
    pub async fn purge(&self) -> Result<usize, BackendError> {
        self.extra.purge().await
    }
}

impl std::fmt::Debug for PublisherClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublisherClient")
            .field("capabilities", &self.publisher.publisher_capabilities())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for SubscriberClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberClient")
            .field("capabilities", &self.archive.subscriber_capabilities())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Connection for PublisherClient {
    /// Closes the client; for ZeroMQ, the hub, which stops serving.
    async fn close(&self) -> Result<(), BackendError> {
        self.publisher.close().await
    }
}

#[async_trait]
impl Publisher for PublisherClient {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        self.publisher.publisher_capabilities()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        self.publisher.publish(envelope).await
    }
}

#[async_trait]
impl Connection for SubscriberClient {
    async fn close(&self) -> Result<(), BackendError> {
        self.archive.close().await
    }
}

#[async_trait]
impl Subscriber for SubscriberClient {
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        self.archive.subscriber_capabilities()
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        self.archive.subscribe(subscription).await
    }

    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        self.archive.tail(selection).await
    }
}

#[async_trait]
impl Operator for SubscriberClient {
    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        self.archive.dead_letters(name).await
    }

    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError> {
        self.archive.purge_dead_letters(name).await
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        self.archive.replay_dead_letters(name, which).await
    }

    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        self.archive.unsubscribe(name).await
    }
}
