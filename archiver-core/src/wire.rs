//! The envelope's metadata as named text fields: the one mapping every
//! backend uses (AMQP headers, Redis stream fields, ZeroMQ frames), so a
//! client in any language reads the same names. See `docs/wire-format.md`.

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, SubsecRound, Utc};

use crate::envelope::{Envelope, EnvelopeId, Kind};
use crate::list::{ListAddress, ListId};

/// Version of the wire format this library writes: 1.2, which adds the
/// optional `event-type` to 1.1 (which added the optional `list-address`
/// to 1.0). A reader takes any 1.x (ignoring the
/// fields it does not know) and refuses a different major version rather
/// than guess.
pub const WIRE_FORMAT_VERSION: &str = "1.2";

/// The major version a reader accepts.
const MAJOR_VERSION: &str = "1";

/// Field names, in the order they are written.
pub mod field {
    /// Wire format version, `1.2` (readers take any `1.x`).
    pub const FORMAT_VERSION: &str = "format-version";
    /// Envelope id, a hyphenated UUIDv7.
    pub const ENVELOPE_ID: &str = "envelope-id";
    /// `mail` or `event`.
    pub const KIND: &str = "kind";
    /// RFC 2919 list id, lower case.
    pub const LIST_ID: &str = "list-id";
    /// RFC 3339 UTC with milliseconds, e.g. `2026-11-24T10:00:00.123Z`.
    pub const PUBLISHED_AT: &str = "published-at";
    /// MIME type of the body.
    pub const CONTENT_TYPE: &str = "content-type";
    /// HyperKitty's Message-ID-Hash (mails only): exactly 32 characters of
    /// `A-Z2-7`, see [`super::is_message_id_hash`].
    pub const MESSAGE_ID_HASH: &str = "message-id-hash";
    /// `public` or `private` (mails only).
    pub const ARCHIVE_POLICY: &str = "archive-policy";
    /// The list's posting address, when known (since 1.1), e.g.
    /// `dev@lists.example.org`, see [`crate::ListAddress`].
    pub const LIST_ADDRESS: &str = "list-address";
    /// The event's `type` (events only, since 1.2), e.g.
    /// `membership_added`: lower-case letters, digits and `_`, see
    /// [`super::is_event_type`].
    pub const EVENT_TYPE: &str = "event-type";
}

/// Why received metadata is not a valid envelope: the message is malformed
/// and must be dead-lettered, not guessed at.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// A required field is absent.
    #[error("wire field {0:?} is missing")]
    Missing(&'static str),
    /// A field is present but its value is not valid.
    #[error("wire field {field:?} has an invalid value: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A single-string envelope (see [`to_bytes`]) is not framed as it
    /// should be.
    #[error("envelope framing: {0}")]
    Framing(String),
    /// Written by an incompatible version of the wire format.
    #[error("wire format version {0:?} is not supported (this library reads version 1.x)")]
    UnsupportedVersion(String),
}

/// True when `value` can be a Message-ID-Hash: exactly 32 characters of the
/// RFC 4648 base32 alphabet `A-Z2-7`. Archives use the hash as a file name,
/// so nothing else (no `/`, no `..`) may come off the wire.
pub fn is_message_id_hash(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
}

/// Longest `event-type` a reader accepts.
const MAX_EVENT_TYPE_LEN: usize = 64;

/// True when `value` can be an `event-type`: 1 to 64 characters of
/// `a-z`, `0-9` and `_`, as the event JSON's `type` is written. Brokers
/// and hubs route on it (AMQP header matches, topic segments), so nothing
/// else comes off the wire.
pub fn is_event_type(value: &str) -> bool {
    (1..=MAX_EVENT_TYPE_LEN).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The envelope's metadata as `(name, value)` pairs, version first.
pub fn to_fields(envelope: &Envelope) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        (field::FORMAT_VERSION, WIRE_FORMAT_VERSION.to_owned()),
        (field::ENVELOPE_ID, envelope.id.to_string()),
        (field::KIND, envelope.kind.as_str().to_owned()),
        (field::LIST_ID, envelope.list_id.as_str().to_owned()),
        (
            field::PUBLISHED_AT,
            envelope
                .published_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        ),
        (field::CONTENT_TYPE, envelope.content_type.clone()),
    ];
    if let Some(hash) = &envelope.message_id_hash {
        fields.push((field::MESSAGE_ID_HASH, hash.clone()));
    }
    if let Some(policy) = envelope.archive_policy {
        fields.push((field::ARCHIVE_POLICY, policy.as_str().to_owned()));
    }
    if let Some(address) = &envelope.list_address {
        fields.push((field::LIST_ADDRESS, address.as_str().to_owned()));
    }
    if let Some(event_type) = &envelope.event_type {
        fields.push((field::EVENT_TYPE, event_type.clone()));
    }
    fields
}

/// Why a `message-id-hash` value is refused.
const NOT_A_MESSAGE_ID_HASH: &str = "not 32 characters of A-Z2-7";
/// Why an `event-type` value is refused.
const NOT_AN_EVENT_TYPE: &str = "not 1 to 64 characters of a-z, 0-9 and _";

/// Refuses an envelope whose fields [`from_fields`] would refuse once
/// received: only the free-text fields can be wrong (a `content_type`
/// with a line break, a `message_id_hash` or `event_type` of the wrong
/// shape), since the others are typed. Envelopes built by
/// [`Envelope::mail`] and [`Envelope::event`] always pass; a hand-built one
/// might not, and a store that routes without decoding (the ZeroMQ hub)
/// checks it before keeping it, so no reader ever meets one.
pub fn check(envelope: &Envelope) -> Result<(), WireError> {
    let invalid = |field: &'static str, reason: &str| WireError::Invalid {
        field,
        reason: reason.to_owned(),
    };
    if envelope.content_type.contains(['\r', '\n']) {
        return Err(invalid(field::CONTENT_TYPE, "holds a line break"));
    }
    if let Some(hash) = &envelope.message_id_hash
        && !is_message_id_hash(hash)
    {
        return Err(invalid(field::MESSAGE_ID_HASH, NOT_A_MESSAGE_ID_HASH));
    }
    if let Some(event_type) = &envelope.event_type
        && !is_event_type(event_type)
    {
        return Err(invalid(field::EVENT_TYPE, NOT_AN_EVENT_TYPE));
    }
    Ok(())
}

/// Rebuilds an envelope from received fields and body. Unknown fields are
/// ignored so that later minor versions can add some; what [`to_fields`]
/// cannot have written is refused: a known field given twice, a value with
/// a line break, a `message-id-hash` that [`is_message_id_hash`] refuses,
/// an `event-type` that [`is_event_type`] refuses.
pub fn from_fields<'a>(
    fields: impl IntoIterator<Item = (&'a str, &'a str)>,
    body: Bytes,
) -> Result<Envelope, WireError> {
    let mut found: [Option<&str>; 10] = [None; 10];
    const NAMES: [&str; 10] = [
        field::FORMAT_VERSION,
        field::ENVELOPE_ID,
        field::KIND,
        field::LIST_ID,
        field::PUBLISHED_AT,
        field::CONTENT_TYPE,
        field::MESSAGE_ID_HASH,
        field::ARCHIVE_POLICY,
        field::LIST_ADDRESS,
        field::EVENT_TYPE,
    ];
    let invalid = |field: &'static str, reason: String| WireError::Invalid { field, reason };
    for (name, value) in fields {
        if let Some(i) = NAMES.iter().position(|n| *n == name) {
            if found[i].is_some() {
                return Err(invalid(NAMES[i], "given twice".into()));
            }
            if value.contains(['\r', '\n']) {
                return Err(invalid(NAMES[i], "holds a line break".into()));
            }
            found[i] = Some(value);
        }
    }
    let required = |i: usize| found[i].ok_or(WireError::Missing(NAMES[i]));

    let version = required(0)?;
    if version.split('.').next() != Some(MAJOR_VERSION) {
        return Err(WireError::UnsupportedVersion(version.to_owned()));
    }
    Ok(Envelope {
        id: required(1)?
            .parse::<EnvelopeId>()
            .map_err(|e| invalid(field::ENVELOPE_ID, e.to_string()))?,
        kind: required(2)?
            .parse::<Kind>()
            .map_err(|e| invalid(field::KIND, e))?,
        list_id: ListId::new(required(3)?).map_err(|e| invalid(field::LIST_ID, e.to_string()))?,
        // The wire carries milliseconds: finer digits (another writer's
        // microseconds) are dropped here, so the envelope re-encodes to
        // itself when a hub or the journal writes it on.
        published_at: DateTime::parse_from_rfc3339(required(4)?)
            .map_err(|e| invalid(field::PUBLISHED_AT, e.to_string()))?
            .with_timezone(&Utc)
            .trunc_subsecs(3),
        content_type: required(5)?.to_owned(),
        message_id_hash: found[6]
            .map(|hash| match is_message_id_hash(hash) {
                true => Ok(hash.to_owned()),
                false => Err(invalid(
                    field::MESSAGE_ID_HASH,
                    NOT_A_MESSAGE_ID_HASH.to_owned(),
                )),
            })
            .transpose()?,
        archive_policy: found[7]
            .map(|p| p.parse().map_err(|e| invalid(field::ARCHIVE_POLICY, e)))
            .transpose()?,
        list_address: found[8]
            .map(|a| ListAddress::new(a).map_err(|e| invalid(field::LIST_ADDRESS, e.to_string())))
            .transpose()?,
        event_type: found[9]
            .map(|t| match is_event_type(t) {
                true => Ok(t.to_owned()),
                false => Err(invalid(field::EVENT_TYPE, NOT_AN_EVENT_TYPE.to_owned())),
            })
            .transpose()?,
        body,
    })
}

/// The envelope as one byte string, for stores and transports that carry
/// one (the local journal): the fields as `name: value` lines, in the
/// order of [`to_fields`], an empty line, then the body untouched.
///
/// ```
/// use archiver_core::{wire, Envelope, ListEvent, ListChange, ListId, MailingList};
/// let list = MailingList::public(ListId::new("dev.example.org").unwrap());
/// let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
/// let envelope = Envelope::event(&event, &list);
/// let bytes = wire::to_bytes(&envelope);
/// assert!(bytes.starts_with(b"format-version: 1.2\n"));
/// assert_eq!(wire::from_bytes(bytes.into()).unwrap(), envelope);
/// ```
pub fn to_bytes(envelope: &Envelope) -> Vec<u8> {
    let mut out = Vec::with_capacity(envelope.body.len() + 256);
    append_bytes(envelope, &mut out);
    out
}

/// Appends [`to_bytes`]' form of the envelope to `out`: for a record that
/// puts its own header before it (the ZeroMQ hub's journal), so the body
/// is copied once, into the record, rather than into a string first.
pub fn append_bytes(envelope: &Envelope, out: &mut Vec<u8>) {
    out.reserve(envelope.body.len() + 256);
    for (name, value) in to_fields(envelope) {
        // Field values are ids, names and dates: never a line break.
        debug_assert!(!value.contains(['\r', '\n']), "{name} holds a line break");
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out.push(b'\n');
    out.extend_from_slice(&envelope.body);
}

/// Reads what [`to_bytes`] wrote; the body shares `bytes`' memory.
pub fn from_bytes(bytes: Bytes) -> Result<Envelope, WireError> {
    let end = bytes
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| WireError::Framing("no empty line after the fields".into()))?;
    let head = std::str::from_utf8(&bytes[..end])
        .map_err(|_| WireError::Framing("fields are not UTF-8".into()))?;
    let fields = head
        .lines()
        .map(|line| {
            line.split_once(": ")
                .ok_or_else(|| WireError::Framing(format!("field line {line:?} has no \": \"")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    from_fields(fields, bytes.slice(end + 2..))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ListChange, ListEvent};
    use crate::list::{ArchivePolicy, MailingList};
    use crate::mail::{ArchivedMail, MailLimits};

    #[test]
    fn mail_and_event_round_trip_through_fields() {
        let mail = ArchivedMail::parse(
            Bytes::from_static(b"Message-ID: <1@x>\n\nhi\n"),
            &MailLimits::default(),
        )
        .unwrap();
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
        for envelope in [Envelope::mail(&mail, &list), Envelope::event(&event, &list)] {
            let fields = to_fields(&envelope);
            assert_eq!(fields[0], ("format-version", "1.2".to_owned()));
            let back = from_fields(
                fields.iter().map(|(k, v)| (*k, v.as_str())),
                envelope.body.clone(),
            )
            .unwrap();
            assert_eq!(back, envelope);
        }
    }

    /// A 1.1 envelope as another writer sends it: the list's posting
    /// address, and a field this library does not know.
    const VERSION_1_1: &[u8] = b"format-version: 1.1\n\
envelope-id: 01936c2e-7b1a-7cc3-9f0e-2a4b5c6d7e8f\n\
kind: mail\n\
list-id: dev.lists.example.org\n\
published-at: 2026-11-24T10:00:00.123Z\n\
content-type: message/rfc822\n\
message-id-hash: RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE\n\
archive-policy: public\n\
list-address: dev@lists.example.org\n\
x-later-field: ignored\n\
\n\
Message-ID: <12345>\n\nbody\n";

    #[test]
    fn reads_1_1_with_its_list_address_and_ignores_unknown_fields() {
        let envelope = from_bytes(Bytes::from_static(VERSION_1_1)).unwrap();
        assert_eq!(
            envelope.list_address.as_ref().map(ListAddress::as_str),
            Some("dev@lists.example.org")
        );
        assert_eq!(&envelope.body[..], b"Message-ID: <12345>\n\nbody\n");
        assert_eq!(from_bytes(to_bytes(&envelope).into()).unwrap(), envelope);
    }

    /// What the spools, journals and other writers of version 1.0 hold.
    #[test]
    fn reads_1_0_without_a_list_address() {
        let text = std::str::from_utf8(VERSION_1_1)
            .unwrap()
            .replace("format-version: 1.1\n", "format-version: 1\n")
            .replace("list-address: dev@lists.example.org\n", "")
            .replace("x-later-field: ignored\n", "");
        let envelope = from_bytes(Bytes::from(text)).unwrap();
        assert_eq!(envelope.list_address, None);
        assert_eq!(envelope.list_id.as_str(), "dev.lists.example.org");
    }

    /// Each event type travels as its `event-type`, with its list's
    /// archive policy, and comes back equal.
    #[test]
    fn every_event_type_round_trips_with_its_event_type_and_policy() {
        let id = ListId::new("dev.lists.example.org").unwrap();
        for policy in [ArchivePolicy::Public, ArchivePolicy::Private] {
            let list = MailingList {
                archive_policy: policy,
                ..MailingList::public(id.clone())
            };
            for event in ListEvent::samples(&id) {
                let envelope = Envelope::event(&event, &list);
                let fields = to_fields(&envelope);
                assert_eq!(
                    &fields[6..],
                    &[
                        ("archive-policy", policy.as_str().to_owned()),
                        ("event-type", event.change.type_name().to_owned()),
                    ]
                );
                let back = from_bytes(to_bytes(&envelope).into()).unwrap();
                assert_eq!(back, envelope);
                assert_eq!(back.is_public(), policy == ArchivePolicy::Public);
                assert_eq!(ListEvent::from_json(&back.body).unwrap(), event);
            }
        }
    }

    /// A membership event as a 1.1 writer sent it: no `event-type`. It
    /// still decodes, and counts as a membership event (it may carry a
    /// member's address) until its body is read.
    #[test]
    fn reads_a_1_1_event_without_event_type_as_possibly_membership() {
        let text = b"format-version: 1.1\n\
envelope-id: 01936c2e-7b1a-7cc3-9f0e-2a4b5c6d7e8f\n\
kind: event\n\
list-id: dev.lists.example.org\n\
published-at: 2026-11-24T10:00:00.123Z\n\
content-type: application/json\n\
\n\
{\"list_id\":\"dev.lists.example.org\",\"at\":\"2026-11-24T10:00:00Z\",\"type\":\"list_deleted\"}";
        let envelope = from_bytes(Bytes::from_static(text)).unwrap();
        assert_eq!(envelope.kind, Kind::Event);
        assert_eq!(envelope.event_type, None);
        assert_eq!(envelope.archive_policy, None);
        assert!(!envelope.is_public());
        assert!(envelope.is_membership_event());
    }

    #[test]
    fn refuses_an_event_type_that_is_not_a_lower_case_token() {
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
        let fields = to_fields(&Envelope::event(&event, &list));
        let with = |value: &str| {
            let mut fields = fields.clone();
            fields.last_mut().unwrap().1 = value.to_owned();
            from_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), Bytes::new())
        };
        assert!(with("membership_added").is_ok());
        for bad in [
            "",
            "Membership_added",
            "membership-added",
            "a.b",
            "a b",
            &"x".repeat(65),
        ] {
            assert!(
                matches!(
                    with(bad),
                    Err(WireError::Invalid {
                        field: "event-type",
                        ..
                    })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn list_address_round_trips_on_mails_and_events_and_bad_ones_are_refused() {
        let mail = ArchivedMail::parse(
            Bytes::from_static(b"Message-ID: <1@x>\n\nhi\n"),
            &MailLimits::default(),
        )
        .unwrap();
        let list = MailingList::public(ListId::new("a.example.org").unwrap())
            .with_address("a@example.org")
            .unwrap();
        let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
        for envelope in [Envelope::mail(&mail, &list), Envelope::event(&event, &list)] {
            let fields = to_fields(&envelope);
            assert!(
                fields.contains(&("list-address", "a@example.org".to_owned())),
                "{fields:?}"
            );
            assert_eq!(from_bytes(to_bytes(&envelope).into()).unwrap(), envelope);
        }
        for bad in ["nobody", "a@b@", "a b@example.org", ""] {
            let mut fields = mail_fields();
            fields.push((field::LIST_ADDRESS, bad.to_owned()));
            assert!(
                matches!(
                    from_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), Bytes::new()),
                    Err(WireError::Invalid {
                        field: "list-address",
                        ..
                    })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn single_string_envelopes_round_trip_and_bad_framing_is_refused() {
        let mail = ArchivedMail::parse(
            Bytes::from_static(b"Message-ID: <1@x>\n\nhi\n\n\nbody with empty lines\n"),
            &MailLimits::default(),
        )
        .unwrap();
        let envelope = Envelope::mail(
            &mail,
            &MailingList::public(ListId::new("a.example.org").unwrap()),
        );
        assert_eq!(from_bytes(to_bytes(&envelope).into()).unwrap(), envelope);
        for bad in [
            &b"format-version: 1\nno end"[..],
            b"format-version 1\n\n",
            b"\xff: 1\n\n",
        ] {
            assert!(matches!(
                from_bytes(Bytes::copy_from_slice(bad)),
                Err(WireError::Framing(_))
            ));
        }
    }

    fn mail_fields() -> Vec<(&'static str, String)> {
        let mail = ArchivedMail::parse(
            Bytes::from_static(b"Message-ID: <1@x>\n\nhi\n"),
            &MailLimits::default(),
        )
        .unwrap();
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        to_fields(&Envelope::mail(&mail, &list))
    }

    fn with_field(name: &str, value: &str) -> Result<Envelope, WireError> {
        let mut fields = mail_fields();
        fields.iter_mut().find(|(n, _)| *n == name).unwrap().1 = value.to_owned();
        from_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), Bytes::new())
    }

    /// Archives join the hash into file paths: only what a Message-ID-Hash
    /// can be (32 characters of `A-Z2-7`) gets through.
    #[test]
    fn refuses_a_message_id_hash_that_is_not_32_base32_characters() {
        assert!(with_field(field::MESSAGE_ID_HASH, "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE").is_ok());
        for bad in [
            "../../../../tmp/escaped",
            "/etc/passwd",
            "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOL",
            "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLEA",
            "rszcg7igphfirw3emtvmmdnjmncvcole",
            "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCO1E",
            "RSZCG7IGPHFIRW3EMTVMMDNJMNCV/../",
            "",
        ] {
            assert!(
                matches!(
                    with_field(field::MESSAGE_ID_HASH, bad),
                    Err(WireError::Invalid {
                        field: "message-id-hash",
                        ..
                    })
                ),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn refuses_fields_the_encoder_cannot_write() {
        let mut twice = mail_fields();
        twice.push(twice[1].clone());
        let refused = from_fields(twice.iter().map(|(k, v)| (*k, v.as_str())), Bytes::new());
        assert!(matches!(
            refused,
            Err(WireError::Invalid { field: "envelope-id", reason }) if reason == "given twice"
        ));
        assert!(matches!(
            with_field(field::CONTENT_TYPE, "text/plain\r\nx: y"),
            Err(WireError::Invalid {
                field: "content-type",
                ..
            })
        ));
    }

    #[test]
    fn refuses_missing_invalid_and_future_versions() {
        assert_eq!(
            from_fields([], Bytes::new()),
            Err(WireError::Missing("format-version"))
        );
        assert_eq!(
            from_fields([("format-version", "2")], Bytes::new()),
            Err(WireError::UnsupportedVersion("2".into()))
        );
        let err = from_fields(
            [("format-version", "1"), ("envelope-id", "nope")],
            Bytes::new(),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            WireError::Invalid {
                field: "envelope-id",
                ..
            }
        ));
    }
}
