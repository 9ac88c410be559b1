//! Stream entries: an envelope as stream fields (the wire format's fields
//! plus `body`), reading entries out of Redis replies, and entry ids.

use std::fmt;
use std::str::FromStr;

use archiver_core::Envelope;
use archiver_core::wire::{self, WireError};
use bytes::Bytes;
use redis::Value;

/// Stream field holding the raw body bytes.
pub(crate) const BODY: &str = "body";

/// Appends the envelope's stream fields to an XADD: the wire fields, then
/// `body` last. The one place an envelope becomes stream fields, so every
/// writer puts the same fields in the same order; the body goes straight
/// into the command's buffer, with no intermediate copy.
pub(crate) fn add_envelope_fields(xadd: &mut redis::Cmd, envelope: &Envelope) {
    for (field, value) in wire::to_fields(envelope) {
        xadd.arg(field).arg(value);
    }
    xadd.arg(BODY).arg(&envelope.body[..]);
}

/// A stream entry as read from Redis: its fields as stored, in their
/// order. The values own the reply's buffers (no copy), so the envelope's
/// body and a dead letter written from these fields share them.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) id: EntryId,
    pub(crate) fields: Vec<(String, Bytes)>,
}

impl Entry {
    /// The text of a field, if present and UTF-8.
    pub(crate) fn text(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Rebuilds the envelope, its body sharing the entry's; a malformed
    /// entry is an error, never a guess.
    pub(crate) fn envelope(&self) -> Result<Envelope, WireError> {
        let body = self
            .fields
            .iter()
            .find(|(k, _)| k == BODY)
            .map(|(_, v)| v.clone())
            .ok_or(WireError::Missing(BODY))?;
        let texts = self
            .fields
            .iter()
            .filter(|(k, _)| k != BODY)
            .filter_map(|(k, v)| Some((k.as_str(), std::str::from_utf8(v).ok()?)));
        wire::from_fields(texts, body)
    }
}

/// A stream entry id, `<ms>-<seq>`, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct EntryId {
    pub(crate) ms: u64,
    pub(crate) seq: u64,
}

impl EntryId {
    pub(crate) const ZERO: Self = Self { ms: 0, seq: 0 };

    /// The largest id before millisecond `ms`: a group created there reads
    /// every entry added at `ms` or later.
    pub(crate) fn just_before(ms: u64) -> Self {
        match ms.checked_sub(1) {
            Some(previous) => Self {
                ms: previous,
                seq: u64::MAX,
            },
            None => Self::ZERO,
        }
    }

    /// The smallest id after this one.
    pub(crate) fn next(self) -> Self {
        match self.seq.checked_add(1) {
            Some(seq) => Self { ms: self.ms, seq },
            None => Self {
                ms: self.ms + 1,
                seq: 0,
            },
        }
    }
}

impl fmt::Display for EntryId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

impl FromStr for EntryId {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (ms, seq) = s.split_once('-').ok_or(())?;
        Ok(Self {
            ms: ms.parse().map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// Text of a reply value (bulk or simple string).
pub(crate) fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Integer of a reply value (integer or numeric string).
pub(crate) fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// Items of an array reply; empty for nil.
pub(crate) fn items(value: &Value) -> &[Value] {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => &[],
    }
}

/// [`items`], owned: the reply's buffers move out instead of being copied.
fn into_items(value: Value) -> Vec<Value> {
    match value {
        Value::Array(items) | Value::Set(items) => items,
        _ => Vec::new(),
    }
}

/// A field value as bytes, the bulk string's buffer moved, not copied.
fn into_bytes(value: Value) -> Option<Bytes> {
    match value {
        Value::BulkString(bytes) => Some(Bytes::from(bytes)),
        other => text(&other).map(Bytes::from),
    }
}

// The entry parsers below are kept by hand rather than redis-rs's typed
// stream replies (`StreamReadReply`, `StreamRangeReply`,
// `StreamClaimReply`, redis 1.8): `StreamReadReply::from_redis_value`
// clones the whole reply (bodies included) before parsing it, on every
// read; their `StreamId::map` is a `HashMap`, which loses the fields'
// order (a dead letter must keep it) and a field given twice (which
// `wire::from_fields` refuses as malformed); and a deleted (trimmed)
// pending entry, `[id, nil]` (as XREADGROUP gives it), becomes an entry
// with no fields (a nil converts to an empty map) instead of being
// recognised and skipped. These take the reply by value and move its
// buffers into the entries.

/// One `[id, [field, value, ...]]` entry; None for a deleted entry (nil).
pub(crate) fn entry(value: Value) -> Option<Entry> {
    let [id, fields]: [Value; 2] = into_items(value).try_into().ok()?;
    let id = text(&id)?.parse().ok()?;
    let Value::Array(flat) = fields else {
        return None;
    };
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(name), Some(value)) = (flat.next(), flat.next()) {
        if let (Some(name), Some(value)) = (text(&name), into_bytes(value)) {
            fields.push((name, value));
        }
    }
    Some(Entry { id, fields })
}

/// Entries of an XRANGE / XCLAIM reply.
pub(crate) fn entries(value: Value) -> Vec<Entry> {
    into_items(value).into_iter().filter_map(entry).collect()
}

/// `(stream key, entries)` of an XREAD / XREADGROUP reply (RESP2 arrays or
/// RESP3 maps); empty on timeout.
pub(crate) fn streams(value: Value) -> Vec<(String, Vec<Entry>)> {
    match value {
        Value::Map(pairs) => pairs
            .into_iter()
            .filter_map(|(k, v)| Some((text(&k)?, entries(v))))
            .collect(),
        other => into_items(other)
            .into_iter()
            .filter_map(|stream| {
                let [key, list]: [Value; 2] = into_items(stream).try_into().ok()?;
                Some((text(&key)?, entries(list)))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_order_and_step() {
        let id: EntryId = "1700000000000-5".parse().unwrap();
        assert_eq!(id.to_string(), "1700000000000-5");
        assert!(id < id.next());
        assert_eq!(
            EntryId::just_before(10),
            EntryId {
                ms: 9,
                seq: u64::MAX
            }
        );
        assert!(EntryId::just_before(10) < EntryId { ms: 10, seq: 0 });
        assert_eq!(
            EntryId {
                ms: 3,
                seq: u64::MAX
            }
            .next(),
            EntryId { ms: 4, seq: 0 }
        );
        assert!("nope".parse::<EntryId>().is_err());
    }

    #[test]
    fn parses_stream_replies_and_skips_deleted_entries() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("k"),
            Value::Array(vec![
                Value::Array(vec![
                    bulk("1-0"),
                    Value::Array(vec![bulk("body"), Value::BulkString(vec![0, 255])]),
                ]),
                Value::Array(vec![bulk("2-0"), Value::Nil]),
            ]),
        ])]);
        let parsed = streams(reply);
        assert_eq!(parsed.len(), 1);
        assert_eq!(parsed[0].1.len(), 1);
        assert_eq!(parsed[0].1[0].fields[0].1.as_ref(), [0, 255]);
    }

    /// RESP3 gives XREADGROUP's streams as a map; every field is kept, in
    /// its order, a repeated name included (the wire reader refuses it as
    /// malformed, which a map would have hidden).
    #[test]
    fn keeps_every_field_in_order_in_resp3_replies() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        let fields = ["kind", "mail", "x-later", "1", "kind", "event", "body", "b"];
        let reply = Value::Map(vec![(
            bulk("k"),
            Value::Array(vec![Value::Array(vec![
                bulk("7-1"),
                Value::Array(fields.iter().map(|f| bulk(f)).collect()),
            ])]),
        )]);
        let parsed = streams(reply);
        let [(key, entries)] = parsed.as_slice() else {
            panic!("one stream: {parsed:?}");
        };
        assert_eq!((key.as_str(), entries.len()), ("k", 1));
        let got: Vec<(&str, &[u8])> = entries[0]
            .fields
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_ref()))
            .collect();
        let want: Vec<(&str, &[u8])> = fields
            .chunks(2)
            .map(|pair| (pair[0], pair[1].as_bytes()))
            .collect();
        assert_eq!(got, want);
        assert_eq!(entries[0].id, EntryId { ms: 7, seq: 1 });
    }
}
