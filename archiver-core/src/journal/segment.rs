//! Segment files: `<first sequence, 20 digits>.log`, records back to back.
//! Opening one scans it, checking every record, and indexes where each
//! record starts. A v2 segment starts with a header naming its format;
//! v1 segments (no header) are read, never appended to.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::io::Read;

use super::JournalError;
use super::durable::sync_dir;
use super::record::{self, Format, Header, SEGMENT_MAGIC};
use super::scan::{self, Damage};

/// File name suffix of segments.
const SUFFIX: &str = ".log";

/// The path of the segment whose first record has sequence `first_seq`.
pub(crate) fn path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("{first_seq:020}{SUFFIX}"))
}

/// The segments in `dir`, by first sequence.
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, JournalError> {
    let io = |source| JournalError::io(dir, source);
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name();
        let Some(first) = name
            .to_str()
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((first, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// One segment in memory: where its records start, and an open file to
/// read them.
#[derive(Debug)]
pub(crate) struct Segment {
    pub first_seq: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// The record layout of this file; appends go only to v2 segments.
    pub format: Format,
    /// Byte offset of each record, in sequence order.
    pub offsets: Vec<u64>,
    /// Bytes of the segment header and valid records.
    pub len: u64,
}

impl Segment {
    /// Opens a segment and checks every record (see [`scan`]); the caller
    /// decides what damage means where (only the last segment may have a
    /// torn tail).
    pub fn scan(
        first_seq: u64,
        path: PathBuf,
        max_record: usize,
    ) -> Result<(Self, Option<Damage>), JournalError> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| JournalError::io(&path, e))?;
        let found = scan::scan(&bytes, first_seq, max_record);
        let segment = Self {
            first_seq,
            path,
            file: Arc::new(file),
            format: found.format,
            offsets: found.offsets,
            len: found.len,
        };
        Ok((segment, found.damage))
    }

    /// Creates an empty v2 segment, its header synced, and syncs the
    /// directory so the file survives a power loss.
    pub fn create(dir: &Path, first_seq: u64) -> Result<Self, JournalError> {
        let path = path(dir, first_seq);
        let io = |e| JournalError::io(&path, e);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        let mut segment = Self {
            first_seq,
            path,
            file: Arc::new(file),
            format: Format::V2,
            offsets: Vec::new(),
            len: 0,
        };
        // Removed again if the header cannot be written (e.g. no space).
        match segment.write_header().and_then(|()| sync_dir(dir)) {
            Ok(()) => Ok(segment),
            Err(error) => {
                let _ = std::fs::remove_file(&segment.path);
                Err(error)
            }
        }
    }

    /// Empties the segment and writes a v2 header, synced: for a last
    /// segment that holds no record (empty, or its header torn).
    pub fn write_header(&mut self) -> Result<(), JournalError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.write_all_at(SEGMENT_MAGIC, 0))
            .and_then(|()| self.file.sync_data())
            .map_err(|e| JournalError::io(&self.path, e))?;
        self.format = Format::V2;
        self.len = Format::V2.segment_header_len();
        Ok(())
    }

    /// The sequence the next record appended here gets.
    pub fn next_seq(&self) -> u64 {
        self.first_seq + self.offsets.len() as u64
    }

    /// Whether `seq` is in this segment.
    pub fn holds(&self, seq: u64) -> bool {
        (self.first_seq..self.next_seq()).contains(&seq)
    }
}

/// Reads only the header of record `seq` at `offset` (as far as the
/// format checks a header alone), so asking a record's age does not read
/// its payload.
pub(crate) fn read_header_at(
    file: &File,
    path: &Path,
    format: Format,
    offset: u64,
    seq: u64,
) -> Result<Header, JournalError> {
    let mut bytes = vec![0u8; format.header_len()];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| JournalError::io(path, e))?;
    let corrupt = |reason: String| no_longer_checks_out(path, offset, seq, reason);
    let header = record::decode_header(format, &bytes).map_err(corrupt)?;
    if header.seq != seq {
        return Err(corrupt(format!("it says sequence {}", header.seq)));
    }
    Ok(header)
}

/// Reads the record `seq` at `offset` of a segment in `format`, checked;
/// a length above `max_record` (changed since the scan) is corruption.
pub(crate) fn read_at(
    file: &File,
    path: &Path,
    format: Format,
    offset: u64,
    seq: u64,
    max_record: usize,
) -> Result<(Header, Vec<u8>), JournalError> {
    let header_len = format.header_len();
    let mut bytes = vec![0u8; header_len];
    file.read_exact_at(&mut bytes, offset)
        .map_err(|e| JournalError::io(path, e))?;
    let corrupt = |reason: String| no_longer_checks_out(path, offset, seq, reason);
    let len = format.claimed_len(&bytes) as usize;
    if len > max_record {
        return Err(corrupt(format!("a length of {len} bytes")));
    }
    bytes.resize(header_len + len, 0);
    file.read_exact_at(&mut bytes[header_len..], offset + header_len as u64)
        .map_err(|e| corrupt(e.to_string()))?;
    let (header, _) = record::decode(format, &bytes, max_record).map_err(corrupt)?;
    if header.seq != seq {
        return Err(corrupt(format!("it says sequence {}", header.seq)));
    }
    bytes.drain(..header_len);
    Ok((header, bytes))
}

/// Record `seq` at `offset` of `path` was valid at the scan and is not now.
fn no_longer_checks_out(path: &Path, offset: u64, seq: u64, reason: String) -> JournalError {
    JournalError::Corrupt {
        path: path.to_owned(),
        offset,
        reason: format!("record {seq} no longer checks out: {reason}"),
    }
}
