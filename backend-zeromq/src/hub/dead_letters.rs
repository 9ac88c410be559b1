//! A hub's dead letters: one file per dead letter under
//! `dead-letters/<subscriber>/`, written durably before the delivery counts
//! as settled, so nothing dead-lettered is lost and an operator can read
//! them with any tool.
//!
//! A file is a JSON line (`attempts`, `reason`, `dead_at`), then the
//! envelope in the wire format's one-byte-string form.

use std::path::{Path, PathBuf};

use archiver_core::journal::{JournalError, create_dir_durably, sync_dir, write_durably};
use archiver_core::wire;
use archiver_core::{DeadLetter, Envelope, Replay, SubscriberName};
use chrono::Utc;

use crate::protocol::DeadLetterMeta;

/// The dead-letter directories of one hub.
pub struct DeadLetterStore {
    root: PathBuf,
}

impl DeadLetterStore {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn dir(&self, name: &SubscriberName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Keeps a dead letter; durable when it returns.
    pub fn add(
        &self,
        name: &SubscriberName,
        seq: u64,
        envelope: &Envelope,
        attempts: u32,
        reason: &str,
    ) -> Result<(), JournalError> {
        let dir = self.dir(name);
        // Synced into its parent: the letter must not vanish with it.
        create_dir_durably(&dir)?;
        let meta = DeadLetterMeta {
            attempts,
            reason: reason.to_owned(),
            dead_at: Utc::now(),
        };
        let mut bytes = serde_json::to_vec(&meta).expect("dead-letter metadata serialises");
        bytes.push(b'\n');
        wire::append_bytes(envelope, &mut bytes);
        let path = dir.join(format!("{seq:020}-{}.dead", envelope.id));
        write_durably(&path, &bytes)
    }

    /// The subscriber's dead-letter files, in file order (journal order),
    /// without reading them.
    fn files(&self, name: &SubscriberName) -> Result<Vec<PathBuf>, JournalError> {
        let dir = self.dir(name);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(JournalError::io(&dir, e)),
        };
        let mut files = Vec::new();
        for entry in entries {
            let path = entry.map_err(|e| JournalError::io(&dir, e))?.path();
            if path.extension().is_some_and(|x| x == "dead") {
                files.push(path);
            }
        }
        files.sort();
        Ok(files)
    }

    /// How many dead letters the subscriber has: the directory is listed,
    /// no file is read.
    pub fn count(&self, name: &SubscriberName) -> Result<usize, JournalError> {
        self.files(name).map(|files| files.len())
    }

    /// The subscriber's dead letters, oldest first, with their files.
    pub fn list(&self, name: &SubscriberName) -> Result<Vec<(PathBuf, DeadLetter)>, JournalError> {
        let mut letters = self
            .files(name)?
            .into_iter()
            .map(|path| read(&path).map(|letter| (path, letter)))
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_by(|a, b| (a.1.dead_at, &a.0).cmp(&(b.1.dead_at, &b.0)));
        Ok(letters)
    }

    /// One page of the subscriber's dead letters in file order: those after
    /// the file named `after` (from the start when empty), up to about
    /// `max_bytes` of files but at least one. Returns them with the name to
    /// continue after, `None` on the last page.
    pub fn page(
        &self,
        name: &SubscriberName,
        after: &str,
        max_bytes: usize,
    ) -> Result<(Vec<DeadLetter>, Option<String>), JournalError> {
        let file_name = |path: &Path| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        let files = self.files(name)?;
        let rest = files
            .iter()
            .skip_while(|path| file_name(path).as_str() <= after);
        let mut letters = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        let mut rest = rest.peekable();
        while let Some(path) = rest.next() {
            let size = std::fs::metadata(path)
                .map_err(|e| JournalError::io(path, e))?
                .len() as usize;
            if !letters.is_empty() && bytes + size > max_bytes {
                return Ok((letters, last));
            }
            letters.push(read(path)?);
            bytes += size;
            last = Some(file_name(path));
            if rest.peek().is_none() {
                last = None;
            }
        }
        Ok((letters, last))
    }

    /// The dead letters `which` covers (oldest first), with their files.
    pub fn select(
        &self,
        name: &SubscriberName,
        which: &Replay,
    ) -> Result<Vec<(PathBuf, DeadLetter)>, JournalError> {
        let mut letters = self.list(name)?;
        letters.retain(|(_, letter)| which.covers(&letter.envelope.id));
        Ok(letters)
    }

    /// Forgets one dead letter (after it was replayed).
    pub fn remove(&self, path: &Path) -> Result<(), JournalError> {
        std::fs::remove_file(path).map_err(|e| JournalError::io(path, e))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    }

    /// Forgets every dead letter of a subscriber an operator purged;
    /// returns how many. Durable when it returns.
    pub fn purge(&self, name: &SubscriberName) -> Result<usize, JournalError> {
        let count = self.count(name)?;
        if count > 0 {
            self.remove_all(name)?;
            sync_dir(&self.root)?;
        }
        Ok(count)
    }

    /// Forgets every dead letter of a retired subscriber.
    pub fn remove_all(&self, name: &SubscriberName) -> Result<(), JournalError> {
        let dir = self.dir(name);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(JournalError::io(&dir, e)),
        }
    }
}

fn read(path: &Path) -> Result<DeadLetter, JournalError> {
    let corrupt = |reason: String| JournalError::Corrupt {
        path: path.to_owned(),
        offset: 0,
        reason,
    };
    let bytes = bytes::Bytes::from(std::fs::read(path).map_err(|e| JournalError::io(path, e))?);
    let end = bytes
        .iter()
        .position(|b| *b == b'\n')
        .ok_or_else(|| corrupt("no metadata line".into()))?;
    let meta: DeadLetterMeta =
        serde_json::from_slice(&bytes[..end]).map_err(|e| corrupt(e.to_string()))?;
    let envelope = wire::from_bytes(bytes.slice(end + 1..)).map_err(|e| corrupt(e.to_string()))?;
    Ok(meta.into_letter(envelope))
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::{EnvelopeId, ListChange, ListEvent, ListId, MailingList};

    #[test]
    fn dead_letters_are_kept_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::new(dir.path().to_owned());
        let name: SubscriberName = "web".parse().unwrap();
        let list = ListId::new("a.example.org").unwrap();
        let envelopes: Vec<Envelope> = (0..3)
            .map(|_| {
                Envelope::event(
                    &ListEvent::now(list.clone(), ListChange::ListDeleted),
                    &MailingList::public(list.clone()),
                )
            })
            .collect();
        for (seq, envelope) in envelopes.iter().enumerate() {
            store.add(&name, seq as u64, envelope, 5, "broken").unwrap();
        }
        let listed = store.list(&name).unwrap();
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[0].1.envelope, envelopes[0]);
        assert_eq!(
            (listed[0].1.attempts, listed[0].1.reason.as_str()),
            (5, "broken")
        );
        let one = store
            .select(
                &name,
                &Replay::Only(vec![envelopes[1].id, EnvelopeId::new()]),
            )
            .unwrap();
        assert_eq!(one.len(), 1);
        store.remove(&one[0].0).unwrap();
        assert_eq!(store.list(&name).unwrap().len(), 2);
        store.remove_all(&name).unwrap();
        assert!(store.list(&name).unwrap().is_empty());
    }

    #[test]
    fn dead_letters_are_counted_and_paged_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = DeadLetterStore::new(dir.path().to_owned());
        let name: SubscriberName = "web".parse().unwrap();
        let list = ListId::new("a.example.org").unwrap();
        let envelopes: Vec<Envelope> = (0..5)
            .map(|_| {
                Envelope::event(
                    &ListEvent::now(list.clone(), ListChange::ListDeleted),
                    &MailingList::public(list.clone()),
                )
            })
            .collect();
        for (seq, envelope) in envelopes.iter().enumerate().rev() {
            store.add(&name, seq as u64, envelope, 5, "broken").unwrap();
        }
        assert_eq!(store.count(&name).unwrap(), 5);
        let one_file = std::fs::metadata(&store.files(&name).unwrap()[0])
            .unwrap()
            .len() as usize;
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let (letters, next) = store.page(&name, &after, one_file * 2).unwrap();
            assert!(
                !letters.is_empty() && letters.len() <= 2,
                "{}",
                letters.len()
            );
            seen.extend(letters.into_iter().map(|l| l.envelope));
            match next {
                Some(next) => after = next,
                None => break,
            }
        }
        assert_eq!(seen, envelopes, "every one, in journal order");
    }
}
