//! A durable subscription: a named subscriber's own queue and how it is read.

use std::fmt;
use std::str::FromStr;

use crate::selection::Selection;

/// How many deliveries a consumer may hold unsettled by default: enough to
/// keep a broker round trip off the critical path, small enough that a slow
/// archive server never holds much memory.
pub const DEFAULT_PREFETCH: u16 = 64;

/// Deliveries of one envelope before it is dead-lettered by default.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// Why a string was refused as a subscriber name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid subscriber name {0:?}: use 1 to 100 of A-Z a-z 0-9 . _ -")]
pub struct InvalidSubscriberName(pub String);

/// The rule for every name the backends build queue and key names from
/// (subscriber names, prefixes): 1 to 100 of `A-Z a-z 0-9 . _ -`, safe in
/// every broker's names and free of glob characters and of `:`.
pub(crate) fn is_broker_safe(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The name of a durable subscriber (one archive server role, such as
/// `hyperkitty` or `search-indexer`). Every instance using the same name
/// shares one queue. Restricted to characters that are safe in every
/// broker's queue and key names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriberName(String);

impl SubscriberName {
    /// Validates a name.
    pub fn new(name: &str) -> Result<Self, InvalidSubscriberName> {
        if is_broker_safe(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidSubscriberName(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SubscriberName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SubscriberName {
    type Err = InvalidSubscriberName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

/// Where a new subscriber's queue starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartPosition {
    /// With what is published from the moment the queue is created.
    #[default]
    New,
    /// With everything the backend still retains (only where
    /// [`SubscriberCapabilities::replay_from_start`](crate::SubscriberCapabilities) is true).
    Beginning,
}

/// A named durable subscription and how its consumer reads it.
///
/// The queue is created by the first `subscribe` and kept while no consumer
/// is attached. The selection of the latest `subscribe` for a name is the
/// one in force.
///
/// ```
/// use archiver_core::{Kind, Selection, Subscription};
/// let sub = Subscription::new("search-indexer".parse().unwrap())
///     .select(Selection::all().only(Kind::Mail))
///     .prefetch(16)
///     .max_attempts(8);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Queue name shared by all instances of this subscriber.
    pub name: SubscriberName,
    /// What the queue receives.
    pub selection: Selection,
    /// Most deliveries one consumer holds unsettled (in-flight bound).
    pub prefetch: u16,
    /// Deliveries of one envelope before it goes to the dead letters.
    pub max_attempts: u32,
    /// Where a newly created queue starts.
    pub start: StartPosition,
}

impl Subscription {
    /// Everything, with the default prefetch and attempt limit.
    pub fn new(name: SubscriberName) -> Self {
        Self {
            name,
            selection: Selection::all(),
            prefetch: DEFAULT_PREFETCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            start: StartPosition::New,
        }
    }

    /// Sets what the queue receives.
    pub fn select(mut self, selection: Selection) -> Self {
        self.selection = selection;
        self
    }

    /// Sets the in-flight bound (at least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// Sets the attempt limit (at least 1).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Sets where a newly created queue starts.
    pub fn start(mut self, start: StartPosition) -> Self {
        self.start = start;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_broker_safe() {
        assert!(SubscriberName::new("hyperkitty-1.web_a").is_ok());
        for bad in ["", "a b", "a/b", "a*", "é"] {
            assert!(SubscriberName::new(bad).is_err(), "{bad:?}");
        }
        assert!(SubscriberName::new(&"a".repeat(101)).is_err());
    }
}
