//! How the suite reaches a backend.

use async_trait::async_trait;

use crate::backend::{Operator, Publisher, Subscriber};

/// One isolated namespace of a backend (its own key prefix, vhost or
/// endpoint) for one scenario. The list server's client and the archive
/// servers' clients are asked for separately, since they need not be the
/// same type (ZeroMQ's list server is its hub).
#[async_trait]
pub trait Harness: Send + Sync {
    /// The list server's client.
    type Publisher: Publisher + 'static;
    /// An archive server's client, which an operator uses too.
    type Subscriber: Subscriber + Operator + 'static;

    /// The list server's client of this namespace. A symmetric broker gives
    /// a new client each time, as a separate process would open; a backend
    /// whose list server is one object (ZeroMQ's hub) may give that one.
    async fn publisher(&self) -> Self::Publisher;

    /// A new archive server's client of this namespace, as a separate
    /// process would open.
    async fn subscriber(&self) -> Self::Subscriber;

    /// Removes what the scenario left on the broker (keys, queues); called
    /// after every scenario, passed or failed (see [`run`](super::run)).
    async fn cleanup(&self) {}
}
