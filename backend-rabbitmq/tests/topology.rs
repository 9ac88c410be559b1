//! The broker-side topology under change: a subscriber's bindings replaced
//! while mail flows, and what its queues promise when dead-lettering.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::{
    ArchivedMail, Envelope, EnvelopeId, Kind, ListId, MailLimits, MailingList, Publisher,
    Selection, Subscriber, SubscriberName, Subscription,
};
use futures::StreamExt;
use support::RabbitHarness;

fn mail(list: &ListId, n: usize) -> Envelope {
    let raw = bytes::Bytes::from(format!(
        "Message-ID: <{n}.{}@topology.example.org>\r\n\r\nmail {n}\r\n",
        uuid::Uuid::now_v7()
    ));
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &MailingList::public(list.clone()),
    )
}

/// A selection that keeps `dev.lists.example.org` selected through another
/// binding key each time (pattern, then exact, then pattern ...): no publish
/// confirmed meanwhile may miss the subscriber's queue.
#[tokio::test]
async fn rebinding_a_still_selected_list_loses_nothing() {
    let harness = RabbitHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("dev.lists.example.org").unwrap();
    let name = SubscriberName::new("rebind").unwrap();
    let pattern = Selection::all()
        .list("*.lists.example.org".parse().unwrap())
        .only(Kind::Mail);
    let exact = Selection::all()
        .list("dev.lists.example.org".parse().unwrap())
        .only(Kind::Mail);
    // Consumers come and go with each change: attempts must not run out.
    let subscription = |selection: &Selection| {
        Subscription::new(name.clone())
            .select(selection.clone())
            .max_attempts(10_000)
    };
    drop(backend.subscribe(&subscription(&pattern)).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (backend, stop, list) = (backend.clone(), Arc::clone(&stop), list.clone());
        async move {
            let mut confirmed: Vec<EnvelopeId> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let envelope = mail(&list, n);
                backend.publish(&envelope).await.unwrap();
                confirmed.push(envelope.id);
                n += 1;
            }
            confirmed
        }
    });
    for change in 0..50 {
        let selection = if change % 2 == 0 { &exact } else { &pattern };
        drop(backend.subscribe(&subscription(selection)).await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let confirmed = publisher.await.unwrap();
    assert!(confirmed.len() > 50, "only {} publishes", confirmed.len());

    let mut deliveries = backend.subscribe(&subscription(&pattern)).await.unwrap();
    let mut wanted: HashSet<EnvelopeId> = confirmed.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted.is_empty() && Instant::now() < deadline {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(2), deliveries.next()).await
        else {
            break;
        };
        let delivery = delivery.unwrap();
        wanted.remove(&delivery.envelope().id);
        delivery.ack().await.unwrap();
    }
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!(
        wanted.len(),
        0,
        "{} of {} confirmed publishes never reached the queue",
        wanted.len(),
        confirmed.len()
    );
}
