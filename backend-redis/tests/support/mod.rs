//! What the Redis tests share: a harness on the Redis of
//! `ARCHIVER_REDIS_URL` (default 127.0.0.1:6379) under a unique key prefix.

#![allow(dead_code)]

use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use archiver_core::conformance::Harness;
use archiver_core::conformance::server::{Broker, BrokerProcess};
use async_trait::async_trait;
use backend_redis::{RedisBackend, RedisConfig};

/// One scenario's namespace: a fresh key prefix, short timers.
pub struct RedisHarness {
    pub config: RedisConfig,
}

impl RedisHarness {
    pub fn new() -> Self {
        Self::on(RedisConfig::from_env())
    }

    /// A harness on another server (a test's own instance).
    pub fn on(config: RedisConfig) -> Self {
        Self {
            config: config
                .prefix(
                    archiver_core::Prefix::new(&format!(
                        "archiver-test-{}",
                        uuid::Uuid::now_v7().simple()
                    ))
                    .expect("a valid prefix"),
                )
                .claim_idle(Duration::from_secs(2))
                .poll_interval(Duration::from_millis(50))
                .retention_interval(Duration::from_millis(500)),
        }
    }
}

impl RedisHarness {
    /// A new client of this namespace, of every role.
    pub async fn connect(&self) -> RedisBackend {
        RedisBackend::connect(self.config.clone())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "Redis must be running at {} (scripts/test starts it): {e}",
                    self.config.redacted_url()
                )
            })
    }
}

#[async_trait]
impl Harness for RedisHarness {
    type Publisher = RedisBackend;
    type Subscriber = RedisBackend;

    async fn publisher(&self) -> RedisBackend {
        self.connect().await
    }

    async fn subscriber(&self) -> RedisBackend {
        self.connect().await
    }

    async fn cleanup(&self) {
        self.connect()
            .await
            .purge()
            .await
            .expect("purge the scenario's keys");
    }
}

/// How a redis-server of a test's own is launched: on 127.0.0.1 only,
/// no RDB snapshots, its arguments after those.
pub struct RedisLaunch {
    args: Vec<String>,
}

impl Broker for RedisLaunch {
    const PROGRAM: &'static str = "redis-server";
    const STARTUP: Duration = Duration::from_secs(20);

    fn command(&self, port: u16, dir: &Path) -> Command {
        let mut command = Command::new("redis-server");
        command
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(&self.args)
            .arg("--dir")
            .arg(dir);
        command
    }

    /// It answers PING (or asks for the password it was given).
    fn serves(&self, port: u16) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0u8; 64];
        if stream.write_all(b"PING\r\n").is_ok()
            && let Ok(n) = stream.read(&mut reply)
        {
            let reply = String::from_utf8_lossy(&reply[..n]);
            return reply.starts_with("+PONG") || reply.contains("NOAUTH");
        }
        false
    }
}

/// A redis-server this test starts on a spare port, in a temporary
/// directory, and kills by its own pid (never any other Redis).
pub struct RedisServer(BrokerProcess<RedisLaunch>);

impl RedisServer {
    /// Starts a server; `persistent` gives `--appendonly yes
    /// --appendfsync always`, otherwise it keeps nothing. `extra` arguments
    /// are passed as they are (e.g. `--requirepass`).
    pub fn start(persistent: bool, extra: &[&str]) -> Self {
        let persistence: &[&str] = if persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        let args = persistence.iter().chain(extra).map(|s| s.to_string());
        Self(BrokerProcess::start(RedisLaunch {
            args: args.collect(),
        }))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Deref for RedisServer {
    type Target = BrokerProcess<RedisLaunch>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for RedisServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}
