//! The writer thread: group commit. It takes every append waiting, writes
//! them with one `pwrite`, syncs once, and only then answers them.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::oneshot;

use super::cursors::sync_dir;
use super::record::{self, HEADER_LEN};
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
    Close {
        reply: oneshot::Sender<Result<(), JournalError>>,
    },
}

/// Makes sure there is a segment to append to, and starts the thread. The
/// thread owns the directory lock: it is released when the thread ends.
pub(super) fn start(shared: Arc<Shared>, lock: File) -> Result<Sender<Request>, JournalError> {
    {
        let mut segments = shared.segments.lock().expect("journal lock");
        if segments.is_empty() {
            segments.push_back(Segment::create(&shared.dir, 0)?);
            sync_dir(&shared.dir)?;
        }
    }
    let (requests, received) = std::sync::mpsc::channel();
    let writer = Writer {
        shared: shared.clone(),
        lock: Some(lock),
        group: Vec::new(),
        failed: None,
        unsynced_since: None,
        last_group: 0,
    };
    std::thread::Builder::new()
        .name("archiver-journal".into())
        .spawn(move || writer.run(received))
        .map_err(|e| JournalError::io(&shared.dir, e))?;
    Ok(requests)
}

struct Writer {
    shared: Arc<Shared>,
    /// The directory lock, held while the thread runs.
    lock: Option<File>,
    /// The encoded group, reused.
    group: Vec<u8>,
    /// Why the journal stopped taking appends, after a failed write or sync.
    failed: Option<String>,
    /// When the oldest write not yet synced was made ([`SyncPolicy::Within`]).
    unsynced_since: Option<Instant>,
    /// Appends in the last group committed.
    last_group: usize,
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
                        // Unlocked before the answer, so the closer can
                        // reopen at once.
                        drop(self.lock.take());
                        let _ = reply.send(synced);
                        return;
                    }
                    Request::Append { .. } => unreachable!("appends are grouped above"),
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
        let result = match &self.failed {
            Some(reason) => Err(reason.clone()),
            None => {
                let payloads: Vec<&Bytes> = appends.iter().map(|(p, _)| p).collect();
                self.write_group(&payloads).map_err(|e| {
                    tracing::error!(error = %e, "journal: write failed; no more appends until reopened");
                    let reason = e.to_string();
                    self.failed = Some(reason.clone());
                    reason
                })
            }
        };
        for (i, (_, reply)) in appends.into_iter().enumerate() {
            let _ = reply.send(match &result {
                Ok(first) => Ok(first + i as u64),
                Err(reason) => Err(JournalError::Failed(reason.clone())),
            });
        }
    }

    /// Appends the group to the last segment, closing it (synced) and
    /// starting another whenever it is full; returns the group's first
    /// sequence. Readers see the records only once this returns.
    fn write_group(&mut self, payloads: &[&Bytes]) -> Result<u64, JournalError> {
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
        let mut next_seq = start_seq;
        let mut offsets = Vec::with_capacity(payloads.len());
        // Segments this group filled: (first sequence, new offsets, length).
        let mut filled = Vec::new();
        let mut created = Vec::new();
        let appended_at = record::now_ms();
        self.group.clear();
        for payload in payloads {
            let size = (HEADER_LEN + payload.len()) as u64;
            let occupied = len + self.group.len() as u64;
            if next_seq > first_seq && occupied + size > segment_size {
                write_and_sync(&file, &path, &self.group, len)?;
                len = occupied;
                self.group.clear();
                filled.push((first_seq, std::mem::take(&mut offsets), len));
                let segment = Segment::create(&shared.dir, next_seq)?;
                sync_dir(&shared.dir)?;
                (file, path, first_seq, len) =
                    (segment.file.clone(), segment.path.clone(), next_seq, 0);
                created.push(segment);
            }
            offsets.push(len + self.group.len() as u64);
            record::encode(&mut self.group, next_seq, appended_at, payload);
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
        filled.push((first_seq, offsets, len + self.group.len() as u64));
        {
            let mut segments = shared.segments.lock().expect("journal lock");
            segments.extend(created);
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
        shared.committed.send_replace(next_seq);
        Ok(start_seq)
    }

    /// Syncs what was written but not yet synced.
    fn sync(&mut self) -> Result<(), JournalError> {
        if let Some(reason) = &self.failed {
            return Err(JournalError::Failed(reason.clone()));
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
                tracing::trace!(took = ?started.elapsed(), "journal: synced");
                Ok(())
            }
            Err(e) => {
                let error = JournalError::io(&path, e);
                self.failed = Some(error.to_string());
                Err(error)
            }
        }
    }
}

fn write_and_sync(
    file: &File,
    path: &std::path::Path,
    bytes: &[u8],
    at: u64,
) -> Result<(), JournalError> {
    file.write_all_at(bytes, at)
        .and_then(|()| file.sync_data())
        .map_err(|e| JournalError::io(path, e))
}
