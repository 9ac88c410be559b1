//! Retention: a stream is trimmed only below what every subscriber has
//! acknowledged, and consumers trim by themselves so memory stays bounded.

mod forge;
mod support;

use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::{
    ArchivedMail, Deliveries, Envelope, ListId, MailLimits, MailingList, Publisher, Subscriber,
    Subscription,
};
use backend_redis::RedisBackend;
use futures::StreamExt;
use support::RedisHarness;

fn mails(list: &ListId, count: usize) -> Vec<Envelope> {
    (0..count)
        .map(|i| {
            let raw = bytes::Bytes::from(format!(
                "Message-ID: <{i}@retention.example.org>\r\n\r\nbody {i}\r\n"
            ));
            Envelope::mail(
                &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
                &MailingList::public(list.clone()),
            )
        })
        .collect()
}

async fn stream_length(harness: &RedisHarness, list: &ListId) -> usize {
    let client = redis::Client::open(harness.config.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let key = forge::public_mail_stream(harness, list.as_str());
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut conn)
        .await
        .unwrap()
}

/// A client of a new harness whose consumers do not trim by themselves
/// within a test (so every trim is the test's own call, and counted), the
/// subscriptions `names` (prefetch 100, in that order), and then `count`
/// mails of `list` published.
async fn subscribed_then_published(
    names: [&str; 2],
    list: &ListId,
    count: usize,
) -> (RedisHarness, RedisBackend, [Deliveries; 2]) {
    let mut harness = RedisHarness::new();
    harness.config = harness
        .config
        .clone()
        .retention_min_age(Duration::ZERO)
        .retention_interval(Duration::from_secs(3600));
    let client = harness.connect().await;
    let mut subscriptions = Vec::new();
    for name in names {
        let subscription = Subscription::new(name.parse().unwrap()).prefetch(100);
        subscriptions.push(client.subscribe(&subscription).await.unwrap());
    }
    for envelope in mails(list, count) {
        client.publish(&envelope).await.unwrap();
    }
    let Ok(subscriptions) = subscriptions.try_into() else {
        unreachable!("one subscription per name")
    };
    (harness, client, subscriptions)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trims_only_what_every_subscriber_acknowledged() {
    let list = ListId::new("retention.lists.example.org").unwrap();
    let (harness, client, [mut fast, mut slow]) =
        subscribed_then_published(["fast", "slow"], &list, 100).await;
    for _ in 0..100 {
        fast.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    let mut held = Vec::new();
    for i in 0..100 {
        let delivery = slow.next().await.unwrap().unwrap();
        if i < 40 {
            delivery.ack().await.unwrap();
        } else {
            held.push(delivery);
        }
    }
    assert_eq!(
        client.trim().await.unwrap(),
        40,
        "only what both acknowledged goes"
    );
    assert_eq!(stream_length(&harness, &list).await, 60);
    assert_eq!(
        client.trim().await.unwrap(),
        0,
        "unacknowledged entries stay"
    );
    for delivery in held {
        delivery.ack().await.unwrap();
    }
    assert_eq!(client.trim().await.unwrap(), 60);
    assert_eq!(stream_length(&harness, &list).await, 0);
    harness.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_that_keep_up_keep_the_stream_short() {
    let mut harness = RedisHarness::new();
    harness.config = harness
        .config
        .clone()
        .retention_min_age(Duration::ZERO)
        .retention_interval(Duration::from_millis(100));
    let client = harness.connect().await;
    let mut deliveries = client
        .subscribe(&Subscription::new("keeps-up".parse().unwrap()))
        .await
        .unwrap();
    let list = ListId::new("bounded.lists.example.org").unwrap();
    for envelope in mails(&list, 500) {
        client.publish(&envelope).await.unwrap();
    }
    for _ in 0..500 {
        deliveries
            .next()
            .await
            .unwrap()
            .unwrap()
            .ack()
            .await
            .unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while stream_length(&harness, &list).await > 0 {
        assert!(
            Instant::now() < deadline,
            "the consumer's periodic trim emptied the stream"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    harness.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_whose_record_is_unreadable_still_holds_trimming_back() {
    let list = ListId::new("unreadable.lists.example.org").unwrap();
    let (harness, client, [mut deliveries, mut acking]) =
        subscribed_then_published(["later", "acking"], &list, 10).await;
    let mut held = Vec::new();
    for _ in 0..10 {
        held.push(deliveries.next().await.unwrap().unwrap());
        acking.next().await.unwrap().unwrap().ack().await.unwrap();
    }
    // A newer version stores a selection this one cannot read.
    let admin = redis::Client::open(harness.config.url.as_str()).unwrap();
    let mut admin = admin.get_multiplexed_async_connection().await.unwrap();
    let record = format!("{}:sub:later", harness.config.prefix);
    let _: () = redis::cmd("SET")
        .arg(&record)
        .arg(r#"{"lists":["no/slash"],"kind":null,"max_attempts":5,"from_beginning":false,"created_ms":0}"#)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        client.trim().await.unwrap(),
        0,
        "entries pending in the group of an unreadable record stay"
    );
    assert_eq!(stream_length(&harness, &list).await, 10);
    drop(held);
    harness.cleanup().await;
}
