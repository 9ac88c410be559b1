//! Requests that wait together go to Redis together: a task takes every
//! request queued while its previous round trip was under way and sends
//! them as one pipeline. A request alone still takes one round trip; a
//! list server publishing concurrently, or a consumer acking a prefetch's
//! worth, sends a few large writes instead of hundreds of small ones, and
//! under `appendfsync always` Redis fsyncs once for the lot.

use std::future::Future;

use archiver_core::BackendError;
use tokio::sync::{mpsc, oneshot};

/// Most requests sent in one pipeline.
const MOST: usize = 128;

type Request<T> = (T, oneshot::Sender<Result<(), BackendError>>);

/// The sending end of a batching task; the task ends when this is dropped
/// with its client.
pub(crate) struct Batcher<T> {
    requests: mpsc::UnboundedSender<Request<T>>,
}

impl<T: Send + 'static> Batcher<T> {
    /// Starts the task; `send` sends one batch, and its outcome is each
    /// request's.
    pub(crate) fn start<F, Fut>(mut send: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BackendError>> + Send,
    {
        let (requests, mut receiver) = mpsc::unbounded_channel::<Request<T>>();
        tokio::spawn(async move {
            let mut batch = Vec::new();
            while receiver.recv_many(&mut batch, MOST).await > 0 {
                let (items, waiters): (Vec<T>, Vec<_>) = batch.drain(..).unzip();
                let outcome = send(items).await;
                for waiter in waiters {
                    let _ = waiter.send(outcome.clone());
                }
            }
        });
        Self { requests }
    }

    /// Queues `item`; returns its batch's outcome.
    pub(crate) async fn submit(&self, item: T) -> Result<(), BackendError> {
        let (done, outcome) = oneshot::channel();
        self.requests
            .send((item, done))
            .map_err(|_| BackendError::Closed)?;
        outcome.await.map_err(|_| BackendError::Closed)?
    }
}
