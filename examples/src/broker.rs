//! Which backend the examples run on, chosen on the command line, and how
//! they open clients of it: each archive server and the list server gets its
//! own client, as separate processes would.

use std::sync::Arc;

use archiver_core::{Backend, BackendError, MemoryBackend};
use backend_rabbitmq::{RabbitBackend, RabbitConfig};
use backend_redis::{RedisBackend, RedisConfig};
use backend_zeromq::{ClientConfig, Credentials, HubConfig, ZmqClient, ZmqHub};

/// The backends the examples can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// In this process; needs no broker.
    Memory,
    /// Redis Streams at `--url` (default `$ARCHIVER_REDIS_URL`, else
    /// redis://127.0.0.1:6379).
    Redis,
    /// RabbitMQ at `--url` (default `$ARCHIVER_AMQP_URL`, else
    /// amqp://guest:guest@127.0.0.1:5672/%2f).
    Rabbitmq,
    /// ZeroMQ, no broker: the list server binds `--url` (default
    /// tcp://127.0.0.1:5555) and keeps the queues in its hub directory.
    Zeromq,
}

/// Where a ZeroMQ hub listens unless `--url` says otherwise.
pub const DEFAULT_ZMQ_ENDPOINT: &str = "tcp://127.0.0.1:5555";

/// ZAP PLAIN credentials for the ZeroMQ hub and its clients, from
/// `ARCHIVER_ZMQ_USER` and `ARCHIVER_ZMQ_PASSWORD` when both are set (the
/// environment, not the command line, which any local user can read).
pub fn zmq_credentials_from_env() -> Option<Credentials> {
    let user = std::env::var("ARCHIVER_ZMQ_USER").ok()?;
    let password = std::env::var("ARCHIVER_ZMQ_PASSWORD").ok()?;
    Some(Credentials::new(user, password))
}

/// A backend to open clients of.
pub enum Broker {
    /// One in-process broker shared by all clients.
    Memory(MemoryBackend),
    /// A Redis deployment (URL and key prefix).
    Redis(RedisConfig),
    /// A RabbitMQ deployment; its clients are kept to purge what they
    /// declared.
    Rabbitmq(RabbitConfig, std::sync::Mutex<Vec<RabbitBackend>>),
    /// A ZeroMQ hub this process runs (list server and archive servers
    /// in one process), or the endpoint of one another process runs.
    Zeromq(ZmqTarget),
}

/// The two ends of the ZeroMQ backend.
pub enum ZmqTarget {
    /// This process is the list server: its hub.
    Hub(ZmqHub),
    /// This process is an archive server: how it reaches the hub.
    Remote(ClientConfig),
}

impl Broker {
    /// The broker for a choice; `url` overrides the backend's default and
    /// `prefix` names the deployment's keys.
    pub fn new(kind: BackendKind, url: Option<String>, prefix: &str) -> Self {
        match kind {
            BackendKind::Zeromq => {
                let endpoint = url.unwrap_or_else(|| DEFAULT_ZMQ_ENDPOINT.to_owned());
                let mut config = ClientConfig::new(endpoint)
                    .connect_timeout(std::time::Duration::from_secs(120));
                if let Some(credentials) = zmq_credentials_from_env() {
                    config = config.credentials(credentials);
                }
                Self::Zeromq(ZmqTarget::Remote(config))
            }
            BackendKind::Memory => Self::Memory(MemoryBackend::new()),
            BackendKind::Redis => {
                let config = url.map_or_else(RedisConfig::from_env, RedisConfig::new);
                Self::Redis(config.prefix(prefix))
            }
            BackendKind::Rabbitmq => {
                let config = url.map_or_else(RabbitConfig::from_env, RabbitConfig::new);
                Self::Rabbitmq(config.prefix(prefix), std::sync::Mutex::default())
            }
        }
    }

    /// A new client.
    pub async fn client(&self) -> Result<Arc<dyn Backend>, BackendError> {
        Ok(match self {
            Self::Memory(broker) => Arc::new(broker.connect()),
            Self::Redis(config) => Arc::new(RedisBackend::connect(config.clone()).await?),
            Self::Zeromq(ZmqTarget::Hub(hub)) => Arc::new(hub.client()),
            Self::Zeromq(ZmqTarget::Remote(config)) => {
                Arc::new(ZmqClient::connect(config.clone())?)
            }
            Self::Rabbitmq(config, clients) => {
                let client = RabbitBackend::connect(config.clone()).await?;
                clients
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(client.clone());
                Arc::new(client)
            }
        })
    }

    /// A ZeroMQ hub bound at `endpoint` with its queues in `dir`: this
    /// process is the list server.
    pub fn zeromq_hub(endpoint: &str, dir: &std::path::Path) -> Result<Self, BackendError> {
        Ok(Self::Zeromq(ZmqTarget::Hub(ZmqHub::bind(HubConfig::new(
            endpoint, dir,
        ))?)))
    }

    /// Deletes everything this deployment left on the broker (for ZeroMQ:
    /// closes the hub; its directory stays for the next run).
    pub async fn purge(&self) -> Result<(), BackendError> {
        match self {
            Self::Memory(_) | Self::Zeromq(ZmqTarget::Remote(_)) => {}
            Self::Zeromq(ZmqTarget::Hub(hub)) => hub.close().await?,
            Self::Redis(config) => {
                RedisBackend::connect(config.clone()).await?.purge().await?;
            }
            Self::Rabbitmq(_, clients) => {
                let clients =
                    std::mem::take(&mut *clients.lock().unwrap_or_else(|p| p.into_inner()));
                for client in clients {
                    client.purge().await?;
                }
            }
        }
        Ok(())
    }
}
