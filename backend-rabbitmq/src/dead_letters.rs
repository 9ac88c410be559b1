//! Dead letters: `<p>.dead.<name>` holds what a subscriber rejected or ran
//! out of attempts on, either copied by this backend (with
//! `x-archiver-dead-*` headers) or dead-lettered by the broker itself at
//! the quorum queue's delivery limit (with its `x-death` header). Listing
//! takes them with `basic.get` and puts them all back; replay republishes
//! the chosen ones into the subscriber's queue with attempts reset.

use archiver_core::{BackendError, DeadLetter, Replay, SubscriberName};
use chrono::{DateTime, Utc};
use lapin::options::{BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions};
use lapin::types::AMQPValue;
use lapin::{Channel, Confirmation, ErrorKind};

use crate::Shared;
use crate::error::backend_error;
use crate::message::{self, DEAD_AT, DEAD_ATTEMPTS, DEAD_REASON, PRIOR_ATTEMPTS, X_DEATH};

/// Every message of the dead-letter queue, held unacknowledged on `channel`
/// until it is closed or they are settled.
async fn take_all(
    channel: &Channel,
    queue: &str,
) -> Result<Vec<lapin::message::Delivery>, BackendError> {
    let mut messages = Vec::new();
    loop {
        match channel
            .basic_get(queue.into(), BasicGetOptions::default())
            .await
        {
            Ok(Some(message)) => messages.push(message.delivery),
            Ok(None) => return Ok(messages),
            // A subscriber that never subscribed has no dead-letter queue.
            Err(error) if matches!(error.kind(), ErrorKind::ProtocolError(e) if e.get_id() == 404) =>
            {
                return Ok(messages);
            }
            Err(error) => return Err(backend_error(error)),
        }
    }
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

pub(crate) async fn list(
    shared: &Shared,
    name: &SubscriberName,
) -> Result<Vec<DeadLetter>, BackendError> {
    let channel = shared.new_channel(false).await?;
    let messages = take_all(&channel, &shared.names.dead(name)).await?;
    let letters = messages
        .iter()
        .filter_map(|m| dead_letter(name, m))
        .collect();
    give_back(&messages).await?;
    let _ = channel.close(200, "listed".into()).await;
    Ok(letters)
}

fn dead_letter(name: &SubscriberName, message: &lapin::message::Delivery) -> Option<DeadLetter> {
    let properties = &message.properties;
    let envelope = match message::envelope(properties, &message.data) {
        Ok(envelope) => envelope,
        Err(error) => {
            tracing::warn!(subscriber = %name, %error, "a dead letter is not a valid envelope; left in the queue");
            return None;
        }
    };
    let death = first_death(properties);
    let reason = message::header_text(properties, DEAD_REASON)
        .or_else(|| {
            death
                .as_ref()
                .map(|(reason, _)| format!("dead-lettered by the broker: {reason}"))
        })
        .unwrap_or_default();
    let dead_at = message::header_text(properties, DEAD_AT)
        .and_then(|t| {
            DateTime::parse_from_rfc3339(&t)
                .ok()
                .map(|t| t.with_timezone(&Utc))
        })
        .or_else(|| death.and_then(|(_, at)| DateTime::from_timestamp(at as i64, 0)))
        .unwrap_or_else(Utc::now);
    let attempts = message::header_number(properties, DEAD_ATTEMPTS).unwrap_or_else(|| {
        u64::from(message::attempt(
            properties,
            message.redelivered,
            crate::QueueType::Quorum,
        ))
    });
    Some(DeadLetter {
        envelope,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        reason,
        dead_at,
    })
}

/// The reason and time of the broker's first dead-lettering, from `x-death`.
fn first_death(properties: &lapin::BasicProperties) -> Option<(String, u64)> {
    let AMQPValue::FieldArray(deaths) = properties.headers().as_ref()?.inner().get(X_DEATH)? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().first()? else {
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

pub(crate) async fn replay(
    shared: &Shared,
    name: &SubscriberName,
    which: &Replay,
) -> Result<usize, BackendError> {
    let channel = shared.new_channel(true).await?;
    let messages = take_all(&channel, &shared.names.dead(name)).await?;
    let queue = shared.names.queue(name);
    let mut kept = Vec::new();
    let mut count = 0;
    for message in messages {
        let covered = message::envelope(&message.properties, &message.data)
            .is_ok_and(|e| which.covers(&e.id));
        if !covered {
            kept.push(message);
            continue;
        }
        let properties = message::rewrite(
            &message.properties,
            vec![],
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
