//! The bench's own Redis: a child `redis-server` on a spare port with its
//! append-only file in a temporary directory, fsynced as `--appendfsync`
//! says, so that a reply to XADD means the mail is on disk. The machine's
//! shared Redis keeps nothing on disk and is left alone.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// A running `redis-server`, stopped (by its pid) when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one with `appendfsync` set to `fsync` (`always`, `everysec`).
    pub fn start(fsync: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--appendonly", "yes", "--appendfsync", fsync])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .spawn()
            .context("starting redis-server (is it installed? scripts/bench installs it)")?;
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        server.wait_ready()?;
        Ok(server)
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn wait_ready(&self) -> anyhow::Result<()> {
        let client = redis::Client::open(self.url())?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ping = client
                .get_connection()
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            match ping {
                Ok(_) => return Ok(()),
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => bail!("the bench's redis-server did not answer: {error}"),
            }
        }
    }

    /// Empties it and rewrites its append-only file, so the next scenario
    /// starts on a small file; returns once the rewrite is over, so that it
    /// does not compete with the next contender's fsyncs.
    pub fn reset(&self) -> anyhow::Result<()> {
        let mut conn = redis::Client::open(self.url())?.get_connection()?;
        let () = redis::cmd("FLUSHALL").query(&mut conn)?;
        // Refused while a rewrite is under way; that one shrinks it too.
        let _ = redis::cmd("BGREWRITEAOF").query::<redis::Value>(&mut conn);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let info: String = redis::cmd("INFO").arg("persistence").query(&mut conn)?;
            let busy = info.lines().any(|line| {
                matches!(
                    line.trim(),
                    "aof_rewrite_in_progress:1" | "aof_rewrite_scheduled:1"
                )
            });
            if !busy {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("the bench's Redis still rewrites its append-only file after 60 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
