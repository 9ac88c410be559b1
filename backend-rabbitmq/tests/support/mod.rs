//! What the RabbitMQ tests share: a harness on the broker of
//! `ARCHIVER_AMQP_URL` (default guest@127.0.0.1:5672) under a unique prefix.

#![allow(dead_code)]

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
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

/// A RabbitMQ node this test starts itself, with its own node name, ports
/// and data directory, stopped by the pid it writes (never another node).
pub struct RabbitNode {
    pub port: u16,
    dist_port: u16,
    dir: tempfile::TempDir,
    /// The rabbitmq-server wrapper (the node runs under it as another user).
    wrapper: Option<std::process::Child>,
}

/// A port free right now on the loopback.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RabbitNode {
    /// Starts a node; `config` is added to its rabbitmq.conf.
    pub fn start(config: &str) -> Self {
        Self::start_advanced(config, "[].")
    }

    /// Starts a node with `config` added to its rabbitmq.conf and
    /// `advanced` as its advanced.config (Erlang terms, for settings
    /// rabbitmq.conf lacks).
    pub fn start_advanced(config: &str, advanced: &str) -> Self {
        let port = spare_port();
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        std::fs::create_dir_all(path("mnesia")).unwrap();
        std::fs::create_dir_all(path("log")).unwrap();
        std::fs::write(path("enabled_plugins"), "[].\n").unwrap();
        std::fs::write(
            path("rabbitmq.conf"),
            format!("listeners.tcp.default = {port}\n{config}"),
        )
        .unwrap();
        std::fs::write(path("advanced.config"), format!("{advanced}\n")).unwrap();
        // Debian's rabbitmq-server runs the node as the rabbitmq user.
        let _ = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir.path())
            .status();
        let mut node = Self {
            port,
            dist_port: spare_port(),
            dir,
            wrapper: None,
        };
        node.start_again();
        node
    }

    /// Starts the node (again, after [`kill`](Self::kill)) on the same
    /// name, ports and data directory; returns once it listens.
    pub fn start_again(&mut self) {
        let path = |name: &str| self.dir.path().join(name);
        let node = format!("archiver-test-{}@localhost", self.port);
        let wrapper = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_PORT", self.port.to_string())
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", path("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_PID_FILE", path("pid"))
            .stdout(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path("out.log"))
                    .unwrap(),
            )
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("rabbitmq-server must be installed (scripts/test installs it)");
        self.wrapper = Some(wrapper);
        self.wait_listening(self.port);
    }

    /// Polls until `port` accepts connections, 120 s at most.
    pub fn wait_listening(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the RabbitMQ node did not listen on {port}: see {}",
                self.dir.path().join("out.log").display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Runs `rabbitmqctl` against this node (never another); panics unless
    /// it succeeds.
    pub fn ctl(&self, args: &[&str]) {
        let node = format!("archiver-test-{}@localhost", self.port);
        let status = Command::new("rabbitmqctl")
            .arg("-n")
            .arg(&node)
            .args(args)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("rabbitmqctl runs");
        assert!(status.success(), "rabbitmqctl {args:?} on {node} failed");
    }

    /// kill -9 of the node's own process; returns once it is gone.
    pub fn kill(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.path().join("pid")) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(self.dir.path().join("pid"));
        }
        // The wrapper ends with the node; reap it.
        if let Some(mut wrapper) = self.wrapper.take() {
            let _ = wrapper.wait();
        }
    }
}

impl Drop for RabbitNode {
    fn drop(&mut self) {
        self.kill();
    }
}
