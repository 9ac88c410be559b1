//! What the hub appends to its journal: an envelope for every subscriber
//! that selects it, or a replayed dead letter for one subscriber.
//!
//! A record is one kind byte; for a replay, then the subscriber name's
//! length (one byte) and the name; then a [`Header`]: a flags byte (bit 0
//! an event rather than a mail, bit 1 public, bit 2 a membership event),
//! the list id's length (one byte) and the list id; then the envelope in
//! the wire format's one-byte-string form (`archiver_core::wire::to_bytes`),
//! which is what DELIVER and the tail carry. Selecting, granting and
//! delivering read only the header and slice the envelope's bytes: a record
//! is decoded only to keep it as a dead letter.
//!
//! Kinds 0 (published) and 1 (replayed), written by hubs of protocol 1 and
//! 2, have no header; they are still read, decoding the envelope for it.

use archiver_core::wire::{self, WireError};
use archiver_core::{Envelope, Grant, Kind, ListId, SubscriberName};
use bytes::Bytes;

/// Kinds of hubs before protocol 3: no header.
const PUBLISHED_BARE: u8 = 0;
const REPLAYED_BARE: u8 = 1;
/// Kinds with a header.
const PUBLISHED: u8 = 2;
const REPLAYED: u8 = 3;

const EVENT: u8 = 1;
const PUBLIC: u8 = 2;
const MEMBERSHIP_EVENT: u8 = 4;

/// What selection, grants and the tail read of an envelope, kept before
/// its bytes so that none of them decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// [`Envelope::kind`].
    pub kind: Kind,
    /// [`Envelope::list_id`].
    pub list_id: ListId,
    /// [`Envelope::is_public`].
    pub public: bool,
    /// [`Envelope::is_membership_event`].
    pub membership_event: bool,
}

impl Header {
    /// The header of an envelope.
    pub fn of(envelope: &Envelope) -> Self {
        Self {
            kind: envelope.kind,
            list_id: envelope.list_id.clone(),
            public: envelope.is_public(),
            membership_event: envelope.is_membership_event(),
        }
    }

    /// Whether `grant` may receive the envelope: [`Grant::may_receive`]
    /// from the header, without decoding.
    pub fn admitted_by(&self, grant: &Grant) -> bool {
        grant.admits(&self.list_id, self.public, self.membership_event)
    }

    fn write(&self, out: &mut Vec<u8>) {
        let mut flags = 0;
        if self.kind == Kind::Event {
            flags |= EVENT;
        }
        if self.public {
            flags |= PUBLIC;
        }
        if self.membership_event {
            flags |= MEMBERSHIP_EVENT;
        }
        let list = self.list_id.as_str().as_bytes();
        out.push(flags);
        // A list id is at most `MAX_LIST_ID_LEN` (200) bytes: its length
        // fits the one byte (checked at compile time below).
        const _: () = assert!(archiver_core::list::MAX_LIST_ID_LEN <= u8::MAX as usize);
        out.push(list.len() as u8);
        out.extend_from_slice(list);
    }

    /// Reads a header at the start of `bytes`; returns it and its length.
    fn read(bytes: &[u8]) -> Result<(Self, usize), WireError> {
        let (&flags, rest) = bytes.split_first().ok_or_else(|| framing("no header"))?;
        let (&len, rest) = rest
            .split_first()
            .ok_or_else(|| framing("no list id length"))?;
        let list_id = rest
            .get(..usize::from(len))
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| ListId::new(l).ok())
            .ok_or_else(|| framing("bad list id"))?;
        let header = Self {
            kind: if flags & EVENT != 0 {
                Kind::Event
            } else {
                Kind::Mail
            },
            list_id,
            public: flags & PUBLIC != 0,
            membership_event: flags & MEMBERSHIP_EVENT != 0,
        };
        Ok((header, 2 + usize::from(len)))
    }
}

/// A record read back, its envelope not decoded.
#[derive(Debug, Clone)]
pub struct HubRecord {
    /// For a replay, the only subscriber it is for.
    pub only_for: Option<SubscriberName>,
    /// What routing reads of the envelope.
    pub header: Header,
    /// The envelope in the one-byte-string form, sharing the record's
    /// memory.
    pub envelope: Bytes,
}

impl HubRecord {
    /// The envelope, decoded; its body shares the record's memory.
    pub fn decode(&self) -> Result<Envelope, WireError> {
        wire::from_bytes(self.envelope.clone())
    }
}

/// A published envelope: the record to append, and the record as
/// [`read`] gives it back (for the live tail), sharing its memory.
pub fn published(envelope: &Envelope) -> (Bytes, HubRecord) {
    let header = Header::of(envelope);
    let mut out = vec![PUBLISHED];
    header.write(&mut out);
    let at = out.len();
    wire::append_bytes(envelope, &mut out);
    let payload = Bytes::from(out);
    let record = HubRecord {
        only_for: None,
        header,
        envelope: payload.slice(at..),
    };
    (payload, record)
}

/// A dead letter replayed into one subscriber's queue.
pub fn replayed(name: &SubscriberName, envelope: &Envelope) -> Vec<u8> {
    let name = name.as_str().as_bytes();
    let mut out = vec![REPLAYED, name.len() as u8];
    out.extend_from_slice(name);
    Header::of(envelope).write(&mut out);
    wire::append_bytes(envelope, &mut out);
    out
}

/// Reads a record: the header, and the envelope's bytes as a slice of
/// `payload`. Only a record of a hub before protocol 3 is decoded (for its
/// header).
pub fn read(payload: Bytes) -> Result<HubRecord, WireError> {
    let kind = *payload.first().ok_or_else(|| framing("empty"))?;
    let (only_for, at) = match kind {
        PUBLISHED | PUBLISHED_BARE => (None, 1),
        REPLAYED | REPLAYED_BARE => {
            let len = usize::from(*payload.get(1).ok_or_else(|| framing("no name length"))?);
            let name = payload
                .get(2..2 + len)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(|n| SubscriberName::new(n).ok())
                .ok_or_else(|| framing("bad subscriber name"))?;
            (Some(name), 2 + len)
        }
        _ => return Err(framing("unknown kind")),
    };
    let (header, envelope) = if kind == PUBLISHED || kind == REPLAYED {
        let (header, len) = Header::read(&payload[at..])?;
        (header, payload.slice(at + len..))
    } else {
        let envelope = payload.slice(at..);
        (Header::of(&wire::from_bytes(envelope.clone())?), envelope)
    };
    Ok(HubRecord {
        only_for,
        header,
        envelope,
    })
}

fn framing(what: &str) -> WireError {
    WireError::Framing(format!("hub journal record: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::{ArchivePolicy, ListChange, ListEvent, MailingList, MemberRole};

    fn envelopes() -> Vec<Envelope> {
        let public = MailingList::public(ListId::new("a.example.org").unwrap());
        let private = MailingList {
            archive_policy: ArchivePolicy::Private,
            ..MailingList::public(ListId::new("b.example.org").unwrap())
        };
        let joined = ListChange::MembershipAdded {
            address: "ann@example.org".into(),
            role: MemberRole::Member,
            display_name: None,
        };
        vec![
            Envelope::event(
                &ListEvent::now(public.list_id.clone(), ListChange::ListDeleted),
                &public,
            ),
            Envelope::event(&ListEvent::now(private.list_id.clone(), joined), &private),
        ]
    }

    /// A record as hubs before protocol 3 wrote it.
    fn bare(kind: u8, name: Option<&str>, envelope: &Envelope) -> Bytes {
        let mut out = vec![kind];
        if let Some(name) = name {
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
        }
        out.extend_from_slice(&wire::to_bytes(envelope));
        Bytes::from(out)
    }

    #[test]
    fn records_round_trip_without_decoding() {
        let name: SubscriberName = "web".parse().unwrap();
        for envelope in envelopes() {
            let (payload, written) = published(&envelope);
            let plain = read(payload).unwrap();
            assert_eq!(
                (&written.header, &written.envelope),
                (&plain.header, &plain.envelope)
            );
            assert_eq!(plain.only_for, None);
            assert_eq!(plain.header, Header::of(&envelope));
            assert_eq!(plain.envelope.to_vec(), wire::to_bytes(&envelope));
            assert_eq!(plain.decode().unwrap(), envelope);
            let replay = read(replayed(&name, &envelope).into()).unwrap();
            assert_eq!(replay.only_for, Some(name.clone()));
            assert_eq!(replay.header, Header::of(&envelope));
            assert_eq!(replay.envelope.to_vec(), wire::to_bytes(&envelope));
        }
        let [public, private] = &envelopes()[..] else {
            unreachable!()
        };
        assert!(Header::of(public).public && !Header::of(public).membership_event);
        assert!(!Header::of(private).public && Header::of(private).membership_event);
    }

    #[test]
    fn records_of_earlier_hubs_are_read() {
        for envelope in envelopes() {
            let plain = read(bare(PUBLISHED_BARE, None, &envelope)).unwrap();
            assert_eq!(
                (plain.only_for, plain.header),
                (None, Header::of(&envelope))
            );
            assert_eq!(plain.envelope.to_vec(), wire::to_bytes(&envelope));
            let replay = read(bare(REPLAYED_BARE, Some("web"), &envelope)).unwrap();
            assert_eq!(replay.only_for, Some("web".parse().unwrap()));
            assert_eq!(replay.header, Header::of(&envelope));
        }
    }

    #[test]
    fn malformed_records_are_refused() {
        for bad in [
            &b""[..],
            b"\x07",
            b"\x01\x09ab",
            b"\x02",
            b"\x02\x00",
            b"\x02\x00\x09ab",
            b"\x02\x00\x03A B",
            b"\x00no fields",
        ] {
            assert!(read(Bytes::copy_from_slice(bad)).is_err(), "{bad:?}");
        }
    }
}
