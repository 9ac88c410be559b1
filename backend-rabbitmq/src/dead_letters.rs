//! Dead letters: `<p>.dead.<name>` holds what a subscriber rejected or ran
//! out of attempts on, either copied by this backend (with the `dead-*`
//! and `origin` headers every backend uses, `docs/wire-format.md`) or
//! dead-lettered by the broker itself at the quorum queue's delivery limit
//! (with its `x-death` header). Every message is listed, malformed ones
//! too.
//!
//! Listing, purge and replay are one pass over the queue: each message it
//! holds when the pass starts is taken with `basic.get`, and a copy of the
//! ones that stay is published to the queue's end through the subscriber's
//! own exchange `<p>.x.<name>` (confirmed) before the
//! original is acknowledged. After the pass the queue is in its old order,
//! whatever its type, and no letter's delivery count grows: a requeue would
//! put a quorum queue's message at its end and count a delivery, so that
//! a delivery limit (from a policy) would at last drop or dead-letter it.
//! A page is therefore the first `limit` letters and the total, and cannot
//! start further on. Replay republishes the chosen valid ones into the
//! subscriber's queue with attempts reset; malformed ones are only purged.

use archiver_core::{BackendError, DeadLetter, RawDeadLetter, Replay, SubscriberName};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use std::collections::VecDeque;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions, QueuePurgeOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, PublisherConfirm};

use crate::Shared;
use crate::error::{backend_error, is_not_found};
use crate::message::{
    self, DEAD_AT, DEAD_ATTEMPTS, DEAD_REASON, LEGACY_DEAD, ORIGIN, PRIOR_ATTEMPTS, X_DEATH,
};
use crate::publish::refusal;
use crate::topology::{bind_own, declare_own_exchange, send_own, text};

/// The message as an operator sees it: its headers as text, its body, and
/// the dead-letter metadata (this backend's headers, else the broker's
/// `x-death`). `body` is the message's, taken out of it: the letter and
/// its envelope share it.
fn raw(shared: &Shared, message: &Delivery, body: &Bytes) -> RawDeadLetter {
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
        body: body.clone(),
        reason,
        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
        dead_at,
        origin,
        envelope: message::envelope(properties, body.clone()),
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

/// What a pass does with one dead letter.
enum Fate {
    /// A copy goes to the queue's end, as it is.
    Keep,
    /// A copy with these properties goes into this queue (replay).
    Move {
        queue: String,
        properties: Box<BasicProperties>,
    },
    /// Deleted (purge).
    Delete,
}

/// Copies a pass has published but not yet seen confirmed, at most: bounds
/// its memory, and what a crash in the middle duplicates.
const IN_FLIGHT: usize = 128;

/// A letter taken, and the confirm of its copy (none when deleted).
struct Taken {
    delivery: Delivery,
    copy: Option<(String, PublisherConfirm)>,
}

/// One pass over the messages the dead-letter queue holds when it starts,
/// in order, giving each the fate `fate` decides; returns how many the
/// queue held (0 when it does not exist). Each original is acknowledged
/// only after its copy is confirmed, so a failure in between duplicates a
/// letter, never loses one; what the pass took and did not settle goes
/// back when its channel closes.
async fn pass(
    shared: &Shared,
    name: &SubscriberName,
    replaying: bool,
    mut fate: impl FnMut(&Delivery, &Bytes) -> Fate,
) -> Result<u32, BackendError> {
    let dead = shared.names.dead(name);
    let channel = shared.new_channel(true).await?;
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    let total = match channel
        .queue_declare(dead.as_str().into(), passive, FieldTable::default())
        .await
    {
        Ok(declared) => declared.message_count(),
        // A subscriber that never subscribed has no dead-letter queue.
        Err(error) if is_not_found(&error) => return Ok(0),
        Err(error) => return Err(backend_error(error)),
    };
    // Copies go through the subscriber's own exchange; a queue an earlier
    // version declared is bound to it here.
    declare_own_exchange(&channel, shared, name).await?;
    bind_own(&channel, shared, name, &dead).await?;
    if replaying {
        bind_own(&channel, shared, name, &shared.names.queue(name)).await?;
    }
    let mut unsettled = VecDeque::new();
    // Only as many as it held: after them come the copies.
    for _ in 0..total {
        let Some(message) = channel
            .basic_get(dead.as_str().into(), BasicGetOptions::default())
            .await
            .map_err(backend_error)?
        else {
            break; // another reader took the rest
        };
        let mut delivery = message.delivery;
        // Taken out, not copied: the fate, its letter and the copy share it.
        let body = Bytes::from(std::mem::take(&mut delivery.data));
        let copy = match fate(&delivery, &body) {
            Fate::Keep => {
                // Without the delivery count the queue added.
                let properties = message::rewrite(&delivery.properties, vec![], &[]);
                Some((dead.clone(), properties))
            }
            Fate::Move { queue, properties } => Some((queue, *properties)),
            Fate::Delete => None,
        };
        let copy = match copy {
            Some((queue, properties)) => {
                let confirm = send_own(&channel, shared, name, &queue, &body, properties).await?;
                Some((queue, confirm))
            }
            None => None,
        };
        unsettled.push_back(Taken { delivery, copy });
        if unsettled.len() >= IN_FLIGHT
            && let Some(taken) = unsettled.pop_front()
        {
            settle(taken).await?;
        }
    }
    while let Some(taken) = unsettled.pop_front() {
        settle(taken).await?;
    }
    let _ = channel.close(200, "dead letters passed".into()).await;
    Ok(total)
}

/// Waits for the copy's confirm, then acknowledges the original.
async fn settle(taken: Taken) -> Result<(), BackendError> {
    if let Some((queue, confirm)) = taken.copy
        && let Some(refused) = refusal(&confirm.await.map_err(backend_error)?)
    {
        return Err(BackendError::Broker(
            format!(
                "a dead letter's copy into {queue} was not taken ({refused}); the letter stays"
            )
            .into(),
        ));
    }
    taken
        .delivery
        .acker
        .ack(BasicAckOptions::default())
        .await
        .map(drop)
        .map_err(backend_error)
}

/// The first `limit` dead letters and the total.
pub(crate) async fn page(
    shared: &Shared,
    name: &SubscriberName,
    limit: usize,
) -> Result<DeadLetterPage, BackendError> {
    let mut letters = Vec::new();
    let total = pass(shared, name, false, |delivery, body| {
        if letters.len() < limit {
            letters.push(raw(shared, delivery, body));
        }
        Fate::Keep
    })
    .await?;
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
    let mut count = 0;
    pass(shared, name, false, |delivery, body| {
        if raw(shared, delivery, body).is_malformed() {
            count += 1;
            Fate::Delete
        } else {
            Fate::Keep
        }
    })
    .await?;
    Ok(count)
}

/// Moves the chosen valid dead letters into the subscriber's queue, with
/// their dead-letter headers removed; returns how many.
pub(crate) async fn replay(
    shared: &Shared,
    name: &SubscriberName,
    which: &Replay,
) -> Result<usize, BackendError> {
    let queue = shared.names.queue(name);
    let mut count = 0;
    pass(shared, name, true, |delivery, body| {
        let letter = raw(shared, delivery, body);
        let Ok(envelope) = &letter.envelope else {
            return Fate::Keep;
        };
        if !which.covers(&envelope.id) {
            return Fate::Keep;
        }
        if letter.is_malformed() {
            tracing::warn!(subscriber = %name, envelope_id = %envelope.id, reason = letter.reason, "a malformed dead letter is not replayed");
            return Fate::Keep;
        }
        let origin = letter
            .origin
            .clone()
            .unwrap_or_else(|| crate::names::Names::routing_key(envelope));
        let properties = message::rewrite(
            &delivery.properties,
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
        count += 1;
        Fate::Move {
            queue: queue.clone(),
            properties: Box::new(properties),
        }
    })
    .await?;
    Ok(count)
}
