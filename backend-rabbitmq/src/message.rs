//! An envelope as an AMQP message: the wire fields as headers (what any
//! client reads), the usual properties for tools (message id, content type,
//! timestamp, type, persistent), the body as it is. Also the headers this
//! backend adds on retries and dead letters, and attempt numbers.

use archiver_core::Envelope;
use archiver_core::wire::{self, WireError};
use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};

use crate::config::QueueType;

/// Deliveries before this copy (set on retry copies; absent means 0).
pub(crate) const PRIOR_ATTEMPTS: &str = "x-archiver-attempts";
/// Why a dead letter is dead (the names every backend uses,
/// `docs/wire-format.md`).
pub(crate) const DEAD_REASON: &str = "dead-reason";
/// Deliveries a dead letter had.
pub(crate) const DEAD_ATTEMPTS: &str = "dead-attempts";
/// When it was dead-lettered (RFC 3339).
pub(crate) const DEAD_AT: &str = "dead-at";
/// The routing key the envelope was first published with, written on every
/// copy this backend makes (retries, dead letters, replays): a copy reaches
/// its queue through the subscriber's own exchange, so its own routing key no
/// longer says where it came from.
pub(crate) const ORIGIN: &str = "origin";
/// What earlier versions named the reason, attempts and time headers; read,
/// never written.
pub(crate) const LEGACY_DEAD: [&str; 3] = [
    "x-archiver-dead-reason",
    "x-archiver-dead-attempts",
    "x-archiver-dead-at",
];
/// Quorum queues' count of earlier returns of this message.
const DELIVERY_COUNT: &str = "x-delivery-count";
/// The broker's own dead-lettering record.
pub(crate) const X_DEATH: &str = "x-death";

/// Persistent delivery mode.
const PERSISTENT: u8 = 2;

/// The properties an envelope is published with.
pub(crate) fn properties(envelope: &Envelope) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in wire::to_fields(envelope) {
        headers.insert(
            ShortString::from(name),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    BasicProperties::default()
        .with_content_type(envelope.content_type.as_str().into())
        .with_message_id(envelope.id.to_string().into())
        .with_timestamp(envelope.published_at.timestamp().max(0) as u64)
        .with_type(envelope.kind.as_str().into())
        .with_delivery_mode(PERSISTENT)
        .with_app_id("mq-archiver".into())
        .with_headers(headers)
}

/// Rebuilds the envelope from a received message; its body is `body`,
/// shared, not copied (a delivery's `Vec<u8>` becomes `Bytes` for free).
pub(crate) fn envelope(properties: &BasicProperties, body: Bytes) -> Result<Envelope, WireError> {
    let texts: Vec<(&str, String)> = properties
        .headers()
        .iter()
        .flat_map(FieldTable::inner)
        .filter_map(|(name, value)| Some((name.as_str(), text(value)?)))
        .collect();
    wire::from_fields(texts.iter().map(|(k, v)| (*k, v.as_str())), body)
}

fn text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn number(value: &AMQPValue) -> Option<u64> {
    match *value {
        AMQPValue::ShortShortUInt(n) => Some(n.into()),
        AMQPValue::ShortUInt(n) => Some(n.into()),
        AMQPValue::LongUInt(n) => Some(n.into()),
        AMQPValue::ShortShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::ShortInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongInt(n) => u64::try_from(n).ok(),
        AMQPValue::LongLongInt(n) => u64::try_from(n).ok(),
        AMQPValue::Timestamp(n) => Some(n),
        _ => None,
    }
}

/// A header's value as text.
pub(crate) fn header_text(properties: &BasicProperties, name: &str) -> Option<String> {
    properties
        .headers()
        .as_ref()?
        .inner()
        .get(name)
        .and_then(text)
}

/// A header's value as a number.
pub(crate) fn header_number(properties: &BasicProperties, name: &str) -> Option<u64> {
    properties
        .headers()
        .as_ref()?
        .inner()
        .get(name)
        .and_then(number)
}

/// The routing key the message was first published with. A delivery
/// through the topic exchange is its own proof (a header claiming other
/// provenance is ignored); a copy (through the default exchange, or
/// dead-lettered by the broker) carries the `origin` header this backend
/// wrote, or else `x-death`'s first death through the topic exchange.
/// `None` for a copy of an earlier version, which wrote neither.
pub(crate) fn origin(
    properties: &BasicProperties,
    exchange: &str,
    routing_key: &str,
    topic_exchange: &str,
) -> Option<String> {
    if exchange == topic_exchange {
        return Some(routing_key.to_owned());
    }
    header_text(properties, ORIGIN).or_else(|| first_death_routing_key(properties, topic_exchange))
}

/// The first routing key of the oldest `x-death` entry (the list is newest
/// first) when that death was of a message published to `topic_exchange`.
fn first_death_routing_key(properties: &BasicProperties, topic_exchange: &str) -> Option<String> {
    let AMQPValue::FieldArray(deaths) = properties.headers().as_ref()?.inner().get(X_DEATH)? else {
        return None;
    };
    let AMQPValue::FieldTable(death) = deaths.as_slice().last()? else {
        return None;
    };
    if death.inner().get("exchange").and_then(text).as_deref() != Some(topic_exchange) {
        return None;
    }
    let AMQPValue::FieldArray(keys) = death.inner().get("routing-keys")? else {
        return None;
    };
    keys.as_slice().first().and_then(text)
}

/// The envelope, if its kind, access class and list id are those of the
/// routing key it was first published with (when that is known); an
/// earlier version's key (`<kind>.<list-id>`, no class) is accepted for
/// what was already in a queue at the upgrade, unless the list id's first
/// label is a class word (then the old key is another list's new one).
pub(crate) fn from_origin(envelope: Envelope, origin: Option<&str>) -> Result<Envelope, WireError> {
    let expected = crate::names::Names::routing_key(&envelope);
    let legacy = crate::names::Names::legacy_routing_key(&envelope);
    match origin {
        Some(origin) if origin != expected && Some(origin) != legacy.as_deref() => {
            Err(WireError::Invalid {
                field: "list-id",
                reason: format!(
                    "{} {} was published with routing key {origin}",
                    envelope.kind.as_str(),
                    envelope.list_id
                ),
            })
        }
        _ => Ok(envelope),
    }
}

/// The attempt this delivery is: deliveries of earlier copies, plus the
/// queue's count of returns of this one, plus this one.
pub(crate) fn attempt(
    properties: &BasicProperties,
    redelivered: bool,
    queue_type: QueueType,
) -> u32 {
    let prior = header_number(properties, PRIOR_ATTEMPTS).unwrap_or(0);
    let returns = match queue_type {
        QueueType::Quorum => header_number(properties, DELIVERY_COUNT).unwrap_or(0),
        QueueType::Classic => u64::from(redelivered),
    };
    u32::try_from(prior + returns + 1).unwrap_or(u32::MAX)
}

/// The message's properties with headers set and others removed: for retry
/// copies and dead letters, which keep every wire field.
pub(crate) fn rewrite(
    properties: &BasicProperties,
    set: Vec<(&str, AMQPValue)>,
    remove: &[&str],
) -> BasicProperties {
    let mut headers = FieldTable::default();
    for (name, value) in properties.headers().iter().flat_map(FieldTable::inner) {
        if !remove.contains(&name.as_str()) && name.as_str() != DELIVERY_COUNT {
            headers.insert(name.clone(), value.clone());
        }
    }
    for (name, value) in set {
        headers.insert(ShortString::from(name), value);
    }
    properties.clone().with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::{ListChange, ListEvent, ListId, MailingList};

    #[test]
    fn envelopes_round_trip_through_properties() {
        let event = ListEvent::now(
            ListId::new("a.example.org").unwrap(),
            ListChange::ListDeleted,
        );
        let envelope = Envelope::event(&event, &MailingList::public(event.list_id.clone()));
        let properties = properties(&envelope);
        assert_eq!(
            properties.message_id().as_ref().unwrap().as_str(),
            envelope.id.to_string()
        );
        assert_eq!(
            super::envelope(&properties, envelope.body.clone()).unwrap(),
            envelope
        );
    }

    #[test]
    fn attempts_add_earlier_copies_and_returns() {
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        let envelope = Envelope::event(
            &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
            &list,
        );
        let fresh = properties(&envelope);
        assert_eq!(attempt(&fresh, false, QueueType::Quorum), 1);
        let copy = rewrite(
            &fresh,
            vec![(PRIOR_ATTEMPTS, AMQPValue::LongLongInt(2))],
            &[],
        );
        assert_eq!(attempt(&copy, false, QueueType::Quorum), 3);
        let returned = rewrite(&copy, vec![], &[]).with_headers({
            let mut h = copy.headers().clone().unwrap();
            h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(1));
            h
        });
        assert_eq!(attempt(&returned, true, QueueType::Quorum), 4);
        assert_eq!(attempt(&fresh, true, QueueType::Classic), 2);
    }
}
