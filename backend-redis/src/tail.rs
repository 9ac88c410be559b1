//! The live tail: XREAD (no consumer group, nothing kept) on the selected
//! streams from the moment of attaching.

use std::collections::HashMap;
use std::sync::Arc;

use archiver_core::{BackendError, Envelope, Selection, Tail};
use redis::Value;
use redis::aio::ConnectionManager;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::Shared;
use crate::connection;
use crate::entry::{EntryId, entries, streams};
use crate::error::{backend_error, is_no_perm};
use crate::registry::{Discovery, redis_time_ms};

/// Envelopes buffered for a slow tail before it starts losing them.
const BUFFER: usize = 1024;

pub(crate) async fn tail(
    shared: &Arc<Shared>,
    selection: &Selection,
) -> Result<Tail, BackendError> {
    shared.ensure_open()?;
    let mut conn =
        connection::open(&shared.client, &shared.config, shared.config.poll_interval).await?;
    let attached_ms = redis_time_ms(&mut conn).await.map_err(backend_error)?;
    let mut reader = Reader {
        shared: Arc::clone(shared),
        discovery: Discovery::new(Some(selection.clone()), shared.config.retention_interval),
        start: EntryId::just_before(attached_ms),
        positions: HashMap::new(),
        attaching: true,
        conn,
    };
    reader.discover().await.map_err(backend_error)?;
    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(reader.run(sender));
    let envelopes = ReceiverStream::new(receiver);
    Ok(shared.closed.until_closed(envelopes))
}

struct Reader {
    shared: Arc<Shared>,
    /// The selected streams this Redis user may read.
    discovery: Discovery,
    /// True until the first discovery, made when attaching: a stream
    /// found later (created after attaching, or first published to) is
    /// read from the attach time, even when none was found then.
    attaching: bool,
    /// Streams found after attaching are read from here.
    start: EntryId,
    /// Last id read per selected stream.
    positions: HashMap<String, EntryId>,
    conn: ConnectionManager,
}

impl Reader {
    /// Streams that exist when attaching start at their last entry; later
    /// ones at the attach time.
    async fn discover(&mut self) -> redis::RedisResult<()> {
        let attaching = std::mem::replace(&mut self.attaching, false);
        let candidates = self
            .discovery
            .candidates(&mut self.conn, &self.shared.keys)
            .await?;
        for stream in candidates {
            let key = stream.key;
            if self.positions.contains_key(&key) {
                continue;
            }
            // Also tells whether this Redis user may read the stream at all.
            let last: Value = match redis::cmd("XREVRANGE")
                .arg(&key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut self.conn)
                .await
            {
                Err(error) if is_no_perm(&error) => {
                    self.discovery.refuse(&key);
                    continue;
                }
                last => last?,
            };
            let start = if attaching {
                entries(last)
                    .first()
                    .map_or(EntryId::ZERO, |e| e.id)
                    .max(self.start)
            } else {
                self.start
            };
            self.positions.insert(key, start);
        }
        Ok(())
    }

    async fn run(mut self, sender: mpsc::Sender<Result<Envelope, BackendError>>) {
        let poll = self.shared.config.poll_interval;
        while !sender.is_closed() && !self.shared.closed.is_closed() {
            if let Err(error) = self.read_once(&sender).await {
                tracing::warn!(%error, "live tail read failed; retrying");
                tokio::time::sleep(poll).await;
            }
        }
    }

    async fn read_once(
        &mut self,
        sender: &mpsc::Sender<Result<Envelope, BackendError>>,
    ) -> redis::RedisResult<()> {
        self.discover().await?;
        if self.positions.is_empty() {
            tokio::time::sleep(self.shared.config.poll_interval).await;
            return Ok(());
        }
        let (keys, ids): (Vec<&String>, Vec<String>) = self
            .positions
            .iter()
            .map(|(k, id)| (k, id.to_string()))
            .unzip();
        let reply: Value = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(256)
            .arg("BLOCK")
            .arg(self.shared.config.poll_interval.as_millis() as u64)
            .arg("STREAMS")
            .arg(keys)
            .arg(ids)
            .query_async(&mut self.conn)
            .await?;
        for (key, batch) in streams(reply) {
            for entry in batch {
                self.positions.insert(key.clone(), entry.id);
                let item = entry.envelope().map_err(BackendError::Wire);
                if sender.try_send(item).is_err() {
                    tracing::debug!(stream = %key, entry_id = %entry.id, "live tail behind: entry not shown to it");
                }
            }
        }
        Ok(())
    }
}
