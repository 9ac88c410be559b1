//! The list server's spool: with the broker away, `archive_message` still
//! returns `Ok` (spooled), and everything reaches the subscriber, in
//! order, byte for byte, once the broker answers, also across a restart.
//! The broker is the in-memory backend behind a switch that makes it
//! refuse or stall publishes (the real-broker runs are tests/chaos).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use archiver_core::conformance::faults::wait_until;
use archiver_core::journal::{Journal, JournalError, JournalOptions};
use archiver_core::{
    ArchiveError, ArchiveUrls, Archiver, BackendError, Connection, Deliveries, Envelope,
    ListChange, ListEvent, ListId, MailingList, MemoryBackend, Outcome, Publisher,
    PublisherCapabilities, QueueArchiver, SpoolOptions, Subscriber, SubscriberName, Subscription,
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
    /// Refuses every publish for good (`TooLarge`), as a broker whose limit
    /// is below the envelope would.
    refuse: Arc<AtomicBool>,
    /// Publishes attempted, whatever their outcome.
    attempts: Arc<AtomicU64>,
    /// Times the publisher was closed.
    closes: Arc<AtomicU64>,
    /// Says it is durable on this machine already, as a ZeroMQ hub in
    /// this process does.
    locally_durable: Arc<AtomicBool>,
}

#[async_trait]
impl Connection for Switch {
    async fn close(&self) -> Result<(), BackendError> {
        self.closes.fetch_add(1, Ordering::SeqCst);
        self.broker.close().await
    }
}

#[async_trait]
impl Publisher for Switch {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            locally_durable: self.locally_durable.load(Ordering::SeqCst),
            ..self.broker.publisher_capabilities()
        }
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        if self.refuse.load(Ordering::SeqCst) {
            return Err(BackendError::TooLarge {
                size: envelope.body.len(),
                limit: 1,
            });
        }
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
            refuse: Arc::default(),
            attempts: Arc::default(),
            closes: Arc::default(),
            locally_durable: Arc::default(),
        }
    }
}

fn options(dir: &std::path::Path) -> SpoolOptions {
    SpoolOptions::new(dir)
        .publish_timeout(Duration::from_millis(300))
        .backoff(archiver_core::Backoff::new(
            Duration::from_millis(20),
            Duration::from_millis(100),
        ))
}

/// The setters set the public fields they are named after.
#[test]
fn the_setters_set_their_fields() {
    use archiver_core::MailLimits;
    use archiver_core::journal::SyncPolicy;
    let journal = JournalOptions::default()
        .segment_size(1 << 20)
        .sync(SyncPolicy::Within(Duration::from_millis(5)))
        .max_record(2 << 20);
    assert_eq!(
        (journal.segment_size, journal.sync, journal.max_record),
        (
            1 << 20,
            SyncPolicy::Within(Duration::from_millis(5)),
            2 << 20
        )
    );
    let spool = SpoolOptions::new("/tmp/spool")
        .drain_batch(7)
        .report_interval(Duration::from_secs(3))
        .journal(journal.clone());
    assert_eq!(spool.drain_batch, 7);
    assert_eq!(spool.report_interval, Duration::from_secs(3));
    assert_eq!(spool.journal.max_record, journal.max_record);
    assert_eq!(MailLimits::default().max_bytes(1000).max_bytes, 1000);
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

/// A fresh spool directory, a broker behind a switch, and the subscriber's
/// deliveries from it.
async fn setup() -> (tempfile::TempDir, Switch, Deliveries) {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let deliveries = subscribe(&switch).await;
    (dir, switch, deliveries)
}

/// Every mail had the `expected` outcome.
fn assert_all(outcomes: Vec<Outcome>, expected: Outcome) {
    assert!(
        outcomes.iter().all(|o| *o == expected),
        "expected all {expected:?}: {outcomes:?}"
    );
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
    let (dir, switch, mut deliveries) = setup().await;
    let archiver = archiver(&switch, dir.path());

    assert_all(archive(&archiver, 0..5).await, Outcome::Published);
    switch.down.store(true, Ordering::SeqCst);
    assert_all(archive(&archiver, 5..25).await, Outcome::Spooled);
    let status = archiver.spool_status().unwrap();
    assert_eq!((status.depth, status.spooled), (20, 20));
    assert!(status.oldest_age.is_some());

    switch.down.store(false, Ordering::SeqCst);
    let bodies = receive(&mut deliveries, 25).await;
    assert_eq!(bodies, (0..25).map(mail).collect::<Vec<_>>());
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((left.depth, left.drained, left.rejected), (0, 20, 0));
    assert_eq!(
        switch.closes.load(Ordering::SeqCst),
        0,
        "shutdown leaves the publisher open"
    );
}

/// `close` drains the spool, then closes the publisher (once): what was
/// spooled reaches the broker, and the publisher refuses afterwards.
#[tokio::test]
async fn close_drains_the_spool_then_closes_the_publisher() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    // Another client of the same broker, so its deliveries outlive the
    // publisher's close.
    let reader = switch.broker.connect();
    let mut deliveries = reader
        .subscribe(&Subscription::new(SubscriberName::new("archive").unwrap()))
        .await
        .unwrap();
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    assert_all(archive(&archiver, 0..5).await, Outcome::Spooled);
    switch.down.store(false, Ordering::SeqCst);

    let left = archiver.close(Duration::from_secs(10)).await.unwrap();
    let left = left.expect("a spool");
    assert_eq!((left.depth, left.drained), (0, 5), "drained before closing");
    assert_eq!(switch.closes.load(Ordering::SeqCst), 1, "publisher closed");
    let late = archiver_core::ArchivedMail::parse(mail(9), &Default::default()).unwrap();
    let after = archiver
        .publisher()
        .broker
        .publish(&Envelope::mail(&late, &list()))
        .await;
    assert_eq!(after, Err(BackendError::Closed));
    let bodies = receive(&mut deliveries, 5).await;
    assert_eq!(bodies, (0..5).map(mail).collect::<Vec<_>>());
}

/// The spool's journal keeps the list's posting address (wire format 1.1)
/// of spooled mails and events.
#[tokio::test]
async fn spooled_mail_and_events_keep_the_list_address() {
    let (dir, switch, mut deliveries) = setup().await;
    let archiver = archiver(&switch, dir.path());
    let list = list().with_address("spool@lists.example.org").unwrap();
    switch.down.store(true, Ordering::SeqCst);
    let receipt = archiver.archive_message(&list, mail(0)).await.unwrap();
    assert_eq!(receipt.outcome, Outcome::Spooled);
    let event = ListEvent::now(list.list_id.clone(), ListChange::ListDeleted);
    let receipt = archiver.archive_event(&list, &event).await.unwrap();
    assert_eq!(receipt.outcome, Outcome::Spooled);
    assert_eq!(archiver.spool_status().unwrap().depth, 2);

    switch.down.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .expect("drained before the deadline")
            .unwrap()
            .unwrap();
        assert_eq!(delivery.envelope().list_address, list.list_address);
        delivery.ack().await.unwrap();
    }
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!((left.depth, left.drained), (0, 2));
}

#[tokio::test]
async fn while_the_spool_holds_mail_new_mail_queues_behind_it() {
    let (dir, switch, mut deliveries) = setup().await;
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
    let (dir, switch, mut deliveries) = setup().await;
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
    let (dir, switch, mut deliveries) = setup().await;
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
    match second {
        Err(error @ archiver_core::journal::JournalError::Locked { .. }) => assert!(
            error
                .to_string()
                .contains(&format!("in this process (pid {})", std::process::id())),
            "{error}"
        ),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, the spool opened"),
    }
}

#[tokio::test]
async fn an_orphaned_spool_is_adopted_and_drained_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        dir.path().join("slice-0-of-2"),
        dir.path().join("slice-0-of-1"),
    );
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    switch.down.store(true, Ordering::SeqCst);
    {
        let archiver = archiver(&switch, &old);
        archive(&archiver, 0..3).await;
        archiver.shutdown(Duration::from_millis(50)).await;
    }
    let archiver = archiver(&switch, &new);
    archive(&archiver, 3..4).await;
    let held = self::archiver(&switch, &dir.path().join("held"));
    assert!(matches!(
        archiver.adopt_spool(dir.path().join("held")).await,
        Err(ArchiveError::Spool(
            archiver_core::journal::JournalError::Locked { .. }
        ))
    ));
    drop(held);
    assert_eq!(archiver.adopt_spool(&old).await.unwrap(), 3);
    assert!(!old.exists(), "the adopted spool is removed");
    let status = archiver.spool_status().unwrap();
    assert_eq!((status.depth, status.spooled), (4, 4));
    switch.down.store(false, Ordering::SeqCst);
    let bodies = receive(&mut deliveries, 4).await;
    assert_eq!(bodies, [mail(3), mail(0), mail(1), mail(2)]);
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(left.depth, 0);
}

/// Receives until every mail of `wanted` arrived (duplicates allowed: at
/// least once), acking each; returns them in first-arrival order.
async fn receive_all(deliveries: &mut Deliveries, wanted: &[Bytes]) -> Vec<Bytes> {
    let mut seen: Vec<Bytes> = Vec::new();
    while !wanted.iter().all(|w| seen.contains(w)) {
        let delivery = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
            .await
            .unwrap_or_else(|_| {
                panic!("only {} distinct of {} delivered", seen.len(), wanted.len())
            })
            .unwrap()
            .unwrap();
        let body = delivery.envelope().body.clone();
        if !seen.contains(&body) {
            seen.push(body);
        }
        delivery.ack().await.unwrap();
    }
    seen
}

#[tokio::test]
async fn a_refused_record_whose_set_aside_fails_stays_in_the_spool() {
    let (dir, switch, mut deliveries) = setup().await;
    {
        let archiver = archiver(&switch, dir.path());
        switch.down.store(true, Ordering::SeqCst);
        assert_all(archive(&archiver, 0..3).await, Outcome::Spooled);
        // `rejected` cannot become a directory: nothing can be set aside.
        std::fs::write(dir.path().join("rejected"), b"in the way").unwrap();
        let tried = switch.attempts.load(Ordering::SeqCst);
        switch.refuse.store(true, Ordering::SeqCst);
        switch.down.store(false, Ordering::SeqCst);
        wait_until("the drain to try", Duration::from_secs(5), || {
            switch.attempts.load(Ordering::SeqCst) >= tried + 3
        })
        .await;
        let status = archiver.spool_status().unwrap();
        assert_eq!((status.depth, status.rejected), (3, 0), "{status:?}");
        let stuck = status.stuck_at.expect("the drain says where it is stuck");
        assert_eq!(stuck.seq, 0);
        assert!(
            stuck.error.contains("setting it aside failed"),
            "{}",
            stuck.error
        );
        archiver.shutdown(Duration::from_millis(50)).await;
    }
    std::fs::remove_file(dir.path().join("rejected")).unwrap();
    switch.refuse.store(false, Ordering::SeqCst);
    let archiver = archiver(&switch, dir.path());
    let bodies = receive(&mut deliveries, 3).await;
    assert_eq!(bodies, (0..3).map(mail).collect::<Vec<_>>());
    archiver.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_refused_record_is_set_aside_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..2).await;
    switch.refuse.store(true, Ordering::SeqCst);
    switch.down.store(false, Ordering::SeqCst);
    wait_until("the set-aside", Duration::from_secs(5), || {
        archiver.spool_status().unwrap().depth == 0
    })
    .await;
    let status = archiver.spool_status().unwrap();
    assert_eq!(status.rejected, 2);
    let rejected = dir.path().join("rejected");
    let mut names: Vec<String> = std::fs::read_dir(&rejected)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "00000000000000000000.envelope",
            "00000000000000000000.reason",
            "00000000000000000001.envelope",
            "00000000000000000001.reason"
        ]
    );
    let envelope = archiver_core::wire::from_bytes(
        std::fs::read(rejected.join("00000000000000000001.envelope"))
            .unwrap()
            .into(),
    )
    .unwrap();
    assert_eq!(envelope.body, mail(1));
    let reason = std::fs::read_to_string(rejected.join("00000000000000000001.reason")).unwrap();
    assert!(reason.contains("exceeds"), "{reason}");
}

#[tokio::test]
async fn dropping_the_archiver_without_shutdown_releases_the_spool() {
    let (dir, switch, mut deliveries) = setup().await;
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..2).await;
    drop(archiver);
    let archiver = QueueArchiver::new(
        "spool-test",
        switch.clone(),
        ArchiveUrls::new("https://archive.example.org/").unwrap(),
    )
    .with_spool(options(dir.path()))
    .expect("the dropped archiver's spool is free at once");
    switch.down.store(false, Ordering::SeqCst);
    assert_eq!(receive(&mut deliveries, 2).await, [mail(0), mail(1)]);
    archiver.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn the_drain_survives_a_failed_cursor_save_and_goes_on() {
    let (dir, switch, mut deliveries) = setup().await;
    let archiver = archiver(&switch, dir.path());
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..3).await;
    // The cursor file cannot be replaced while this directory is there.
    let obstacle = dir.path().join("cursors.json.new");
    std::fs::create_dir(&obstacle).unwrap();
    switch.down.store(false, Ordering::SeqCst);
    receive_all(&mut deliveries, &(0..3).map(mail).collect::<Vec<_>>()).await;
    assert_eq!(
        archiver.spool_status().unwrap().depth,
        3,
        "the cursor could not move"
    );
    std::fs::remove_dir(&obstacle).unwrap();
    // Down again while mails 3 and 4 come, so they are spooled whether or
    // not the drain has emptied the spool meanwhile.
    switch.down.store(true, Ordering::SeqCst);
    assert_all(archive(&archiver, 3..5).await, Outcome::Spooled);
    switch.down.store(false, Ordering::SeqCst);
    receive_all(&mut deliveries, &(3..5).map(mail).collect::<Vec<_>>()).await;
    wait_until("the spool to drain", Duration::from_secs(5), || {
        archiver.spool_status().unwrap().depth == 0
    })
    .await;
    archiver.shutdown(Duration::from_secs(10)).await;
}

#[tokio::test]
async fn a_deleted_spool_directory_refuses_further_mail() {
    let dir = tempfile::tempdir().unwrap();
    let spool_dir = dir.path().join("spool");
    let switch = Switch::new();
    let archiver = archiver(&switch, &spool_dir);
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..5).await;
    std::fs::remove_dir_all(&spool_dir).unwrap();
    for i in 5..10 {
        match archiver.archive_message(&list(), mail(i)).await {
            Err(ArchiveError::Spool(error)) => {
                assert!(error.to_string().contains("gone"), "mail {i}: {error}")
            }
            other => panic!("mail {i}: expected the spool to refuse, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_spool_written_by_the_v1_journal_opens_and_drains() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/spool-v1");
    for name in ["00000000000000000000.log", "cursors.json"] {
        std::fs::copy(fixture.join(name), dir.path().join(name)).unwrap();
    }
    let switch = Switch::new();
    let mut deliveries = subscribe(&switch).await;
    let archiver = archiver(&switch, dir.path());
    assert_eq!(
        receive(&mut deliveries, 3).await,
        (0..3).map(mail).collect::<Vec<_>>()
    );
    // New mail goes on behind it, and all of it survives a restart.
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 3..5).await;
    archiver.shutdown(Duration::from_millis(50)).await;
    switch.down.store(false, Ordering::SeqCst);
    let archiver = self::archiver(&switch, dir.path());
    assert_eq!(receive(&mut deliveries, 2).await, [mail(3), mail(4)]);
    let left = archiver.shutdown(Duration::from_secs(10)).await.unwrap();
    assert_eq!(left.depth, 0);
}

/// A path that holds no spool (here the folder holding this list server's
/// own live spool, as a plugin looping over its spool root might pass) is
/// refused, and nothing in it is touched.
#[tokio::test]
async fn adopting_a_directory_that_holds_no_spool_deletes_nothing() {
    let (dir, switch, mut deliveries) = setup().await;
    let archiver = archiver(&switch, &dir.path().join("live"));
    switch.down.store(true, Ordering::SeqCst);
    archive(&archiver, 0..2).await;
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let refused = archiver.adopt_spool(dir.path()).await;
    assert!(
        matches!(
            refused,
            Err(ArchiveError::Spool(JournalError::NotAJournal(_)))
        ),
        "{refused:?}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("precious.txt")).unwrap(),
        b"keep me"
    );
    assert_eq!(archiver.spool_status().unwrap().depth, 2);
    switch.down.store(false, Ordering::SeqCst);
    assert_eq!(receive(&mut deliveries, 2).await, [mail(0), mail(1)]);
    archiver.shutdown(Duration::from_secs(10)).await;

    // An adopted spool's directory goes only with nothing else in it.
    let old = dir.path().join("old");
    switch.down.store(true, Ordering::SeqCst);
    {
        let orphan = self::archiver(&switch, &old);
        archive(&orphan, 2..3).await;
        orphan.shutdown(Duration::from_millis(50)).await;
    }
    std::fs::write(old.join("notes.txt"), b"mine").unwrap();
    let archiver = self::archiver(&switch, &dir.path().join("live"));
    assert_eq!(archiver.adopt_spool(&old).await.unwrap(), 1);
    let left: Vec<_> = std::fs::read_dir(&old)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["notes.txt"], "only the journal's own files go");
    switch.down.store(false, Ordering::SeqCst);
    assert_eq!(receive(&mut deliveries, 1).await, [mail(2)]);
    archiver.shutdown(Duration::from_secs(10)).await;
}

/// An orphan whose last record is larger than this spool's `max_record`
/// is read whole (not cut as a torn tail), refused, and left in place.
#[tokio::test]
async fn an_orphan_with_a_record_too_large_for_this_spool_is_left_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (dir.path().join("old"), dir.path().join("new"));
    let switch = Switch::new();
    switch.down.store(true, Ordering::SeqCst);
    let big = Bytes::from(format!(
        "Message-ID: <big@example.org>\r\n\r\n{}\r\n",
        "x".repeat(4096)
    ));
    {
        let orphan = archiver(&switch, &old);
        archive(&orphan, 0..2).await;
        let receipt = orphan.archive_message(&list(), big.clone()).await.unwrap();
        assert_eq!(receipt.outcome, Outcome::Spooled);
        orphan.shutdown(Duration::from_millis(50)).await;
    }
    let mut small = options(&new);
    small.journal.max_record = 2048;
    let archiver = QueueArchiver::new(
        "spool-test",
        switch.clone(),
        ArchiveUrls::new("https://archive.example.org/{list_id}/").unwrap(),
    )
    .with_spool(small)
    .unwrap();
    let refused = archiver.adopt_spool(&old).await;
    assert!(
        matches!(
            refused,
            Err(ArchiveError::Spool(JournalError::TooLarge { .. }))
        ),
        "{refused:?}"
    );
    drop(archiver);
    let orphan = Journal::open(&old, JournalOptions::default()).unwrap();
    let records = orphan.read(0, 10, usize::MAX).unwrap();
    assert_eq!(records.len(), 3, "the orphan keeps every record");
    let last = archiver_core::wire::from_bytes(records[2].payload.clone()).unwrap();
    assert_eq!(last.body, big);
}

/// What a closure logged at warning level and above, as text.
fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let captured = Captured::default();
    let writer = {
        let captured = captured.clone();
        move || captured.clone()
    };
    let subscriber = tracing_subscriber::fmt()
        .with_writer(writer)
        .with_ansi(false)
        .with_max_level(tracing::Level::WARN)
        .finish();
    let value = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (value, text)
}

#[tokio::test]
async fn a_spool_in_front_of_a_locally_durable_publisher_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let switch = Switch::new();
    let (plain, quiet) = warnings_of(|| archiver(&switch, &dir.path().join("plain")));
    assert_eq!(quiet, "", "a broker elsewhere: a spool is what keeps mail");
    plain.shutdown(Duration::from_millis(50)).await;

    switch.locally_durable.store(true, Ordering::SeqCst);
    let (local, warned) = warnings_of(|| archiver(&switch, &dir.path().join("local")));
    assert_eq!(warned.lines().count(), 1, "{warned}");
    assert!(warned.contains("WARN"), "{warned}");
    assert!(
        warned.contains("journals each mail twice on one disk")
            && warned.contains("configure no spool"),
        "says why and what to do instead: {warned}"
    );
    assert!(
        warned.contains("spool-test"),
        "names the archiver: {warned}"
    );
    // Only a warning: the spool works as ever.
    let receipt = local.archive_message(&list(), mail(0)).await.unwrap();
    assert_eq!(receipt.outcome, Outcome::Published);
    local.shutdown(Duration::from_millis(50)).await;
}
