//! The in-memory backend: every message pattern inside one process, for unit
//! tests, examples and running list server and archive servers together.
//! Nothing survives the process.

mod queue;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::backend::{
    BackendError, CloseFlag, Connection, DeadLetter, Deliveries, Operator, Publisher,
    PublisherCapabilities, Replay, StartPosition, Subscriber, SubscriberCapabilities,
    SubscriberName, Subscription, Tail,
};
use crate::envelope::Envelope;
use crate::selection::Selection;
use queue::{Queue, Take};

/// Largest body the in-memory backend takes by default: the one default
/// of every backend.
pub use crate::envelope::DEFAULT_MAX_ENVELOPE_BYTES;

/// Envelopes buffered for a live tail before it starts losing them.
const TAIL_BUFFER: usize = 1024;

/// The broker all clients of one [`MemoryBackend`] family share.
struct Broker {
    queues: Mutex<HashMap<SubscriberName, Arc<Queue>>>,
    tails: Mutex<Vec<(Selection, mpsc::Sender<Envelope>)>>,
    max_envelope_bytes: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A client of an in-process broker. [`MemoryBackend::connect`] makes another
/// client of the same broker, as a second process would connect to a real
/// one; closing a client leaves the others working.
///
/// ```
/// # async fn demo() -> Result<(), archiver_core::BackendError> {
/// use archiver_core::{MemoryBackend, Subscriber, Subscription};
/// use futures::StreamExt;
/// let list_server = MemoryBackend::new();
/// let archive_server = list_server.connect();
/// let mut deliveries = archive_server
///     .subscribe(&Subscription::new("web".parse().unwrap()))
///     .await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemoryBackend {
    broker: Arc<Broker>,
    closed: CloseFlag,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A new broker, and a client of it.
    pub fn new() -> Self {
        Self::with_max_envelope_bytes(DEFAULT_MAX_ENVELOPE_BYTES)
    }

    /// A new broker that refuses bodies above `limit` bytes.
    pub fn with_max_envelope_bytes(limit: usize) -> Self {
        Self {
            broker: Arc::new(Broker {
                queues: Mutex::default(),
                tails: Mutex::default(),
                max_envelope_bytes: limit,
            }),
            closed: CloseFlag::new(),
        }
    }

    /// Another client of the same broker.
    pub fn connect(&self) -> Self {
        Self {
            broker: Arc::clone(&self.broker),
            closed: CloseFlag::new(),
        }
    }

    fn queue(&self, name: &SubscriberName) -> Option<Arc<Queue>> {
        lock(&self.broker.queues).get(name).cloned()
    }
}

#[async_trait]
impl Connection for MemoryBackend {
    async fn close(&self) -> Result<(), BackendError> {
        self.closed.close();
        Ok(())
    }
}

#[async_trait]
impl Publisher for MemoryBackend {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            max_envelope_bytes: self.broker.max_envelope_bytes,
            publish_durability: "held in this process's memory: lost when the process exits",
            locally_durable: false,
        }
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        self.closed.ensure_open()?;
        BackendError::check_size(envelope, self.broker.max_envelope_bytes)?;
        for queue in lock(&self.broker.queues).values() {
            queue.offer(envelope);
        }
        lock(&self.broker.tails).retain(|(selection, sender)| {
            if !selection.matches(envelope) {
                return !sender.is_closed();
            }
            match sender.try_send(envelope.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::debug!(envelope_id = %envelope.id, "live tail behind: envelope not shown to it");
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        Ok(())
    }
}

#[async_trait]
impl Subscriber for MemoryBackend {
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        SubscriberCapabilities {
            per_list_order: true,
            replay_from_start: false,
            native_dead_letter: true,
            abandoned_redelivery: Duration::ZERO,
        }
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        self.closed.ensure_open()?;
        if subscription.start == StartPosition::Beginning {
            return Err(BackendError::Unsupported(
                "replay from the start: the in-memory backend keeps no history",
            ));
        }
        let queue = Arc::clone(
            lock(&self.broker.queues)
                .entry(subscription.name.clone())
                .or_default(),
        );
        queue.configure(subscription.selection.clone(), subscription.max_attempts);
        let permits = Arc::new(Semaphore::new(usize::from(subscription.prefetch)));
        let closed = self.closed.clone();
        let deliveries = futures::stream::unfold(
            (queue, permits, closed),
            |(queue, permits, closed)| async move {
                let mut permit = Some(Arc::clone(&permits).acquire_owned().await.ok()?);
                loop {
                    // Borrow a second handle so `queue` can be moved out on return.
                    let watched = Arc::clone(&queue);
                    let changed = watched.changed();
                    tokio::pin!(changed);
                    changed.as_mut().enable();
                    let due = match queue.take(&mut permit, &closed) {
                        Take::Delivered(delivery) => {
                            return Some((Ok(*delivery), (queue, permits, closed)));
                        }
                        Take::Deleted => return None,
                        Take::Wait(due) => due,
                    };
                    let delayed = async {
                        match due {
                            Some(due) => tokio::time::sleep_until(due).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        _ = changed => {}
                        _ = delayed => {}
                    }
                }
            },
        );
        Ok(self.closed.until_closed(deliveries))
    }

    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        self.closed.ensure_open()?;
        let (sender, receiver) = mpsc::channel(TAIL_BUFFER);
        lock(&self.broker.tails).push((selection.clone(), sender));
        let envelopes = ReceiverStream::new(receiver).map(Ok);
        Ok(self.closed.until_closed(envelopes))
    }
}

#[async_trait]
impl Operator for MemoryBackend {
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        self.closed.ensure_open()?;
        if let Some(queue) = lock(&self.broker.queues).remove(name) {
            queue.delete();
        }
        Ok(())
    }

    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        self.closed.ensure_open()?;
        Ok(self
            .queue(name)
            .map(|q| q.dead_letters())
            .unwrap_or_default())
    }

    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError> {
        self.closed.ensure_open()?;
        Ok(self.queue(name).map_or(0, |q| q.purge_dead_letters()))
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        self.closed.ensure_open()?;
        Ok(self.queue(name).map(|q| q.replay(&which)).unwrap_or(0))
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ListChange, ListEvent};
    use crate::list::{ListId, MailingList};

    fn event() -> Envelope {
        let list = MailingList::public(ListId::new("memory.example.org").unwrap());
        Envelope::event(
            &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
            &list,
        )
    }

    #[tokio::test]
    async fn a_tail_that_falls_behind_drops_instead_of_growing() {
        let backend = MemoryBackend::new();
        let mut tail = backend.tail(&Selection::all()).await.unwrap();
        for _ in 0..TAIL_BUFFER + 500 {
            backend.publish(&event()).await.unwrap();
        }
        let mut seen = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(50), tail.next()).await {
            seen += 1;
        }
        assert_eq!(seen, TAIL_BUFFER);
    }

    #[tokio::test]
    async fn unsubscribe_ends_consumers_and_forgets_the_queue() {
        let backend = MemoryBackend::new();
        let name: SubscriberName = "retired".parse().unwrap();
        let mut deliveries = backend
            .subscribe(&Subscription::new(name.clone()))
            .await
            .unwrap();
        backend.publish(&event()).await.unwrap();
        let delivery = deliveries.next().await.unwrap().unwrap();
        delivery.reject("kept as a dead letter").await.unwrap();
        assert_eq!(backend.dead_letters(&name).await.unwrap().len(), 1);

        backend.unsubscribe(&name).await.unwrap();
        assert!(
            deliveries.next().await.is_none(),
            "the consumer's stream ends"
        );
        assert!(backend.dead_letters(&name).await.unwrap().is_empty());
        backend.publish(&event()).await.unwrap();
        let mut fresh = backend.subscribe(&Subscription::new(name)).await.unwrap();
        assert!(
            tokio::time::timeout(Duration::from_millis(100), fresh.next())
                .await
                .is_err(),
            "a re-created queue starts empty: nothing was kept after unsubscribe"
        );
    }
}
