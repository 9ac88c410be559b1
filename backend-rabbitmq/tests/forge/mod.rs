//! Publishing behind the backend's back (forged or malformed messages).
//! Apart from `support`, which the workspace's `tests` crate also
//! includes without the `lapin` crate.

use lapin::options::BasicPublishOptions;
use lapin::types::FieldTable;

use crate::support::RabbitHarness;

/// Publishes `body` with `headers` to the harness's exchange under
/// `routing_key`, persistent.
pub async fn publish(harness: &RabbitHarness, routing_key: &str, headers: FieldTable, body: &[u8]) {
    let connection =
        lapin::Connection::connect(&harness.config.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel
        .basic_publish(
            harness.config.prefix.as_str().into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            lapin::BasicProperties::default()
                .with_delivery_mode(2)
                .with_headers(headers),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "sent".into()).await;
}
