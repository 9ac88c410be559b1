//! A hub directory written by the hub of protocol 1 (`tests/fixtures/hub-v1`,
//! see its README) opens with today's hub and is served: each subscriber
//! gets what it had not settled, byte for byte, the dead letter is listed
//! and replayed, and new publishes go on from the old journal.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use archiver_core::{
    Connection, Deliveries, Envelope, ListId, Operator, Publisher, Replay, Subscriber,
    SubscriberName, Subscription,
};
use backend_zeromq::ZmqHub;
use futures::StreamExt;

const DEADLINE: Duration = Duration::from_secs(30);

/// The raw mail `i` of the fixture, exactly as its writer built it.
fn fixture_mail(i: usize) -> Vec<u8> {
    format!(
        "From: Fixture <fixture@example.org>\r\nList-Id: <fixture.lists.example.org>\r\n\
         Message-ID: <fixture-{i}@example.org>\r\nSubject: fixture {i}\r\n\r\n\
         mail {i} of the hub-v1 fixture\r\n"
    )
    .into_bytes()
}

/// Copies the fixture, so the test leaves the checked-in files untouched.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Receives and acks `count` envelopes.
async fn receive(deliveries: &mut Deliveries, count: usize, what: &str) -> Vec<Envelope> {
    let mut got = Vec::new();
    while got.len() < count {
        let delivery = tokio::time::timeout(DEADLINE, deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: {} of {count} within {DEADLINE:?}", got.len()))
            .expect("the stream goes on")
            .expect("a delivery");
        got.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    got
}

fn bodies(envelopes: &[Envelope]) -> Vec<Vec<u8>> {
    envelopes.iter().map(|e| e.body.to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_directory_of_protocol_1_opens_and_is_served() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hub-v1");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let hub = ZmqHub::bind(support::hub_config(dir.path())).expect("the old directory opens");

    let status: BTreeMap<String, usize> = hub
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.name.to_string(), q.dead_letters))
        .collect();
    assert_eq!(
        status,
        BTreeMap::from([("archive".into(), 1), ("idle".into(), 0)]),
        "both subscribers, and archive's one dead letter"
    );

    let client = support::client_of(&hub);
    let mut archive = client
        .subscribe(&Subscription::new("archive".parse().unwrap()))
        .await
        .unwrap();
    let unsettled = receive(&mut archive, 2, "archive's unsettled mails").await;
    assert_eq!(bodies(&unsettled), vec![fixture_mail(2), fixture_mail(3)]);
    assert!(
        unsettled
            .iter()
            .all(|e| e.list_id == ListId::new("fixture.lists.example.org").unwrap())
    );

    let mut idle = client
        .subscribe(&Subscription::new("idle".parse().unwrap()))
        .await
        .unwrap();
    let everything = receive(&mut idle, 4, "idle's mails").await;
    assert_eq!(
        bodies(&everything),
        (0..4).map(fixture_mail).collect::<Vec<_>>()
    );

    let name: SubscriberName = "archive".parse().unwrap();
    let dead = client.dead_letters(&name).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope.body.to_vec(), fixture_mail(1));
    assert_eq!(dead[0].reason, "fixture: rejected by the writer");
    assert_eq!(dead[0].attempts, 1);
    assert_eq!(
        client
            .replay_dead_letters(&name, Replay::All)
            .await
            .unwrap(),
        1
    );
    let replayed = receive(&mut archive, 1, "the replayed dead letter").await;
    assert_eq!(bodies(&replayed), vec![fixture_mail(1)]);

    let new = everything[0].clone();
    let new = Envelope {
        id: archiver_core::EnvelopeId::new(),
        ..new
    };
    hub.publish(&new).await.unwrap();
    assert_eq!(
        receive(&mut archive, 1, "a new publish").await,
        vec![new.clone()]
    );
    assert_eq!(receive(&mut idle, 1, "a new publish").await, vec![new]);

    client.close().await.unwrap();
    hub.close().await.unwrap();
}
