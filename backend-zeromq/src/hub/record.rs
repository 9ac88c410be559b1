//! What the hub appends to its journal: an envelope for every subscriber
//! that selects it, or a replayed dead letter for one subscriber.
//!
//! A record is one kind byte, then for a replay the subscriber name's
//! length (one byte) and the name, then the envelope in the wire format's
//! one-byte-string form (`archiver_core::wire::to_bytes`).

use archiver_core::wire::{self, WireError};
use archiver_core::{Envelope, SubscriberName};
use bytes::Bytes;

const PUBLISHED: u8 = 0;
const REPLAYED: u8 = 1;

/// A record read back.
pub struct HubRecord {
    /// For a replay, the only subscriber it is for.
    pub only_for: Option<SubscriberName>,
    /// The envelope.
    pub envelope: Envelope,
}

/// A published envelope.
pub fn published(envelope: &Envelope) -> Vec<u8> {
    let mut out = vec![PUBLISHED];
    out.extend_from_slice(&wire::to_bytes(envelope));
    out
}

/// A dead letter replayed into one subscriber's queue.
pub fn replayed(name: &SubscriberName, envelope: &Envelope) -> Vec<u8> {
    let name = name.as_str().as_bytes();
    let mut out = vec![REPLAYED, name.len() as u8];
    out.extend_from_slice(name);
    out.extend_from_slice(&wire::to_bytes(envelope));
    out
}

/// Reads a record; the envelope's body shares `payload`'s memory.
pub fn read(payload: Bytes) -> Result<HubRecord, WireError> {
    let framing = |what: &str| WireError::Framing(format!("hub journal record: {what}"));
    match payload.first() {
        Some(&PUBLISHED) => Ok(HubRecord {
            only_for: None,
            envelope: wire::from_bytes(payload.slice(1..))?,
        }),
        Some(&REPLAYED) => {
            let len = usize::from(*payload.get(1).ok_or_else(|| framing("no name length"))?);
            let name = payload
                .get(2..2 + len)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| SubscriberName::new(n).ok())
                .ok_or_else(|| framing("bad subscriber name"))?;
            Ok(HubRecord {
                only_for: Some(name),
                envelope: wire::from_bytes(payload.slice(2 + len..))?,
            })
        }
        _ => Err(framing("unknown kind")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::{ListChange, ListEvent, ListId, MailingList};

    #[test]
    fn records_round_trip() {
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        let envelope = Envelope::event(
            &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
            &list,
        );
        let plain = read(published(&envelope).into()).unwrap();
        assert_eq!((plain.only_for, plain.envelope), (None, envelope.clone()));
        let name: SubscriberName = "web".parse().unwrap();
        let replay = read(replayed(&name, &envelope).into()).unwrap();
        assert_eq!((replay.only_for, replay.envelope), (Some(name), envelope));
        assert!(read(Bytes::from_static(b"\x07")).is_err());
        assert!(read(Bytes::from_static(b"\x01\x09ab")).is_err());
    }
}
