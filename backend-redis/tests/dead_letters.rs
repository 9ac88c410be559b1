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
