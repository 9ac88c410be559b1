//! Every name the backend uses on the broker, and the routing keys.
//!
//! | name | what |
//! |---|---|
//! | `<p>` | topic exchange every envelope is published to (declared by the list server) |
//! | `<p>.unrouted` | alternate exchange (fanout) and queue: what no subscriber selects (the list server's and operators') |
//! | `<p>.x.<name>` | a subscriber's own direct exchange: its dead-lettering, retries, requeues and replays go through it, never the default exchange |
//! | `<p>.q.<name>` | a durable subscriber's queue |
//! | `<p>.dead.<name>` | its dead letters |
//! | `<p>.retry.<name>.<ms>.quorum` | nacked messages waiting `<ms>` to go back to `<p>.q.<name>` (`<p>.retry.<name>.<ms>` with classic queues) |
//! | `<p>.sub.<name>` | its current selection (one message), to replace stale bindings |
//!
//! Every queue of a subscriber is bound to `<p>.x.<name>` with its own name
//! as the key, so a copy published there with a queue's name reaches that
//! queue only; the names of one subscriber match one regular expression
//! ([`crate::permissions`]) that no other subscriber's names match, dotted
//! names included.
//!
//! Routing keys are `<kind>.<class>.<list-id>`
//! (`mail.public.dev.lists.example.org`), the class being the access class
//! ([`access_class`]); a selection binds `<kind>.<class>.<pattern>` for each
//! kind, each class the client may read and each list pattern, which the
//! topic exchange matches with the same `*` and `#` rules as `ListPattern`.
//! Earlier versions published `<kind>.<list-id>`; such a key is still
//! accepted as the origin of a message already in a queue.

use archiver_core::{Envelope, Kind, Prefix, Selection, SubscriberName};

use crate::config::QueueType;

/// Mail and events of public lists, no member addresses.
pub(crate) const PUBLIC: &str = "public";
/// Mail and events of private lists (and envelopes without a policy).
pub(crate) const PRIVATE: &str = "private";
/// Membership events (member addresses) of public lists.
pub(crate) const MEMBERS: &str = "members";
/// Membership events of private lists.
pub(crate) const PRIVATE_MEMBERS: &str = "private-members";

/// The access class of an envelope, the second word of its routing key: a
/// broker's topic permission can then refuse binding keys of private lists
/// or of membership events. An envelope without a policy counts as private,
/// an event without a type as a membership event, as
/// [`archiver_core::Grant::may_receive`] has it.
pub(crate) fn access_class(envelope: &Envelope) -> &'static str {
    match (envelope.is_public(), envelope.is_membership_event()) {
        (true, false) => PUBLIC,
        (false, false) => PRIVATE,
        (true, true) => MEMBERS,
        (false, true) => PRIVATE_MEMBERS,
    }
}

/// What access classes a client binds (and a grant allows) for a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Classes {
    /// Private lists' mail and events.
    pub(crate) private: bool,
    /// Membership events.
    pub(crate) membership: bool,
}

impl Classes {
    /// Every class.
    pub(crate) const ALL: Self = Self {
        private: true,
        membership: true,
    };

    /// The classes `grant` may read: public always, private and
    /// membership as granted.
    pub(crate) fn granted(grant: &archiver_core::Grant) -> Self {
        Self {
            private: grant.allows_private_lists(),
            membership: grant.allows_membership_events(),
        }
    }

    /// The classes of `kind` these allow (mail has no membership classes).
    pub(crate) fn of(self, kind: Kind) -> Vec<&'static str> {
        let mut classes = vec![PUBLIC];
        if self.private {
            classes.push(PRIVATE);
        }
        if kind == Kind::Event && self.membership {
            classes.push(MEMBERS);
            if self.private {
                classes.push(PRIVATE_MEMBERS);
            }
        }
        classes
    }
}

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

    /// The exchange whose existence says that no earlier version's
    /// subscriber is bound any more (`RabbitConfig::legacy_routing_keys`);
    /// nothing is ever routed through it.
    pub(crate) fn layout_marker(&self) -> String {
        format!("{}.layout", self.prefix)
    }

    /// The subscriber's own exchange, the only one its copies go through.
    pub(crate) fn own_exchange(&self, name: &SubscriberName) -> String {
        format!("{}.x.{name}", self.prefix)
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

    /// `<kind>.<class>.<list-id>`.
    pub(crate) fn routing_key(envelope: &Envelope) -> String {
        format!(
            "{}.{}.{}",
            envelope.kind.as_str(),
            access_class(envelope),
            envelope.list_id
        )
    }

    /// The key earlier versions published with, `<kind>.<list-id>`; `None`
    /// when the list id's first label is a class word
    /// (`mail.private.example.org`), since that key is another list's new
    /// one.
    pub(crate) fn legacy_routing_key(envelope: &Envelope) -> Option<String> {
        let first = envelope
            .list_id
            .as_str()
            .split('.')
            .next()
            .unwrap_or_default();
        (![PUBLIC, PRIVATE, MEMBERS, PRIVATE_MEMBERS].contains(&first))
            .then(|| format!("{}.{}", envelope.kind.as_str(), envelope.list_id))
    }

    /// The binding keys earlier versions bound for `selection`
    /// (`<kind>.<pattern>`, `<kind>.#`), kept during the upgrade so an
    /// earlier list server's mail still arrives.
    pub(crate) fn legacy_binding_keys(selection: &Selection) -> Vec<String> {
        let mut keys = Vec::new();
        for &kind in selection.kinds() {
            if selection.lists().is_empty() {
                keys.push(format!("{}.#", kind.as_str()));
            }
            for pattern in selection.lists() {
                keys.push(format!("{}.{pattern}", kind.as_str()));
            }
        }
        keys
    }

    /// The binding keys that select exactly what `selection` selects, in
    /// the access classes `classes` allows.
    pub(crate) fn binding_keys(selection: &Selection, classes: Classes) -> Vec<String> {
        let mut keys = Vec::new();
        for &kind in selection.kinds() {
            for class in classes.of(kind) {
                if selection.lists().is_empty() {
                    keys.push(format!("{}.{class}.#", kind.as_str()));
                }
                for pattern in selection.lists() {
                    keys.push(format!("{}.{class}.{pattern}", kind.as_str()));
                }
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

    #[test]
    fn binding_keys_follow_the_selection() {
        assert_eq!(
            Names::binding_keys(&Selection::all(), Classes::ALL),
            [
                "event.members.#",
                "event.private-members.#",
                "event.private.#",
                "event.public.#",
                "mail.private.#",
                "mail.public.#"
            ]
        );
        let selection = Selection::all()
            .list("*.lists.example.org".parse().unwrap())
            .only(Kind::Mail);
        let public = Classes {
            private: false,
            membership: true,
        };
        assert_eq!(
            Names::binding_keys(&selection, public),
            ["mail.public.*.lists.example.org"]
        );
        let events = Selection::all()
            .list("dev.lists.example.org".parse().unwrap())
            .only(Kind::Event);
        assert_eq!(
            Names::binding_keys(&events, public),
            [
                "event.members.dev.lists.example.org",
                "event.public.dev.lists.example.org"
            ]
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
