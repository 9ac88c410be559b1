//! Named cursors (the next sequence each reader wants), kept in one small
//! JSON file replaced atomically: written aside, synced, renamed, and the
//! directory synced.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::JournalError;

const FILE: &str = "cursors.json";

/// The cursors file of a journal directory.
pub(crate) struct CursorFile {
    path: PathBuf,
}

impl CursorFile {
    pub fn new(dir: &Path) -> Self {
        Self {
            path: dir.join(FILE),
        }
    }

    /// The saved cursors; none when the file does not exist yet.
    pub fn load(&self) -> Result<BTreeMap<String, u64>, JournalError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| JournalError::Corrupt {
                path: self.path.clone(),
                offset: 0,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(JournalError::io(&self.path, e)),
        }
    }

    /// Replaces the saved cursors; durable when it returns.
    pub fn save(&self, cursors: &BTreeMap<String, u64>) -> Result<(), JournalError> {
        write_durably(
            &self.path,
            &serde_json::to_vec(cursors).expect("a map of numbers serialises"),
        )
    }
}

/// Replaces the file at `path` with `bytes` atomically and durably: written
/// aside, synced, renamed over it, and its directory synced. A crash leaves
/// the old content or the new, never a mix.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), JournalError> {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".new");
    let aside = PathBuf::from(aside);
    let io = |e| JournalError::io(&aside, e);
    let mut file = std::fs::File::create(&aside).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&aside, path).map_err(|e| JournalError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// Makes created, renamed or removed entries of `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))
}
