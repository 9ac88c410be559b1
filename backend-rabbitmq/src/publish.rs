//! Publish: a persistent, mandatory message on the topic exchange, on a
//! confirm-mode channel; `publish` returns when the broker confirmed it.
//! Concurrent publishes share the channel, so their confirms are pipelined.

use archiver_core::{BackendError, Envelope};
use lapin::Confirmation;
use lapin::options::BasicPublishOptions;
use lapin::types::AMQPValue;

use crate::Shared;
use crate::error::backend_error;
use crate::message;
use crate::names::Names;

pub(crate) async fn publish(shared: &Shared, envelope: &Envelope) -> Result<(), BackendError> {
    shared.ensure_open()?;
    BackendError::check_size(envelope, shared.config.max_envelope_bytes)?;
    let channel = shared.publish_channel().await?;
    let new_key = Names::routing_key(envelope);
    let mut properties = message::properties(envelope);
    // During the upgrade the earlier key routes it (an earlier subscriber
    // checks it) and `BCC` adds the new one: a queue bound either way gets
    // one copy, and the broker strips `BCC` before delivery.
    let routing_key = match Names::legacy_routing_key(envelope) {
        Some(legacy) if shared.legacy_keys() => {
            let mut headers = properties.headers().clone().unwrap_or_default();
            headers.insert(
                "BCC".into(),
                AMQPValue::FieldArray(vec![AMQPValue::LongString(new_key.into())].into()),
            );
            properties = properties.with_headers(headers);
            legacy
        }
        _ => new_key,
    };
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    // lapin 4.12's basic_publish takes the payload as `&[u8]` and copies it
    // into its body frames (`chunk.into()`): that copy is the one a publish
    // makes of the body, and no API of lapin's takes `Bytes` to avoid it.
    let sent = channel
        .basic_publish(
            shared.names.exchange().into(),
            routing_key.as_str().into(),
            options,
            &envelope.body,
            properties,
        )
        .await;
    let confirmation = match sent {
        Ok(confirm) => confirm.await,
        Err(error) => Err(error),
    };
    match confirmation {
        Ok(Confirmation::Ack(None)) => {
            tracing::debug!(envelope_id = %envelope.id, %routing_key, "published");
            Ok(())
        }
        Ok(Confirmation::Ack(Some(_))) => Err(BackendError::Unroutable(format!(
            "no subscriber selects {} of list {} (keep_unrouted is off)",
            envelope.kind.as_str(),
            envelope.list_id
        ))),
        // A full queue refusing (reject-publish: `<p>.unrouted` at its
        // max length, or a queue a policy bounds) nacks; transient, so a
        // spool keeps the mail and publishes it again later.
        Ok(Confirmation::Nack(_)) => Err(BackendError::Broker(
            format!(
                "the broker refused the message (publisher nack): a queue it is routed to is full \
             and refuses more ({} holds at most unrouted_max_length), or the broker could not \
             store it; publish it again later",
                shared.names.unrouted()
            )
            .into(),
        )),
        Ok(Confirmation::NotRequested) => Err(BackendError::Broker(
            "publisher confirms are off on the channel".into(),
        )),
        Err(error) => {
            shared.reset_link().await;
            Err(match backend_error(error) {
                // A list server's permissions wrong during a deployment
                // must not set every mail aside: the spool keeps it and
                // publishes it again once they are fixed.
                BackendError::Forbidden(refused) => {
                    tracing::warn!(
                        exchange = shared.names.exchange(),
                        %routing_key,
                        %refused,
                        "the broker refused the publish (403); kept for a retry: check this user's write and topic permissions"
                    );
                    BackendError::Auth(refused.context(format_args!(
                        "publishing to {} with key {routing_key}",
                        shared.names.exchange()
                    )))
                }
                other => other,
            })
        }
    }
}

/// Why a confirmed copy was not taken, in words: `None` when it was. A
/// `Confirmation` is never printed, since a returned message carries the
/// mail.
pub(crate) fn refusal(confirmation: &Confirmation) -> Option<&'static str> {
    match confirmation {
        Confirmation::Ack(None) => None,
        Confirmation::Ack(Some(_)) => Some("returned: no such queue"),
        Confirmation::Nack(_) => Some("nacked"),
        Confirmation::NotRequested => Some("unconfirmed"),
    }
}
