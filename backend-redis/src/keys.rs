//! The names of everything the backend keeps in Redis, under one prefix.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:streams` | set | `<kind>:<list-id>` of every stream, so consumers find new lists |
//! | `<p>:stream:<kind>:<list-id>` | stream | the envelopes of one list and kind |
//! | `<p>:subscribers` | hash | subscriber name → its selection and creation time (JSON) |
//! | `<p>:delayed:<name>` | sorted set | nacked entries (`<stream>\n<id>`) by due time, ms |
//! | `<p>:dead:<name>` | stream | the subscriber's dead letters (entry fields, `dead-*` fields, `origin`) |
//! | `<p>:replay:<name>` | stream | dead letters replayed to the subscriber (with their `origin`) |

use archiver_core::{Kind, ListId, Prefix, SubscriberName};

/// Key names under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: Prefix,
}

impl Keys {
    pub(crate) fn new(prefix: &Prefix) -> Self {
        Self {
            prefix: prefix.clone(),
        }
    }

    pub(crate) fn streams(&self) -> String {
        format!("{}:streams", self.prefix)
    }

    pub(crate) fn subscribers(&self) -> String {
        format!("{}:subscribers", self.prefix)
    }

    /// The registry member naming a stream.
    pub(crate) fn stream_member(kind: Kind, list: &ListId) -> String {
        format!("{}:{list}", kind.as_str())
    }

    /// A registry member back to its kind and list; None for junk.
    pub(crate) fn parse_stream_member(member: &str) -> Option<(Kind, ListId)> {
        let (kind, list) = member.split_once(':')?;
        Some((kind.parse().ok()?, ListId::new(list).ok()?))
    }

    pub(crate) fn stream(&self, kind: Kind, list: &ListId) -> String {
        format!("{}:stream:{}", self.prefix, Self::stream_member(kind, list))
    }

    pub(crate) fn delayed(&self, name: &SubscriberName) -> String {
        format!("{}:delayed:{name}", self.prefix)
    }

    pub(crate) fn dead(&self, name: &SubscriberName) -> String {
        format!("{}:dead:{name}", self.prefix)
    }

    pub(crate) fn replay(&self, name: &SubscriberName) -> String {
        format!("{}:replay:{name}", self.prefix)
    }

    /// Pattern matching every key of this prefix (for clean-up).
    pub(crate) fn all(&self) -> String {
        format!("{}:*", self.prefix)
    }
}
