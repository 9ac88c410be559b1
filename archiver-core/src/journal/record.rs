//! One record on disk: a fixed header with checksums, then the payload.
//!
//! Format v2 (segments that start with [`SEGMENT_MAGIC`]):
//!
//! ```text
//! u32 payload length | u64 sequence | u64 append time (ms) | u64 synced before
//! | u32 CRC-32C of the 28 header bytes before it | u32 CRC-32C of the payload | payload
//! ```
//!
//! "Synced before" is the sequence up to which (exclusive) the journal was
//! synced when the record was written. It lets recovery tell a torn tail
//! from damage to an acknowledged record: damage at record `k` followed by
//! a valid record whose "synced before" is above `k` means `k` was synced
//! (and so acknowledged) before that record was written, so it is
//! corruption, never a torn write. The header's own checksum lets recovery
//! look for such records past the damage cheaply.
//!
//! Format v1 (written up to 0.x; no segment magic), still read:
//!
//! ```text
//! u32 payload length | u32 CRC-32C of the rest | u64 sequence | u64 append time (ms) | payload
//! ```
//!
//! All little-endian. The checksums cover every field, so a torn write,
//! stale bytes or zeros never pass for a record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The first bytes of every v2 segment file.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"MQAJRNL2";

/// Which record layout a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// No segment header, 24-byte record headers, no "synced before".
    V1,
    /// [`SEGMENT_MAGIC`], then 36-byte record headers.
    V2,
}

impl Format {
    /// Bytes before a record's payload.
    pub fn header_len(self) -> usize {
        match self {
            Self::V1 => 24,
            Self::V2 => 36,
        }
    }

    /// Bytes before the first record of a segment.
    pub fn segment_header_len(self) -> u64 {
        match self {
            Self::V1 => 0,
            Self::V2 => SEGMENT_MAGIC.len() as u64,
        }
    }

    /// The payload length a header claims, unchecked (to know how much to
    /// read). `header` holds at least [`Format::header_len`] bytes.
    pub fn claimed_len(self, header: &[u8]) -> u32 {
        u32::from_le_bytes(header[..4].try_into().expect("4 bytes"))
    }
}

/// A record's header, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub seq: u64,
    pub appended_at_ms: u64,
    /// v2 only (0 in v1): the journal was synced below this sequence when
    /// the record was written.
    pub synced_before: u64,
}

impl Header {
    /// When the record was appended.
    pub fn appended_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.appended_at_ms)
    }
}

fn u32_at(bytes: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(bytes: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"))
}

/// Decodes the header at the start of `bytes`, checking what the format
/// lets a header check on its own: v2's header checksum (v1 headers are
/// covered only by the record's checksum). Enough to read a record's time
/// without reading its payload.
pub(crate) fn decode_header(format: Format, bytes: &[u8]) -> Result<Header, String> {
    if bytes.len() < format.header_len() {
        return Err(format!("{} bytes, shorter than a header", bytes.len()));
    }
    Ok(match format {
        Format::V1 => Header {
            len: u32_at(bytes, 0),
            seq: u64_at(bytes, 8),
            appended_at_ms: u64_at(bytes, 16),
            synced_before: 0,
        },
        Format::V2 => {
            if crc32c::crc32c(&bytes[..28]) != u32_at(bytes, 28) {
                return Err("header checksum mismatch".into());
            }
            Header {
                len: u32_at(bytes, 0),
                seq: u64_at(bytes, 4),
                appended_at_ms: u64_at(bytes, 12),
                synced_before: u64_at(bytes, 20),
            }
        }
    })
}

/// Decodes the record at the start of `bytes` and checks it: it must fit
/// in `bytes`, be at most `max_record` long and pass its checksums.
/// Returns the header and the record's total size.
pub(crate) fn decode(
    format: Format,
    bytes: &[u8],
    max_record: usize,
) -> Result<(Header, usize), String> {
    let header_len = format.header_len();
    let header = decode_header(format, bytes)?;
    let total = header_len + header.len as usize;
    if header.len as usize > max_record || total > bytes.len() {
        return Err(format!("a record of {} bytes does not fit", header.len));
    }
    let payload = &bytes[header_len..total];
    let intact = match format {
        Format::V1 => u32_at(bytes, 4) == checksum_v1(header.seq, header.appended_at_ms, payload),
        Format::V2 => u32_at(bytes, 32) == crc32c::crc32c(payload),
    };
    if !intact {
        return Err("checksum mismatch".into());
    }
    Ok((header, total))
}

fn checksum_v1(seq: u64, appended_at_ms: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &appended_at_ms.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Appends the record, encoded in format v2, to `out`.
pub(crate) fn encode(
    out: &mut Vec<u8>,
    seq: u64,
    appended_at_ms: u64,
    synced_before: u64,
    payload: &[u8],
) {
    let len = u32::try_from(payload.len()).expect("record size checked against the limit");
    let start = out.len();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    out.extend_from_slice(&synced_before.to_le_bytes());
    let header_crc = crc32c::crc32c(&out[start..]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends the record, encoded in format v1, to `out`: what journals
/// before v2 wrote, for the tests of reading them.
#[cfg(test)]
pub(crate) fn encode_v1(out: &mut Vec<u8>, seq: u64, appended_at_ms: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("small test record");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum_v1(seq, appended_at_ms, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&appended_at_ms.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_reads_back_and_any_flipped_bit_is_caught() {
        for format in [Format::V1, Format::V2] {
            let mut out = Vec::new();
            match format {
                Format::V1 => encode_v1(&mut out, 7, 1_700_000_000_000, b"payload"),
                Format::V2 => encode(&mut out, 7, 1_700_000_000_000, 5, b"payload"),
            }
            let (header, total) = decode(format, &out, 100).unwrap();
            assert_eq!((header.len, header.seq, total), (7, 7, out.len()));
            assert_eq!(&out[format.header_len()..], b"payload");
            for bit in 0..out.len() * 8 {
                let mut bad = out.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                let intact = decode(format, &bad, 100)
                    .is_ok_and(|(h, total)| total == bad.len() && h.seq == 7);
                assert!(!intact, "{format:?}: flipping bit {bit} went unnoticed");
            }
            let zeros = vec![0u8; format.header_len()];
            assert!(decode(format, &zeros, 100).is_err());
        }
    }
}
