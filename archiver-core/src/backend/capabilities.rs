//! What a backend guarantees, declared so callers and the conformance suite
//! can rely on it (or adapt to its absence).

use std::time::Duration;

/// A backend's guarantees and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// A single consumer receives each list's envelopes in publish order
    /// (redeliveries aside).
    pub per_list_order: bool,
    /// A new subscription can start from what was published before it
    /// existed ([`StartPosition::Beginning`](crate::StartPosition)).
    pub replay_from_start: bool,
    /// Dead-lettering is done by the broker itself, not by client code.
    pub native_dead_letter: bool,
    /// Largest envelope body the backend carries, in bytes.
    pub max_envelope_bytes: usize,
    /// Longest time after which a delivery whose consumer vanished without
    /// settling it is delivered again.
    pub abandoned_redelivery: Duration,
    /// What "publish returned Ok" means for durability, in one sentence.
    pub publish_durability: &'static str,
}
