//! What an archive server may read. A principal is the identity a broker
//! or the ZeroMQ hub authenticated (a broker user, a ZAP PLAIN user, later
//! a CURVE key); its [`Grant`] says which subscriber names it may use,
//! which lists it may select, and whether it may read private lists and
//! membership events (which carry member addresses).
//!
//! The grant is enforced by whoever serves the mail, never by the client's
//! good manners: the hub checks it on every command (its allowlist entries
//! are grants), a broker through its users and permissions. A refusal is
//! [`BackendError::Forbidden`] naming what was refused.
//!
//! A grant as JSON, the form an allowlist file and an operator tool use:
//!
//! ```
//! use archiver_core::Grant;
//! let grant: Grant = serde_json::from_str(r#"{
//!     "principal": "public-archive",
//!     "subscribers": ["public-archive"],
//!     "lists": ["*.lists.example.org"],
//!     "private_lists": false,
//!     "membership_events": false
//! }"#).unwrap();
//! assert_eq!(grant.principal(), "public-archive");
//! ```

use serde::{Deserialize, Serialize};

use crate::backend::{BackendError, SubscriberName, Subscription};
use crate::envelope::Envelope;
use crate::list::ListId;
use crate::selection::{ListPattern, Selection};

/// One principal's access. [`Grant::new`] grants nothing; each builder
/// call adds one permission, so what is not written down is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "GrantText", into = "GrantText")]
pub struct Grant {
    principal: String,
    subscribers: Vec<SubscriberName>,
    lists: Vec<ListPattern>,
    private_lists: bool,
    membership_events: bool,
    operator: bool,
}

impl Grant {
    /// A grant for `principal` (the authenticated name) that allows nothing
    /// yet.
    pub fn new(principal: impl Into<String>) -> Self {
        Self {
            principal: principal.into(),
            subscribers: Vec::new(),
            lists: Vec::new(),
            private_lists: false,
            membership_events: false,
            operator: false,
        }
    }

    /// Reads a grant from a JSON file (the form above), for an operator
    /// tool or a client configured with its own grant; the error says
    /// which file and why, never more of its content.
    pub fn read_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("grant file {} cannot be read: {e}", path.display()))?;
        serde_json::from_slice(&text)
            .map_err(|e| format!("grant file {} is not a grant: {e}", path.display()))
    }

    /// The authenticated name this grant belongs to.
    pub fn principal(&self) -> &str {
        &self.principal
    }

    /// Allows subscribing, and acting on dead letters, under `name`
    /// (repeatable).
    pub fn subscriber(mut self, name: SubscriberName) -> Self {
        self.subscribers.push(name);
        self
    }

    /// Allows selecting the lists `pattern` covers (repeatable): `#` for
    /// every list.
    pub fn lists(mut self, pattern: ListPattern) -> Self {
        self.lists.push(pattern);
        self
    }

    /// Allows (or not, the default) mail and events of private lists.
    pub fn private_lists(mut self, allowed: bool) -> Self {
        self.private_lists = allowed;
        self
    }

    /// Allows (or not, the default) membership events, which carry member
    /// addresses: Mailman shows a roster to moderators only by default.
    pub fn membership_events(mut self, allowed: bool) -> Self {
        self.membership_events = allowed;
        self
    }

    /// Makes the principal an operator (or not, the default): any
    /// subscriber name, and other subscribers' dead letters, replay, purge
    /// and unsubscribe. What it may read stays limited by the rest.
    pub fn operator(mut self, allowed: bool) -> Self {
        self.operator = allowed;
        self
    }

    /// The subscriber names granted (an operator may use any besides):
    /// what a broker's ACL generator turns into per-subscriber keys.
    pub fn subscribers(&self) -> &[SubscriberName] {
        &self.subscribers
    }

    /// The list patterns granted, for a broker's ACL generator.
    pub fn list_patterns(&self) -> &[ListPattern] {
        &self.lists
    }

    /// Whether mail and events of private lists are granted.
    pub fn allows_private_lists(&self) -> bool {
        self.private_lists
    }

    /// Whether membership events are granted.
    pub fn allows_membership_events(&self) -> bool {
        self.membership_events
    }

    /// Whether the principal is an operator.
    pub fn is_operator(&self) -> bool {
        self.operator
    }

    /// Whether `name` is one of this principal's, or it is an operator.
    fn may_use(&self, name: &SubscriberName) -> bool {
        self.operator || self.subscribers.contains(name)
    }

    /// Refuses a subscription under a name that is not the principal's, or
    /// selecting a list pattern no granted pattern covers (no pattern at
    /// all selects every list, so it needs `#`).
    pub fn check_subscription(&self, subscription: &Subscription) -> Result<(), BackendError> {
        if !self.may_use(&subscription.name) {
            return Err(self.refuse(format!("subscriber name {:?}", subscription.name.as_str())));
        }
        self.check_tail(&subscription.selection)
    }

    /// Refuses a selection (of a subscription or a live tail) with a list
    /// pattern no granted pattern covers.
    pub fn check_tail(&self, selection: &Selection) -> Result<(), BackendError> {
        let every_list = ListPattern::new("#").expect("# is a pattern");
        let wanted = match selection.lists() {
            [] => std::slice::from_ref(&every_list),
            patterns => patterns,
        };
        match wanted
            .iter()
            .find(|w| !self.lists.iter().any(|g| g.covers(w)))
        {
            Some(outside) => Err(self.refuse(format!("list pattern {:?}", outside.as_str()))),
            None => Ok(()),
        }
    }

    /// Refuses an operator's action (`action`: "dead letters", "replay",
    /// "purge", "unsubscribe") on a subscriber that is not the
    /// principal's, unless it is an operator.
    pub fn check_operator_action(
        &self,
        name: &SubscriberName,
        action: &'static str,
    ) -> Result<(), BackendError> {
        if self.may_use(name) {
            Ok(())
        } else {
            Err(self.refuse(format!("{action} of subscriber {:?}", name.as_str())))
        }
    }

    /// Whether the envelope may reach this principal: its list is covered,
    /// it is private only if private lists are granted, it is a membership
    /// event only if those are granted. Checked on every delivery, so a
    /// stored selection can never widen access. An envelope without a
    /// policy (an event from an older writer) counts as private, an event
    /// without a type as a membership event ([`Envelope::is_public`],
    /// [`Envelope::is_membership_event`]).
    pub fn may_receive(&self, envelope: &Envelope) -> bool {
        self.admits(
            &envelope.list_id,
            envelope.is_public(),
            envelope.is_membership_event(),
        )
    }

    /// [`Self::may_receive`] from what it reads of an envelope (its list,
    /// [`Envelope::is_public`], [`Envelope::is_membership_event`]), for a
    /// router that keeps those beside the envelope's bytes and so need not
    /// decode it to decide.
    pub fn admits(&self, list_id: &ListId, public: bool, membership_event: bool) -> bool {
        self.lists.iter().any(|g| g.matches(list_id))
            && (self.private_lists || public)
            && (self.membership_events || !membership_event)
    }

    /// The refusal of `what`, naming the principal (never a credential).
    fn refuse(&self, what: String) -> BackendError {
        BackendError::Forbidden(format!("{what} is not granted to {:?}", self.principal).into())
    }
}

/// A [`Grant`] as it is written (JSON), checked when read.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantText {
    principal: String,
    #[serde(default)]
    subscribers: Vec<String>,
    #[serde(default)]
    lists: Vec<String>,
    #[serde(default)]
    private_lists: bool,
    #[serde(default)]
    membership_events: bool,
    #[serde(default)]
    operator: bool,
}

impl TryFrom<GrantText> for Grant {
    type Error = String;

    fn try_from(text: GrantText) -> Result<Self, String> {
        if text.principal.is_empty() {
            return Err("a grant's principal is empty".into());
        }
        let of =
            |what: &str, error: String| format!("grant of {:?}: {what}: {error}", text.principal);
        let subscribers = text
            .subscribers
            .iter()
            .map(|n| {
                n.parse()
                    .map_err(|e: crate::backend::InvalidSubscriberName| {
                        of("subscribers", e.to_string())
                    })
            })
            .collect::<Result<_, _>>()?;
        let lists = text
            .lists
            .iter()
            .map(|p| ListPattern::new(p).map_err(|e| of("lists", e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            principal: text.principal,
            subscribers,
            lists,
            private_lists: text.private_lists,
            membership_events: text.membership_events,
            operator: text.operator,
        })
    }
}

impl From<Grant> for GrantText {
    fn from(grant: Grant) -> Self {
        Self {
            principal: grant.principal,
            subscribers: grant
                .subscribers
                .iter()
                .map(|n| n.as_str().to_owned())
                .collect(),
            lists: grant.lists.iter().map(|p| p.as_str().to_owned()).collect(),
            private_lists: grant.private_lists,
            membership_events: grant.membership_events,
            operator: grant.operator,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ListChange, ListEvent, MemberRole};
    use crate::list::{ArchivePolicy, ListId, MailingList};

    fn name(text: &str) -> SubscriberName {
        text.parse().unwrap()
    }

    fn pattern(text: &str) -> ListPattern {
        text.parse().unwrap()
    }

    fn public_archive() -> Grant {
        Grant::new("public-archive")
            .subscriber(name("public-archive"))
            .lists(pattern("*.lists.example.org"))
    }

    fn event_of(list: &str, policy: Option<ArchivePolicy>) -> Envelope {
        let list = ListId::new(list).unwrap();
        let event = ListEvent::now(list.clone(), ListChange::ListDeleted);
        Envelope {
            archive_policy: policy,
            ..Envelope::event(&event, &MailingList::public(list))
        }
    }

    #[test]
    fn a_subscription_inside_the_grant_passes_and_any_widening_is_forbidden() {
        let grant = public_archive();
        let own = Subscription::new(name("public-archive"))
            .select(Selection::all().list(pattern("dev.lists.example.org")));
        assert_eq!(grant.check_subscription(&own), Ok(()));
        let refusals = [
            (
                Subscription::new(name("private-archive"))
                    .select(Selection::all().list(pattern("dev.lists.example.org"))),
                "subscriber name \"private-archive\" is not granted to \"public-archive\"",
            ),
            (
                Subscription::new(name("public-archive")),
                "list pattern \"#\" is not granted to \"public-archive\"",
            ),
            (
                Subscription::new(name("public-archive")).select(
                    Selection::all()
                        .list(pattern("dev.lists.example.org"))
                        .list(pattern("board.example.org")),
                ),
                "list pattern \"board.example.org\" is not granted to \"public-archive\"",
            ),
        ];
        for (subscription, why) in refusals {
            assert_eq!(
                grant.check_subscription(&subscription),
                Err(BackendError::Forbidden(why.into()))
            );
        }
    }

    #[test]
    fn operator_actions_are_for_own_names_unless_an_operator() {
        let grant = public_archive();
        assert_eq!(
            grant.check_operator_action(&name("public-archive"), "replay"),
            Ok(())
        );
        let refused = grant
            .check_operator_action(&name("private-archive"), "dead letters")
            .unwrap_err();
        assert!(!refused.is_transient());
        assert_eq!(
            refused.to_string(),
            "forbidden: dead letters of subscriber \"private-archive\" is not granted to \"public-archive\""
        );
        let operator = Grant::new("ops").operator(true);
        assert_eq!(
            operator.check_operator_action(&name("private-archive"), "unsubscribe"),
            Ok(())
        );
    }

    #[test]
    fn only_granted_lists_and_policies_are_received() {
        let grant = public_archive();
        let public = event_of("dev.lists.example.org", Some(ArchivePolicy::Public));
        let private = event_of("dev.lists.example.org", Some(ArchivePolicy::Private));
        let unmarked = event_of("dev.lists.example.org", None);
        let elsewhere = event_of("board.example.org", Some(ArchivePolicy::Public));
        assert!(grant.may_receive(&public));
        assert!(!grant.may_receive(&private));
        assert!(!grant.may_receive(&unmarked), "no policy counts as private");
        assert!(!grant.may_receive(&elsewhere));
        let trusted = grant.private_lists(true);
        assert!(trusted.may_receive(&private));
        assert!(trusted.may_receive(&unmarked));
        assert!(!trusted.may_receive(&elsewhere));
    }

    #[test]
    fn membership_events_only_when_granted() {
        let list = MailingList::public(ListId::new("dev.lists.example.org").unwrap());
        let joined = ListChange::MembershipAdded {
            address: "ann@example.org".into(),
            role: MemberRole::Member,
            display_name: None,
        };
        let membership = Envelope::event(&ListEvent::now(list.list_id.clone(), joined), &list);
        let untyped = Envelope {
            event_type: None,
            ..event_of("dev.lists.example.org", Some(ArchivePolicy::Public))
        };
        let grant = public_archive();
        assert!(!grant.may_receive(&membership));
        assert!(
            !grant.may_receive(&untyped),
            "no event type counts as membership"
        );
        let roster = grant.membership_events(true);
        assert!(roster.may_receive(&membership));
        assert!(roster.may_receive(&untyped));
    }

    #[test]
    fn grants_read_from_json_are_checked() {
        let grant: Grant = serde_json::from_str(
            r##"{"principal":"ops","subscribers":["a"],"lists":["#"],"operator":true}"##,
        )
        .unwrap();
        assert_eq!(
            grant,
            Grant::new("ops")
                .subscriber(name("a"))
                .lists(pattern("#"))
                .operator(true)
        );
        let back: Grant = serde_json::from_str(&serde_json::to_string(&grant).unwrap()).unwrap();
        assert_eq!(back, grant);
        for (text, why) in [
            (r#"{"principal":""}"#, "principal is empty"),
            (
                r#"{"principal":"p","lists":["a..b"]}"#,
                "grant of \"p\": lists",
            ),
            (
                r#"{"principal":"p","subscribers":["has space"]}"#,
                "grant of \"p\": subscribers",
            ),
            (r#"{"principal":"p","private":true}"#, "unknown field"),
        ] {
            let error = serde_json::from_str::<Grant>(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
        }
    }
}
