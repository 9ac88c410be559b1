//! proptest strategies for what crosses a process boundary, shared by the
//! property tests of every decoder (the wire fields here, the ZeroMQ
//! frames in `backend-zeromq`), so each tests its decoder against the same
//! space of envelopes the encoder can write.

use bytes::Bytes;
use chrono::DateTime;
use proptest::prelude::*;

use crate::envelope::{Envelope, EnvelopeId, Kind};
use crate::list::{ArchivePolicy, ListAddress, ListId};

/// Latest instant RFC 3339 can write with a four-digit year, in ms.
const LAST_RFC3339_MILLIS: i64 = 253_402_300_799_999;

/// A valid list id, as [`ListId::new`] normalises it (lower case).
pub fn list_id() -> impl Strategy<Value = ListId> {
    "[a-z0-9][a-z0-9!$%&'+=?^_`{|}~-]{0,12}(\\.[a-z0-9-]{1,12}){0,3}"
        .prop_map(|text| ListId::new(&text).expect("the pattern only makes valid list ids"))
}

/// A Message-ID-Hash as the wire carries it: 32 characters of `A-Z2-7`.
pub fn message_id_hash() -> impl Strategy<Value = String> {
    "[A-Z2-7]{32}"
}

/// A valid posting address, as [`ListAddress::new`] normalises it.
pub fn list_address() -> impl Strategy<Value = ListAddress> {
    "[a-z0-9!#$%&'*+/=?^_`{|}~-]{1,12}(\\.[a-z0-9_-]{1,8}){0,2}@[a-z0-9-]{1,12}(\\.[a-z0-9-]{1,12}){0,3}"
        .prop_map(|text| {
            ListAddress::new(&text).expect("the pattern only makes valid list addresses")
        })
}

/// Any envelope the encoder can write: every field within its rules,
/// published to the millisecond, any body bytes.
pub fn envelope() -> impl Strategy<Value = Envelope> {
    (
        any::<u128>(),
        prop_oneof![Just(Kind::Mail), Just(Kind::Event)],
        list_id(),
        0..=LAST_RFC3339_MILLIS,
        "[^\r\n]{0,40}",
        proptest::option::of(message_id_hash()),
        proptest::option::of(prop_oneof![
            Just(ArchivePolicy::Public),
            Just(ArchivePolicy::Private),
            Just(ArchivePolicy::Never),
        ]),
        proptest::option::of(list_address()),
        proptest::option::of("[a-z0-9_]{1,64}"),
        proptest::collection::vec(any::<u8>(), 0..512),
    )
        .prop_map(
            |(id, kind, list_id, millis, content_type, hash, policy, address, event_type, body)| {
                Envelope {
                    id: uuid::Uuid::from_u128(id)
                        .to_string()
                        .parse::<EnvelopeId>()
                        .expect("a UUID's text parses back"),
                    kind,
                    list_id,
                    published_at: DateTime::from_timestamp_millis(millis)
                        .expect("the range is within chrono's"),
                    content_type,
                    message_id_hash: hash,
                    archive_policy: policy,
                    list_address: address,
                    event_type,
                    body: Bytes::from(body),
                }
            },
        )
}
