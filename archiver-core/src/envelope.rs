//! The envelope: what travels through every backend, one per mail or event.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::event::ListEvent;
use crate::list::{ArchivePolicy, ListAddress, ListId, MailingList};
use crate::mail::ArchivedMail;

/// Content type of a mail body: the mail exactly as received.
pub const MAIL_CONTENT_TYPE: &str = "message/rfc822";
/// Content type of an event body: the event's JSON.
pub const EVENT_CONTENT_TYPE: &str = "application/json";

/// Largest envelope body every backend takes by default (its
/// `max_envelope_bytes`, the facade's `max-envelope-bytes`): 32 MiB, one
/// value for all, equal to the default mail limit
/// ([`DEFAULT_MAX_MAIL_BYTES`](crate::mail::DEFAULT_MAX_MAIL_BYTES)) so
/// every mail the default [`MailLimits`](crate::MailLimits) accept is
/// carried, and half the journal's largest record (64 MiB,
/// [`JournalOptions::max_record`](crate::journal::JournalOptions::max_record)),
/// so every envelope a backend takes also fits a spool or a ZeroMQ hub's
/// journal, header included.
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = crate::mail::DEFAULT_MAX_MAIL_BYTES;

/// Unique, time-ordered envelope id (UUIDv7): ids sort by publish time, so
/// logs and dead-letter listings read in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EnvelopeId(Uuid);

impl EnvelopeId {
    /// A fresh id for now.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for EnvelopeId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for EnvelopeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for EnvelopeId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// What an envelope carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An archived mail (`message/rfc822`).
    Mail,
    /// A list event (`application/json`).
    Event,
}

impl Kind {
    /// The name used on the wire and in routing keys.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Mail => "mail",
            Self::Event => "event",
        }
    }
}

impl FromStr for Kind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mail" => Ok(Self::Mail),
            "event" => Ok(Self::Event),
            other => Err(format!("unknown kind {other:?}")),
        }
    }
}

/// One mail or one list event on its way to the archives, with the
/// metadata backends route on. `docs/wire-format.md` says how each backend
/// carries it; [`crate::wire`] holds the shared field mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Unique id; redeliveries keep it.
    pub id: EnvelopeId,
    /// Mail or event.
    pub kind: Kind,
    /// The list it belongs to; backends route on it.
    pub list_id: ListId,
    /// When the list server published it, to the millisecond.
    pub published_at: DateTime<Utc>,
    /// MIME type of [`body`](Self::body).
    pub content_type: String,
    /// Mailman's Message-ID-Hash (mails only), so consumers can de-duplicate
    /// without parsing the body.
    pub message_id_hash: Option<String>,
    /// The list's archive policy, so archives know who may read and
    /// brokers and hubs whom to deliver to: on mails, and on events since
    /// wire format 1.2 (see [`Envelope::is_public`]).
    pub archive_policy: Option<ArchivePolicy>,
    /// The list's posting address, when the list server gave it (wire
    /// format 1.1), so archives can key the list as HyperKitty does.
    pub list_address: Option<ListAddress>,
    /// The event's `type` (events only, wire format 1.2), e.g.
    /// `membership_added`, so brokers and hubs can route events without
    /// parsing the body; see [`Envelope::is_membership_event`].
    pub event_type: Option<String>,
    /// The mail exactly as received, or the event's JSON.
    pub body: Bytes,
}

/// Event types known to carry no member address: every other event type,
/// and an event without one (written before wire format 1.2), may.
const ROSTER_FREE_EVENT_TYPES: [&str; 3] = ["list_created", "list_deleted", "settings_changed"];

impl Envelope {
    /// Wraps a mail posted to `list`; the body shares the mail's bytes.
    pub fn mail(mail: &ArchivedMail, list: &MailingList) -> Self {
        Self {
            id: EnvelopeId::new(),
            kind: Kind::Mail,
            list_id: list.list_id.clone(),
            published_at: now_millis(),
            content_type: MAIL_CONTENT_TYPE.to_owned(),
            message_id_hash: Some(mail.message_id_hash().to_owned()),
            archive_policy: Some(list.archive_policy),
            list_address: list.list_address.clone(),
            event_type: None,
            body: mail.raw().clone(),
        }
    }

    /// Wraps an event of `list` as JSON, marked as the list's mails are
    /// (its archive policy and posting address) and with the event's type.
    /// The envelope's list id is the event's; the caller checks that it is
    /// `list`'s.
    pub fn event(event: &ListEvent, list: &MailingList) -> Self {
        Self {
            id: EnvelopeId::new(),
            kind: Kind::Event,
            list_id: event.list_id.clone(),
            published_at: now_millis(),
            content_type: EVENT_CONTENT_TYPE.to_owned(),
            message_id_hash: None,
            archive_policy: Some(list.archive_policy),
            list_address: list.list_address.clone(),
            event_type: Some(event.change.type_name().to_owned()),
            body: Bytes::from(event.to_json()),
        }
    }

    /// True only for an envelope marked `public`: one of a private list,
    /// and one without `archive-policy` (an event written before wire
    /// format 1.2), may be read only by those granted private lists, so
    /// whoever routes or filters on it treats both as private.
    pub fn is_public(&self) -> bool {
        self.archive_policy == Some(ArchivePolicy::Public)
    }

    /// True for an event that may carry a member's address: a membership
    /// event (`membership_added`, `membership_removed`), a change of
    /// settings that hold addresses (`address_settings_changed`), an event of a type
    /// this library does not know (a later writer's), or an event without
    /// `event-type` (a writer older than wire format 1.2). Mailman shows a
    /// list's roster to its moderators only by default, so whoever routes
    /// or filters events must treat all of these as membership events: an
    /// unknown event errs on the side of hiding it. False for mails.
    pub fn is_membership_event(&self) -> bool {
        self.kind == Kind::Event
            && !self
                .event_type
                .as_deref()
                .is_some_and(|t| ROSTER_FREE_EVENT_TYPES.contains(&t))
    }
}

/// Now, truncated to what the wire format carries (milliseconds).
fn now_millis() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_time_ordered_and_parse_back() {
        let a = EnvelopeId::new();
        let b = EnvelopeId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<EnvelopeId>().unwrap(), a);
    }

    #[test]
    fn membership_events_and_events_of_unknown_type_count_as_membership() {
        let list = ListId::new("dev.lists.example.org").unwrap();
        let public = MailingList::public(list.clone());
        for event in ListEvent::samples(&list) {
            let envelope = Envelope::event(&event, &public);
            assert_eq!(
                envelope.event_type.as_deref(),
                Some(event.change.type_name())
            );
            assert_eq!(
                envelope.is_membership_event(),
                matches!(
                    event.change,
                    crate::ListChange::MembershipAdded { .. }
                        | crate::ListChange::MembershipRemoved { .. }
                        | crate::ListChange::AddressSettingsChanged { .. }
                ),
                "{:?}",
                event.change
            );
        }
        let deleted = Envelope::event(
            &ListEvent::now(list, crate::ListChange::ListDeleted),
            &public,
        );
        for unknown in [None, Some("roster_exported".to_owned())] {
            let envelope = Envelope {
                event_type: unknown.clone(),
                ..deleted.clone()
            };
            assert!(envelope.is_membership_event(), "{unknown:?}");
        }
        let mail = Envelope {
            kind: Kind::Mail,
            event_type: None,
            ..deleted
        };
        assert!(!mail.is_membership_event());
    }

    #[test]
    fn only_envelopes_marked_public_are_public() {
        let list = MailingList::public(ListId::new("dev.lists.example.org").unwrap());
        let event = ListEvent::now(list.list_id.clone(), crate::ListChange::ListDeleted);
        let envelope = Envelope::event(&event, &list);
        assert!(envelope.is_public());
        for policy in [
            None,
            Some(ArchivePolicy::Private),
            Some(ArchivePolicy::Never),
        ] {
            let marked = Envelope {
                archive_policy: policy,
                ..envelope.clone()
            };
            assert!(!marked.is_public(), "{policy:?}");
        }
    }
}
