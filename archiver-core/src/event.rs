//! List events: what happens to a list besides its mail, so that an archive
//! can show who ran a list and when.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::list::ListId;

/// A membership's role, as Mailman's `MemberRole`. Owners and moderators
/// are memberships with these roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemberRole {
    /// A subscriber who receives the list's mail.
    Member,
    /// A list owner (administrator).
    Owner,
    /// A moderator who approves held mail.
    Moderator,
    /// An address known to the list without membership (e.g. a poster).
    Nonmember,
}

/// What happened to the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ListChange {
    /// The list was created.
    ListCreated {
        /// The list's posting address, e.g. `dev@lists.example.org`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        posting_address: Option<String>,
    },
    /// The list was deleted.
    ListDeleted,
    /// An address got a role on the list (joined, or became owner/moderator).
    MembershipAdded {
        /// The member's address.
        address: String,
        /// The role it got.
        role: MemberRole,
        /// The member's display name, when known.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
    },
    /// An address lost a role on the list.
    MembershipRemoved {
        /// The member's address.
        address: String,
        /// The role it lost.
        role: MemberRole,
    },
    /// List settings changed: each changed setting with its new value.
    /// Settings that hold addresses travel in
    /// [`AddressSettingsChanged`](Self::AddressSettingsChanged) instead.
    SettingsChanged {
        /// Setting name to new value, in Mailman's attribute names.
        changes: BTreeMap<String, serde_json::Value>,
    },
    /// Settings that hold addresses changed (Mailman's
    /// `accept_these_nonmembers`, `reply_to_address`, ...): a separate
    /// type because those addresses are as private as the roster, so it
    /// is a membership event (`Envelope::is_membership_event`), delivered
    /// only to archive servers granted membership events.
    AddressSettingsChanged {
        /// Setting name to new value, in Mailman's attribute names.
        changes: BTreeMap<String, serde_json::Value>,
    },
}

impl ListChange {
    /// The event's `type` as its JSON writes it (`membership_added`, ...),
    /// which envelopes also carry outside the body (`event-type` on the
    /// wire) so brokers and hubs can route on it without parsing JSON.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::ListCreated { .. } => "list_created",
            Self::ListDeleted => "list_deleted",
            Self::MembershipAdded { .. } => "membership_added",
            Self::MembershipRemoved { .. } => "membership_removed",
            Self::SettingsChanged { .. } => "settings_changed",
            Self::AddressSettingsChanged { .. } => "address_settings_changed",
        }
    }
}

/// One event on one list, with who caused it where known.
///
/// Serialised as one flat JSON object (`docs/wire-format.md`):
/// `{"type":"membership_added","list_id":"dev.lists.example.org",
/// "at":"2026-11-24T10:00:00Z","actor":"admin@example.org",
/// "address":"ann@example.org","role":"owner"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEvent {
    /// The list it happened to.
    pub list_id: ListId,
    /// When it happened, as the list server saw it.
    pub at: DateTime<Utc>,
    /// Who did it (an address or an admin user name), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// What happened.
    #[serde(flatten)]
    pub change: ListChange,
}

impl ListEvent {
    /// An event that happens now, with no known actor.
    pub fn now(list_id: ListId, change: ListChange) -> Self {
        Self {
            list_id,
            at: Utc::now(),
            actor: None,
            change,
        }
    }

    /// Sets who caused the event.
    pub fn by(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// The JSON the event travels as.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a ListEvent always serialises")
    }

    /// Reads an event from its JSON.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// One event of every kind and role, for tests and examples.
    pub fn samples(list_id: &ListId) -> Vec<ListEvent> {
        let at = DateTime::from_timestamp(1_795_000_000, 0).expect("valid timestamp");
        let event = |change| ListEvent {
            list_id: list_id.clone(),
            at,
            actor: Some("admin@example.org".into()),
            change,
        };
        let mut events = vec![
            event(ListChange::ListCreated {
                posting_address: Some(format!("list@{list_id}")),
            }),
            event(ListChange::SettingsChanged {
                changes: BTreeMap::from([
                    ("archive_policy".to_owned(), "private".into()),
                    ("max_message_size".to_owned(), 40.into()),
                ]),
            }),
            event(ListChange::AddressSettingsChanged {
                changes: BTreeMap::from([(
                    "accept_these_nonmembers".to_owned(),
                    serde_json::json!(["bob@example.org"]),
                )]),
            }),
        ];
        for role in [
            MemberRole::Member,
            MemberRole::Owner,
            MemberRole::Moderator,
            MemberRole::Nonmember,
        ] {
            events.push(event(ListChange::MembershipAdded {
                address: "ann@example.org".into(),
                role,
                display_name: Some("Ann Example".into()),
            }));
            events.push(event(ListChange::MembershipRemoved {
                address: "ann@example.org".into(),
                role,
            }));
        }
        events.push(event(ListChange::ListDeleted));
        events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_flat_and_round_trips() {
        let list = ListId::new("dev.lists.example.org").unwrap();
        for event in ListEvent::samples(&list) {
            let json = event.to_json();
            assert_eq!(ListEvent::from_json(&json).unwrap(), event);
            let value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            assert_eq!(value["type"], event.change.type_name());
        }
        let added = ListEvent {
            list_id: list,
            at: DateTime::from_timestamp(0, 0).unwrap(),
            actor: None,
            change: ListChange::MembershipAdded {
                address: "a@b".into(),
                role: MemberRole::Owner,
                display_name: None,
            },
        };
        assert_eq!(
            String::from_utf8(added.to_json()).unwrap(),
            r#"{"list_id":"dev.lists.example.org","at":"1970-01-01T00:00:00Z","type":"membership_added","address":"a@b","role":"owner"}"#
        );
    }
}
