//! How the suite reaches a backend.

use async_trait::async_trait;

use crate::backend::Backend;
use crate::memory::MemoryBackend;

/// One isolated namespace of a backend (its own key prefix, vhost or
/// endpoint) for one scenario.
#[async_trait]
pub trait Harness: Send + Sync {
    /// The backend under test.
    type Backend: Backend;

    /// A new client of this namespace, as a separate process would open.
    async fn connect(&self) -> Self::Backend;

    /// Removes what the scenario left on the broker (keys, queues); called
    /// after every scenario, passed or failed (see [`run`](super::run)).
    async fn cleanup(&self) {}
}

/// The in-memory backend's harness: one broker per scenario.
#[derive(Default)]
pub struct MemoryHarness {
    broker: MemoryBackend,
}

impl MemoryHarness {
    /// A fresh broker.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Harness for MemoryHarness {
    type Backend = MemoryBackend;

    async fn connect(&self) -> MemoryBackend {
        self.broker.connect()
    }
}
