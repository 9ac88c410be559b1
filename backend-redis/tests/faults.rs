//! Fault tests with real processes: a Redis this test starts and kills -9.
//! (A consumer process killed -9 while it holds deliveries is the
//! operator's tool's test: mq-archiver-admin/tests.)

mod support;

use std::collections::HashSet;
use std::time::Duration;

use archiver_core::conformance::faults::{
    Publishing, corpus_envelopes, publishes_survive_two_faults, small_mail, wait_until,
};
use archiver_core::{ListId, Publisher, Subscriber, Subscription};
use backend_redis::{RedisBackend, RedisConfig};
use futures::StreamExt;
use support::{RedisHarness, RedisServer};

const DEADLINE: Duration = Duration::from_secs(120);

/// Entries of the subscriber still pending in Redis, over all its streams.
async fn pending_entries(harness: &RedisHarness, group: &str) -> u64 {
    let client = redis::Client::open(harness.config.url.as_str()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let streams: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}:stream:*", harness.config.prefix))
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut pending = 0;
    for key in streams {
        let summary: redis::Value = redis::cmd("XPENDING")
            .arg(key)
            .arg(group)
            .query_async(&mut conn)
            .await
            .unwrap();
        if let redis::Value::Array(parts) = summary
            && let Some(redis::Value::Int(count)) = parts.first()
        {
            pending += *count as u64;
        }
    }
    pending
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_publishes_survive_two_kill_9_restarts() {
    let Some(envelopes) = corpus_envelopes(10_000) else {
        return;
    };
    let mut server = RedisServer::start(true, &[]);
    let harness = RedisHarness::on(RedisConfig::new(server.url()));
    let kill_9_and_restart = async |publishing: &Publishing| {
        let failures_before = publishing.failures();
        server.kill();
        wait_until("a publish failing while Redis is down", DEADLINE, || {
            publishing.failures() > failures_before
        })
        .await;
        server.restart();
    };
    publishes_survive_two_faults(&harness, envelopes, kill_9_and_restart, async || {
        pending_entries(&harness, "archive").await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_without_persistence_is_recovered_and_reported() {
    let mut server = RedisServer::start(false, &[]);
    let harness = RedisHarness::on(RedisConfig::new(server.url()));
    let client: RedisBackend = harness.connect().await;
    let mut deliveries = client
        .subscribe(&Subscription::new("survivor".parse().unwrap()))
        .await
        .unwrap();
    let list = ListId::new("restart.lists.example.org").unwrap();
    let mail = |i: usize| small_mail(&list, i);
    for i in 0..5 {
        client.publish(&mail(i)).await.unwrap();
    }
    for _ in 0..5 {
        let delivery = tokio::time::timeout(DEADLINE, deliveries.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        delivery.ack().await.unwrap();
    }

    server.restart(); // comes back empty
    let mut after = HashSet::new();
    for i in 5..10 {
        let envelope = mail(i);
        while client.publish(&envelope).await.is_err() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        after.insert(envelope.id);
    }
    let mut loss_reports = Vec::new();
    let mut got = HashSet::new();
    while got.len() < after.len() {
        match tokio::time::timeout(DEADLINE, deliveries.next())
            .await
            .expect("the consumer recovers instead of hanging")
        {
            Some(Ok(delivery)) => {
                got.insert(delivery.envelope().id);
                delivery.ack().await.unwrap();
            }
            Some(Err(error)) => loss_reports.push(error.to_string()),
            None => panic!("the delivery stream ended"),
        }
    }
    println!(
        "redis restart without persistence | published after the restart {} | delivered {} | reports: {loss_reports:#?}",
        after.len(),
        got.len()
    );
    assert_eq!(got, after);
    assert!(
        loss_reports
            .iter()
            .any(|r| r.contains("lost the consumer groups") && r.contains(" between ")),
        "the loss window is reported: {loss_reports:?}"
    );
}
