//! Wrong URL, unreachable server, refused credentials: each a typed error
//! that never shows the password.

mod support;

use archiver_core::BackendError;
use archiver_core::conformance::errors::{self, Endpoints};
use async_trait::async_trait;
use backend_redis::{RedisBackend, RedisConfig};
use support::RedisServer;

/// Redis's URL forms for the shared error scenarios.
struct Redis;

#[async_trait]
impl Endpoints for Redis {
    async fn connect(&self, url: &str) -> Result<(), BackendError> {
        RedisBackend::connect(RedisConfig::new(url)).await.map(drop)
    }

    fn url(&self, port: u16, password: &str) -> String {
        format!("redis://:{password}@127.0.0.1:{port}")
    }

    fn foreign_url(&self, password: &str) -> String {
        format!("amqp://guest:{password}@127.0.0.1:6379")
    }
}

#[tokio::test]
async fn wrong_url_scheme_is_invalid_url() {
    errors::wrong_scheme_is_invalid_url(&Redis).await;
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    errors::unreachable_is_unavailable(&Redis).await;
}

#[tokio::test]
async fn wrong_or_missing_password_is_auth() {
    let server = RedisServer::start(false, &["--requirepass", "right-password"]);
    errors::wrong_password_is_auth(&Redis, server.port, "right-password").await;
    let missing = Redis.connect(&server.url()).await.unwrap_err();
    assert!(matches!(missing, BackendError::Auth(_)), "{missing:?}");
}

#[tokio::test]
async fn redis_rs_errors_stay_the_source() {
    let server = RedisServer::start(false, &["--requirepass", "right-password"]);
    errors::client_error_is_the_source::<redis::RedisError>(&Redis, server.port).await;
}

#[tokio::test]
async fn too_few_replicas_for_wait_is_an_error() {
    use archiver_core::conformance::Harness;
    use archiver_core::{ArchivedMail, Envelope, ListId, MailLimits, MailingList, Publisher};
    use backend_redis::Durability;
    use std::time::Duration;

    let mut harness = support::RedisHarness::new();
    let raw = bytes::Bytes::from_static(b"Message-ID: <wait@example.org>\r\n\r\nx\r\n");
    let list = ListId::new("wait.lists.example.org").unwrap();
    let envelope = Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &MailingList::public(list),
    );

    harness.config = harness.config.clone().durability(Durability::Replicas {
        count: 0,
        timeout: Duration::from_millis(100),
    });
    harness
        .connect()
        .await
        .publish(&envelope)
        .await
        .expect("WAIT for 0 replicas is satisfied");

    harness.config = harness.config.clone().durability(Durability::Replicas {
        count: 1,
        timeout: Duration::from_millis(100),
    });
    let error = harness
        .connect()
        .await
        .publish(&envelope)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, BackendError::Unavailable(m) if m.contains("0 of 1 replicas")),
        "{error:?}"
    );
    harness.cleanup().await;
}

#[tokio::test]
async fn fsync_durability_needs_waitaof() {
    use backend_redis::Durability;
    use std::time::Duration;

    let config = RedisConfig::from_env().durability(Durability::Fsync {
        replicas: 0,
        timeout: Duration::from_secs(1),
    });
    let version: String = {
        let client = redis::Client::open(config.url.as_str()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let has_waitaof = version
        .split('.')
        .take(2)
        .map(|n| n.parse::<u32>().unwrap())
        .collect::<Vec<_>>()
        >= vec![7, 2];
    match RedisBackend::connect(config).await {
        Ok(_) => assert!(
            has_waitaof,
            "Redis {version} has no WAITAOF: connect must refuse Fsync"
        ),
        Err(BackendError::Unsupported(_)) => assert!(!has_waitaof, "Redis {version} has WAITAOF"),
        Err(other) => panic!("unexpected {other:?}"),
    }
}
