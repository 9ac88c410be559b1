//! What an operator (or a list server waiting to exit) can see of a hub's
//! queues.

use archiver_core::SubscriberName;
use chrono::{DateTime, Utc};

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
    /// Deliveries its connections hold now: sent, not settled, and within
    /// the ack deadline (each connection holds at most its prefetch, and
    /// about its byte bound).
    pub held: usize,
    /// Journal records not yet looked at for this queue (some may not be
    /// selected by it).
    pub unexamined: u64,
    /// Dead letters kept for it.
    pub dead_letters: usize,
    /// Why it receives nothing: its stored selection is refused (over the
    /// pattern caps, say) until a hello replaces it.
    pub error: Option<String>,
    /// The first journal sequence it still needs: the journal keeps every
    /// record from here on for it (an abandoned subscriber keeps them all;
    /// [`ZmqHub::delete_subscriber`](crate::ZmqHub::delete_subscriber)
    /// lets them go).
    pub pinned_from: u64,
    /// Since when it has pinned the journal there: when its floor last
    /// moved, or when the hub opened it.
    pub floor_moved_at: DateTime<Utc>,
}

impl QueueStatus {
    /// Nothing left to deliver (dead letters aside).
    pub fn is_drained(&self) -> bool {
        self.unsettled == 0 && self.unexamined == 0
    }
}
