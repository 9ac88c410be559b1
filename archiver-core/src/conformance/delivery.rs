//! Scenarios on who receives what: fan-out, competing consumers, routing,
//! offline subscribers, ordering, concurrency and churn.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::Harness;
use super::support::{
    DEADLINE, QUIET, assert_exactly_once, assert_quiet, list, mail, name, publish_all,
    receive_acked, subscribe,
};
use crate::backend::{BackendError, Connection, Operator, StartPosition, Subscriber, Subscription};
use crate::envelope::{Envelope, EnvelopeId, Kind};
use crate::event::ListEvent;
use crate::list::{ListId, MailingList};
use crate::selection::Selection;

/// Three named subscribers each receive all of 500 messages.
pub async fn fan_out<H: Harness>(harness: &H) {
    let mut streams = Vec::new();
    let mut clients = Vec::new();
    for subscriber in ["web", "search", "mirror"] {
        let client = harness.subscriber().await;
        streams.push((
            subscriber,
            subscribe(&client, Subscription::new(name(subscriber))).await,
        ));
        clients.push(client);
    }
    let list_id = list("fanout.lists.example.org");
    let published: Vec<Envelope> = (0..500).map(|i| mail(&list_id, i)).collect();
    publish_all(&harness.publisher().await, &published).await;
    for (subscriber, deliveries) in &mut streams {
        let received = receive_acked(deliveries, published.len(), subscriber).await;
        assert_exactly_once(&received, &published, subscriber);
    }
}

/// Four instances of one subscriber share 2,000 messages: each delivered to
/// exactly one of them.
pub async fn competing_consumers<H: Harness>(harness: &H) {
    const INSTANCES: usize = 4;
    let (sender, mut receiver) = mpsc::unbounded_channel();
    let mut instances = JoinSet::new();
    for instance in 0..INSTANCES {
        let client = harness.subscriber().await;
        let mut deliveries =
            subscribe(&client, Subscription::new(name("competing")).prefetch(16)).await;
        let sender = sender.clone();
        instances.spawn(async move {
            let _client = client;
            while let Some(Ok(delivery)) = deliveries.next().await {
                let envelope = delivery.envelope().clone();
                delivery.ack().await.expect("ack");
                if sender.send((instance, envelope)).is_err() {
                    break;
                }
            }
        });
    }
    let list_id = list("competing.lists.example.org");
    let published: Vec<Envelope> = (0..2000).map(|i| mail(&list_id, i)).collect();
    publish_all(&harness.publisher().await, &published).await;

    let mut received = Vec::new();
    let mut per_instance = [0usize; INSTANCES];
    while received.len() < published.len() {
        match tokio::time::timeout(DEADLINE, receiver.recv()).await {
            Ok(Some((instance, envelope))) => {
                per_instance[instance] += 1;
                received.push(envelope);
            }
            _ => panic!(
                "competing consumers: {} of {} received before the deadline",
                received.len(),
                published.len()
            ),
        }
    }
    let extra = tokio::time::timeout(QUIET, receiver.recv()).await;
    assert!(
        extra.is_err(),
        "competing consumers: a message was delivered twice"
    );
    instances.abort_all();
    eprintln!("competing consumers: per instance {per_instance:?}");
    assert_exactly_once(&received, &published, "competing consumers");
}

/// What a routing subscriber should receive, written out independently of
/// [`Selection::matches`] so the scenario does not test the code with itself.
type Wants = fn(&ListId, Kind) -> bool;

/// Subscribers see only the lists and kinds they selected: exact ids,
/// `*` and `#` patterns, mails only, events only.
pub async fn routing_by_list_and_kind<H: Harness>(harness: &H) {
    let a = list("a.lists.example.org");
    let b = list("b.lists.example.org");
    let c = list("c.other.example.net");
    let subscriptions: [(&str, Selection, Wants); 5] = [
        ("only-a", Selection::all().list(a.clone().into()), |l, _| {
            l.as_str() == "a.lists.example.org"
        }),
        (
            "pattern",
            Selection::all().list("*.lists.example.org".parse().expect("pattern")),
            |l, _| l.as_str() != "c.other.example.net",
        ),
        (
            "deep",
            Selection::all().list("#.example.net".parse().expect("pattern")),
            |l, _| l.as_str() == "c.other.example.net",
        ),
        ("events-only", Selection::all().only(Kind::Event), |_, k| {
            k == Kind::Event
        }),
        (
            "mails-of-c",
            Selection::all().list(c.clone().into()).only(Kind::Mail),
            |l, k| l.as_str() == "c.other.example.net" && k == Kind::Mail,
        ),
    ];
    let consumer = harness.subscriber().await;
    let mut streams = Vec::new();
    for (subscriber, selection, _) in &subscriptions {
        streams.push(
            subscribe(
                &consumer,
                Subscription::new(name(subscriber)).select(selection.clone()),
            )
            .await,
        );
    }
    let mut published = Vec::new();
    for list_id in [&a, &b, &c] {
        for i in 0..5 {
            published.push(mail(list_id, i));
        }
        for event in ListEvent::samples(list_id).iter().take(2) {
            published.push(Envelope::event(
                event,
                &MailingList::public(list_id.clone()),
            ));
        }
    }
    publish_all(&harness.publisher().await, &published).await;
    for ((subscriber, _, wants), deliveries) in subscriptions.iter().zip(&mut streams) {
        let expected: Vec<Envelope> = published
            .iter()
            .filter(|e| wants(&e.list_id, e.kind))
            .cloned()
            .collect();
        let received = receive_acked(deliveries, expected.len(), subscriber).await;
        assert_exactly_once(&received, &expected, subscriber);
        assert_quiet(deliveries, subscriber).await;
    }
}

/// A durable subscriber that is offline keeps what is published meanwhile.
pub async fn offline_subscriber_catches_up<H: Harness>(harness: &H) {
    let first = harness.subscriber().await;
    drop(subscribe(&first, Subscription::new(name("offline"))).await);
    first.close().await.expect("close");
    let list_id = list("offline.lists.example.org");
    let published: Vec<Envelope> = (0..100).map(|i| mail(&list_id, i)).collect();
    publish_all(&harness.publisher().await, &published).await;
    let back = harness.subscriber().await;
    let mut deliveries = subscribe(&back, Subscription::new(name("offline"))).await;
    let received = receive_acked(&mut deliveries, published.len(), "back online").await;
    assert_exactly_once(&received, &published, "back online");
}

/// A single consumer receives each list's messages in publish order, where
/// the backend declares it.
pub async fn per_list_order<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    if !backend.subscriber_capabilities().per_list_order {
        eprintln!("per_list_order: not checked, the backend does not declare per-list order");
        return;
    }
    let mut deliveries = subscribe(&backend, Subscription::new(name("ordered"))).await;
    let lists = [
        list("o1.lists.example.org"),
        list("o2.lists.example.org"),
        list("o3.lists.example.org"),
    ];
    let published: Vec<Envelope> = (0..300).map(|i| mail(&lists[i % 3], i)).collect();
    publish_all(&harness.publisher().await, &published).await;
    let received = receive_acked(&mut deliveries, published.len(), "ordered").await;
    for list_id in &lists {
        let sent: Vec<EnvelopeId> = published
            .iter()
            .filter(|e| &e.list_id == list_id)
            .map(|e| e.id)
            .collect();
        let got: Vec<EnvelopeId> = received
            .iter()
            .filter(|e| &e.list_id == list_id)
            .map(|e| e.id)
            .collect();
        assert_eq!(got, sent, "order of list {list_id}");
    }
}

/// Fifty publishers, each its own client where the backend gives one (a
/// ZeroMQ list server has one hub), publishing 100 messages each at
/// the same time: all 5,000 delivered once.
pub async fn concurrent_publishers<H: Harness>(harness: &H) {
    let consumer = harness.subscriber().await;
    let mut deliveries = subscribe(&consumer, Subscription::new(name("concurrent"))).await;
    let mut publishers = JoinSet::new();
    for p in 0..50 {
        let client = harness.publisher().await;
        let list_id = list(&format!("p{p}.lists.example.org"));
        publishers.spawn(async move {
            let envelopes: Vec<Envelope> = (0..100).map(|i| mail(&list_id, i)).collect();
            publish_all(&client, &envelopes).await;
            envelopes
        });
    }
    let mut published = Vec::new();
    while let Some(batch) = publishers.join_next().await {
        published.extend(batch.expect("publisher task"));
    }
    let received = receive_acked(&mut deliveries, published.len(), "concurrent publishers").await;
    assert_exactly_once(&received, &published, "concurrent publishers");
}

/// Consumers come and go (some dropping deliveries unacked) while 5,000
/// messages flow: every message is acked at least once.
pub async fn churning_subscribers_lose_nothing<H: Harness>(harness: &H) {
    // Deliveries buffered for a consumer that goes away count as attempts,
    // as on any broker; this scenario is about loss, not the attempt limit.
    let subscription = Subscription::new(name("churn"))
        .prefetch(8)
        .max_attempts(u32::MAX);
    let first = harness.subscriber().await;
    drop(subscribe(&first, subscription.clone()).await);
    let publisher = harness.publisher().await;
    let list_id = list("churn.lists.example.org");
    let publishing = tokio::spawn(async move {
        let envelopes: Vec<Envelope> = (0..5000).map(|i| mail(&list_id, i)).collect();
        for chunk in envelopes.chunks(100) {
            publish_all(&publisher, chunk).await;
            tokio::task::yield_now().await;
        }
        envelopes
    });
    let abandoned = first.subscriber_capabilities().abandoned_redelivery;
    let deadline = tokio::time::Instant::now() + DEADLINE * 2 + abandoned;
    let mut acked: HashSet<EnvelopeId> = HashSet::new();
    let mut expected: Option<HashSet<EnvelopeId>> = None;
    let mut publishing = Some(publishing);
    let mut round = 0usize;
    loop {
        if let Some(task) = publishing.take_if(|task| task.is_finished()) {
            let published = task.await.expect("publisher task");
            expected = Some(published.iter().map(|e| e.id).collect());
        }
        let done =
            |acked: &HashSet<EnvelopeId>| expected.as_ref().is_some_and(|all| all.is_subset(acked));
        if done(&acked) {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            let dead = harness
                .subscriber()
                .await
                .dead_letters(&subscription.name)
                .await
                .map(|d| d.len());
            panic!(
                "churn: only {} acked before the deadline (dead letters: {dead:?})",
                acked.len()
            );
        }
        round += 1;
        let client = harness.subscriber().await;
        let mut deliveries = subscribe(&client, subscription.clone()).await;
        for taken in 0..200 {
            // A short wait ends a round; the deadline bounds the scenario.
            let Ok(Some(Ok(delivery))) =
                tokio::time::timeout(Duration::from_secs(1), deliveries.next()).await
            else {
                break;
            };
            if taken % 7 == 6 {
                drop(delivery);
            } else {
                acked.insert(delivery.envelope().id);
                delivery.ack().await.expect("ack");
            }
            if done(&acked) {
                break;
            }
        }
        drop(deliveries);
        client.close().await.expect("close");
    }
    let expected = expected.expect("publishing finished");
    assert!(
        acked.is_subset(&expected),
        "churn: acked something never published"
    );
    eprintln!(
        "churn: {} messages acked over {round} consumer rounds",
        acked.len()
    );
}

/// A subscription starting at the beginning gets what was published before
/// it existed where the backend declares replay; otherwise it is refused
/// with `Unsupported`.
pub async fn replay_from_start<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    let list_id = list("history.lists.example.org");
    let published: Vec<Envelope> = (0..20).map(|i| mail(&list_id, i)).collect();
    publish_all(&harness.publisher().await, &published).await;
    let subscription = Subscription::new(name("late")).start(StartPosition::Beginning);
    if backend.subscriber_capabilities().replay_from_start {
        let mut deliveries = subscribe(&backend, subscription).await;
        let received = receive_acked(&mut deliveries, published.len(), "replay from start").await;
        assert_exactly_once(&received, &published, "replay from start");
    } else {
        match backend.subscribe(&subscription).await {
            Err(BackendError::Unsupported(_)) => {}
            Err(other) => panic!("replay from start must be refused with Unsupported, got {other}"),
            Ok(_) => {
                panic!("a backend without replay_from_start must refuse StartPosition::Beginning")
            }
        }
    }
}
