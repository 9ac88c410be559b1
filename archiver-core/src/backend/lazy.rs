//! A publisher that connects on first use, so that a list server can start
//! while the broker is down and spool until it is back.

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use tokio::sync::OnceCell;

use super::{BackendError, Connection, Publisher, PublisherCapabilities};
use crate::envelope::Envelope;

type Connect<P> =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = Result<P, BackendError>> + Send>> + Send + Sync>;

/// Wraps a backend's `connect`: each publish before the first successful
/// connect tries to connect (and fails like a publish to a broker that is
/// down); once connected, publishes go through that client, which does its
/// own reconnecting. Its capabilities are given, not asked of the client,
/// since they are read before it may have connected: those of the backend
/// `connect` reaches.
///
/// ```
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use archiver_core::{ArchiveUrls, LazyPublisher, MemoryBackend, Publisher, QueueArchiver};
/// let broker = MemoryBackend::new();
/// let publisher = LazyPublisher::new(broker.publisher_capabilities(), move || {
///     let broker = broker.clone();
///     async move { Ok(broker.connect()) } // e.g. RedisBackend::connect(config.clone())
/// });
/// let archiver = QueueArchiver::new("mq", publisher, ArchiveUrls::new("https://a.example.org/")?);
/// # Ok(()) }
/// ```
pub struct LazyPublisher<P> {
    capabilities: PublisherCapabilities,
    connect: Connect<P>,
    client: OnceCell<P>,
}

impl<P: Publisher> LazyPublisher<P> {
    /// A publisher that calls `connect` until it succeeds, with the
    /// capabilities of what it connects to.
    pub fn new<F, Fut>(capabilities: PublisherCapabilities, connect: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<P, BackendError>> + Send + 'static,
    {
        Self {
            capabilities,
            connect: Box::new(move || Box::pin(connect())),
            client: OnceCell::new(),
        }
    }

    /// The client, once connected.
    pub fn client(&self) -> Option<&P> {
        self.client.get()
    }
}

#[async_trait]
impl<P: Publisher> Connection for LazyPublisher<P> {
    /// Closes the client if it connected; one that never did has nothing
    /// to close.
    async fn close(&self) -> Result<(), BackendError> {
        match self.client.get() {
            Some(client) => client.close().await,
            None => Ok(()),
        }
    }
}

#[async_trait]
impl<P: Publisher> Publisher for LazyPublisher<P> {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        self.capabilities.clone()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        let client = self
            .client
            .get_or_try_init(|| (self.connect)())
            .await
            .inspect_err(|error| tracing::debug!(%error, "connecting the publisher failed"))?;
        client.publish(envelope).await
    }
}
