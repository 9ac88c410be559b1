//! Which backend the examples run on, chosen on the command line, and how
//! they open clients of it: each archive server and the list server gets its
//! own client, as separate processes would.

use std::sync::Arc;

use archiver_core::{Backend, BackendError, MemoryBackend};
use backend_redis::{RedisBackend, RedisConfig};

/// The backends the examples can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// In this process; needs no broker.
    Memory,
    /// Redis Streams at `--url` (default `$ARCHIVER_REDIS_URL`, else
    /// redis://127.0.0.1:6379).
    Redis,
}

/// A backend to open clients of.
pub enum Broker {
    /// One in-process broker shared by all clients.
    Memory(MemoryBackend),
    /// A Redis deployment (URL and key prefix).
    Redis(RedisConfig),
}

impl Broker {
    /// The broker for a choice; `url` overrides the backend's default and
    /// `prefix` names the deployment's keys.
    pub fn new(kind: BackendKind, url: Option<String>, prefix: &str) -> Self {
        match kind {
            BackendKind::Memory => Self::Memory(MemoryBackend::new()),
            BackendKind::Redis => {
                let config = url.map_or_else(RedisConfig::from_env, RedisConfig::new);
                Self::Redis(config.prefix(prefix))
            }
        }
    }

    /// A new client.
    pub async fn client(&self) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(match self {
            Self::Memory(broker) => Arc::new(broker.connect()),
            Self::Redis(config) => Arc::new(RedisBackend::connect(config.clone()).await?),
        })
    }

    /// Deletes everything this deployment left on the broker.
    pub async fn purge(&self) -> Result<(), BackendError> {
        if let Self::Redis(config) = self {
            RedisBackend::connect(config.clone()).await?.purge().await?;
        }
        Ok(())
    }
}
