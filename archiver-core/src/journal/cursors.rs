//! Named cursors (the next sequence each reader wants), kept in one small
//! JSON file replaced atomically: written aside, synced, renamed, and the
//! directory synced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::JournalError;
use super::durable::write_durably;

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

    /// Deletes the cursors file (and a replacement left half-written).
    pub fn remove(&self) -> Result<(), JournalError> {
        for path in [self.path.clone(), self.path.with_extension("json.new")] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(JournalError::io(&path, e)),
            }
        }
        Ok(())
    }

    /// Replaces the saved cursors; durable when it returns.
    pub fn save(&self, cursors: &BTreeMap<String, u64>) -> Result<(), JournalError> {
        write_durably(
            &self.path,
            &serde_json::to_vec(cursors).expect("a map of numbers serialises"),
        )
    }
}
