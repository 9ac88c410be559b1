//! The conformance harness of the facade: each scenario's namespace is a
//! URL and options, as a user configures a deployment, and every client
//! comes from `connect_publisher` / `connect_subscriber`.

use std::sync::Mutex;

use archiver_core::conformance::Harness;
use async_trait::async_trait;
use mq_archiver::{PublisherClient, SubscriberClient};
use tokio::sync::OnceCell;

/// A unique name for one scenario's broker, prefix or subscribers.
fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::now_v7().simple())
}

/// A client whose broker state `purge` removes after the scenario.
enum Opened {
    Publisher(PublisherClient),
    Subscriber(SubscriberClient),
}

/// One scenario's namespace behind a URL and its options.
pub struct UrlHarness {
    url: String,
    /// The URL with any password replaced, for failure messages.
    shown: String,
    options: Vec<(&'static str, String)>,
    /// ZeroMQ: the list server is one hub, bound at first use; archive
    /// servers connect to the endpoints it bound.
    hub: Option<OnceCell<PublisherClient>>,
    /// Every Redis or RabbitMQ client opened, purged by `cleanup` (a
    /// RabbitMQ client purges what it declared).
    opened: Mutex<Vec<Opened>>,
    /// The hub's journal and ipc sockets.
    _dir: Option<tempfile::TempDir>,
}

impl UrlHarness {
    fn new(url: String, options: Vec<(&'static str, String)>) -> Self {
        let shown = mq_archiver::Config::parse(&url, mq_archiver::NO_OPTIONS)
            .map(|config| config.redacted_url())
            .unwrap_or_else(|e| panic!("a URL the facade takes: {e}"));
        Self {
            url,
            shown,
            options,
            hub: None,
            opened: Mutex::default(),
            _dir: None,
        }
    }

    /// A fresh in-process broker: `memory:` with a name of its own.
    pub fn memory() -> Self {
        Self::new(format!("memory:{}", unique("conformance")), Vec::new())
    }

    /// The Redis of `ARCHIVER_REDIS_URL` (default 127.0.0.1:6379) under a
    /// fresh prefix, with short timers so abandoned deliveries come back
    /// within the suite's deadlines.
    pub fn redis() -> Self {
        let url =
            std::env::var("ARCHIVER_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
        Self::new(
            url,
            vec![
                ("prefix", unique("archiver-test")),
                ("claim-idle", "2s".into()),
                ("poll-interval", "50ms".into()),
            ],
        )
    }

    /// The RabbitMQ of `ARCHIVER_AMQP_URL` (default guest@127.0.0.1:5672)
    /// under a fresh prefix, with queues of `queue_type` (`quorum` or
    /// `classic`).
    pub fn rabbitmq(queue_type: &str) -> Self {
        let url = std::env::var("ARCHIVER_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
        Self::new(
            url,
            vec![
                ("prefix", unique("archiver-test")),
                ("queue-type", queue_type.into()),
            ],
        )
    }

    /// A ZeroMQ hub on loopback TCP, ports picked by the system, with a
    /// live tail.
    pub fn zeromq_tcp() -> Self {
        Self::zeromq(|_| ("tcp://127.0.0.1:*".into(), "tcp://127.0.0.1:*".into()))
    }

    /// A ZeroMQ hub on ipc sockets in its temporary directory, with a live
    /// tail.
    pub fn zeromq_ipc() -> Self {
        Self::zeromq(|dir| {
            let socket = |name: &str| format!("ipc://{}", dir.join(name).display());
            (socket("hub.sock"), socket("tail.sock"))
        })
    }

    /// A hub whose journal is in a fresh temporary directory, on the
    /// endpoint and tail that `endpoints` gives for that directory.
    fn zeromq(endpoints: impl FnOnce(&std::path::Path) -> (String, String)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (url, tail) = endpoints(dir.path());
        let hub_dir = dir.path().join("hub").display().to_string();
        Self {
            hub: Some(OnceCell::new()),
            _dir: Some(dir),
            ..Self::new(
                url,
                vec![
                    ("hub-dir", hub_dir),
                    ("tail", tail),
                    ("anonymous", "true".into()),
                ],
            )
        }
    }

    /// The ZeroMQ hub, bound at first use.
    async fn hub(&self, cell: &OnceCell<PublisherClient>) -> PublisherClient {
        cell.get_or_init(|| async {
            mq_archiver::connect_publisher(&self.url, self.options.iter().cloned())
                .await
                .unwrap_or_else(|e| panic!("the hub binds {}: {e}", self.shown))
        })
        .await
        .clone()
    }

    fn remember(&self, client: Opened) {
        self.opened.lock().unwrap().push(client);
    }
}

#[async_trait]
impl Harness for UrlHarness {
    type Publisher = PublisherClient;
    type Subscriber = SubscriberClient;

    async fn publisher(&self) -> PublisherClient {
        if let Some(cell) = &self.hub {
            return self.hub(cell).await;
        }
        let client = mq_archiver::connect_publisher(&self.url, self.options.iter().cloned())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the broker must be running at {} (scripts/test starts it): {e}",
                    self.shown
                )
            });
        self.remember(Opened::Publisher(client.clone()));
        client
    }

    async fn subscriber(&self) -> SubscriberClient {
        if let Some(cell) = &self.hub {
            let publisher = self.hub(cell).await;
            let hub = publisher.hub_handle().expect("a ZeroMQ URL binds a hub");
            let mut options = vec![];
            if let Some(tail) = hub.tail_endpoint() {
                options.push(("tail", tail.to_owned()));
            }
            return mq_archiver::connect_subscriber(hub.endpoint(), options)
                .await
                .unwrap_or_else(|e| panic!("connect to the hub at {}: {e}", hub.endpoint()));
        }
        let client = mq_archiver::connect_subscriber(&self.url, self.options.iter().cloned())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "the broker must be running at {} (scripts/test starts it): {e}",
                    self.shown
                )
            });
        self.remember(Opened::Subscriber(client.clone()));
        client
    }

    async fn cleanup(&self) {
        let opened = std::mem::take(&mut *self.opened.lock().unwrap());
        for client in opened {
            let purged = match client {
                Opened::Publisher(client) => client.purge().await,
                Opened::Subscriber(client) => client.purge().await,
            };
            purged.expect("purge what the scenario left on the broker");
        }
    }
}
