//! What a backend guarantees, declared per role so each side reads only
//! what it can use (and the conformance suite adapts to what is absent).
//! A list server's client and an archive server's client need not be the
//! same object (a ZeroMQ hub is not its archive servers' client), so
//! neither has to guess the other's half.

use std::time::Duration;

/// What a list server's publishing can rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherCapabilities {
    /// Largest envelope body the backend carries, in bytes; a larger one is
    /// refused with [`BackendError::TooLarge`](crate::BackendError).
    pub max_envelope_bytes: usize,
    /// What "publish returned Ok" means for durability, in one sentence.
    pub publish_durability: &'static str,
    /// True when publish returns once the envelope is in a journal on this
    /// machine's disk (a ZeroMQ hub in the list server's process): a
    /// spool in front of such a publisher only journals each mail a second
    /// time on the same disk, and adds nothing while the "broker" is the
    /// process itself. False for a broker elsewhere, and for memory.
    pub locally_durable: bool,
}

/// What an archive server's subscriptions can rely on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberCapabilities {
    /// A single consumer receives each list's envelopes in publish order
    /// (redeliveries aside).
    pub per_list_order: bool,
    /// A new subscription can start from what was published before it
    /// existed ([`StartPosition::Beginning`](crate::StartPosition)).
    pub replay_from_start: bool,
    /// Dead-lettering is done by the broker itself, not by client code, so
    /// a rejected delivery reaches the dead letters even if this client
    /// dies right after rejecting.
    pub native_dead_letter: bool,
    /// Longest time after which a delivery whose consumer vanished without
    /// settling it is delivered again.
    pub abandoned_redelivery: Duration,
}
