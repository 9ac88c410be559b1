//! Dead letters: `<p>.dead.<name>` holds what a subscriber rejected or ran
//! out of attempts on, either copied by this backend (with the `dead-*`
//! and `origin` headers every backend uses, `docs/wire-format.md`) or
//! dead-lettered by the broker itself at the quorum queue's delivery limit
//! (with its `x-death` header). Every message is listed, malformed ones
//! too; listing takes them with `basic.get` and puts them all back, so a
//! page is the first `limit` of them and the total, and cannot start
//! further on. Replay republishes the chosen valid ones into the
//! subscriber's queue with attempts reset; malformed ones are only purged.

use archiver_core::{BackendError, DeadLetter, RawDeadLetter, Replay, SubscriberName};
use chrono::{DateTime, Utc};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, QueueDeclareOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Confirmation, ErrorKind};

use crate::Shared;
use crate::error::backend_error;
use crate::message::{
    self, DEAD_AT, DEAD_ATTEMPTS, DEAD_REASON, LEGACY_DEAD, ORIGIN, PRIOR_ATTEMPTS, X_DEATH,
};
use crate::topology::text;

/// The message as an operator sees it: its headers as text, its body, and
/// the dead-letter metadata (this backend's headers, else the broker's
/// `x-death`).
fn raw(shared: &Shared, message: &lapin::message::Delivery) -> RawDeadLetter {
    let properties = &message.properties;
    // This version's name, else the one earlier versions wrote.
    let header = |name: &str, legacy: &str| {
        message::header_text(properties, name).or_else(|| message::header_text(properties, legacy))
    };
    let death = first_death(properties);
    let reason = header(DEAD_REASON, LEGACY_DEAD[0])
        .or_else(|| {
            death
                .as_ref()
                .map(|(reason, _)| format!("dead-lettered by the broker: {reason}"))
        })
        .unwrap_or_default();
    let dead_at = header(DEAD_AT, LEGACY_DEAD[2])
        .and_then(|t| {
            DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| death.and_then(|(_, at)| DateTime::from_timestamp(at as i64, 0)));
    let attempts = header(DEAD_ATTEMPTS, LEGACY_DEAD[1])
        .and_then(|n| n.parse().ok())
        .or_else(|| message::header_number(properties, DEAD_ATTEMPTS))
        .or_else(|| message::header_number(properties, LEGACY_DEAD[1]))
        .unwrap_or_else(|| {
            u64::from(message::attempt(
                properties,
                message.redelivered,
                crate::QueueType::Quorum,
            ))
        });
    let origin = message::origin(
        properties,
        message.exchange.as_str(),
        message.routing_key.as_str(),
        shared.names.exchange(),
    );
    RawDeadLetter {
        fields: properties
            .headers()
            .iter()
            .flat_map(FieldTable::inner)
            .map(|(name, value)| (name.as_str().to_owned(), display(value)))
            .collect(),
        body: bytes::Bytes::copy_from_slice(&message.data),
        reason,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        dead_at,
        origin,
        envelope: message::envelope(properties, &message.data),
    }
}

/// The first `limit` dead letters, oldest first, and how many there are.
#[derive(Debug, Clone)]
pub struct DeadLetterPage {
    /// Up to `limit` dead letters.
    pub letters: Vec<RawDeadLetter>,
    /// How many the queue holds (ready, not held by another reader).
    pub total: u32,
}

fn display(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        other => format!("{other:?}"),
    }
}

/// Up to `limit` messages of the dead-letter queue, held unacknowledged on
/// `channel` until it is closed or they are settled.
async fn take(
    channel: &Channel,
    queue: &str,
    limit: usize,
) -> Result<Vec<lapin::message::Delivery>, BackendError> {
    let mut messages = Vec::new();
    while messages.len() < limit {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
        {
            Ok(Some(message)) => messages.push(message.delivery),
            Ok(None) => break,
            // A subscriber that never subscribed has no dead-letter queue.
            Err(error) if is_not_found(&error) => break,
            Err(error) => return Err(backend_error(error)),
        }
    }
    Ok(messages)
}

fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(e) if e.get_id() == 404)
}

/// Puts messages back, in order.
async fn give_back(messages: &[lapin::message::Delivery]) -> Result<(), BackendError> {
    let requeue = BasicNackOptions {
        requeue: true,
        multiple: false,
    };
    for message in messages.iter().rev() {
        message.acker.nack(requeue).await.map_err(backend_error)?;
    }
    Ok(())
}

/// The first `limit` dead letters and the total (a passive declare).
pub(crate) async fn page(
    shared: &Shared,
    name: &SubscriberName,
    limit: usize,
) -> Result<DeadLetterPage, BackendError> {
    let queue = shared.names.dead(name);
    let channel = shared.new_channel(false).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let total = match channel
        .queue_declare(queue.as_str().into(), passive, FieldTable::default())
        .await
    {
        Ok(declared) => declared.message_count(),
        Err(error) if is_not_found(&error) => {
            return Ok(DeadLetterPage {
                letters: Vec::new(),
                total: 0,
            });
        }
        Err(error) => return Err(backend_error(error)),
    };
    let messages = take(&channel, &queue, limit).await?;
    let letters = messages.iter().map(|m| raw(shared, m)).collect();
    give_back(&messages).await?;
    let _ = channel.close(200, "listed".into()).await;
    Ok(DeadLetterPage { letters, total })
}

/// The dead letters that are envelopes, oldest first.
pub(crate) async fn list(
    shared: &Shared,
    name: &SubscriberName,
) -> Result<Vec<DeadLetter>, BackendError> {
    Ok(page(shared, name, usize::MAX)
        .await?
        .letters
        .iter()
        .filter_map(RawDeadLetter::dead_letter)
        .collect())
}

/// The reason and time of the broker's first dead-lettering, from `x-death`.
fn first_death(properties: &lapin::BasicProperties) -> Option<(String, u64)> {
    let AMQPValue::FieldArray(deaths) = properties.headers().as_ref()?.inner().get(X_DEATH)? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().last()? else {
        return None;
    };
    let reason = match death.inner().get("reason")? {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        _ => return None,
    };
    let at = match death.inner().get("time") {
        Some(AMQPValue::Timestamp(t)) => *t,
        _ => 0,
    };
    Some((reason, at))
}

/// Deletes every dead letter (the broker purges the queue at once);
/// returns how many.
pub(crate) async fn purge(shared: &Shared, name: &SubscriberName) -> Result<usize, BackendError> {
    let channel = shared.new_channel(false).await?;
    let purged = channel
        .queue_purge(
            shared.names.dead(name).as_str().into(),
            QueuePurgeOptions::default(),
        )
        .await;
    let _ = channel.close(200, "purged".into()).await;
    match purged {
        Ok(count) => Ok(count as usize),
        // A subscriber that never subscribed has no dead-letter queue.
        Err(error) if is_not_found(&error) => Ok(0),
        Err(error) => Err(backend_error(error)),
    }
}

/// Deletes the malformed dead letters; returns how many.
pub(crate) async fn purge_malformed(
    shared: &Shared,
    name: &SubscriberName,
) -> Result<usize, BackendError> {
    let channel = shared.new_channel(false).await?;
    let messages = take(&channel, &shared.names.dead(name), usize::MAX).await?;
    let mut kept = Vec::new();
    let mut count = 0;
    for message in messages {
        if raw(shared, &message).is_malformed() {
            message
                .acker
                .ack(BasicAckOptions::default())
                .await
                .map_err(backend_error)?;
            count += 1;
        } else {
            kept.push(message);
        }
    }
    give_back(&kept).await?;
    let _ = channel.close(200, "purged".into()).await;
    Ok(count)
}

pub(crate) async fn replay(
    shared: &Shared,
    name: &SubscriberName,
    which: &Replay,
) -> Result<usize, BackendError> {
    let channel = shared.new_channel(true).await?;
    let messages = take(&channel, &shared.names.dead(name), usize::MAX).await?;
    let queue = shared.names.queue(name);
    let mut kept = Vec::new();
    let mut count = 0;
    for message in messages {
        let letter = raw(shared, &message);
        let Ok(envelope) = &letter.envelope else {
            kept.push(message);
            continue;
        };
        if !which.covers(&envelope.id) {
            kept.push(message);
            continue;
        }
        if letter.is_malformed() {
            tracing::warn!(subscriber = %name, envelope_id = %envelope.id, reason = letter.reason, "a malformed dead letter is not replayed");
            kept.push(message);
            continue;
        }
        let origin = letter
            .origin
            .clone()
            .unwrap_or_else(|| crate::names::Names::routing_key(envelope));
        let properties = message::rewrite(
            &message.properties,
            vec![(ORIGIN, text(&origin))],
            &[
                &[
                    DEAD_REASON,
                    DEAD_ATTEMPTS,
                    DEAD_AT,
                    PRIOR_ATTEMPTS,
                    X_DEATH,
                    "x-first-death-reason",
                    "x-first-death-queue",
                    "x-first-death-exchange",
                ],
                &LEGACY_DEAD[..],
            ]
            .concat(),
        );
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let confirm = channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                options,
                &message.data,
                properties,
            )
            .await
            .map_err(backend_error)?;
        match confirm.await.map_err(backend_error)? {
            Confirmation::Ack(None) => {}
            other => {
                return Err(BackendError::Broker(format!(
                    "replay into {queue} not taken: {other:?}"
                )));
            }
        }
        message
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(backend_error)?;
        count += 1;
    }
    give_back(&kept).await?;
    let _ = channel.close(200, "replayed".into()).await;
    Ok(count)
}
