//! The prefix that keeps one deployment's names on a broker apart from
//! another's: Redis keys, RabbitMQ exchange and queues.

use std::fmt;
use std::str::FromStr;

/// The prefix every backend uses unless told otherwise.
pub const DEFAULT_PREFIX: &str = "archiver";

/// Why a string was refused as a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid prefix {0:?}: use 1 to 100 of A-Z a-z 0-9 . _ -")]
pub struct InvalidPrefix(pub String);

/// A validated prefix: 1 to 100 of `A-Z a-z 0-9 . _ -`, the same rule for
/// every backend. Safe in a RabbitMQ name and in a Redis key, and free of
/// the glob characters (`* ? [ ]`) and the `:` separator, so the pattern
/// `<prefix>:*` that cleans up a Redis deployment matches only its keys.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix(String);

impl Prefix {
    /// Validates a prefix.
    pub fn new(prefix: &str) -> Result<Self, InvalidPrefix> {
        if super::subscription::is_broker_safe(prefix) {
            Ok(Self(prefix.to_owned()))
        } else {
            Err(InvalidPrefix(prefix.to_owned()))
        }
    }

    /// The prefix as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Prefix {
    /// [`DEFAULT_PREFIX`].
    fn default() -> Self {
        Self(DEFAULT_PREFIX.to_owned())
    }
}

/// Shown as the string it is (`"archiver"`), as configurations print it.
impl fmt::Debug for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Read as the text it is, where a name is built from it.
impl std::ops::Deref for Prefix {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Prefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Prefix {
    type Err = InvalidPrefix;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_safe_in_every_broker() {
        assert_eq!(Prefix::default().as_str(), "archiver");
        assert!(Prefix::new("archiver-test.1_a").is_ok());
        for bad in ["", "a b", "a:b", "a*", "a?", "a[b]", "é", "a/b"] {
            let refused = Prefix::new(bad).unwrap_err();
            assert!(
                refused.to_string().contains(&format!("{bad:?}")),
                "{refused}"
            );
        }
        assert!(Prefix::new(&"a".repeat(101)).is_err());
    }
}
