//! Scenarios on what travels: real mail byte for byte, large mail, limits,
//! list events, and a closed client.

use std::collections::HashMap;

use super::Harness;
use super::corpus::corpus_mbox;
use super::support::{
    assert_exactly_once, assert_quiet, list, mail, mail_with_body, name, publish_all,
    receive_acked, subscribe,
};
use crate::archiver::{ArchiveError, ArchiveUrls, Archiver, Outcome, QueueArchiver};
use crate::backend::{BackendError, Connection, Publisher, Subscriber, Subscription};
use crate::envelope::{EVENT_CONTENT_TYPE, Envelope, Kind, MAIL_CONTENT_TYPE};
use crate::event::{ListChange, ListEvent};
use crate::list::{ArchivePolicy, ListAddress, ListId, MailingList};
use crate::mail::mbox::MboxReader;
use crate::mail::{DEFAULT_MAX_MAIL_BYTES, MailError, MailLimits, SkipReason};
use crate::selection::Selection;

fn archiver<P: Publisher>(publisher: P) -> QueueArchiver<P> {
    QueueArchiver::new(
        "conformance",
        publisher,
        ArchiveUrls::new("https://archive.example.org/list/{list_id}/").expect("valid base URL"),
    )
}

/// Every mail of the shared corpus, published through the [`Archiver`],
/// arrives once and byte-identical, with the Message-ID-Hash of its receipt.
pub async fn corpus_round_trip<H: Harness>(harness: &H) {
    let Some(path) = corpus_mbox("corpus_round_trip") else {
        return;
    };
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(&consumer, Subscription::new(name("corpus"))).await;
    let archiver = archiver(harness.publisher().await);
    let fallback = ListId::new("corpus.lists.example.org").expect("valid list id");

    let mut sent = HashMap::new();
    for raw in MboxReader::open(&path).expect("corpus opens") {
        let raw = raw.expect("corpus reads");
        let parsed = crate::mail::ArchivedMail::parse(raw.clone(), archiver.limits())
            .expect("corpus mail parses");
        let list = MailingList::public(
            parsed
                .meta()
                .list_id
                .clone()
                .unwrap_or_else(|| fallback.clone()),
        );
        let receipt = archiver
            .archive_message(&list, raw.clone())
            .await
            .expect("corpus mail archives");
        if receipt.outcome == Outcome::Published {
            let id = receipt
                .envelope_id
                .expect("a published receipt has an envelope id");
            sent.insert(id, (raw, receipt.message_id_hash));
        }
    }
    assert!(
        sent.len() > 500,
        "the corpus should publish hundreds of mails, published {}",
        sent.len()
    );

    let received = receive_acked(&mut deliveries, sent.len(), "corpus round trip").await;
    for envelope in &received {
        let (raw, hash) = sent
            .remove(&envelope.id)
            .unwrap_or_else(|| panic!("unexpected or duplicate envelope {}", envelope.id));
        assert!(
            envelope.body == raw,
            "corpus mail {hash} changed on the way: {} bytes in, {} out",
            raw.len(),
            envelope.body.len()
        );
        assert_eq!(envelope.message_id_hash.as_deref(), Some(hash.as_str()));
        assert_eq!(envelope.content_type, MAIL_CONTENT_TYPE);
    }
    assert!(sent.is_empty());
    assert_quiet(&mut deliveries, "after the corpus").await;
}

/// A 20 MiB mail arrives byte-identical.
pub async fn large_mail_round_trip<H: Harness>(harness: &H) {
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(&consumer, Subscription::new(name("large"))).await;
    let line = b"QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\r\n";
    let body: Vec<u8> = line
        .iter()
        .copied()
        .cycle()
        .take(20 * 1024 * 1024)
        .collect();
    let large = mail_with_body(&list("large.lists.example.org"), 0, &body);
    assert!(large.body.len() > 20 * 1024 * 1024);
    publish_all(&harness.publisher().await, std::slice::from_ref(&large)).await;
    let received = receive_acked(&mut deliveries, 1, "20 MiB mail").await;
    assert_exactly_once(&received, &[large], "20 MiB mail");
}

/// Above the mail limit the archiver returns the typed error; above the
/// backend's limit publish returns it; nothing is delivered for either.
pub async fn over_limit_is_refused<H: Harness>(harness: &H) {
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(&consumer, Subscription::new(name("limits"))).await;
    let publisher = harness.publisher().await;
    let list_id = list("limits.lists.example.org");
    let limited = archiver(harness.publisher().await).with_limits(MailLimits { max_bytes: 1024 });
    let raw = mail_with_body(&list_id, 0, &[b'x'; 2048]).body;
    let size = raw.len();
    match limited
        .archive_message(&MailingList::public(list_id.clone()), raw)
        .await
    {
        Err(ArchiveError::Mail(MailError::TooLarge {
            size: s,
            limit: 1024,
        })) => assert_eq!(s, size),
        other => panic!("an over-limit mail must give MailError::TooLarge, got {other:?}"),
    }

    let limit = publisher.publisher_capabilities().max_envelope_bytes;
    if limit <= 4 * DEFAULT_MAX_MAIL_BYTES {
        let over = mail_with_body(&list_id, 1, &vec![b'x'; limit]);
        match publisher.publish(&over).await {
            Err(BackendError::TooLarge { size, limit: l }) => assert!(size > l && l == limit),
            other => panic!(
                "an envelope above the backend limit must give BackendError::TooLarge, got {other:?}"
            ),
        }
    } else {
        eprintln!(
            "over_limit_is_refused: backend limit {limit} bytes too large to allocate in a test; archiver limit checked only"
        );
    }
    let marker = mail(&list_id, 2);
    publish_all(&publisher, std::slice::from_ref(&marker)).await;
    let received = receive_acked(&mut deliveries, 1, "marker after refused mails").await;
    assert_exactly_once(&received, &[marker], "only the marker");
    assert_quiet(&mut deliveries, "nothing after the marker").await;
}

/// A closed archive server's client refuses to subscribe and tail with
/// `Closed`, and its delivery streams end, while other clients keep
/// working; a closed list server's client refuses to publish with
/// `Closed`. (The publisher is closed last: ZeroMQ's list server is one
/// hub, which closing stops.)
pub async fn closed_client_refuses_work<H: Harness>(harness: &H) {
    let closing = harness.subscriber().await;
    let mut deliveries = subscribe(&closing, Subscription::new(name("closing"))).await;
    closing.close().await.expect("close succeeds");
    match closing.subscribe(&Subscription::new(name("closing"))).await {
        Err(BackendError::Closed) => {}
        Err(other) => panic!("subscribe after close must give Closed, got {other}"),
        Ok(_) => panic!("subscribe after close must fail"),
    }
    match closing.tail(&Selection::all()).await {
        Err(BackendError::Closed) => {}
        Err(other) => panic!("tail after close must give Closed, got {other}"),
        Ok(_) => panic!("tail after close must fail"),
    }
    let ended = tokio::time::timeout(
        super::support::DEADLINE,
        futures::StreamExt::next(&mut deliveries),
    )
    .await;
    assert!(
        matches!(ended, Ok(None)),
        "the delivery stream of a closed client must end"
    );

    let other = harness.subscriber().await;
    let mut reopened = subscribe(&other, Subscription::new(name("closing"))).await;
    let publisher = harness.publisher().await;
    let envelope = mail(&list("closed.lists.example.org"), 0);
    publish_all(&publisher, std::slice::from_ref(&envelope)).await;
    let received = receive_acked(&mut reopened, 1, "another client after close").await;
    assert_exactly_once(
        &received,
        std::slice::from_ref(&envelope),
        "another client after close",
    );

    publisher.close().await.expect("close succeeds");
    assert_eq!(
        publisher.publish(&envelope).await,
        Err(BackendError::Closed)
    );
}

/// Every kind of list event, with every role, arrives byte for byte,
/// marked with its list's archive policy and its event type (wire format
/// 1.2); the events of a list whose policy is `never` are not published.
pub async fn list_events_round_trip<H: Harness>(harness: &H) {
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(
        &consumer,
        Subscription::new(name("events")).select(Selection::all().only(Kind::Event)),
    )
    .await;
    let archiver = archiver(harness.publisher().await);
    let with_policy = |id: &str, archive_policy| MailingList {
        archive_policy,
        ..MailingList::public(list(id))
    };
    let never = with_policy("never.events.lists.example.org", ArchivePolicy::Never);
    for event in ListEvent::samples(&never.list_id) {
        let receipt = archiver
            .archive_event(&never, &event)
            .await
            .expect("an event of a never list is skipped, not refused");
        assert_eq!(
            (receipt.envelope_id, receipt.outcome),
            (None, Outcome::Skipped(SkipReason::ListNotArchived))
        );
    }
    let mut sent = HashMap::new();
    for list in [
        with_policy("events.lists.example.org", ArchivePolicy::Public),
        with_policy("private.events.lists.example.org", ArchivePolicy::Private),
    ] {
        for event in ListEvent::samples(&list.list_id) {
            let receipt = archiver
                .archive_event(&list, &event)
                .await
                .expect("event archives");
            let id = receipt.envelope_id.expect("a published event has an id");
            sent.insert(id, (list.archive_policy, event));
        }
    }
    let count = sent.len();
    let received = receive_acked(&mut deliveries, count, "list events").await;
    for envelope in &received {
        let (policy, event) = sent
            .remove(&envelope.id)
            .unwrap_or_else(|| panic!("unexpected or duplicate event {}", envelope.id));
        assert_eq!(envelope.kind, Kind::Event);
        assert_eq!(envelope.content_type, EVENT_CONTENT_TYPE);
        assert_eq!(
            &envelope.body[..],
            &event.to_json()[..],
            "event {}",
            envelope.id
        );
        assert_eq!(
            envelope.archive_policy,
            Some(policy),
            "event {}",
            envelope.id
        );
        assert_eq!(
            envelope.event_type.as_deref(),
            Some(event.change.type_name())
        );
        assert_eq!(
            envelope.is_membership_event(),
            matches!(
                event.change,
                ListChange::MembershipAdded { .. }
                    | ListChange::MembershipRemoved { .. }
                    | ListChange::AddressSettingsChanged { .. }
            )
        );
    }
    assert!(sent.is_empty(), "not received: {sent:?}");
    assert_quiet(&mut deliveries, "after the list events").await;
}

/// The list's posting address (wire format 1.1) arrives on the mails and
/// events the [`Archiver`] publishes for a list that has one, and on an
/// envelope published directly; a list without one gives envelopes
/// without it.
pub async fn list_address_round_trip<H: Harness>(harness: &H) {
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(&consumer, Subscription::new(name("addresses"))).await;
    let archiver = archiver(harness.publisher().await);
    let address = ListAddress::new("dev@lists.example.org").expect("valid address");
    let with = MailingList::public(list("dev.lists.example.org"))
        .with_address(address.as_str())
        .expect("valid address");
    let without = MailingList::public(list("bare.lists.example.org"));

    let mut expected = HashMap::new();
    for (seq, list) in [&with, &without].into_iter().enumerate() {
        let raw = mail(&list.list_id, seq).body;
        let receipt = archiver
            .archive_message(list, raw)
            .await
            .expect("mail archives");
        expected.insert(
            receipt.envelope_id.expect("published"),
            list.list_address.clone(),
        );
        let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
        let id = archiver
            .archive_event(list, &event)
            .await
            .expect("event archives")
            .envelope_id
            .expect("published");
        expected.insert(id, list.list_address.clone());
    }
    let wrong = ListEvent::now(without.list_id.clone(), ListChange::ListDeleted);
    assert!(matches!(
        archiver.archive_event(&with, &wrong).await,
        Err(ArchiveError::WrongList { .. })
    ));
    let direct = Envelope {
        list_address: Some(address.clone()),
        ..mail(&with.list_id, 2)
    };
    publish_all(archiver.publisher(), std::slice::from_ref(&direct)).await;

    let received = receive_acked(&mut deliveries, 5, "list addresses").await;
    for envelope in &received {
        if envelope.id == direct.id {
            assert_eq!(envelope, &direct, "the direct envelope, field for field");
            continue;
        }
        let address = expected
            .remove(&envelope.id)
            .unwrap_or_else(|| panic!("unexpected or duplicate envelope {}", envelope.id));
        assert_eq!(
            envelope.list_address, address,
            "list address of {:?} {}",
            envelope.kind, envelope.id
        );
    }
    assert!(expected.is_empty(), "not received: {expected:?}");
    assert_quiet(&mut deliveries, "after the list addresses").await;
}
