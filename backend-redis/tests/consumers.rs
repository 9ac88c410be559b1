//! Consumer names within a subscriber's groups: one stable name per process
//! instance, and removing other consumers only when they hold nothing.

mod forge;
mod support;

use std::time::Duration;

use archiver_core::conformance::Harness;
use archiver_core::conformance::fixtures::small_mail;
use archiver_core::{
    Envelope, ListId, MailingList, Publisher, Selection, Subscriber, SubscriberName, Subscription,
};
use futures::StreamExt;
use support::RedisHarness;

fn mail(list: &ListId) -> Envelope {
    small_mail(&MailingList::public(list.clone()), "consumers.example.org")
}

/// `(name, pending)` of every consumer of the group on the stream.
async fn consumers(
    conn: &mut redis::aio::MultiplexedConnection,
    stream: &str,
    group: &str,
) -> Vec<(String, i64)> {
    let reply: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(stream)
        .arg(group)
        .query_async(conn)
        .await
        .unwrap();
    reply
        .iter()
        .map(|c| {
            let name: String = redis::from_redis_value(c["name"].clone()).unwrap();
            let pending: i64 = redis::from_redis_value(c["pending"].clone()).unwrap();
            (name, pending)
        })
        .collect()
}

/// One mail through a fresh subscription, acked: its consumer has read.
async fn one_cycle(
    backend: &backend_redis::RedisBackend,
    subscription: &Subscription,
    list: &ListId,
) {
    let mut deliveries = backend.subscribe(subscription).await.unwrap();
    backend.publish(&mail(list)).await.unwrap();
    let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("the mail arrives")
        .unwrap()
        .unwrap();
    delivery.ack().await.unwrap();
}

#[tokio::test]
async fn subscribe_cycles_reuse_one_consumer() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("cycles.example.org").unwrap();
    let subscription = Subscription::new(SubscriberName::new("cycles").unwrap());
    for _ in 0..6 {
        one_cycle(&backend, &subscription, &list).await;
    }
    let stream = forge::public_mail_stream(&harness, list.as_str());
    let found = consumers(&mut forge::connection(&harness).await, &stream, "cycles").await;
    harness.cleanup().await;
    assert_eq!(
        found.len(),
        1,
        "consumers after 6 subscribe cycles: {found:?}"
    );
}

#[tokio::test]
async fn only_consumers_without_pending_entries_are_removed() {
    let harness = RedisHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("leftovers.example.org").unwrap();
    let name = SubscriberName::new("leftovers").unwrap();
    let subscription = Subscription::new(name.clone())
        .select(Selection::all().list("leftovers.example.org".parse().unwrap()));
    one_cycle(&backend, &subscription, &list).await;
    let own = forge::public_mail_stream(&harness, list.as_str());
    // Another list's stream, which this subscriber once selected: an earlier
    // instance crashed holding one entry there, another left with nothing.
    let other = ListId::new("other.example.org").unwrap();
    let stream = forge::public_mail_stream(&harness, other.as_str());
    let mut conn = forge::connection(&harness).await;
    let held = mail(&other);
    backend.publish(&held).await.unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("leftovers")
        .arg("0")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("leftovers")
        .arg("gone-holding")
        .arg("COUNT")
        .arg(1)
        .arg("STREAMS")
        .arg(&stream)
        .arg(">")
        .query_async(&mut conn)
        .await
        .unwrap();
    let _: i64 = redis::cmd("XGROUP")
        .arg("CREATECONSUMER")
        .arg(&stream)
        .arg("leftovers")
        .arg("gone-empty")
        .query_async(&mut conn)
        .await
        .unwrap();
    let before = consumers(&mut conn, &stream, "leftovers").await;
    assert!(before.contains(&("gone-holding".into(), 1)), "{before:?}");
    assert!(before.contains(&("gone-empty".into(), 0)), "{before:?}");

    let removed = backend
        .remove_consumers_without_pending(&name)
        .await
        .unwrap();
    let after = consumers(&mut conn, &stream, "leftovers").await;
    let mine = consumers(&mut conn, &own, "leftovers").await;
    harness.cleanup().await;
    assert_eq!(removed, 1, "{after:?}");
    assert_eq!(
        after,
        [("gone-holding".to_owned(), 1)],
        "the holder stays with its entry"
    );
    let consumer_name = &backend.config().consumer_name;
    assert_eq!(
        mine,
        [(consumer_name.clone(), 0)],
        "this instance's consumer stays"
    );
}
