//! What the RabbitMQ tests share: a harness on the broker of
//! `ARCHIVER_AMQP_URL` (default guest@127.0.0.1:5672) under a unique prefix.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use archiver_core::conformance::Harness;
use archiver_core::conformance::server::{Broker, BrokerProcess, spare_port};
use async_trait::async_trait;
use backend_rabbitmq::{RabbitBackend, RabbitConfig};

/// One scenario's namespace: a fresh exchange and queue prefix. Every
/// client it opens is remembered so clean-up deletes what they declared.
pub struct RabbitHarness {
    pub config: RabbitConfig,
    clients: Mutex<Vec<RabbitBackend>>,
}

impl RabbitHarness {
    pub fn new() -> Self {
        Self::on(RabbitConfig::from_env())
    }

    pub fn on(config: RabbitConfig) -> Self {
        Self {
            config: config.prefix(
                archiver_core::Prefix::new(&format!(
                    "archiver-test-{}",
                    uuid::Uuid::now_v7().simple()
                ))
                .expect("a valid prefix"),
            ),
            clients: Mutex::default(),
        }
    }
}

impl RabbitHarness {
    /// A new client of this namespace, of every role.
    pub async fn connect(&self) -> RabbitBackend {
        let client = RabbitBackend::connect(self.config.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "RabbitMQ must be running at {} (scripts/test starts it): {e}",
                    self.config.redacted_url()
                )
            });
        self.clients.lock().unwrap().push(client.clone());
        client
    }
}

#[async_trait]
impl Harness for RabbitHarness {
    type Publisher = RabbitBackend;
    type Subscriber = RabbitBackend;

    async fn publisher(&self) -> RabbitBackend {
        self.connect().await
    }

    async fn subscriber(&self) -> RabbitBackend {
        self.connect().await
    }

    async fn cleanup(&self) {
        let clients = std::mem::take(&mut *self.clients.lock().unwrap());
        for client in clients {
            client
                .purge()
                .await
                .expect("purge what the scenario declared");
        }
    }
}

/// How a RabbitMQ node of a test's own is launched: its own node name,
/// ports and data directory, with `config` added to its rabbitmq.conf and
/// `advanced` as its advanced.config (Erlang terms, for settings
/// rabbitmq.conf lacks).
pub struct RabbitLaunch {
    config: String,
    advanced: String,
    dist_port: u16,
}

impl Broker for RabbitLaunch {
    const PROGRAM: &'static str = "rabbitmq-server";
    const STARTUP: Duration = Duration::from_secs(120);

    fn prepare(&self, port: u16, dir: &Path) {
        let path = |name: &str| dir.join(name);
        std::fs::create_dir_all(path("mnesia")).unwrap();
        std::fs::create_dir_all(path("log")).unwrap();
        std::fs::write(path("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            path("rabbitmq.conf"),
            format!("listeners.tcp.default = {port}\n{}", self.config),
        )
        .unwrap();
        std::fs::write(path("advanced.config"), format!("{}\n", self.advanced)).unwrap();
        // Debian's rabbitmq-server runs the node as the rabbitmq user.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir)
            .status();
    }

    fn command(&self, port: u16, dir: &Path) -> Command {
        let path = |name: &str| dir.join(name);
        let mut command = Command::new("rabbitmq-server");
        command
            .env("RABBITMQ_NODENAME", node_name(port))
            .env("RABBITMQ_NODE_PORT", port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"));
        command
    }

    /// The wrapper runs the node as another process, which writes this.
    fn pid_file(&self, dir: &Path) -> Option<PathBuf> {
        Some(dir.join("pid"))
    }
}

/// The Erlang node name of the node on `port`.
fn node_name(port: u16) -> String {
    format!("archiver-test-{port}@localhost")
}

/// A RabbitMQ node this test starts itself, stopped by the pid it writes
/// (never another node).
pub struct RabbitNode(BrokerProcess<RabbitLaunch>);

impl RabbitNode {
    /// Starts a node; `config` is added to its rabbitmq.conf.
    pub fn start(config: &str) -> Self {
        Self::start_advanced(config, "[].")
    }

    /// Starts a node with `config` added to its rabbitmq.conf and
    /// `advanced` as its advanced.config.
    pub fn start_advanced(config: &str, advanced: &str) -> Self {
        Self(BrokerProcess::start(RabbitLaunch {
            config: config.to_owned(),
            advanced: advanced.to_owned(),
            dist_port: spare_port(),
        }))
    }

    /// Runs `rabbitmqctl` against this node (never another); panics unless
    /// it succeeds.
    pub fn ctl(&self, args: &[&str]) {
        let node = node_name(self.port);
        let status = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&node)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {args:?} on {node} failed");
    }
}

impl Deref for RabbitNode {
    type Target = BrokerProcess<RabbitLaunch>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for RabbitNode {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
