//! The journal directory's lock: one opener at a time, across processes
//! and within this one (an `flock` on `LOCK`, which dies with its process).
//!
//! Released with an explicit unlock, not by closing the file: an `flock`
//! belongs to the open file, and a child this process forks shares our
//! descriptor until it execs (or, a child that never execs, until it
//! exits). Closing ours would leave the journal locked by that child, and
//! a reopen at once would be refused as if another process held it (CI
//! saw exactly that when another test spawned a program at that moment).

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::JournalError;

/// The lock file of a journal directory (it holds the holder's pid).
pub(super) const LOCK_FILE: &str = "LOCK";

/// A held journal directory: released when dropped.
#[derive(Debug)]
pub(super) struct DirLock(File);

impl DirLock {
    /// Locks `dir` and writes our pid in its lock file, for the error a
    /// second opener gets.
    pub(super) fn acquire(dir: &Path) -> Result<Self, JournalError> {
        let lock_path = dir.join(LOCK_FILE);
        let io = |e| JournalError::io(&lock_path, e);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let holder = file
                    .read_to_string(&mut pid)
                    .ok()
                    .and_then(|_| pid.trim().parse().ok());
                return Err(JournalError::Locked {
                    dir: dir.to_owned(),
                    holder,
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        file.set_len(0).map_err(io)?;
        file.write_all_at(std::process::id().to_string().as_bytes(), 0)
            .map_err(io)?;
        Ok(Self(file))
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        // For every descriptor of this open file, a forked child's too.
        let _ = self.0.unlock();
    }
}
