//! Scenarios on settling deliveries: nack and redelivery, abandoned
//! deliveries, dead letters and replay, the in-flight bound, the runner.

use std::time::Duration;

use async_trait::async_trait;

use super::Harness;
use super::support::{
    DEADLINE, assert_exactly_once, assert_quiet, list, mail, name, next, next_within, publish_all,
    receive_acked, subscribe,
};
use crate::backend::{Connection, Delivery, Operator, Replay, Subscriber, Subscription};
use crate::backoff::Backoff;
use crate::envelope::Envelope;
use crate::runner::{Handler, HandlerError, RunStats, Runner};

/// A nacked delivery comes back with attempt + 1, after its delay.
pub async fn nack_redelivers_with_next_attempt<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    let mut deliveries = subscribe(&backend, Subscription::new(name("nacking"))).await;
    let envelope = mail(&list("nack.lists.example.org"), 0);
    publish_all(&harness.publisher().await, std::slice::from_ref(&envelope)).await;

    let first = next(&mut deliveries, "first delivery").await;
    assert_eq!((first.envelope(), first.attempt()), (&envelope, 1));
    first.nack(Duration::ZERO).await.expect("nack");
    let second = next(&mut deliveries, "redelivery after nack").await;
    assert_eq!((second.envelope(), second.attempt()), (&envelope, 2));

    let delay = Duration::from_millis(500);
    let nacked_at = tokio::time::Instant::now();
    second.nack(delay).await.expect("nack with delay");
    let third = next(&mut deliveries, "redelivery after a delayed nack").await;
    assert!(
        nacked_at.elapsed() >= delay,
        "redelivered after {:?}, before the {delay:?} delay",
        nacked_at.elapsed()
    );
    assert_eq!((third.envelope(), third.attempt()), (&envelope, 3));
    third.ack().await.expect("ack");
    assert_quiet(&mut deliveries, "after ack").await;
}

/// A delivery whose consumer went away unsettled is delivered again, to
/// another instance, with attempt + 1.
pub async fn abandoned_delivery_is_redelivered<H: Harness>(harness: &H) {
    let subscription = Subscription::new(name("abandoning"));
    let crashed = harness.subscriber().await;
    let wait = crashed.subscriber_capabilities().abandoned_redelivery + DEADLINE;
    let mut deliveries = subscribe(&crashed, subscription.clone()).await;
    let envelope = mail(&list("abandon.lists.example.org"), 0);
    publish_all(&harness.publisher().await, std::slice::from_ref(&envelope)).await;
    let held = next(&mut deliveries, "delivery to the instance that goes away").await;
    assert_eq!(held.attempt(), 1);
    drop(held);
    drop(deliveries);
    crashed.close().await.expect("close");

    let survivor = harness.subscriber().await;
    let mut deliveries = subscribe(&survivor, subscription).await;
    let again = next_within(
        &mut deliveries,
        wait,
        "redelivery of the abandoned delivery",
    )
    .await;
    assert_eq!(again.envelope(), &envelope);
    assert!(
        again.attempt() >= 2,
        "an abandoned delivery comes back with attempt + 1, got {}",
        again.attempt()
    );
    again.ack().await.expect("ack");
}

/// Nacked up to the attempt limit, or rejected, an envelope lands in the
/// dead letters; it can be listed, replayed and then delivered, or purged
/// and never delivered again.
pub async fn dead_letters_after_max_attempts<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    let subscriber = name("dead");
    let mut deliveries = subscribe(
        &backend,
        Subscription::new(subscriber.clone()).max_attempts(3),
    )
    .await;
    let list_id = list("dead.lists.example.org");
    let exhausted = mail(&list_id, 0);
    let poison = mail(&list_id, 1);
    publish_all(
        &harness.publisher().await,
        &[exhausted.clone(), poison.clone()],
    )
    .await;

    let mut nacks = 0;
    let mut rejected = false;
    while nacks < 3 || !rejected {
        let delivery = next(&mut deliveries, "deliveries before dead-lettering").await;
        if delivery.envelope().id == poison.id {
            assert!(!rejected, "a rejected envelope must not come back");
            delivery.reject("permanently broken").await.expect("reject");
            rejected = true;
        } else {
            nacks += 1;
            assert_eq!(
                delivery.attempt(),
                nacks,
                "attempt number of the nacked envelope"
            );
            delivery.nack(Duration::ZERO).await.expect("nack");
        }
    }
    assert_quiet(&mut deliveries, "after the attempt limit").await;

    let dead = wait_for_dead_letters(&backend, &subscriber, 2).await;
    let by_id = |id| {
        dead.iter()
            .find(|d| d.envelope.id == id)
            .expect("dead letter listed")
    };
    let limit_letter = by_id(exhausted.id);
    assert_eq!(limit_letter.envelope, exhausted);
    assert_eq!(limit_letter.attempts, 3);
    let poison_letter = by_id(poison.id);
    assert_eq!(poison_letter.envelope, poison);
    assert!(
        poison_letter.reason.contains("permanently broken"),
        "reason kept: {:?}",
        poison_letter.reason
    );

    let replayed = backend
        .replay_dead_letters(&subscriber, Replay::Only(vec![poison.id]))
        .await
        .expect("replay one");
    assert_eq!(replayed, 1);
    let again = next(&mut deliveries, "replayed dead letter").await;
    assert_eq!((again.envelope(), again.attempt()), (&poison, 1));
    again.ack().await.expect("ack");
    let left = backend
        .dead_letters(&subscriber)
        .await
        .expect("list dead letters");
    assert_eq!(
        left.iter().map(|d| d.envelope.id).collect::<Vec<_>>(),
        vec![exhausted.id]
    );

    assert_eq!(
        backend
            .replay_dead_letters(&subscriber, Replay::All)
            .await
            .expect("replay all"),
        1
    );
    let received = receive_acked(&mut deliveries, 1, "replay all").await;
    assert_exactly_once(&received, &[exhausted], "replay all");
    assert!(
        backend
            .dead_letters(&subscriber)
            .await
            .expect("list")
            .is_empty()
    );

    // Purged dead letters are gone for good; the queue goes on.
    let unwanted = mail(&list_id, 2);
    publish_all(&harness.publisher().await, std::slice::from_ref(&unwanted)).await;
    let delivery = next(&mut deliveries, "the mail to purge").await;
    assert_eq!(delivery.envelope(), &unwanted);
    delivery.reject("not wanted").await.expect("reject");
    wait_for_dead_letters(&backend, &subscriber, 1).await;
    assert_eq!(
        backend
            .purge_dead_letters(&subscriber)
            .await
            .expect("purge"),
        1
    );
    assert!(
        backend
            .dead_letters(&subscriber)
            .await
            .expect("list after purge")
            .is_empty()
    );
    assert_eq!(
        backend
            .replay_dead_letters(&subscriber, Replay::All)
            .await
            .expect("replay after purge"),
        0
    );
    let after = mail(&list_id, 3);
    publish_all(&harness.publisher().await, std::slice::from_ref(&after)).await;
    let received = receive_acked(&mut deliveries, 1, "after the purge").await;
    assert_exactly_once(&received, &[after], "after the purge");
}

/// Dead-lettering may be asynchronous on a broker: poll with a deadline.
async fn wait_for_dead_letters<B: Operator>(
    backend: &B,
    subscriber: &crate::backend::SubscriberName,
    count: usize,
) -> Vec<crate::backend::DeadLetter> {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let dead = backend
            .dead_letters(subscriber)
            .await
            .expect("list dead letters");
        if dead.len() >= count {
            assert_eq!(dead.len(), count, "dead letters of {subscriber}");
            return dead;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {count} dead letters listed before the deadline",
            dead.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A consumer never holds more unsettled deliveries than its prefetch; the
/// rest go to another instance meanwhile.
pub async fn prefetch_bounds_in_flight<H: Harness>(harness: &H) {
    let subscription = Subscription::new(name("bounded")).prefetch(2);
    let slow = harness.subscriber().await;
    let mut slow_deliveries = subscribe(&slow, subscription.clone()).await;
    let list_id = list("bounded.lists.example.org");
    let published: Vec<Envelope> = (0..10).map(|i| mail(&list_id, i)).collect();
    publish_all(&harness.publisher().await, &published).await;

    let held = [
        next(&mut slow_deliveries, "first held").await,
        next(&mut slow_deliveries, "second held").await,
    ];
    assert_quiet(&mut slow_deliveries, "a consumer at its prefetch of 2").await;

    let fast = harness.subscriber().await;
    let mut fast_deliveries = subscribe(&fast, subscription).await;
    let mut received = receive_acked(
        &mut fast_deliveries,
        published.len() - held.len(),
        "the other instance",
    )
    .await;
    for delivery in held {
        received.push(delivery.envelope().clone());
        delivery.ack().await.expect("ack");
    }
    assert_exactly_once(&received, &published, "prefetch bound");
}

/// A handler for the runner scenario, deciding by list.
struct ByList;

#[async_trait]
impl Handler for ByList {
    async fn handle(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        match delivery.envelope().list_id.as_str() {
            "retry.lists.example.org" if delivery.attempt() == 1 => {
                Err(HandlerError::retryable("not yet"))
            }
            "poison.lists.example.org" => Err(HandlerError::permanent("cannot be archived")),
            _ => Ok(()),
        }
    }
}

/// The runner acks on Ok, nacks with back-off on a retryable error and
/// rejects to the dead letters on a permanent one.
pub async fn runner_settles_by_outcome<H: Harness>(harness: &H) {
    let backend = harness.subscriber().await;
    let subscriber = name("runner");
    let runner = Runner::new(
        harness.subscriber().await,
        Subscription::new(subscriber.clone()),
    )
    .concurrency(4)
    .backoff(Backoff::new(
        Duration::from_millis(20),
        Duration::from_millis(20),
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = runner
        .spawn(ByList, async move {
            let _ = stopped.await;
        })
        .await
        .expect("runner subscribes");
    let poison = mail(&list("poison.lists.example.org"), 2);
    publish_all(
        &harness.publisher().await,
        &[
            mail(&list("ok.lists.example.org"), 0),
            mail(&list("retry.lists.example.org"), 1),
            poison.clone(),
        ],
    )
    .await;

    tokio::time::timeout(DEADLINE, running.counters().wait_finished(3))
        .await
        .expect("runner finished 3 deliveries before the deadline");
    stop.send(()).expect("runner still running");
    let stats = running.join().await.expect("runner result");
    assert_eq!(
        stats,
        RunStats {
            acked: 2,
            retried: 1,
            rejected: 1,
            settle_failures: 0,
            stream_errors: 0,
        }
    );
    let dead = wait_for_dead_letters(&backend, &subscriber, 1).await;
    assert_eq!(dead[0].envelope, poison);
    assert!(dead[0].reason.contains("cannot be archived"));
}
