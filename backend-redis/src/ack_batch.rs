//! Acks grouped into one round trip: every ack waiting while the previous
//! round trip was under way goes out in one pipeline, one XACK per stream
//! and group (and the XDELs of replayed entries). An ack alone still takes
//! one round trip; a consumer acking a prefetch's worth sends a few
//! commands instead of hundreds, and under `appendfsync always` Redis
//! fsyncs once for the lot.

use std::collections::BTreeMap;

use archiver_core::BackendError;
use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use crate::dead_letters::PendingRef;
use crate::entry::EntryId;
use crate::error::backend_error;

/// Most acks sent in one pipeline.
const MOST: usize = 1024;

/// One ack waiting for its round trip.
struct Request {
    stream: String,
    group: String,
    id: EntryId,
    delete_after: bool,
    done: oneshot::Sender<Result<(), BackendError>>,
}

/// The sending end of a client's ack task; the task ends when this is
/// dropped with the client.
pub(crate) struct AckBatcher {
    requests: mpsc::UnboundedSender<Request>,
}

impl AckBatcher {
    /// Starts the task, on `conn` (the client's multiplexed connection).
    pub(crate) fn start(conn: ConnectionManager) -> Self {
        let (requests, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(conn, receiver));
        Self { requests }
    }

    /// Acks `pending` (and deletes it if it came from the replay stream);
    /// returns once Redis has answered.
    pub(crate) async fn ack(&self, pending: &PendingRef<'_>) -> Result<(), BackendError> {
        let (done, answer) = oneshot::channel();
        let request = Request {
            stream: pending.stream.to_owned(),
            group: pending.group.as_str().to_owned(),
            id: pending.id,
            delete_after: pending.delete_after,
            done,
        };
        self.requests
            .send(request)
            .map_err(|_| BackendError::Closed)?;
        answer.await.map_err(|_| BackendError::Closed)?
    }
}

async fn run(mut conn: ConnectionManager, mut requests: mpsc::UnboundedReceiver<Request>) {
    let mut batch = Vec::new();
    while requests.recv_many(&mut batch, MOST).await > 0 {
        let result = pipeline(&batch)
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend_error);
        for request in batch.drain(..) {
            let _ = request.done.send(result.clone());
        }
    }
}

/// One XACK per (stream, group) with all its ids, then the XDELs.
fn pipeline(batch: &[Request]) -> redis::Pipeline {
    let mut acks: BTreeMap<(&str, &str), Vec<String>> = BTreeMap::new();
    let mut deletes: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for request in batch {
        let id = request.id.to_string();
        if request.delete_after {
            deletes.entry(&request.stream).or_default().push(id.clone());
        }
        acks.entry((&request.stream, &request.group))
            .or_default()
            .push(id);
    }
    let mut pipe = redis::pipe();
    for ((stream, group), ids) in acks {
        pipe.cmd("XACK").arg(stream).arg(group).arg(ids).ignore();
    }
    for (stream, ids) in deletes {
        pipe.cmd("XDEL").arg(stream).arg(ids).ignore();
    }
    pipe
}
