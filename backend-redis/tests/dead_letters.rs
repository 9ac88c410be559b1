//! Every dead letter is visible, malformed ones too, a page at a time;
//! malformed ones are purged, never replayed.

mod forge;
mod support;

use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::conformance::fixtures::{next_delivery, small_mail};
use archiver_core::{
    Envelope, ListId, MailingList, Operator, Publisher, Replay, Subscriber, SubscriberName,
    Subscription,
};
use backend_redis::{RawDeadLetter, RedisBackend};
use support::RedisHarness;

fn mail(list: &ListId) -> Envelope {
    small_mail(&MailingList::public(list.clone()), "dead.example.org")
}

/// Every dead letter, by pages of `limit`.
async fn all_pages(
    backend: &RedisBackend,
    name: &SubscriberName,
    limit: usize,
) -> Vec<Vec<RawDeadLetter>> {
    let (mut pages, mut after) = (Vec::new(), None);
    loop {
        let page = backend
            .dead_letter_page(name, after.as_deref(), limit)
            .await
            .unwrap();
        pages.push(page.letters);
        match page.next {
            Some(next) => after = Some(next),
            None => return pages,
        }
    }
}

#[tokio::test]
async fn malformed_dead_letters_are_listed_purged_and_never_replayed() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("dead.example.org").unwrap();
    let name = SubscriberName::new("archive").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let poison = mail(&list);
    backend.publish(&poison).await.unwrap();
    let stream = forge::public_mail_stream(&harness, list.as_str());
    let _: String = redis::cmd("XADD")
        .arg(&stream)
        .arg("*")
        .arg("format-version")
        .arg("1")
        .arg("kind")
        .arg("mail")
        .arg("body")
        .arg(&b"no envelope id\xff"[..])
        .query_async(&mut forge::connection(&harness).await)
        .await
        .unwrap();
    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.envelope().id, poison.id);
    delivery.reject("handler refused it").await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = backend
            .dead_letter_page(&name, None, 10)
            .await
            .unwrap()
            .letters;
        if letters.len() >= 2 || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(letters.len(), 2, "{letters:?}");
    let malformed: Vec<&RawDeadLetter> = letters.iter().filter(|l| l.is_malformed()).collect();
    assert_eq!(malformed.len(), 1, "{letters:?}");
    let bad = malformed[0];
    assert!(bad.reason.starts_with("malformed"), "{}", bad.reason);
    assert!(bad.envelope.is_err());
    assert_eq!(bad.origin.as_deref(), Some(stream.as_str()));
    assert!(bad.dead_at.is_some());
    assert_eq!(bad.body.as_ref(), b"no envelope id\xff");

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
    let left = backend
        .dead_letter_page(&name, None, 10)
        .await
        .unwrap()
        .letters;
    assert_eq!(left.len(), 1, "the malformed one stays: {left:?}");
    assert!(backend.dead_letters(&name).await.unwrap().is_empty());

    assert_eq!(
        backend.purge_malformed_dead_letters(&name).await.unwrap(),
        1
    );
    let left = backend
        .dead_letter_page(&name, None, 10)
        .await
        .unwrap()
        .letters;
    drop(deliveries);
    harness.cleanup().await;
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn dead_letters_are_paged_from_an_exclusive_start() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let name = SubscriberName::new("paged").unwrap();
    let list = ListId::new("paged.example.org").unwrap();
    let dead = format!("{}:dead:paged", harness.config.prefix);
    let mut conn = forge::connection(&harness).await;
    let mut ids = Vec::new();
    for n in 0..5 {
        let envelope = mail(&list);
        let mut xadd = forge::xadd_envelope(&dead, &envelope);
        xadd.arg("dead-reason").arg(format!("reason {n}"));
        let _: String = xadd.query_async(&mut conn).await.unwrap();
        ids.push(envelope.id);
    }
    let pages = all_pages(&backend, &name, 2).await;
    harness.cleanup().await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 2, 1]);
    let listed: Vec<_> = pages
        .iter()
        .flatten()
        .map(|l| l.envelope.as_ref().unwrap().id)
        .collect();
    assert_eq!(listed, ids, "each once, oldest first");
}

/// An entry's fields as Redis holds them, in order.
type StoredFields = Vec<(String, Vec<u8>)>;

/// The entries of `stream`, oldest first, as stored.
async fn stored(harness: &RedisHarness, stream: &str) -> Vec<(String, StoredFields)> {
    redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut forge::connection(harness).await)
        .await
        .unwrap()
}

/// A dead letter holds its entry as read, not a re-encoding of the
/// envelope: a newer publisher's format version and a field this version
/// does not know survive burying, in their place.
#[tokio::test]
async fn a_dead_letter_keeps_the_entry_field_by_field() {
    let Some(envelopes) = archiver_core::conformance::faults::corpus_envelopes(1) else {
        return;
    };
    let mail = &envelopes[0];
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let name = SubscriberName::new("keeper").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    // A publish through the backend registers the list's stream.
    let first = small_mail(
        &MailingList::public(mail.list_id.clone()),
        "keep.example.org",
    );
    backend.publish(&first).await.unwrap();
    let stream = forge::public_mail_stream(&harness, mail.list_id.as_str());
    let mut xadd = redis::cmd("XADD");
    xadd.arg(&stream).arg("*");
    for (field, value) in archiver_core::wire::to_fields(mail) {
        let value = match field {
            "format-version" => "1.9".to_owned(),
            _ => value,
        };
        xadd.arg(field).arg(value);
        if field == "list-id" {
            xadd.arg("x-later-field").arg(&b"kept \xff as it was"[..]);
        }
    }
    xadd.arg("body").arg(mail.body.as_ref());
    let _: String = xadd
        .query_async(&mut forge::connection(&harness).await)
        .await
        .unwrap();
    let original = stored(&harness, &stream).await.pop().unwrap().1;

    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.envelope().id, first.id);
    delivery.ack().await.unwrap();
    let delivery = next_delivery(&mut deliveries).await;
    assert_eq!(delivery.envelope().id, mail.id);
    assert_eq!(delivery.envelope().body, mail.body);
    delivery.reject("the handler refused it").await.unwrap();

    let dead = stored(&harness, &format!("{}:dead:keeper", harness.config.prefix)).await;
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!(dead.len(), 1);
    let fields = &dead[0].1;
    let names = |fields: &[(String, Vec<u8>)]| -> Vec<String> {
        fields.iter().map(|(k, _)| k.clone()).collect()
    };
    let mut expected = names(&original);
    expected.extend(["dead-reason", "dead-attempts", "dead-at", "origin"].map(String::from));
    assert_eq!(
        names(fields),
        expected,
        "the entry's fields in their order, then why"
    );
    assert!(
        fields[..original.len()] == original[..],
        "every field byte for byte"
    );
    assert_eq!(fields[original.len()].1, b"the handler refused it");
    assert_eq!(fields[original.len() + 3].1, stream.as_bytes());
}
