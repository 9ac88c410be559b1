//! Dead letters: what a subscriber could not process, kept for an operator
//! to inspect and replay.

use std::fmt;

use bytes::Bytes;
use chrono::{DateTime, Utc};

use crate::envelope::{Envelope, EnvelopeId};
use crate::wire::WireError;

/// Reasons of dead letters that are not (trustworthy) envelopes start so.
const MALFORMED: &str = "malformed";

/// The reason a backend records when it dead-letters what is not a valid
/// envelope, or not from where it claims: `malformed: <why>`, which
/// [`RawDeadLetter::is_malformed`] recognises.
pub fn malformed_reason(why: impl fmt::Display) -> String {
    format!("{MALFORMED}: {why}")
}

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

/// A dead letter as a backend stores it, valid envelope or not, so an
/// operator sees every dead letter; the same shape for every backend.
#[derive(Debug, Clone)]
pub struct RawDeadLetter {
    /// Every stored field (Redis) or header (RabbitMQ) but the body, its
    /// value as text (bytes that are not UTF-8 replaced; numbers in
    /// decimal, tables and arrays as debug text).
    pub fields: Vec<(String, String)>,
    /// The body as it is.
    pub body: Bytes,
    /// Why it was dead-lettered; `malformed: ...` for one that is not a
    /// valid envelope or not from where it claims.
    pub reason: String,
    /// Deliveries it had.
    pub attempts: u32,
    /// When it was dead-lettered, if recorded.
    pub dead_at: Option<DateTime<Utc>>,
    /// Where it was first published (Redis stream, RabbitMQ routing key),
    /// if known.
    pub origin: Option<String>,
    /// The envelope, or why it is not one.
    pub envelope: Result<Envelope, WireError>,
}

impl RawDeadLetter {
    /// Not a valid envelope, or not from where it claims: never replayed.
    pub fn is_malformed(&self) -> bool {
        self.envelope.is_err() || self.reason.starts_with(MALFORMED)
    }

    /// The [`DeadLetter`] it is, if its envelope is valid; one without a
    /// recorded time is dated now.
    pub fn dead_letter(&self) -> Option<DeadLetter> {
        Some(DeadLetter {
            envelope: self.envelope.clone().ok()?,
            attempts: self.attempts,
            reason: self.reason.clone(),
            dead_at: self.dead_at.unwrap_or_else(Utc::now),
        })
    }
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
