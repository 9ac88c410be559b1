//! [`Client`]: one type for a client of any backend, so code that takes a
//! URL is written once.

use std::sync::Arc;

use archiver_core::{
    Backend, BackendError, Capabilities, DeadLetter, DeadLetters, Deliveries, Envelope, LiveTail,
    Publisher, Replay, Selection, Subscriber, SubscriberName, Subscription, Tail,
};
use async_trait::async_trait;

/// A connected client of the backend a URL named, from
/// [`connect_publisher`](crate::connect_publisher) or
/// [`connect_subscriber`](crate::connect_subscriber). It implements
/// [`Backend`] (so [`Publisher`], [`Subscriber`], [`DeadLetters`],
/// [`LiveTail`]) by delegating to the backend's own client, held as an
/// `Arc<dyn Backend>`. Clones share the connection.
#[derive(Clone)]
pub struct Client {
    /// The backend's client: everything but a hub's publishing goes here.
    backend: Arc<dyn Backend>,
    /// What only this kind of client can do besides.
    extra: Extra,
}

/// The backend-specific handles kept next to the trait object.
#[derive(Clone)]
enum Extra {
    None,
    /// A ZeroMQ list server: the hub it binds (publishes go straight to it;
    /// `close` closes it).
    #[cfg(feature = "zeromq")]
    Hub(backend_zeromq::ZmqHub),
    #[cfg(feature = "redis")]
    Redis(backend_redis::RedisBackend),
    #[cfg(feature = "rabbitmq")]
    Rabbitmq(backend_rabbitmq::RabbitBackend),
}

impl Client {
    /// A client of the in-memory backend.
    pub(crate) fn memory(client: archiver_core::MemoryBackend) -> Self {
        Self {
            backend: Arc::new(client),
            extra: Extra::None,
        }
    }

    /// A Redis client.
    #[cfg(feature = "redis")]
    pub(crate) fn redis(client: backend_redis::RedisBackend) -> Self {
        Self {
            backend: Arc::new(client.clone()),
            extra: Extra::Redis(client),
        }
    }

    /// A RabbitMQ client.
    #[cfg(feature = "rabbitmq")]
    pub(crate) fn rabbitmq(client: backend_rabbitmq::RabbitBackend) -> Self {
        Self {
            backend: Arc::new(client.clone()),
            extra: Extra::Rabbitmq(client),
        }
    }

    /// A ZeroMQ list server: the hub, and its own client for the rest.
    #[cfg(feature = "zeromq")]
    pub(crate) fn hub(hub: backend_zeromq::ZmqHub) -> Self {
        Self {
            backend: Arc::new(hub.client()),
            extra: Extra::Hub(hub),
        }
    }

    /// A ZeroMQ archive server's client.
    #[cfg(feature = "zeromq")]
    pub(crate) fn zeromq(client: backend_zeromq::ZmqClient) -> Self {
        Self {
            backend: Arc::new(client),
            extra: Extra::None,
        }
    }

    /// The client as the trait object it delegates to.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
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
        match &self.extra {
            #[cfg(feature = "redis")]
            Extra::Redis(client) => client.purge().await,
            #[cfg(feature = "rabbitmq")]
            Extra::Rabbitmq(client) => client.purge().await,
            _ => Ok(0),
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("capabilities", &self.backend.capabilities())
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Publisher for Client {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        self.backend.publish(envelope).await
    }
}

#[async_trait]
impl Subscriber for Client {
    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        self.backend.subscribe(subscription).await
    }

    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        self.backend.unsubscribe(name).await
    }
}

#[async_trait]
impl DeadLetters for Client {
    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        self.backend.dead_letters(name).await
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        self.backend.replay_dead_letters(name, which).await
    }
}

#[async_trait]
impl LiveTail for Client {
    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        self.backend.tail(selection).await
    }
}

#[async_trait]
impl Backend for Client {
    fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// Closes the client, and a list server's hub after it.
    async fn close(&self) -> Result<(), BackendError> {
        let closed = self.backend.close().await;
        match &self.extra {
            #[cfg(feature = "zeromq")]
            Extra::Hub(hub) => hub.close().await.and(closed),
            _ => closed,
        }
    }
}
