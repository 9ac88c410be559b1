//! The names of everything the backend keeps in Redis, under one prefix.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `<p>:stream:<class>:<content>:{<list-id>}` | stream | the envelopes of one list, access class and content |
//! | `<p>:lists:<class>:<content>` | set | the list ids that have such a stream, so consumers find new lists |
//! | `<p>:sub:<name>` | string | a subscriber's selection and creation time (JSON) |
//! | `<p>:delayed:<name>` | sorted set | nacked entries (`<stream>\n<id>`) by due time, ms |
//! | `<p>:dead:<name>` | stream | the subscriber's dead letters (entry fields, `dead-*` fields, `origin`) |
//! | `<p>:replay:<name>` | stream | dead letters replayed to the subscriber (with their `origin`) |
//!
//! The access class (`public` or `private`, from the envelope's
//! `archive-policy`, private when unmarked) and the content (`mail`,
//! `event`, or `members` for membership events, which carry member
//! addresses) are in the key names so that Redis ACL key patterns can grant
//! exactly them ([`crate::acl`]); a list id is an exact key, never a glob.
//! `{<list-id>}` is a Redis Cluster hash tag: one list's streams share a
//! slot, so a later cluster layout keeps these names and their ACLs.
//!
//! Earlier versions kept `<p>:stream:<kind>:<list-id>` streams, the
//! `<p>:streams` set and the `<p>:subscribers` hash ([`Legacy`]); a list
//! server's client migrates them at connect ([`crate::migrate`]).

use archiver_core::{Envelope, Kind, ListId, Prefix, SubscriberName};

/// Who may read a stream: the envelope's archive policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Class {
    Public,
    Private,
}

impl Class {
    pub(crate) const ALL: [Class; 2] = [Class::Public, Class::Private];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Class::Public => "public",
            Class::Private => "private",
        }
    }

    /// Public only when marked so ([`Envelope::is_public`]).
    pub(crate) fn of(envelope: &Envelope) -> Self {
        if envelope.is_public() {
            Class::Public
        } else {
            Class::Private
        }
    }
}

/// What a stream holds: mails, events without member addresses, or
/// membership events, each its own stream so a grant can leave the last
/// out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Content {
    Mail,
    Event,
    Members,
}

impl Content {
    pub(crate) const ALL: [Content; 3] = [Content::Mail, Content::Event, Content::Members];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Content::Mail => "mail",
            Content::Event => "event",
            Content::Members => "members",
        }
    }

    /// The envelope kind a subscriber selects to read this content.
    pub(crate) fn kind(self) -> Kind {
        match self {
            Content::Mail => Kind::Mail,
            Content::Event | Content::Members => Kind::Event,
        }
    }

    /// Membership events apart ([`Envelope::is_membership_event`]).
    pub(crate) fn of(envelope: &Envelope) -> Self {
        match envelope.kind {
            Kind::Mail => Content::Mail,
            Kind::Event if envelope.is_membership_event() => Content::Members,
            Kind::Event => Content::Event,
        }
    }
}

/// One list stream: its class, content, list and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StreamRef {
    pub(crate) class: Class,
    pub(crate) content: Content,
    pub(crate) list: ListId,
    pub(crate) key: String,
}

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

    /// The set of list ids having a stream of this class and content.
    pub(crate) fn lists(&self, class: Class, content: Content) -> String {
        format!(
            "{}:lists:{}:{}",
            self.prefix,
            class.as_str(),
            content.as_str()
        )
    }

    /// Where streams of a class and content start: `<p>:stream:<class>:<content>:`.
    pub(crate) fn stream_stem(&self, class: Class, content: Content) -> String {
        format!(
            "{}:stream:{}:{}:",
            self.prefix,
            class.as_str(),
            content.as_str()
        )
    }

    pub(crate) fn stream(&self, class: Class, content: Content, list: &ListId) -> StreamRef {
        StreamRef {
            class,
            content,
            list: list.clone(),
            key: format!("{}{{{list}}}", self.stream_stem(class, content)),
        }
    }

    /// The stream an envelope belongs in.
    pub(crate) fn stream_of(&self, envelope: &Envelope) -> StreamRef {
        self.stream(
            Class::of(envelope),
            Content::of(envelope),
            &envelope.list_id,
        )
    }

    /// A subscriber's record.
    pub(crate) fn subscriber(&self, name: &SubscriberName) -> String {
        format!("{}:sub:{name}", self.prefix)
    }

    /// Pattern matching every subscriber's record.
    pub(crate) fn subscribers(&self) -> String {
        format!("{}:sub:*", self.prefix)
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

    /// The names earlier versions used.
    pub(crate) fn legacy(&self) -> Legacy<'_> {
        Legacy { keys: self }
    }
}

/// The layout of earlier versions, one stream per list and kind, which the
/// list server migrates and whose names old dead letters keep as `origin`.
pub(crate) struct Legacy<'a> {
    keys: &'a Keys,
}

impl Legacy<'_> {
    /// The set of `<kind>:<list-id>` of every old stream.
    pub(crate) fn streams(&self) -> String {
        format!("{}:streams", self.keys.prefix)
    }

    /// The hash of subscriber name → record.
    pub(crate) fn subscribers(&self) -> String {
        format!("{}:subscribers", self.keys.prefix)
    }

    pub(crate) fn stream(&self, kind: Kind, list: &ListId) -> String {
        format!("{}:stream:{}:{list}", self.keys.prefix, kind.as_str())
    }

    /// A member of the old set back to its kind and list; None for junk.
    pub(crate) fn parse_member(member: &str) -> Option<(Kind, ListId)> {
        let (kind, list) = member.split_once(':')?;
        Some((kind.parse().ok()?, ListId::new(list).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn class_and_content_are_in_the_key_and_the_list_is_a_hash_tag() {
        let keys = Keys::new(&"p".parse().unwrap());
        let list = ListId::new("dev.lists.example.org").unwrap();
        assert_eq!(
            keys.stream(Class::Private, Content::Members, &list).key,
            "p:stream:private:members:{dev.lists.example.org}"
        );
        assert_eq!(
            keys.lists(Class::Public, Content::Mail),
            "p:lists:public:mail"
        );
        assert_eq!(
            keys.legacy().stream(Kind::Mail, &list),
            "p:stream:mail:dev.lists.example.org"
        );
    }
}
