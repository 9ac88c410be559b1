//! A real HyperKitty 1.3.12 on sqlite (from target/hyperkitty-venv, made by
//! scripts/hyperkitty-venv) started on a spare port and stopped by pid, and
//! a real Redis (127.0.0.1:6379) under a key prefix of its own per test.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hyperkitty_bridge::{ApiKey, BridgeConfig};
use mq_archiver::{
    Archiver, Bytes, MailingList, Outcome, PublisherClient, QueueArchiver, SubscriberClient,
    Subscription,
};

/// The archiver key of every test site.
pub const KEY: &str = "bridge-test-key";

const SITE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/site/hk_site.py");

/// The venv's python, or None (SKIPPED, or a failure with
/// `ARCHIVER_REQUIRE_PYTHON`) when scripts/hyperkitty-venv has not run.
pub fn hyperkitty_python(test: &str) -> Option<PathBuf> {
    let venv = std::env::var_os("HYPERKITTY_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../target/hyperkitty-venv"
            ))
        });
    let python = venv.join("bin/python");
    if python.is_file() {
        return Some(python);
    }
    let message = format!(
        "{test}: no HyperKitty venv at {} (run scripts/hyperkitty-venv, or set HYPERKITTY_VENV)",
        venv.display()
    );
    assert!(
        std::env::var_os("ARCHIVER_REQUIRE_PYTHON").is_none(),
        "{message}, and ARCHIVER_REQUIRE_PYTHON is set"
    );
    eprintln!("SKIPPED {message}");
    None
}

/// A port nobody listens on right now.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HyperKitty site: its directory, port and (while running) process.
pub struct Site {
    python: PathBuf,
    dir: tempfile::TempDir,
    pub port: u16,
    server: Option<Child>,
    /// Extra environment of the server process (e.g. `HK_ALLOWED_HOSTS`).
    pub env: Vec<(String, String)>,
}

/// One archived email as HyperKitty's database holds it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Row {
    pub list: String,
    pub message_id_hash: String,
}

impl Site {
    /// Sets up (migrates) a site and starts it.
    pub fn start(python: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = Command::new(python)
            .args([SITE_SCRIPT, "setup"])
            .arg(dir.path())
            .arg(KEY)
            .status()
            .unwrap();
        assert!(status.success(), "HyperKitty site set-up failed");
        let mut site = Self {
            python: python.to_owned(),
            dir,
            port: spare_port(),
            server: None,
            env: Vec::new(),
        };
        site.resume();
        site
    }

    /// `http://127.0.0.1:PORT/hyperkitty/`
    pub fn base_url(&self) -> url::Url {
        format!("http://127.0.0.1:{}/hyperkitty/", self.port)
            .parse()
            .unwrap()
    }

    /// Starts the server (again, same port and database) and waits until
    /// it answers.
    pub fn resume(&mut self) {
        assert!(self.server.is_none());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(&self.python)
            .args([SITE_SCRIPT, "serve"])
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "HyperKitty did not start: {}",
                self.log()
            );
            if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("HyperKitty exited with {status}: {}", self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts a site whose server runs with `env` added.
    pub fn start_with_env(python: &Path, env: &[(&str, &str)]) -> Self {
        let mut site = Self::start(python);
        site.stop();
        site.env = env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        site.resume();
        site
    }

    /// Takes the database away while the server runs (each request opens
    /// sqlite anew and finds an empty file): HyperKitty answers, but every
    /// request that needs the database fails with a 500.
    pub fn database_down(&self) {
        let db = self.dir.path().join("hyperkitty.db");
        std::fs::rename(&db, self.dir.path().join("hyperkitty.db.away")).unwrap();
    }

    /// Puts the database back.
    pub fn database_up(&self) {
        let db = self.dir.path().join("hyperkitty.db");
        let _ = std::fs::remove_file(&db);
        std::fs::rename(self.dir.path().join("hyperkitty.db.away"), &db).unwrap();
    }

    /// Kills the server by its pid (SIGKILL: an abrupt outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Pre-creates `address` as a private list, as an operator does.
    pub fn create_private_list(&self, address: &str) {
        let status = Command::new(&self.python)
            .args([SITE_SCRIPT, "private-list"])
            .arg(self.dir.path())
            .arg(address)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Makes `address` public, as an admin does in HyperKitty.
    pub fn make_list_public(&self, address: &str) {
        let status = Command::new(&self.python)
            .args([SITE_SCRIPT, "public-list"])
            .arg(self.dir.path())
            .arg(address)
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// The venv's python (for fake_http.py).
    pub fn python(&self) -> &Path {
        &self.python
    }

    /// Every archived email, and every list with its policy (1 private,
    /// 2 public), read from the sqlite database.
    pub fn database(&self) -> (Vec<Row>, BTreeMap<String, i64>) {
        let out = Command::new(&self.python)
            .args([SITE_SCRIPT, "emails"])
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let rows = json["emails"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| Row {
                list: e["list"].as_str().unwrap().to_owned(),
                message_id_hash: e["message_id_hash"].as_str().unwrap().to_owned(),
            })
            .collect();
        let lists = json["lists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["name"].as_str().unwrap().to_owned(),
                    l["archive_policy"].as_i64().unwrap(),
                )
            })
            .collect();
        (rows, lists)
    }

    /// The HTTP status of a message's page.
    pub async fn message_page(&self, list: &str, hash: &str) -> u16 {
        let url = format!("{}list/{list}/message/{hash}/", self.base_url());
        reqwest::get(url).await.unwrap().status().as_u16()
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.stop();
    }
}

const FAKE_SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/site/fake_http.py");

/// A tiny HTTP server in front of (or instead of) HyperKitty
/// (tests/site/fake_http.py), stopped by its pid.
pub struct FakeHttp {
    pub port: u16,
    child: Child,
}

impl FakeHttp {
    /// Starts `fake_http.py PORT mode arg` and waits until it listens.
    pub fn start(python: &Path, mode: &str, arg: &str) -> Self {
        let port = spare_port();
        let child = Command::new(python)
            .arg(FAKE_SCRIPT)
            .arg(port.to_string())
            .args([mode, arg])
            .spawn()
            .unwrap();
        let mut fake = Self { port, child };
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "fake_http.py did not start");
            if let Some(status) = fake.child.try_wait().unwrap() {
                panic!("fake_http.py exited with {status}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        fake
    }

    /// `http://127.0.0.1:PORT/hyperkitty/`
    pub fn base_url(&self) -> url::Url {
        format!("http://127.0.0.1:{}/hyperkitty/", self.port)
            .parse()
            .unwrap()
    }
}

impl Drop for FakeHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A bridge configuration for `site`: concurrency 1 (sqlite), short
/// timeouts and probe delays so a test outage takes seconds.
pub fn bridge_config(site: &Site) -> BridgeConfig {
    let mut config = BridgeConfig::new(site.base_url(), ApiKey::new(KEY));
    config.concurrency = 1;
    config.request_timeout = Duration::from_secs(20);
    config.probe_backoff =
        mq_archiver::Backoff::new(Duration::from_millis(250), Duration::from_secs(4));
    config.retry_backoff =
        mq_archiver::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
    config
}

/// The shared Redis.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
/// The shared RabbitMQ.
pub const RABBITMQ_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A Redis or RabbitMQ deployment of its own (key prefix) on the shared server.
pub struct Broker {
    pub prefix: String,
    pub publisher: PublisherClient,
    pub subscriber: SubscriberClient,
    pub subscription: Subscription,
}

impl Broker {
    /// Connects both sides and creates the bridge's durable subscription,
    /// so everything published afterwards waits for it.
    pub async fn new(test: &str) -> Self {
        Self::connect(test, REDIS_URL).await
    }

    /// As [`Broker::new`], on the broker of `url` (Redis or RabbitMQ).
    pub async fn connect(test: &str, url: &str) -> Self {
        use mq_archiver::Subscriber;
        let prefix = format!("hkbridge-{test}-{}", uuid::Uuid::now_v7().simple());
        let mut options = vec![("prefix", prefix.clone())];
        if url.starts_with("redis") {
            options.push(("poll-interval", "50ms".to_owned()));
        }
        let publisher = mq_archiver::connect_publisher(url, options.clone())
            .await
            .unwrap();
        let subscriber = mq_archiver::connect_subscriber(url, options).await.unwrap();
        let subscription = Subscription::new("hyperkitty".parse().unwrap()).prefetch(8);
        drop(subscriber.subscribe(&subscription).await.unwrap());
        Self {
            prefix,
            publisher,
            subscriber,
            subscription,
        }
    }

    /// Archives each mail to its list through the library; returns the
    /// Message-ID-Hash of each one published (skipped ones left out).
    pub async fn archive(&self, mails: &[(MailingList, Bytes)]) -> Vec<(String, String)> {
        let urls =
            mq_archiver::ArchiveUrls::new("http://127.0.0.1/hyperkitty/list/{list_id}/").unwrap();
        let archiver = QueueArchiver::new("hyperkitty-test", self.publisher.clone(), urls);
        let mut published = Vec::new();
        for (list, raw) in mails {
            let receipt = archiver.archive_message(list, raw.clone()).await.unwrap();
            match receipt.outcome {
                Outcome::Published => published.push((
                    list.list_address
                        .as_ref()
                        .map_or_else(|| list.list_id.to_string(), |a| a.as_str().to_owned()),
                    receipt.message_id_hash,
                )),
                Outcome::Skipped(_) => {}
                other => panic!("unexpected outcome {other:?}"),
            }
        }
        published
    }

    /// The bridge's dead letters now.
    pub async fn dead_letters(&self) -> Vec<mq_archiver::DeadLetter> {
        use mq_archiver::Operator;
        self.subscriber
            .dead_letters(&self.subscription.name)
            .await
            .unwrap()
    }

    /// Deletes every key, queue and exchange of the test's prefix.
    pub async fn cleanup(&self) {
        let _ = self.subscriber.purge().await;
    }
}
