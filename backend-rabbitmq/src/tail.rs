//! The live tail: an exclusive, auto-deleted, server-named queue bound with
//! the selection, consumed without acks. It is bounded (the oldest go when
//! it is full) and disappears with its connection: it keeps nothing. Its
//! name is the broker's (`amq.gen-...`), and being exclusive no other
//! connection can use it, so an archive server's permissions include
//! `amq\.gen-[A-Za-z0-9_-]+`; the binding keys are still checked against its topic
//! permission.

use std::sync::Arc;

use archiver_core::{BackendError, Selection, Tail};
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};

use crate::Shared;
use crate::error::backend_error;
use crate::link;
use crate::message;
use crate::names::Names;
use crate::topology::{declare_exchanges, table, text};

/// Messages buffered for a slow tail before the oldest are dropped.
const BUFFER: i64 = 1024;

pub(crate) async fn tail(
    shared: &Arc<Shared>,
    selection: &Selection,
) -> Result<Tail, BackendError> {
    shared.ensure_open()?;
    if let Some(grant) = shared.config.role.grant() {
        grant.check_tail(selection)?;
    }
    let connection = link::connect(&shared.config, "tail").await?;
    let channel = connection.create_channel().await.map_err(backend_error)?;
    let channel = declare_exchanges(&connection, channel, shared).await?;
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..QueueDeclareOptions::default()
    };
    let bounded = table(vec![
        ("x-max-length", AMQPValue::LongLongInt(BUFFER)),
        ("x-overflow", text("drop-head")),
    ]);
    let queue = channel
        .queue_declare("".into(), options, bounded)
        .await
        .map_err(backend_error)?;
    for key in Names::binding_keys(selection, shared.config.role.classes()) {
        channel
            .queue_bind(
                queue.name().clone(),
                shared.names.exchange().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend_error)?;
    }
    let no_ack = BasicConsumeOptions {
        no_ack: true,
        ..BasicConsumeOptions::default()
    };
    let consumer = channel
        .basic_consume(
            queue.name().clone(),
            "".into(),
            no_ack,
            FieldTable::default(),
        )
        .await
        .map_err(backend_error)?;
    // The stream owns the connection: dropping the tail closes it.
    let envelopes = consumer.map(move |item| {
        let _keep_open = &connection;
        let delivery = item.map_err(backend_error)?;
        message::envelope(&delivery.properties, Bytes::from(delivery.data))
            .map_err(BackendError::Wire)
    });
    Ok(shared.closed.until_closed(envelopes))
}
