//! Dead letters: what a subscriber could not process, kept for an operator
//! to inspect and replay.

use chrono::{DateTime, Utc};

use crate::envelope::{Envelope, EnvelopeId};

/// An envelope that was rejected or ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The envelope, unchanged.
    pub envelope: Envelope,
    /// How many times it was delivered.
    pub attempts: u32,
    /// Why it was dead-lettered (the handler's reason, or the attempt limit).
    pub reason: String,
    /// When it was dead-lettered.
    pub dead_at: DateTime<Utc>,
}

/// Which dead letters to put back into the subscriber's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// All of them.
    All,
    /// Only these envelopes.
    Only(Vec<EnvelopeId>),
}

impl Replay {
    /// Whether this replay covers the envelope.
    pub fn covers(&self, id: &EnvelopeId) -> bool {
        match self {
            Self::All => true,
            Self::Only(ids) => ids.contains(id),
        }
    }
}
