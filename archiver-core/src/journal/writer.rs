//! The writer thread: group commit. It takes every append waiting, writes
//! them with one `pwrite`, syncs once, and only then answers them.
//!
//! A failed write or sync (no space left, an I/O error) answers its group
//! with errors and rolls the journal back to what was synced: the last
//! segment is cut back to its synced length and synced, segments the group
//! created are deleted, and appends go on in a new segment. A sync is never
//! retried on pages a failed one may have dropped. Only when acknowledged
//! records were waiting for a sync ([`SyncPolicy::Within`]) does a failure
//! stop the journal for good (reopen it: recovery finds what is there).

use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::durable::sync_dir;
use super::lock::DirLock;
use super::record::{self, Format};
use super::segment::Segment;
use super::{JournalError, Shared, SyncPolicy};

/// A group stops growing at this many payload bytes, so one huge group
/// does not hold back the appends behind it.
const MAX_GROUP_BYTES: usize = 16 << 20;

/// How long a group may wait for more appends, at most, before its write.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_micros(50);

/// What the handles ask the writer.
pub(super) enum Request {
    Append {
        payload: Bytes,
        reply: oneshot::Sender<Result<u64, JournalError>>,
    },
    Sync {
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
    /// Sync, release the directory and stop; answered on either channel.
    Close { reply: CloseReply },
    /// Tests only: the writer waits for the sender to be dropped (or to
    /// send), so appends sent meanwhile form one group.
    #[cfg(test)]
    Hold(std::sync::mpsc::Receiver<()>),
}

/// Where the answer to [`Request::Close`] goes: an async closer, or one
/// that blocks (a `Drop`).
pub(super) enum CloseReply {
    Async(oneshot::Sender<Result<(), JournalError>>),
    Blocking(std::sync::mpsc::Sender<Result<(), JournalError>>),
}

/// Makes sure the last segment is a v2 one to append to (a journal left
/// by v1 goes on in a new segment), and starts the thread. The thread
/// owns the directory lock: it is released when the thread ends.
pub(super) fn start(shared: Arc<Shared>, lock: DirLock) -> Result<Sender<Request>, JournalError> {
    let durable = {
        let mut segments = shared.segments.lock().expect("journal lock");
        match segments.back_mut() {
            None => segments.push_back(Segment::create(&shared.dir, 0)?),
            Some(last) if last.offsets.is_empty() && last.format == Format::V1 => {
                last.write_header()?
            }
            Some(last) if last.len < Format::V2.segment_header_len() => last.write_header()?,
            Some(last) if last.format == Format::V1 => {
                let next = last.next_seq();
                segments.push_back(Segment::create(&shared.dir, next)?);
            }
            Some(last) => {
                // What a crashed process wrote without syncing is in the
                // page cache: sync it before counting it as synced.
                last.file
                    .sync_data()
                    .map_err(|e| JournalError::io(&last.path, e))?;
            }
        }
        segments.back().map_or(0, Segment::next_seq)
    };
    let (requests, received) = std::sync::mpsc::channel();
    let writer = Writer {
        shared: shared.clone(),
        lock: Some(lock),
        group: Vec::new(),
        stopped: None,
        needs_reset: None,
        unsynced_since: None,
        last_group: 0,
        durable,
    };
    std::thread::Builder::new()
        .name("archiver-journal".into())
        .spawn(move || writer.run(received))
        .map_err(|e| JournalError::io(&shared.dir, e))?;
    Ok(requests)
}

/// Why the journal takes no more appends.
enum Stopped {
    /// A write or sync failed while acknowledged records awaited a sync.
    Failed(String),
    /// The segment or the directory was deleted.
    Gone(PathBuf),
}

impl Stopped {
    fn error(&self) -> JournalError {
        match self {
            Self::Failed(reason) => JournalError::Failed(reason.clone()),
            Self::Gone(path) => JournalError::Gone(path.clone()),
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    /// The directory lock, held while the thread runs.
    lock: Option<DirLock>,
    /// The encoded group, reused.
    group: Vec<u8>,
    /// Set when the journal takes no more appends.
    stopped: Option<Stopped>,
    /// A write failed and rolling back after it failed too: tried again
    /// before the next group.
    needs_reset: Option<String>,
    /// When the oldest write not yet synced was made ([`SyncPolicy::Within`]).
    unsynced_since: Option<Instant>,
    /// Appends in the last group committed.
    last_group: usize,
    /// Every record below this sequence is synced.
    durable: u64,
}

type AppendReply = oneshot::Sender<Result<u64, JournalError>>;

impl Writer {
    fn run(mut self, requests: Receiver<Request>) {
        loop {
            let first = match (self.shared.options.sync, self.unsynced_since) {
                (SyncPolicy::Within(window), Some(since)) => {
                    match requests
                        .recv_timeout((since + window).saturating_duration_since(Instant::now()))
                    {
                        Ok(request) => request,
                        Err(RecvTimeoutError::Timeout) => {
                            let _ = self.sync();
                            continue;
                        }
                        Err(RecvTimeoutError::Disconnected) => break,
                    }
                }
                _ => match requests.recv() {
                    Ok(request) => request,
                    Err(_) => break,
                },
            };
            #[cfg(test)]
            if let Request::Hold(release) = first {
                let _ = release.recv();
                continue;
            }
            let mut appends: Vec<(Bytes, AppendReply)> = Vec::new();
            let mut others = Vec::new();
            let mut bytes = 0;
            let mut next = Some(first);
            while let Some(request) = next.take() {
                match request {
                    Request::Append { payload, reply } => {
                        bytes += payload.len();
                        appends.push((payload, reply));
                    }
                    other => others.push(other),
                }
                if bytes < MAX_GROUP_BYTES {
                    next = requests.try_recv().ok();
                    // Commit delay: appenders answered by the last commit
                    // are usually a few microseconds from sending their
                    // next record; waiting that long for the group to
                    // reach its last size saves whole syncs.
                    if next.is_none() && appends.len() < self.last_group {
                        let until = Instant::now() + GATHER_WAIT;
                        while next.is_none() && Instant::now() < until {
                            std::hint::spin_loop();
                            next = requests.try_recv().ok();
                        }
                    }
                }
            }
            if !appends.is_empty() {
                self.last_group = appends.len();
                self.commit(appends);
            }
            for request in others {
                match request {
                    Request::Sync { reply } => {
                        let _ = reply.send(self.sync());
                    }
                    Request::Close { reply } => {
                        let synced = self.sync();
                        // No cursor moves once the lock is released: the
                        // next opener owns the directory.
                        self.shared.cursors.lock().expect("journal lock").closed = true;
                        // Unlocked before the answer, so the closer can
                        // reopen at once.
                        drop(self.lock.take());
                        match reply {
                            CloseReply::Async(reply) => drop(reply.send(synced)),
                            CloseReply::Blocking(reply) => drop(reply.send(synced)),
                        }
                        return;
                    }
                    Request::Append { .. } => unreachable!("appends are grouped above"),
                    #[cfg(test)]
                    Request::Hold(release) => drop(release.recv()),
                }
            }
            if let (SyncPolicy::Within(window), Some(since)) =
                (self.shared.options.sync, self.unsynced_since)
                && since.elapsed() >= window
            {
                let _ = self.sync();
            }
        }
        let _ = self.sync();
    }

    /// Writes and (per policy) syncs one group, then answers each append.
    fn commit(&mut self, appends: Vec<(Bytes, AppendReply)>) {
        let payloads: Vec<&Bytes> = appends.iter().map(|(p, _)| p).collect();
        let result = self.try_commit(&payloads);
        if let Err(error) = &result {
            let refused = match error {
                JournalError::Gone(_) => "its directory or segment was deleted",
                _ if self.stopped.is_some() => "no more appends until reopened",
                _ => "the group was refused and rolled back; appends go on",
            };
            tracing::error!(%error, records = payloads.len(), "journal: write failed; {refused}");
        }
        for (i, (_, reply)) in appends.into_iter().enumerate() {
            let _ = reply.send(match &result {
                Ok(first) => Ok(first + i as u64),
                Err(JournalError::Gone(path)) => Err(JournalError::Gone(path.clone())),
                Err(JournalError::Failed(reason)) => Err(JournalError::Failed(reason.clone())),
                Err(other) => Err(JournalError::Failed(other.to_string())),
            });
        }
    }

    /// Rolls back after an earlier failure if needed, then writes the
    /// group; a failure rolls back again.
    fn try_commit(&mut self, payloads: &[&Bytes]) -> Result<u64, JournalError> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.error());
        }
        if let Some(reason) = self.needs_reset.take() {
            if let Err(error) = self.reset() {
                self.needs_reset = Some(reason);
                return Err(error);
            }
            tracing::info!(%reason, "journal: rolled back after a failed write; appending again");
        }
        let mut created = Vec::new();
        let error = match self.write_group(payloads, &mut created) {
            Ok(first) => return Ok(first),
            Err(error) => error,
        };
        for segment in created {
            if let Err(e) = std::fs::remove_file(&segment.path) {
                tracing::error!(path = %segment.path.display(), error = %e, "journal: cannot delete the failed group's segment");
            }
        }
        if let JournalError::Gone(path) = &error {
            self.stopped = Some(Stopped::Gone(path.clone()));
        } else if self.durable < *self.shared.committed.borrow() {
            // Acknowledged records were waiting for this sync: their fate
            // is unknown, so no answer given from now on could be trusted.
            self.stopped = Some(Stopped::Failed(error.to_string()));
        } else if let Err(reset) = self.reset() {
            tracing::error!(error = %reset, "journal: rolling back failed; trying again at the next append");
            self.needs_reset = Some(error.to_string());
        }
        Err(error)
    }

    /// Cuts the last segment back to its committed (and synced) length,
    /// syncs it, and starts a new segment for what comes next; the
    /// directory's deleted entries are synced too.
    fn reset(&mut self) -> Result<(), JournalError> {
        let shared = &self.shared;
        let mut segments = shared.segments.lock().expect("journal lock");
        let last = segments.back_mut().expect("a segment to append to");
        last.file
            .set_len(last.len)
            .and_then(|()| last.file.sync_data())
            .map_err(|e| JournalError::io(&last.path, e))?;
        sync_dir(&shared.dir)?;
        if !last.offsets.is_empty() {
            let next = last.next_seq();
            segments.push_back(Segment::create(&shared.dir, next)?);
        }
        Ok(())
    }

    /// Appends the group to the last segment, closing it (synced) and
    /// starting another whenever it is full; returns the group's first
    /// sequence. Segments it creates are put in `created` (for the caller
    /// to delete when it fails). Readers see the records only once this
    /// returns, after the segment and the directory were found still
    /// there.
    fn write_group(
        &mut self,
        payloads: &[&Bytes],
        created: &mut Vec<Segment>,
    ) -> Result<u64, JournalError> {
        let shared = &self.shared;
        let segment_size = shared.options.segment_size;
        let (mut file, mut path, mut first_seq, mut len) = {
            let segments = shared.segments.lock().expect("journal lock");
            let last = segments.back().expect("a segment to append to");
            (
                last.file.clone(),
                last.path.clone(),
                last.first_seq,
                last.len,
            )
        };
        let start_seq = *shared.committed.borrow();
        let header_len = Format::V2.header_len();
        let mut next_seq = start_seq;
        let mut offsets = Vec::with_capacity(payloads.len());
        // Segments this group filled: (first sequence, new offsets, length).
        let mut filled = Vec::new();
        let appended_at = record::now_ms();
        self.group.clear();
        for payload in payloads {
            let size = (header_len + payload.len()) as u64;
            let occupied = len + self.group.len() as u64;
            if next_seq > first_seq && occupied + size > segment_size {
                write_and_sync(&file, &path, &self.group, len)?;
                len = occupied;
                self.group.clear();
                filled.push((first_seq, std::mem::take(&mut offsets), len));
                let segment = Segment::create(&shared.dir, next_seq)?;
                (file, path, first_seq, len) = (
                    segment.file.clone(),
                    segment.path.clone(),
                    next_seq,
                    segment.len,
                );
                created.push(segment);
            }
            offsets.push(len + self.group.len() as u64);
            record::encode(
                &mut self.group,
                next_seq,
                appended_at,
                self.durable,
                payload,
            );
            next_seq += 1;
        }
        match shared.options.sync {
            SyncPolicy::Always => write_and_sync(&file, &path, &self.group, len)?,
            SyncPolicy::Within(_) => {
                file.write_all_at(&self.group, len)
                    .map_err(|e| JournalError::io(&path, e))?;
                self.unsynced_since.get_or_insert_with(Instant::now);
            }
        }
        still_there(&file, &path)?;
        still_there(&shared.dir_handle, &shared.dir)?;
        filled.push((first_seq, offsets, len + self.group.len() as u64));
        {
            let mut segments = shared.segments.lock().expect("journal lock");
            segments.extend(created.drain(..));
            for (first, offsets, len) in filled {
                let segment = segments
                    .iter_mut()
                    .rev()
                    .find(|s| s.first_seq == first)
                    .expect("the segment just written");
                segment.offsets.extend(offsets);
                segment.len = len;
            }
        }
        if shared.options.sync == SyncPolicy::Always {
            self.durable = next_seq;
        }
        shared.committed.send_replace(next_seq);
        Ok(start_seq)
    }

    /// Syncs what was written but not yet synced.
    fn sync(&mut self) -> Result<(), JournalError> {
        if let Some(stopped) = &self.stopped {
            return Err(stopped.error());
        }
        if self.unsynced_since.is_none() {
            return Ok(());
        }
        let (file, path) = {
            let segments = self.shared.segments.lock().expect("journal lock");
            let last = segments.back().expect("a segment to append to");
            (last.file.clone(), last.path.clone())
        };
        let started = Instant::now();
        match file.sync_data() {
            Ok(()) => {
                self.unsynced_since = None;
                self.durable = *self.shared.committed.borrow();
                tracing::trace!(took = ?started.elapsed(), "journal: synced");
                Ok(())
            }
            Err(e) => {
                let error = JournalError::io(&path, e);
                tracing::error!(%error, "journal: sync failed with acknowledged records unsynced; no more appends until reopened");
                self.stopped = Some(Stopped::Failed(error.to_string()));
                Err(error)
            }
        }
    }
}

fn write_and_sync(file: &File, path: &Path, bytes: &[u8], at: u64) -> Result<(), JournalError> {
    file.write_all_at(bytes, at)
        .and_then(|()| file.sync_data())
        .map_err(|e| JournalError::io(path, e))
}

/// Fails with [`JournalError::Gone`] once `file` (a segment, or the
/// journal's directory) has been deleted: appends to it would be lost.
fn still_there(file: &File, path: &Path) -> Result<(), JournalError> {
    let links = file
        .metadata()
        .map_err(|e| JournalError::io(path, e))?
        .nlink();
    if links == 0 {
        return Err(JournalError::Gone(path.to_owned()));
    }
    Ok(())
}
