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
        "mail.dead.example.org",
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
    assert_eq!(bad.origin.as_deref(), Some("mail.dead.example.org"));
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
