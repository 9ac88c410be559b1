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

use archiver_core::{Delivery, Envelope, Handler, HandlerError, Kind};
use async_trait::async_trait;

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
            .ok_or_else(|| HandlerError::permanent("mail envelope without message-id-hash"))?
            .to_owned();
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
