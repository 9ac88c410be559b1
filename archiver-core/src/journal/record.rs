//! One record on disk: a fixed header with a checksum, then the payload.
//!
//! ```text
//! u32 payload length | u32 CRC-32C of the rest | u64 sequence | u64 append time (ms) | payload
//! ```
//! All little-endian. The checksum covers sequence, time and payload, so a
//! torn write, stale bytes or zeros never pass for a record.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bytes before the payload.
pub(crate) const HEADER_LEN: usize = 24;

/// A record's header, as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub len: u32,
    pub crc: u32,
    pub seq: u64,
    pub appended_at_ms: u64,
}

impl Header {
    pub fn parse(bytes: &[u8; HEADER_LEN]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
        let u64_at = |i: usize| u64::from_le_bytes(bytes[i..i + 8].try_into().expect("8 bytes"));
        Self {
            len: u32_at(0),
            crc: u32_at(4),
            seq: u64_at(8),
            appended_at_ms: u64_at(16),
        }
    }

    /// Whether `payload` is the one this header was written for.
    pub fn matches(&self, payload: &[u8]) -> bool {
        self.crc == checksum(self.seq, self.appended_at_ms, payload)
    }

    /// When the record was appended.
    pub fn appended_at(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.appended_at_ms)
    }
}

fn checksum(seq: u64, appended_at_ms: u64, payload: &[u8]) -> u32 {
    let crc = crc32c::crc32c(&seq.to_le_bytes());
    let crc = crc32c::crc32c_append(crc, &appended_at_ms.to_le_bytes());
    crc32c::crc32c_append(crc, payload)
}

/// Appends the encoded record to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, appended_at_ms: u64, payload: &[u8]) {
    let len = u32::try_from(payload.len()).expect("record size checked against the limit");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(seq, appended_at_ms, payload).to_le_bytes());
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
        let mut out = Vec::new();
        encode(&mut out, 7, 1_700_000_000_000, b"payload");
        let header = Header::parse(out[..HEADER_LEN].try_into().unwrap());
        assert_eq!((header.len, header.seq), (7, 7));
        assert!(header.matches(&out[HEADER_LEN..]));
        for bit in 0..out.len() * 8 {
            let mut bad = out.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let header = Header::parse(bad[..HEADER_LEN].try_into().unwrap());
            let payload = &bad[HEADER_LEN..];
            let intact =
                header.len as usize == payload.len() && header.seq == 7 && header.matches(payload);
            assert!(!intact, "flipping bit {bit} went unnoticed");
        }
        let zeros = [0u8; HEADER_LEN];
        assert!(!Header::parse(&zeros).matches(&[]));
    }
}
