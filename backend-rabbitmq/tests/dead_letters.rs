//! Every dead letter is visible, malformed ones too; a listing is the
//! first `limit` and the total; malformed ones are purged, never replayed.

mod forge;
mod support;

use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::conformance::fixtures::{next_delivery, small_mail};
use archiver_core::{
    Envelope, ListId, MailingList, Operator, Publisher, Replay, Subscriber, SubscriberName,
    Subscription,
};
use backend_rabbitmq::RawDeadLetter;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use support::RabbitHarness;

fn mail(list: &ListId) -> Envelope {
    small_mail(&MailingList::public(list.clone()), "dead.example.org")
}

#[tokio::test]
async fn malformed_dead_letters_are_listed_purged_and_never_replayed() {
    let harness = RabbitHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("dead.example.org").unwrap();
    let name = SubscriberName::new("archive").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let poison = mail(&list);
    backend.publish(&poison).await.unwrap();
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from("format-version"),
        AMQPValue::LongString(LongString::from("1")),
    );
    forge::publish(
        &harness,
        "mail.public.dead.example.org",
        headers,
        b"no envelope id\xff",
    )
    .await;
    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.envelope().id, poison.id);
    delivery.reject("handler refused it").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let page = backend.dead_letter_page(&name, 10).await.unwrap();
        if page.letters.len() >= 2 || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!((page.letters.len(), page.total), (2, 2), "{page:?}");
    let malformed: Vec<&RawDeadLetter> = page.letters.iter().filter(|l| l.is_malformed()).collect();
    assert_eq!(malformed.len(), 1, "{page:?}");
    let bad = malformed[0];
    assert!(bad.reason.starts_with("malformed"), "{}", bad.reason);
    assert!(bad.envelope.is_err());
    assert_eq!(bad.body.as_ref(), b"no envelope id\xff");
    assert_eq!(bad.origin.as_deref(), Some("mail.public.dead.example.org"));
    assert!(bad.dead_at.is_some());
    assert!(
        bad.fields.contains(&("format-version".into(), "1".into())),
        "{:?}",
        bad.fields
    );
    let good = page.letters.iter().find(|l| !l.is_malformed()).unwrap();
    assert_eq!(good.reason, "handler refused it");
    assert_eq!(good.attempts, 1);

    assert_eq!(
        backend
            .replay_dead_letters(&name, Replay::All)
            .await
            .unwrap(),
        1
    );
    let redelivered = next_delivery(&mut deliveries).await;
    assert_eq!(
        redelivered.envelope(),
        &poison,
        "replayed mail still passes"
    );
    redelivered.ack().await.unwrap();
    let left = backend.dead_letter_page(&name, 10).await.unwrap();
    assert_eq!(
        (left.letters.len(), left.total),
        (1, 1),
        "the malformed one stays"
    );
    assert!(backend.dead_letters(&name).await.unwrap().is_empty());

    assert_eq!(
        backend.purge_malformed_dead_letters(&name).await.unwrap(),
        1
    );
    let left = backend.dead_letter_page(&name, 10).await.unwrap();
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!((left.letters.len(), left.total), (0, 0));
}

#[tokio::test]
async fn a_listing_is_the_first_limit_and_the_total() {
    let harness = RabbitHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("paged.example.org").unwrap();
    let name = SubscriberName::new("paged").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..5 {
        let envelope = mail(&list);
        backend.publish(&envelope).await.unwrap();
        ids.push(envelope.id);
    }
    for _ in 0..5 {
        next_delivery(&mut deliveries)
            .await
            .reject("no")
            .await
            .unwrap();
    }
    drop(deliveries);
    let page = backend.dead_letter_page(&name, 2).await.unwrap();
    let again = backend.dead_letter_page(&name, 10).await.unwrap();
    harness.cleanup().await;
    assert_eq!((page.letters.len(), page.total), (2, 5));
    let first: Vec<_> = page
        .letters
        .iter()
        .map(|l| l.envelope.as_ref().unwrap().id)
        .collect();
    assert_eq!(first, ids[..2], "the oldest first");
    let all: Vec<_> = again
        .letters
        .iter()
        .map(|l| l.envelope.as_ref().unwrap().id)
        .collect();
    assert_eq!(all, ids, "listing put every one back, in order");
}

/// Declares `queue` as `arguments` say, behind the backend's back (as an
/// earlier version, or an operator, did).
async fn declare_queue(harness: &RabbitHarness, queue: &str, arguments: FieldTable) {
    let connection =
        lapin::Connection::connect(&harness.config.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.into(), durable, arguments)
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;
}

/// Five mails the subscriber `name` rejects, oldest first.
async fn five_rejected(
    backend: &backend_rabbitmq::RabbitBackend,
    name: &SubscriberName,
    list: &ListId,
) -> Vec<Envelope> {
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let mut sent = Vec::new();
    for _ in 0..5 {
        let envelope = mail(list);
        backend.publish(&envelope).await.unwrap();
        sent.push(envelope);
    }
    for _ in 0..5 {
        next_delivery(&mut deliveries)
            .await
            .reject("no")
            .await
            .unwrap();
    }
    sent
}

/// A letter as a listing shows it: its headers but the delivery count the
/// queue adds, and its body.
fn as_listed(letter: &RawDeadLetter) -> (Vec<(String, String)>, bytes::Bytes) {
    let fields = letter
        .fields
        .iter()
        .filter(|(name, _)| name != "x-delivery-count")
        .cloned()
        .collect();
    (fields, letter.body.clone())
}

/// A quorum dead-letter queue with a delivery limit of 2 (as a policy
/// could give it) is listed 6 times, then paged: every letter stays, in
/// order, byte for byte, its delivery count never grows, and replay still
/// delivers them all.
#[tokio::test]
async fn listing_a_quorum_dead_letter_queue_again_and_again_keeps_every_letter_in_order() {
    let harness = RabbitHarness::new();
    let name = SubscriberName::new("relisted").unwrap();
    let dead = format!("{}.dead.{name}", harness.config.prefix);
    let mut limited = FieldTable::default();
    limited.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    limited.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(2));
    declare_queue(&harness, &dead, limited).await;
    let backend = harness.connect().await;
    let list = ListId::new("relisted.example.org").unwrap();
    let sent = five_rejected(&backend, &name, &list).await;
    let ids: Vec<_> = sent.iter().map(|e| e.id).collect();

    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let page = backend.dead_letter_page(&name, 10).await.unwrap();
        if page.total >= 5 || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let listed: Vec<_> = first.letters.iter().map(as_listed).collect();
    let mut listings = vec![first];
    for _ in 0..5 {
        listings.push(backend.dead_letter_page(&name, 10).await.unwrap());
    }
    let page = backend.dead_letter_page(&name, 2).await.unwrap();
    let (replayed, received) = replay_all_and_receive(&backend, &name).await;
    let left = backend.dead_letter_page(&name, 10).await.unwrap();
    harness.cleanup().await;

    for (n, listing) in listings.iter().enumerate() {
        let got: Vec<_> = listing
            .letters
            .iter()
            .map(|l| l.envelope.as_ref().unwrap().id)
            .collect();
        assert_eq!((listing.total, &got), (5, &ids), "listing {n}");
    }
    for (n, listing) in listings.iter().enumerate() {
        let bytes: Vec<_> = listing.letters.iter().map(as_listed).collect();
        assert!(bytes == listed, "listing {n} changed a letter");
        let counts: Vec<_> = listing
            .letters
            .iter()
            .flat_map(|l| &l.fields)
            .filter(|(name, _)| name == "x-delivery-count")
            .map(|(_, count)| count.as_str())
            .collect();
        assert_eq!(counts, ["0"; 5], "listing {n}: deliveries counted");
    }
    assert_eq!(
        page.letters
            .iter()
            .map(|l| l.envelope.as_ref().unwrap().id)
            .collect::<Vec<_>>(),
        ids[..2]
    );
    assert_eq!(page.total, 5);
    assert_eq!((replayed, received), (5, sent), "replayed in order");
    assert_eq!(left.total, 0);
}

/// The classic dead-letter queue an earlier version declared is kept (the
/// backend warns) and still lists in order and replays.
#[tokio::test]
async fn an_earlier_versions_classic_dead_letter_queue_still_works() {
    let harness = RabbitHarness::new();
    let name = SubscriberName::new("earlier").unwrap();
    let dead = format!("{}.dead.{name}", harness.config.prefix);
    declare_queue(&harness, &dead, FieldTable::default()).await;
    let backend = harness.connect().await;
    let list = ListId::new("earlier.example.org").unwrap();
    let sent = five_rejected(&backend, &name, &list).await;
    let ids: Vec<_> = sent.iter().map(|e| e.id).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        let page = backend.dead_letter_page(&name, 2).await.unwrap();
        if page.total >= 5 || Instant::now() > deadline {
            break page;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let again = backend.dead_letter_page(&name, 10).await.unwrap();
    let (replayed, received) = replay_all_and_receive(&backend, &name).await;
    harness.cleanup().await;
    let id = |l: &RawDeadLetter| l.envelope.as_ref().unwrap().id;
    assert_eq!(first.total, 5);
    assert_eq!(first.letters.iter().map(id).collect::<Vec<_>>(), ids[..2]);
    assert_eq!(again.letters.iter().map(id).collect::<Vec<_>>(), ids);
    assert_eq!((replayed, received), (5, sent));
}

/// Replays every dead letter of `name` into its queue and acks each one
/// delivered: how many the replay reported, and what came back in
/// delivery order.
async fn replay_all_and_receive(
    backend: &backend_rabbitmq::RabbitBackend,
    name: &SubscriberName,
) -> (usize, Vec<Envelope>) {
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let replayed = backend
        .replay_dead_letters(name, Replay::All)
        .await
        .unwrap();
    let mut received = Vec::new();
    for _ in 0..replayed {
        let delivery = next_delivery(&mut deliveries).await;
        received.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    (replayed, received)
}
