//! Connections and channels. A client keeps one connection with a
//! confirm-mode channel for publishing and re-opens both (re-declaring the
//! exchanges) after a failure; each subscription and tail has a connection
//! of its own, so a slow consumer never delays publishing.

use archiver_core::BackendError;
use archiver_core::backend::read_ca_file;
use lapin::options::ConfirmSelectOptions;
use lapin::tcp::OwnedTLSConfig;
use lapin::{Channel, Connection, ConnectionProperties};

use crate::config::RabbitConfig;
use crate::error::{backend_error, connect_error};

/// Opens a connection named after the deployment and its role (visible in
/// `rabbitmqctl list_connections client_properties`).
pub(crate) async fn connect(config: &RabbitConfig, role: &str) -> Result<Connection, BackendError> {
    config.validate()?;
    let properties = ConnectionProperties::default()
        .with_connection_name(format!("mq-archiver {} {role}", config.prefix).into());
    let connected = match &config.tls_ca_file {
        None => Connection::connect(&config.url, properties).await,
        Some(path) => {
            let tls = OwnedTLSConfig {
                identity: None,
                cert_chain: Some(read_ca_file(path)?),
            };
            let runtime = lapin::runtime::default_runtime().map_err(backend_error)?;
            Connection::connect_with_config(&config.url, properties, tls, runtime).await
        }
    };
    connected.map_err(|error| {
        let error = connect_error(error);
        tracing::warn!(url = %config.redacted_url(), %error, "cannot connect to RabbitMQ");
        error
    })
}

/// A channel in publisher-confirm mode: every publish on it is confirmed.
pub(crate) async fn confirm_channel(connection: &Connection) -> Result<Channel, BackendError> {
    let channel = connection.create_channel().await.map_err(backend_error)?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(backend_error)?;
    Ok(channel)
}

/// The client's publishing connection and channel.
pub(crate) struct Link {
    pub(crate) connection: Connection,
    pub(crate) channel: Channel,
}

impl Link {
    /// Whether both are still usable.
    pub(crate) fn is_usable(&self) -> bool {
        self.connection.status().connected() && self.channel.status().connected()
    }
}
