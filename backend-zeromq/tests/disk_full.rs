//! The hub's journal on a disk that fills up (a real tmpfs; root only, and
//! under CI a test that cannot mount one fails): a publish that cannot be
//! written is refused, so the list server keeps the mail; once space is
//! free the same hub takes publishes again, without a restart, and
//! delivers exactly the publishes it acknowledged.

mod support;

use std::collections::HashSet;
use std::time::Duration;

use archiver_core::conformance::faults::Tmpfs;
use archiver_core::{
    ArchivedMail, Connection, Envelope, ListId, MailLimits, MailingList, Publisher, Subscriber,
    Subscription,
};
use backend_zeromq::ZmqHub;
use futures::StreamExt;

/// A mail of about 100 KB: more than the pages left free below.
fn big_mail(i: usize) -> Envelope {
    let raw = format!(
        "Message-ID: <disk-full-{i}@example.org>\r\nSubject: {i}\r\n\r\n{}\r\n",
        "x".repeat(100_000)
    );
    let mail = ArchivedMail::parse(raw.into(), &MailLimits::default()).unwrap();
    let list = MailingList::public(ListId::new("disk.lists.example.org").unwrap());
    Envelope::mail(&mail, &list)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_publishes_then_the_hub_goes_on_once_space_is_free() {
    let mount_point = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(mount_point.path(), "8m") else {
        return;
    };
    let hub = ZmqHub::bind(support::hub_config(&fs.path().join("hub"))).unwrap();
    let client = support::client_of(&hub);
    let subscription = Subscription::new("web".parse().unwrap()).prefetch(4);
    let mut deliveries = client.subscribe(&subscription).await.unwrap();

    let mut acknowledged = HashSet::new();
    for i in 0..5 {
        let envelope = big_mail(i);
        hub.publish(&envelope).await.unwrap();
        acknowledged.insert(envelope.id);
    }
    let ballast = fs.fill_up(16 << 10);
    let refused = big_mail(5);
    let error = hub.publish(&refused).await.unwrap_err();
    assert!(error.to_string().contains("No space left"), "{error}");
    std::fs::remove_file(&ballast).unwrap();
    for i in 6..9 {
        let envelope = big_mail(i);
        hub.publish(&envelope)
            .await
            .unwrap_or_else(|e| panic!("publish {i} after space was freed: {e}"));
        acknowledged.insert(envelope.id);
    }

    let mut received = HashSet::new();
    while received.len() < acknowledged.len() {
        let delivery = tokio::time::timeout(Duration::from_secs(30), deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("{} of {} received", received.len(), acknowledged.len()))
            .unwrap()
            .unwrap();
        let id = delivery.envelope().id;
        assert!(id != refused.id, "the refused publish was delivered");
        assert!(received.insert(id), "received twice");
        delivery.ack().await.unwrap();
    }
    assert_eq!(received, acknowledged);
    hub.close().await.unwrap();
}
