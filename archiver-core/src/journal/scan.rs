//! Recovery's scanner: reads a segment's bytes (in memory, so it can be
//! checked fast over any damage), indexes its records, and says whether
//! damage it met is a torn tail or corruption.
//!
//! The rule: records are read in order until one fails its checks or is
//! out of sequence. Past that damage at expected sequence `k`, the rest of
//! the segment is searched for valid records. If one of them was written
//! after record `k` had been synced (v2: its "synced before" is above `k`;
//! v1, which cannot tell: any valid later record), record `k` was
//! acknowledged, and the damage is [`Verdict::Corrupt`]. Otherwise the
//! damage lies in the last unsynced writes: [`Verdict::TornTail`], cut at
//! the damage. Whether a torn tail may be cut is the caller's call (only
//! in the last segment).

use super::record::{self, Format, SEGMENT_MAGIC};

/// What a scan found.
#[derive(Debug)]
pub(crate) struct Scan {
    pub format: Format,
    /// Byte offset of each valid record, in sequence order.
    pub offsets: Vec<u64>,
    /// End of the valid records (at least the segment header's length,
    /// when the header is whole).
    pub len: u64,
    /// Damage met before the end, if any.
    pub damage: Option<Damage>,
}

/// Where the valid records end before the file does, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Damage {
    pub offset: u64,
    pub reason: String,
    pub verdict: Verdict,
}

/// What damage means for the records it touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Only records that were never synced are affected: cut them off.
    TornTail,
    /// An acknowledged record is damaged: report, never cut.
    Corrupt,
}

/// Scans the bytes of a segment whose first record has `first_seq`.
pub(crate) fn scan(bytes: &[u8], first_seq: u64, max_record: usize) -> Scan {
    let format = if bytes.starts_with(SEGMENT_MAGIC) {
        Format::V2
    } else if SEGMENT_MAGIC.starts_with(bytes) {
        // Empty, or a v2 segment whose header write was torn: no records.
        return Scan {
            format: Format::V2,
            offsets: Vec::new(),
            len: 0,
            damage: (!bytes.is_empty()).then(|| Damage {
                offset: 0,
                reason: format!("a segment header of {} bytes", bytes.len()),
                verdict: Verdict::TornTail,
            }),
        };
    } else {
        Format::V1
    };
    let mut offsets = Vec::new();
    let mut offset = format.segment_header_len() as usize;
    let damage = loop {
        if offset == bytes.len() {
            break None;
        }
        let expected = first_seq + offsets.len() as u64;
        let reason = match record::decode(format, &bytes[offset..], max_record) {
            Ok((header, total)) if header.seq == expected => {
                offsets.push(offset as u64);
                offset += total;
                continue;
            }
            Ok((header, _)) => format!("sequence {} where {expected} was due", header.seq),
            Err(reason) => reason,
        };
        let verdict = match synced_after(format, bytes, offset, expected, max_record) {
            Some(_) => Verdict::Corrupt,
            None => Verdict::TornTail,
        };
        break Some(Damage {
            offset: offset as u64,
            reason,
            verdict,
        });
    };
    // A v2 segment whose header took a flipped bit reads as v1 with no
    // valid record; its v2 records give it away.
    let damage = match damage {
        Some(damage) if format == Format::V1 && offsets.is_empty() => {
            let highest = first_seq + (bytes.len() / Format::V2.header_len()) as u64;
            let v2 = find_record(
                Format::V2,
                bytes,
                0,
                first_seq..=highest,
                max_record,
                |_| true,
            );
            match v2 {
                Some(_) => Some(Damage {
                    offset: 0,
                    reason: "the segment header is damaged".into(),
                    verdict: Verdict::Corrupt,
                }),
                None => Some(damage),
            }
        }
        other => other,
    };
    Scan {
        format,
        offsets,
        len: offset as u64,
        damage,
    }
}

/// The offset of a valid record from byte `from` on, with a sequence in
/// `seqs`, that `wanted` accepts.
fn find_record(
    format: Format,
    bytes: &[u8],
    from: usize,
    seqs: std::ops::RangeInclusive<u64>,
    max_record: usize,
    wanted: impl Fn(&record::Header) -> bool,
) -> Option<usize> {
    let header_len = format.header_len();
    let seq_field = match format {
        Format::V1 => 8,
        Format::V2 => 4,
    };
    let mut at = from;
    while at + header_len <= bytes.len() {
        let field = &bytes[at + seq_field..at + seq_field + 8];
        let candidate = u64::from_le_bytes(field.try_into().expect("8 bytes"));
        if seqs.contains(&candidate)
            && let Ok((header, total)) = record::decode(format, &bytes[at..], max_record)
        {
            if wanted(&header) {
                return Some(at);
            }
            at += total;
            continue;
        }
        at += 1;
    }
    None
}

/// The offset of a valid record past `damaged` (where record `seq` was
/// due) that was written after record `seq` had been synced.
fn synced_after(
    format: Format,
    bytes: &[u8],
    damaged: usize,
    seq: u64,
    max_record: usize,
) -> Option<usize> {
    // No later record can have a sequence beyond one per header's worth.
    let highest = seq + (bytes.len() / format.header_len()) as u64 + 1;
    find_record(
        format,
        bytes,
        damaged + 1,
        seq + 1..=highest,
        max_record,
        |header| match format {
            Format::V1 => true,
            Format::V2 => header.synced_before > seq,
        },
    )
}
