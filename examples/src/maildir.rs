//! An archive server that stores every mail exactly as received in a Maildir
//! per list: `<root>/<list-id>/{tmp,new,cur}`.
//!
//! Each mail is written to `tmp/`, synced, then renamed into `new/` under its
//! Message-ID-Hash, so a crash never leaves a partial file in `new/` and a
//! redelivered mail is recognised as a duplicate instead of stored twice.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use mq_archiver::async_trait;
use mq_archiver::{Delivery, Envelope, Handler, HandlerError, Kind, wire};

/// Stores mails in Maildirs; acknowledges only once the file is on disk.
pub struct MaildirArchive {
    root: PathBuf,
    sync: bool,
    stored: AtomicU64,
    duplicates: AtomicU64,
}

impl MaildirArchive {
    /// An archive under `root`; with `sync`, each file and its directory are
    /// fsynced before the mail is acknowledged (turn off only for demos).
    pub fn new(root: impl Into<PathBuf>, sync: bool) -> Self {
        Self {
            root: root.into(),
            sync,
            stored: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        }
    }

    /// Where a mail with this hash lands on `list`.
    pub fn path_of(root: &Path, list_id: &str, message_id_hash: &str) -> PathBuf {
        root.join(list_id).join("new").join(message_id_hash)
    }

    /// Mails stored so far.
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// Redelivered or re-published mails that were already stored.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }
}

/// Writes one mail; Ok(false) when it was already there.
fn store(root: &Path, sync: bool, envelope: &Envelope, hash: &str) -> io::Result<bool> {
    let list_dir = root.join(envelope.list_id.as_str());
    let target = MaildirArchive::path_of(root, envelope.list_id.as_str(), hash);
    if target.exists() {
        return Ok(false);
    }
    for sub in ["tmp", "new", "cur"] {
        fs::create_dir_all(list_dir.join(sub))?;
    }
    let temporary = list_dir.join("tmp").join(format!("{hash}.{}", envelope.id));
    let mut file = File::create(&temporary)?;
    file.write_all(&envelope.body)?;
    if sync {
        file.sync_all()?;
    }
    drop(file);
    fs::rename(&temporary, &target)?;
    if sync {
        File::open(list_dir.join("new"))?.sync_all()?;
    }
    Ok(true)
}

#[async_trait]
impl Handler for MaildirArchive {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let envelope = delivery.envelope();
        if envelope.kind != Kind::Mail {
            return Ok(());
        }
        let hash = envelope
            .message_id_hash
            .as_deref()
            .ok_or_else(|| HandlerError::permanent("mail envelope without message-id-hash"))?;
        // The hash becomes a file name. The wire refuses anything else, but
        // not every backend goes through the wire (the in-memory one does
        // not), so the archive checks for itself.
        if !wire::is_message_id_hash(hash) {
            return Err(HandlerError::permanent(
                "message-id-hash is not 32 characters of A-Z2-7; refusing it as a file name",
            ));
        }
        let hash = hash.to_owned();
        let (root, sync, envelope) = (self.root.clone(), self.sync, envelope.clone());
        // File I/O blocks: keep it off the async worker threads.
        let stored = tokio::task::spawn_blocking(move || store(&root, sync, &envelope, &hash))
            .await
            .map_err(|e| HandlerError::retryable(format!("the Maildir writer failed: {e}")))?
            .map_err(|e| HandlerError::retryable(format!("writing the Maildir failed: {e}")))?;
        let counter = if stored {
            &self.stored
        } else {
            &self.duplicates
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mq_archiver::Bytes;
    use mq_archiver::{
        ArchivedMail, BackendError, CloseFlag, ListId, MailLimits, MailingList, Settle,
    };

    use super::*;

    /// Settling is not what is tested here.
    struct Unsettled;

    #[async_trait]
    impl Settle for Unsettled {
        async fn ack(self: Box<Self>) -> Result<(), BackendError> {
            Ok(())
        }
        async fn requeue(self: Box<Self>, _: Duration) -> Result<(), BackendError> {
            Ok(())
        }
        async fn bury(self: Box<Self>, _: String, _: u32) -> Result<(), BackendError> {
            Ok(())
        }
        async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
            Ok(())
        }
    }

    /// An envelope that never went through the wire (as from the in-memory
    /// backend) with a hash that walks out of the archive is refused, and
    /// nothing is written anywhere.
    #[tokio::test]
    async fn refuses_a_hash_that_is_not_a_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("archive");
        let archive = MaildirArchive::new(&root, false);
        let mail = ArchivedMail::parse(
            Bytes::from_static(b"Message-ID: <1@x>\n\nhi\n"),
            &MailLimits::default(),
        )
        .unwrap();
        let list = MailingList::public(ListId::new("a.example.org").unwrap());
        let absolute = dir.path().join("absolute").to_string_lossy().into_owned();
        for bad in ["../../../escaped", absolute.as_str(), "lowercase"] {
            let mut envelope = Envelope::mail(&mail, &list);
            envelope.message_id_hash = Some(bad.to_owned());
            let delivery = Delivery::new(envelope, 1, 1, CloseFlag::new(), Box::new(Unsettled));
            assert!(
                archive.handle(&delivery).await.is_err(),
                "{bad:?} was stored"
            );
        }
        assert_eq!(archive.stored(), 0);
        let written: Vec<_> = walk(dir.path());
        assert!(written.is_empty(), "files written: {written:?}");
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }
}
