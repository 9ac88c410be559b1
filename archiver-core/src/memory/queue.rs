//! One durable subscriber's queue in the in-memory broker: ready, delayed
//! and dead-lettered envelopes, and how deliveries settle against it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::time::Instant;

use crate::backend::{BackendError, CloseFlag, DeadLetter, Delivery, Replay, Settle};
use crate::envelope::Envelope;
use crate::selection::Selection;

/// An envelope waiting in a queue, with how often it was delivered.
struct Pending {
    envelope: Envelope,
    deliveries: u32,
}

#[derive(Default)]
struct QueueState {
    selection: Selection,
    max_attempts: u32,
    ready: VecDeque<Pending>,
    /// Nacked envelopes waiting for their delay, unordered (few at a time).
    delayed: Vec<(Instant, Pending)>,
    dead: Vec<DeadLetter>,
    deleted: bool,
}

impl QueueState {
    /// Moves every delayed envelope whose time has come to the ready queue.
    fn promote_due(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.delayed.len() {
            if self.delayed[i].0 <= now {
                let (_, pending) = self.delayed.swap_remove(i);
                self.ready.push_back(pending);
            } else {
                i += 1;
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.delayed.iter().map(|(due, _)| *due).min()
    }

    fn dead_letter(&mut self, envelope: Envelope, attempts: u32, reason: String) {
        tracing::info!(envelope_id = %envelope.id, attempts, %reason, "dead-lettered");
        self.dead.push(DeadLetter {
            envelope,
            attempts,
            reason,
            dead_at: Utc::now(),
        });
    }
}

/// A durable subscriber's queue, shared by its competing consumers.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<QueueState>,
    changed: Notify,
}

/// What a consumer gets from [`Queue::take`].
pub(super) enum Take {
    /// A delivery, boxed: an envelope is far larger than the other variants.
    Delivered(Box<Delivery>),
    /// Nothing ready; wait for a change or until the next delayed envelope.
    Wait(Option<Instant>),
    /// The queue was deleted by `unsubscribe`.
    Deleted,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies the latest subscription's selection and attempt limit.
    pub(super) fn configure(&self, selection: Selection, max_attempts: u32) {
        let mut state = self.lock();
        state.selection = selection;
        state.max_attempts = max_attempts;
    }

    /// Enqueues the envelope if this subscriber selects it.
    pub(super) fn offer(&self, envelope: &Envelope) {
        let mut state = self.lock();
        if state.selection.matches(envelope) {
            state.ready.push_back(Pending {
                envelope: envelope.clone(),
                deliveries: 0,
            });
            drop(state);
            self.changed.notify_waiters();
        }
    }

    /// Hands the next ready envelope to a consumer; the delivery takes the
    /// consumer's in-flight permit and holds it until settled.
    pub(super) fn take(
        self: &Arc<Self>,
        permit: &mut Option<OwnedSemaphorePermit>,
        closed: &CloseFlag,
    ) -> Take {
        let mut state = self.lock();
        if state.deleted {
            return Take::Deleted;
        }
        state.promote_due(Instant::now());
        match state.ready.pop_front() {
            Some(mut pending) => {
                pending.deliveries += 1;
                let envelope = pending.envelope.clone();
                let attempt = pending.deliveries;
                let settle = MemorySettle {
                    queue: Arc::clone(self),
                    pending,
                    _permit: permit.take().expect("a consumer takes only with a permit"),
                };
                Take::Delivered(Box::new(Delivery::new(
                    envelope,
                    attempt,
                    state.max_attempts,
                    closed.clone(),
                    Box::new(settle),
                )))
            }
            None => Take::Wait(state.next_due()),
        }
    }

    /// A future that completes at the next change; enable it before
    /// checking the queue so no wake-up is missed.
    pub(super) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Marks the queue deleted so its consumers' streams end.
    pub(super) fn delete(&self) {
        self.lock().deleted = true;
        self.changed.notify_waiters();
    }

    pub(super) fn dead_letters(&self) -> Vec<DeadLetter> {
        self.lock().dead.clone()
    }

    /// Forgets every dead letter; returns how many.
    pub(super) fn purge_dead_letters(&self) -> usize {
        std::mem::take(&mut self.lock().dead).len()
    }

    pub(super) fn replay(&self, which: &Replay) -> usize {
        let mut state = self.lock();
        let (replayed, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut state.dead)
            .into_iter()
            .partition(|d| which.covers(&d.envelope.id));
        state.dead = kept;
        let count = replayed.len();
        state.ready.extend(replayed.into_iter().map(|d| Pending {
            envelope: d.envelope,
            deliveries: 0,
        }));
        drop(state);
        self.changed.notify_waiters();
        count
    }

    /// Puts an unsettled envelope back: after `delay`, or (`None`, handed
    /// back) at the front.
    fn requeue(&self, pending: Pending, delay: Option<Duration>) {
        let mut state = self.lock();
        if state.deleted {
            return;
        }
        match delay {
            Some(delay) if !delay.is_zero() => {
                state.delayed.push((Instant::now() + delay, pending));
            }
            Some(_) => state.ready.push_back(pending),
            None => state.ready.push_front(pending),
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

/// Settles one in-memory delivery; holds the consumer's in-flight permit
/// until it is settled or dropped.
struct MemorySettle {
    queue: Arc<Queue>,
    pending: Pending,
    _permit: OwnedSemaphorePermit,
}

#[async_trait]
impl Settle for MemorySettle {
    async fn ack(self: Box<Self>) -> Result<(), BackendError> {
        Ok(())
    }

    async fn requeue(self: Box<Self>, delay: Duration) -> Result<(), BackendError> {
        self.queue.requeue(self.pending, Some(delay));
        Ok(())
    }

    async fn bury(self: Box<Self>, reason: String, attempts: u32) -> Result<(), BackendError> {
        self.queue
            .lock()
            .dead_letter(self.pending.envelope, attempts, reason);
        Ok(())
    }

    async fn hand_back(self: Box<Self>) -> Result<(), BackendError> {
        self.queue.requeue(self.pending, None);
        Ok(())
    }
}
