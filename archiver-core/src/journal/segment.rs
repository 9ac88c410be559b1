//! Segment files: `<first sequence, 20 digits>.log`, records back to back.
//! Opening one scans it, checking every record, and indexes where each
//! record starts.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::JournalError;
use super::record::{HEADER_LEN, Header};

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
    /// Byte offset of each record, in sequence order.
    pub offsets: Vec<u64>,
    /// Bytes of valid records.
    pub len: u64,
}

/// Where a scan stopped before the end of the file.
pub(crate) struct Damage {
    pub offset: u64,
    pub reason: String,
}

impl Segment {
    /// Opens a segment and checks every record. Stops at the first record
    /// that is torn, fails its checksum or is out of sequence; the caller
    /// decides whether that is a torn tail (last segment) or corruption.
    pub fn scan(
        first_seq: u64,
        path: PathBuf,
        max_record: usize,
    ) -> Result<(Self, Option<Damage>), JournalError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        let size = file
            .metadata()
            .map_err(|e| JournalError::io(&path, e))?
            .len();
        let mut offsets = Vec::new();
        let mut offset = 0u64;
        let mut payload = Vec::new();
        let damage = loop {
            if offset == size {
                break None;
            }
            let expected = first_seq + offsets.len() as u64;
            let damaged = |reason: String| Some(Damage { offset, reason });
            if size - offset < HEADER_LEN as u64 {
                break damaged(format!("{} bytes, shorter than a header", size - offset));
            }
            let header = read_header_at(&file, &path, offset)?;
            let end = offset + HEADER_LEN as u64 + u64::from(header.len);
            if header.len as usize > max_record || end > size {
                break damaged(format!("a record of {} bytes does not fit", header.len));
            }
            payload.resize(header.len as usize, 0);
            file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
                .map_err(|e| JournalError::io(&path, e))?;
            if !header.matches(&payload) {
                break damaged("checksum mismatch".into());
            }
            if header.seq != expected {
                break damaged(format!("sequence {} where {expected} was due", header.seq));
            }
            offsets.push(offset);
            offset = end;
        };
        let segment = Self {
            first_seq,
            path,
            file: Arc::new(file),
            offsets,
            len: offset,
        };
        Ok((segment, damage))
    }

    /// Creates an empty segment.
    pub fn create(dir: &Path, first_seq: u64) -> Result<Self, JournalError> {
        let path = path(dir, first_seq);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| JournalError::io(&path, e))?;
        Ok(Self {
            first_seq,
            path,
            file: Arc::new(file),
            offsets: Vec::new(),
            len: 0,
        })
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

/// Reads the record at `offset` and checks it.
pub(crate) fn read_at(
    file: &File,
    path: &Path,
    offset: u64,
    seq: u64,
) -> Result<(Header, Vec<u8>), JournalError> {
    let header = read_header_at(file, path, offset)?;
    let mut payload = vec![0u8; header.len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN as u64)
        .map_err(|e| JournalError::io(path, e))?;
    if header.seq != seq || !header.matches(&payload) {
        return Err(JournalError::Corrupt {
            path: path.to_owned(),
            offset,
            reason: format!("record {seq} no longer matches its checksum"),
        });
    }
    Ok((header, payload))
}

/// Reads only the header of the record at `offset`.
pub(crate) fn read_header_at(
    file: &File,
    path: &Path,
    offset: u64,
) -> Result<Header, JournalError> {
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, offset)
        .map_err(|e| JournalError::io(path, e))?;
    Ok(Header::parse(&header))
}
