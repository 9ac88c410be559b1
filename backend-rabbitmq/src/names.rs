//! Every name the backend uses on the broker, and the routing keys.
//!
//! | name | what |
//! |---|---|
//! | `<p>` | topic exchange every envelope is published to |
//! | `<p>.unrouted` | alternate exchange (fanout) and queue: what no subscriber selects |
//! | `<p>.q.<name>` | a durable subscriber's queue |
//! | `<p>.dead.<name>` | its dead letters |
//! | `<p>.retry.<name>.<ms>.quorum` | nacked messages waiting `<ms>` to go back to `<p>.q.<name>` (`<p>.retry.<name>.<ms>` with classic queues) |
//! | `<p>.sub.<name>` | its current selection (one message), to replace stale bindings |
//!
//! Routing keys are `<kind>.<list-id>` (`mail.dev.lists.example.org`); a
//! selection binds `<kind>.<pattern>` for each kind and list pattern, which
//! the topic exchange matches with the same `*` and `#` rules as
//! `ListPattern`.

use archiver_core::{Envelope, Prefix, Selection, SubscriberName};

use crate::config::QueueType;

/// Names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    prefix: Prefix,
}

impl Names {
    pub(crate) fn new(prefix: &Prefix) -> Self {
        Self {
            prefix: prefix.clone(),
        }
    }

    pub(crate) fn exchange(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn unrouted(&self) -> String {
        format!("{}.unrouted", self.prefix)
    }

    pub(crate) fn queue(&self, name: &SubscriberName) -> String {
        format!("{}.q.{name}", self.prefix)
    }

    pub(crate) fn dead(&self, name: &SubscriberName) -> String {
        format!("{}.dead.{name}", self.prefix)
    }

    /// A retry queue's name; quorum ones are named apart, since an earlier
    /// version's classic queue of the same delay cannot change type.
    pub(crate) fn retry(&self, name: &SubscriberName, delay_ms: u64, kind: QueueType) -> String {
        match kind {
            QueueType::Quorum => format!("{}.retry.{name}.{delay_ms}.quorum", self.prefix),
            QueueType::Classic => format!("{}.retry.{name}.{delay_ms}", self.prefix),
        }
    }

    pub(crate) fn registry(&self, name: &SubscriberName) -> String {
        format!("{}.sub.{name}", self.prefix)
    }

    pub(crate) fn routing_key(envelope: &Envelope) -> String {
        format!("{}.{}", envelope.kind.as_str(), envelope.list_id)
    }

    /// The binding keys that select exactly what `selection` selects.
    pub(crate) fn binding_keys(selection: &Selection) -> Vec<String> {
        let mut keys = Vec::new();
        for kind in selection.kinds() {
            if selection.lists().is_empty() {
                keys.push(format!("{}.#", kind.as_str()));
            }
            for pattern in selection.lists() {
                keys.push(format!("{}.{pattern}", kind.as_str()));
            }
        }
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Nack delays are served by per-delay retry queues; a delay is rounded up
/// to a power of two of milliseconds (at least 64), so few queues exist and
/// a message never comes back early.
pub(crate) fn retry_bucket_ms(delay_ms: u64) -> u64 {
    delay_ms.max(64).next_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;
    use archiver_core::Kind;

    #[test]
    fn binding_keys_follow_the_selection() {
        assert_eq!(
            Names::binding_keys(&Selection::all()),
            ["event.#", "mail.#"]
        );
        let selection = Selection::all()
            .list("*.lists.example.org".parse().unwrap())
            .only(Kind::Mail);
        assert_eq!(
            Names::binding_keys(&selection),
            ["mail.*.lists.example.org"]
        );
    }

    #[test]
    fn retry_buckets_round_up() {
        assert_eq!(retry_bucket_ms(0), 64);
        assert_eq!(retry_bucket_ms(500), 512);
        assert_eq!(retry_bucket_ms(1000), 1024);
        assert_eq!(retry_bucket_ms(1024), 1024);
    }
}
