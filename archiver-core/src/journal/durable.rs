//! Making file-system changes durable: a file replaced atomically, a
//! directory created, an entry's directory synced. A created or renamed
//! file survives a power loss only once its directory is synced too.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::JournalError;

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
    sync_dir(parent(path))
}

/// Makes created, renamed or removed entries of `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<(), JournalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| JournalError::io(dir, e))
}

/// Creates `dir` and any missing parents, syncing the parent of each one
/// created, so the new entries survive a power loss.
pub fn create_dir_durably(dir: &Path) -> Result<(), JournalError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| JournalError::io(dir, e))?;
    for created in missing.iter().rev() {
        sync_dir(parent(created))?;
    }
    Ok(())
}

/// The directory holding `path` (`.` for a bare name).
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_created_with_their_parents_relative_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_dir_durably(&deep).unwrap();
        assert!(deep.is_dir());
        create_dir_durably(&deep).unwrap();
        assert_eq!(parent(Path::new("bare")), Path::new("."));
        assert_eq!(parent(&deep), dir.path().join("a/b"));
    }
}
