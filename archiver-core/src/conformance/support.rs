//! Helpers the scenarios share: test data, receiving with a deadline, and
//! exactly-once, byte-exact comparison.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;

use crate::backend::{Deliveries, Delivery, Publisher, Subscriber, SubscriberName, Subscription};
use crate::envelope::{Envelope, EnvelopeId};
use crate::list::{ListId, MailingList};
use crate::mail::{ArchivedMail, MailLimits};

/// Longest wait for anything expected; reaching it fails the scenario.
pub(super) const DEADLINE: Duration = Duration::from_secs(60);

/// How long "nothing more arrives" is watched for. Absence has no event to
/// wait on, so this is the one place the suite waits for a fixed time.
pub(super) const QUIET: Duration = Duration::from_millis(300);

pub(super) fn name(name: &str) -> SubscriberName {
    SubscriberName::new(name).expect("scenario subscriber names are valid")
}

pub(super) fn list(id: &str) -> ListId {
    ListId::new(id).expect("scenario list ids are valid")
}

/// A small RFC 5322 mail on `list`, unique per call; its body has a line an
/// mbox would quote, to catch any transformation.
pub(super) fn mail(list: &ListId, seq: usize) -> Envelope {
    mail_with_body(
        list,
        seq,
        format!("mail {seq}\r\nFrom the start of a line\r\n").as_bytes(),
    )
}

/// A mail on `list` with the given body bytes after its headers.
pub(super) fn mail_with_body(list: &ListId, seq: usize, body: &[u8]) -> Envelope {
    let mut raw = format!(
        "From: Conformance <conformance@example.org>\r\nList-Id: <{list}>\r\n\
         Message-ID: <{seq}.{}@conformance.example.org>\r\nSubject: conformance {seq}\r\n\r\n",
        EnvelopeId::new()
    )
    .into_bytes();
    raw.extend_from_slice(body);
    let limits = MailLimits {
        max_bytes: usize::MAX,
    };
    let parsed = ArchivedMail::parse(Bytes::from(raw), &limits).expect("scenario mails parse");
    Envelope::mail(&parsed, &MailingList::public(list.clone()))
}

pub(super) async fn publish_all(publisher: &impl Publisher, envelopes: &[Envelope]) {
    for envelope in envelopes {
        publisher
            .publish(envelope)
            .await
            .unwrap_or_else(|e| panic!("publish of {} failed: {e}", envelope.id));
    }
}

pub(super) async fn subscribe(
    subscriber: &impl Subscriber,
    subscription: Subscription,
) -> Deliveries {
    subscriber
        .subscribe(&subscription)
        .await
        .unwrap_or_else(|e| panic!("subscribe {} failed: {e}", subscription.name))
}

/// The next delivery, failing the scenario after `wait`.
pub(super) async fn next_within(
    deliveries: &mut Deliveries,
    wait: Duration,
    what: &str,
) -> Delivery {
    match tokio::time::timeout(wait, deliveries.next()).await {
        Ok(Some(Ok(delivery))) => delivery,
        Ok(Some(Err(e))) => panic!("{what}: the delivery stream failed: {e}"),
        Ok(None) => panic!("{what}: the delivery stream ended"),
        Err(_) => panic!("{what}: nothing delivered within {wait:?}"),
    }
}

pub(super) async fn next(deliveries: &mut Deliveries, what: &str) -> Delivery {
    next_within(deliveries, DEADLINE, what).await
}

/// Receives and acks `count` deliveries; returns their envelopes.
pub(super) async fn receive_acked(
    deliveries: &mut Deliveries,
    count: usize,
    what: &str,
) -> Vec<Envelope> {
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let delivery = next(
            deliveries,
            &format!("{what} ({} of {count} so far)", received.len()),
        )
        .await;
        let envelope = delivery.envelope().clone();
        delivery
            .ack()
            .await
            .unwrap_or_else(|e| panic!("{what}: ack failed: {e}"));
        received.push(envelope);
    }
    received
}

/// Fails if anything is delivered within [`QUIET`].
pub(super) async fn assert_quiet(deliveries: &mut Deliveries, what: &str) {
    if let Ok(Some(item)) = tokio::time::timeout(QUIET, deliveries.next()).await {
        match item {
            Ok(d) => panic!(
                "{what}: unexpected delivery of {} on list {}",
                d.envelope().id,
                d.envelope().list_id
            ),
            Err(e) => panic!("{what}: the delivery stream failed: {e}"),
        }
    }
}

/// Every published envelope was received exactly once, byte for byte, and
/// nothing else was.
pub(super) fn assert_exactly_once(received: &[Envelope], published: &[Envelope], what: &str) {
    let mut expected: HashMap<EnvelopeId, &Envelope> =
        published.iter().map(|e| (e.id, e)).collect();
    for envelope in received {
        match expected.remove(&envelope.id) {
            Some(original) => assert!(
                original == envelope,
                "{what}: envelope {} came back different (body {} bytes, sent {} bytes)",
                envelope.id,
                envelope.body.len(),
                original.body.len()
            ),
            None if published.iter().any(|e| e.id == envelope.id) => {
                panic!("{what}: envelope {} received twice", envelope.id)
            }
            None => panic!("{what}: envelope {} was never published to it", envelope.id),
        }
    }
    assert!(
        expected.is_empty(),
        "{what}: {} of {} envelopes never arrived",
        expected.len(),
        published.len()
    );
}
