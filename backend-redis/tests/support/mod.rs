//! What the Redis tests share: a harness on the Redis of
//! `ARCHIVER_REDIS_URL` (default 127.0.0.1:6379) under a unique key prefix.

#![allow(dead_code)]

use std::time::Duration;

use archiver_core::conformance::Harness;
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

/// A redis-server this test starts on a spare port, in a temporary
/// directory, and kills by its own pid (never any other Redis).
pub struct RedisServer {
    pub port: u16,
    dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts a server; `persistent` gives `--appendonly yes
    /// --appendfsync always`, otherwise it keeps nothing. `extra` arguments
    /// are passed as they are (e.g. `--requirepass`).
    pub fn start(persistent: bool, extra: &[&str]) -> Self {
        let port = spare_port();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let persistence: &[&str] = if persistent {
            &["--appendonly", "yes", "--appendfsync", "always"]
        } else {
            &["--appendonly", "no"]
        };
        args.extend(persistence.iter().chain(extra).map(|s| s.to_string()));
        args.extend(["--dir".to_string(), dir.path().display().to_string()]);
        let mut server = Self {
            port,
            dir,
            args,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("redis.log")).expect("log file");
        let child = std::process::Command::new("redis-server")
            .args(&self.args)
            .stdout(log)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server must be installed (scripts/test installs it)");
        self.child = Some(child);
        wait_until_listening(self.port);
    }

    /// kill -9, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and directory (AOF reloaded).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Starts it again after a [`kill`](Self::kill), on the same port and
    /// directory.
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port free right now on the loopback.
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Polls until the server answers PING (or asks for auth), 20 s at most.
fn wait_until_listening(port: u16) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let mut reply = [0u8; 64];
            if stream.write_all(b"PING\r\n").is_ok()
                && let Ok(n) = stream.read(&mut reply)
            {
                let reply = String::from_utf8_lossy(&reply[..n]);
                if reply.starts_with("+PONG") || reply.contains("NOAUTH") {
                    return;
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "redis-server on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
