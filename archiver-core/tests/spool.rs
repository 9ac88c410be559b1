//! The list server's spool: with the broker away, `archive_message` still
//! returns `Ok` (spooled), and everything reaches the subscriber, in
//! order, byte for byte, once the broker answers, also across a restart.
//! The broker is the in-memory backend behind a switch that makes it
//! refuse or stall publishes (the real-broker runs are tests/chaos).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use archiver_core::{
    ArchiveError, ArchiveUrls, Archiver, BackendError, Deliveries, Envelope, ListId, MailingList,
    MemoryBackend, Outcome, Publisher, QueueArchiver, SpoolOptions, Subscriber, SubscriberName,
    Subscription,
};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

/// The memory broker, switchable off (publishes refused) or slow.
#[derive(Clone)]
struct Switch {
    broker: MemoryBackend,
    down: Arc<AtomicBool>,
    stall_ms: Arc<AtomicU64>,
}

#[async_trait]
impl Publisher for Switch {
    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(BackendError::Unavailable("switched off".into()));
        }
        let stall = self.stall_ms.load(Ordering::SeqCst);
        if stall > 0 {
            tokio::time::sleep(Duration::from_millis(stall)).await;
        }
        self.broker.publish(envelope).await
    }
}

impl Switch {
    fn new() -> Self {
        Self {
            broker: MemoryBackend::with_max_envelope_bytes(1 << 20),
            down: Arc::default(),
            stall_ms: Arc::default(),
        }
    }
}

fn options(dir: &std::path::Path) -> SpoolOptions {
    let mut options = SpoolOptions::new(dir);
    options.publish_timeout = Duration::from_millis(300);
    options.backoff =
        archiver_core::Backoff::new(Duration::from_millis(20), Duration::from_millis(100));
    options
}

fn archiver(switch: &Switch, dir: &std::path::Path) -> QueueArchiver<Switch> {
    QueueArchiver::new(
        "spool-test",
        switch.clone(),
        ArchiveUrls::new("https://archive.example.org/{list_id}/").unwrap(),
    )
    .with_spool(options(dir))
    .unwrap()
}

fn list() -> MailingList {
    MailingList::public(ListId::new("spool.lists.example.org").unwrap())
}

fn mail(i: usize) -> Bytes {
    Bytes::from(format!(
        "Message-ID: <spool-{i}@example.org>\r\nSubject: mail {i}\r\n\r\nbody {i}\r\n"
    ))
}

async fn subscribe(switch: &Switch) -> Deliveries {
    switch
        .broker
        .subscribe(&Subscription::new(SubscriberName::new("archive").unwrap()))
        .await
        .unwrap()
}

/// Receives `count` mails, acking each; fails after 10 s of silence.
async fn receive(deliveries: &mut Deliveries, count: usize) -> Vec<Bytes> {
    let mut bodies = Vec::new();
    while bodies.len() < count {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} delivered", bodies.len()))
            .unwrap()
            .unwrap();
        bodies.push(delivery.envelope().body.clone());
        delivery.ack().await.unwrap();
    }
    bodies
}

async fn archive(archiver: &QueueArchiver<Switch>, range: std::ops::Range<usize>) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for i in range {
        outcomes.push(
            archiver
                .archive_message(&list(), mail(i))
                .await
                .unwrap()
                .outcome,
        );
    }
    outcomes
}

#[tokio::test]
async fn with_the_broker_down_mail_is_spooled_then_delivered_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    let archiver = archiver(&switch, dir.path());

    assert!(
        archive(&archiver, 0..5)
            .await
            .iter()
            .all(|o| *o == Outcome::Published)
    );
    switch.down.store(true, Ordering::SeqCst);
    assert!(
        archive(&archiver, 5..25)
            .await
            .iter()
            .all(|o| *o == Outcome::Spooled)
    );
    let status = archiver.spool_status().unwrap();
    assert_eq!((status.depth, status.spooled), (20, 20));
    assert!(status.oldest_age.is_some());

    switch.down.store(false, Ordering::SeqCst);
    let bodies = receive(&mut deliveries, 25).await;
    assert_eq!(bodies, (0..25).map(mail).collect::<Vec<_>>());
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((left.depth, left.drained, left.rejected), (0, 20, 0));
}

#[tokio::test]
async fn while_the_spool_holds_mail_new_mail_queues_behind_it() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..3).await;
    // The broker is back, but the spool is not drained yet: the next mail
    // must not overtake the spooled ones.
    switch.down.store(false, Ordering::SeqCst);
    let outcome = archive(&archiver, 3..4).await;
    let bodies = receive(&mut deliveries, 4).await;
    assert_eq!(
        bodies,
        (0..4).map(mail).collect::<Vec<_>>(),
        "outcome of mail 3: {outcome:?}"
    );
}

#[tokio::test]
async fn a_broker_slower_than_the_deadline_gets_the_mail_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    let archiver = archiver(&switch, dir.path());
    switch.stall_ms.store(2_000, Ordering::SeqCst);
    let started = std::time::Instant::now();
    assert_eq!(archive(&archiver, 0..1).await, [Outcome::Spooled]);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the deadline bounds the wait"
    );
    switch.stall_ms.store(0, Ordering::SeqCst);
    // The abandoned publish may still land: at least once, never lost.
    let bodies = receive(&mut deliveries, 1).await;
    assert_eq!(bodies, [mail(0)]);
}

#[tokio::test]
async fn a_restarted_list_server_drains_what_the_last_one_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    {
        let archiver = archiver(&switch, dir.path());
        switch.down.store(true, Ordering::SeqCst);
        archive(&archiver, 0..10).await;
        let left = archiver.shutdown(Duration::from_millis(100)).await.unwrap();
        assert_eq!(left.depth, 10, "the broker is down: nothing could drain");
    }
    switch.down.store(false, Ordering::SeqCst);
    let archiver = archiver(&switch, dir.path());
    let bodies = receive(&mut deliveries, 10).await;
    assert_eq!(bodies, (0..10).map(mail).collect::<Vec<_>>());
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((left.depth, left.drained), (0, 10));
}

#[tokio::test]
async fn shutdown_waits_for_the_drain_but_not_forever() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..3).await;
    let started = std::time::Instant::now();
    let left = archiver.shutdown(Duration::from_millis(300)).await.unwrap();
    assert_eq!(left.depth, 3);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn mail_the_broker_can_never_take_is_an_error_not_spooled() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let archiver = archiver(&switch, dir.path());
    // The broker's limit (1 MiB here) is below the mail limit.
    let huge = Bytes::from(
        [
            &b"Message-ID: <big@example.org>\r\n\r\n"[..],
            &vec![b'x'; 2 << 20],
        ]
        .concat(),
    );
    let result = archiver.archive_message(&list(), huge).await;
    match result {
        Err(ArchiveError::Backend(BackendError::TooLarge { .. })) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(archiver.spool_status().unwrap().spooled, 0);
}

#[tokio::test]
async fn a_second_list_server_on_the_same_spool_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let _first = archiver(&switch, dir.path());
    let second = QueueArchiver::new(
        "spool-test",
        switch.clone(),
        ArchiveUrls::new("https://archive.example.org/").unwrap(),
    )
    .with_spool(options(dir.path()));
    assert!(matches!(
        second,
        Err(archiver_core::journal::JournalError::Locked { .. })
    ));
}
