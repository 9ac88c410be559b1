//! What an operator (or a list server waiting to exit) can see of a hub's
//! queues.

use archiver_core::SubscriberName;

/// One durable subscriber's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStatus {
    /// The subscriber.
    pub name: SubscriberName,
    /// Archive server connections consuming it now.
    pub connections: usize,
    /// Envelopes taken from the journal and not settled yet (ready,
    /// delayed, or held by a connection).
    pub unsettled: usize,
    /// Journal records not yet looked at for this queue (some may not be
    /// selected by it).
    pub unexamined: u64,
    /// Dead letters kept for it.
    pub dead_letters: usize,
}

impl QueueStatus {
    /// Nothing left to deliver (dead letters aside).
    pub fn is_drained(&self) -> bool {
        self.unsettled == 0 && self.unexamined == 0
    }
}
