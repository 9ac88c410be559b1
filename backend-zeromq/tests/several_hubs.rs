//! An archive server consuming from two list servers at once: one
//! subscription, one DEALER per hub, every mail from both, each settled
//! with the hub it came from.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use archiver_core::{
    Connection, Envelope, ListChange, ListEvent, ListId, MailingList, Publisher, Subscriber,
    Subscription,
};
use backend_zeromq::{ClientConfig, ZmqClient, ZmqHub};
use futures::StreamExt;

fn event(list: &str) -> Envelope {
    let list = MailingList::public(ListId::new(list).unwrap());
    Envelope::event(
        &ListEvent::now(list.list_id.clone(), ListChange::ListDeleted),
        &list,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_subscription_consumes_from_two_hubs() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = ZmqHub::bind(support::hub_config(dir_a.path())).unwrap();
    let b = ZmqHub::bind(support::hub_config(dir_b.path())).unwrap();
    let client = ZmqClient::connect(ClientConfig::new(a.endpoint()).also(b.endpoint())).unwrap();
    let subscription = Subscription::new("web".parse().unwrap()).prefetch(4);
    let mut deliveries = client.subscribe(&subscription).await.unwrap();

    let mut published = HashSet::new();
    for i in 0..50 {
        let (hub, list) = if i % 2 == 0 {
            (&a, "a.example.org")
        } else {
            (&b, "b.example.org")
        };
        let envelope = event(list);
        hub.publish(&envelope).await.unwrap();
        published.insert(envelope.id);
    }
    let mut received = HashSet::new();
    while received.len() < published.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("{} of 50 received", received.len()))
            .unwrap()
            .unwrap();
        assert!(received.insert(delivery.envelope().id), "received twice");
        delivery.ack().await.unwrap();
    }
    assert_eq!(received, published);
    for hub in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !hub.status().await.unwrap().iter().all(|q| q.is_drained()) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "each hub saw its acks"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    client.close().await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}
