//! Test data and waits that the backend crates' own integration tests
//! share (dead letters, provenance, consumer names, the lists of the
//! least-privilege tests), beyond the scenarios.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Deliveries, Delivery, SubscriberName};
use crate::envelope::{Envelope, EnvelopeId};
use crate::event::{ListChange, ListEvent, MemberRole};
use crate::list::{ArchivePolicy, ListId, MailingList};
use crate::mail::{ArchivedMail, MailLimits};

/// How long [`next_delivery`] and [`ack_until`] wait for each delivery.
const WAIT: Duration = Duration::from_secs(10);

/// The smallest mail of `list`: a fresh `Message-ID` at `domain` and a
/// one-line body.
pub fn small_mail(list: &MailingList, domain: &str) -> Envelope {
    let raw = Bytes::from(format!(
        "Message-ID: <{}@{domain}>\r\n\r\nx\r\n",
        uuid::Uuid::now_v7()
    ));
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        list,
    )
}

/// The public lists of the least-privilege tests (every backend's grant
/// tests use the same deployment, so that their outcomes compare): one
/// archive server is granted exactly these.
pub const PUBLIC_LISTS: [&str; 2] = ["dev.example.org", "users.example.org"];

/// The private list of the least-privilege tests that one restricted
/// archive server is granted alone.
pub const TEAM: &str = "team.example.org";

/// The private list of the least-privilege tests that no restricted
/// archive server is granted.
pub const BOARD: &str = "board.example.org";

/// The subscriber name `text`; panics if it is not a valid one (the tests'
/// names are literals).
pub fn name(text: &str) -> SubscriberName {
    text.parse().unwrap()
}

/// The list `id` of the least-privilege tests: public if it is one of
/// [`PUBLIC_LISTS`], private otherwise.
pub fn list(id: &str) -> MailingList {
    let policy = if PUBLIC_LISTS.contains(&id) {
        ArchivePolicy::Public
    } else {
        ArchivePolicy::Private
    };
    MailingList {
        archive_policy: policy,
        ..MailingList::public(ListId::new(id).unwrap())
    }
}

/// The envelope of `change` to `list`, happening now: marked with the
/// list's policy and the event's type, as the archiver sends it.
pub fn event(list: &MailingList, change: ListChange) -> Envelope {
    Envelope::event(&ListEvent::now(list.list_id.clone(), change), list)
}

/// A membership event of `list`: `ann@example.org` joins as a member
/// without a display name. A roster entry, which only grants with
/// membership events may read.
pub fn member_joined(list: &MailingList) -> Envelope {
    event(
        list,
        ListChange::MembershipAdded {
            address: "ann@example.org".into(),
            role: MemberRole::Member,
            display_name: None,
        },
    )
}

/// The next delivery, past the error items that report malformed
/// messages; panics if none comes within 10 s or the stream ends.
pub async fn next_delivery(deliveries: &mut Deliveries) -> Delivery {
    loop {
        let item = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("a delivery")
            .expect("the stream goes on");
        if let Ok(delivery) = item {
            return delivery;
        }
    }
}

/// Acks every delivery, past error items, until `last` is delivered;
/// returns the ids delivered, in order.
pub async fn ack_until(deliveries: &mut Deliveries, last: EnvelopeId) -> Vec<EnvelopeId> {
    let mut delivered = Vec::new();
    while !delivered.contains(&last) {
        let item = tokio::time::timeout(WAIT, deliveries.next())
            .await
            .expect("the genuine mails arrive")
            .unwrap();
        if let Ok(delivery) = item {
            delivered.push(delivery.envelope().id);
            delivery.ack().await.unwrap();
        }
    }
    delivered
}
