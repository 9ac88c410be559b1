//! Connections: one multiplexed connection per client for commands, and one
//! of its own for every blocking reader (a blocked XREAD would stall every
//! command sharing its connection). Each reconnects with back-off.

use std::time::Duration;

use archiver_core::backend::read_ca_file;
use archiver_core::{BackendError, ErrorDetail};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::config::RedisConfig;
use crate::error::backend_error;

/// Opens a connection; `blocking_for` is the longest server-side BLOCK its
/// commands use, so replies are not timed out early.
pub(crate) async fn open(
    client: &redis::Client,
    config: &RedisConfig,
    blocking_for: Duration,
) -> Result<ConnectionManager, BackendError> {
    let settings = ConnectionManagerConfig::new()
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_secs(2))
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(blocking_for + Duration::from_secs(30)));
    ConnectionManager::new_with_config(client.clone(), settings)
        .await
        .map_err(|error| {
            let error = backend_error(error);
            tracing::warn!(url = %config.redacted_url(), %error, "cannot connect to Redis");
            error
        })
}

/// The Redis client for a configuration, after checking its URL; with a
/// CA file, TLS trusts that CA.
pub(crate) fn client(config: &RedisConfig) -> Result<redis::Client, BackendError> {
    config.validate()?;
    let invalid = |e: redis::RedisError| {
        BackendError::InvalidUrl(ErrorDetail::caused_by(
            format!("{}: {e}", config.redacted_url()),
            e,
        ))
    };
    match &config.tls_ca_file {
        None => redis::Client::open(config.url.as_str()).map_err(invalid),
        Some(path) => {
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(read_ca_file(path)?.into_bytes()),
            };
            redis::Client::build_with_tls(config.url.as_str(), certificates).map_err(invalid)
        }
    }
}

/// The server's run id, which changes when it restarts: tells a restart
/// that lost data from a deliberate deletion.
pub(crate) async fn run_id(conn: &mut ConnectionManager) -> redis::RedisResult<String> {
    let info: String = redis::cmd("INFO").arg("server").query_async(conn).await?;
    Ok(info
        .lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .unwrap_or_default()
        .trim()
        .to_owned())
}
