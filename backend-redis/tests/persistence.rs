//! At connect the backend says what a returned publish survives, read from
//! the server's persistence settings, or that it cannot tell.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use backend_redis::{RedisBackend, RedisConfig};
use support::RedisServer;

/// The log lines written while `connect` runs.
async fn connect_log(config: RedisConfig) -> String {
    let buffer = Arc::new(Mutex::new(Vec::new()));
    let writer = {
        let buffer = Arc::clone(&buffer);
        move || Captured(Arc::clone(&buffer))
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    RedisBackend::connect(config).await.expect("connects");
    String::from_utf8(buffer.lock().unwrap().clone()).unwrap()
}

struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn warnings(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.contains("WARN")).collect()
}

#[tokio::test]
async fn a_redis_keeping_nothing_on_disk_is_warned_about() {
    let server = RedisServer::start(false, &[]);
    let log = connect_log(RedisConfig::new(server.url())).await;
    let warned = warnings(&log);
    assert!(
        warned.iter().any(|l| l.contains("keeps nothing on disk")),
        "{log}"
    );
}

#[tokio::test]
async fn appendfsync_everysec_is_warned_about_and_always_is_not() {
    let everysec = RedisServer::start(false, &["--appendonly", "yes", "--appendfsync", "everysec"]);
    let log = connect_log(RedisConfig::new(everysec.url())).await;
    assert!(
        warnings(&log).iter().any(|l| l.contains("last second")),
        "{log}"
    );
    let always = RedisServer::start(true, &[]);
    let log = connect_log(RedisConfig::new(always.url())).await;
    assert!(warnings(&log).is_empty(), "{log}");
    assert!(log.contains("appendfsync always"), "{log}");
}

#[tokio::test]
async fn unreadable_persistence_is_warned_as_unknown() {
    let server = RedisServer::start(false, &[]);
    let mut conn = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("limited")
        .arg("on")
        .arg(">limited-password")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-config")
        .arg("-info")
        .query_async(&mut conn)
        .await
        .unwrap();
    let url = format!("redis://limited:limited-password@127.0.0.1:{}", server.port);
    let log = connect_log(RedisConfig::new(url)).await;
    assert!(
        warnings(&log)
            .iter()
            .any(|l| l.contains("persistence unknown")),
        "{log}"
    );
    assert!(!log.contains("limited-password"), "{log}");
}
