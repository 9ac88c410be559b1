//! Wrong URL, unreachable server, refused credentials: each a typed error
//! that never shows the password.

mod support;

use archiver_core::BackendError;
use backend_redis::{RedisBackend, RedisConfig};
use support::RedisServer;

async fn connect(url: &str) -> BackendError {
    match RedisBackend::connect(RedisConfig::new(url)).await {
        Ok(_) => panic!("connecting to {url} must fail"),
        Err(error) => error,
    }
}

#[tokio::test]
async fn wrong_url_scheme_is_invalid_url() {
    let error = connect("amqp://guest:hunter2@127.0.0.1:6379").await;
    assert!(matches!(error, BackendError::InvalidUrl(_)), "{error:?}");
    assert!(!error.to_string().contains("hunter2"), "{error}");
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let port = support::spare_port();
    let error = connect(&format!("redis://127.0.0.1:{port}")).await;
    assert!(matches!(error, BackendError::Unavailable(_)), "{error:?}");
}

#[tokio::test]
async fn wrong_or_missing_password_is_auth() {
    let server = RedisServer::start(false, &["--requirepass", "right-password"]);
    let wrong = connect(&format!(
        "redis://:wrong-password@127.0.0.1:{}",
        server.port
    ))
    .await;
    assert!(matches!(wrong, BackendError::Auth(_)), "{wrong:?}");
    assert!(!wrong.to_string().contains("wrong-password"), "{wrong}");
    let missing = connect(&server.url()).await;
    assert!(matches!(missing, BackendError::Auth(_)), "{missing:?}");
    let right = RedisBackend::connect(RedisConfig::new(format!(
        "redis://:right-password@127.0.0.1:{}",
        server.port
    )))
    .await;
    assert!(right.is_ok(), "the right password connects");
}
