//! Whether a client was closed: one flag shared by the client and
//! everything it made, so every backend closes the same way.

use futures::stream::{BoxStream, Stream, StreamExt};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

use super::BackendError;

/// Set by a client's `close`: its calls then fail with
/// [`BackendError::Closed`], its streams end and its deliveries refuse to
/// settle (and are handed back). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct CloseFlag(CancellationToken);

impl CloseFlag {
    /// An open client's flag.
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks the client closed; wakes everything waiting on [`Self::wait`].
    pub fn close(&self) {
        self.0.cancel();
    }

    /// Whether the client was closed.
    pub fn is_closed(&self) -> bool {
        self.0.is_cancelled()
    }

    /// `Err(Closed)` once the client was closed: the first line of every
    /// call a closed client refuses.
    pub fn ensure_open(&self) -> Result<(), BackendError> {
        if self.is_closed() {
            Err(BackendError::Closed)
        } else {
            Ok(())
        }
    }

    /// Completes once the client is closed (for a `select!` in a task that
    /// must stop then).
    pub fn wait(&self) -> WaitForCancellationFuture<'_> {
        self.0.cancelled()
    }

    /// The stream, ending when the client is closed.
    pub fn until_closed<S>(&self, stream: S) -> BoxStream<'static, S::Item>
    where
        S: Stream + Send + 'static,
    {
        stream.take_until(self.0.clone().cancelled_owned()).boxed()
    }
}
