//! Hub directories written by the hubs of protocol 1 and 2
//! (`tests/fixtures/hub-v1` and `hub-v2`, see their README: journal records
//! of kinds 0 and 1, without the routing header) open with today's hub and
//! are served: each subscriber gets what it had not settled and its
//! selection picks, byte for byte, a dead letter is listed and replayed, a
//! dead letter replayed by the old hub reaches only its subscriber, and new
//! publishes go on from the old journal.

mod support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use archiver_core::{
    Connection, Deliveries, Envelope, Kind, ListId, Operator, Publisher, Replay, Selection,
    Subscriber, SubscriberName, Subscription, wire,
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

/// A hub on a copy of the fixture directory `name` (the copy is the
/// returned temporary directory, removed when dropped).
fn open_fixture(name: &str) -> (tempfile::TempDir, ZmqHub) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture, dir.path());
    let hub = ZmqHub::bind(support::hub_config(dir.path())).expect("the old directory opens");
    (dir, hub)
}

fn bodies(envelopes: &[Envelope]) -> Vec<Vec<u8>> {
    envelopes.iter().map(|e| e.body.to_vec()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_directory_of_protocol_1_opens_and_is_served() {
    let (_dir, hub) = open_fixture("hub-v1");

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

/// The envelopes the hub of protocol 2 published into `hub-v2`, by journal
/// sequence, as `wire::to_bytes` wrote them.
fn published_v2(seq: usize) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/fixtures/hub-v2-published/{seq}.envelope"));
    std::fs::read(path).unwrap()
}

fn one_strings(envelopes: &[Envelope]) -> Vec<Vec<u8>> {
    envelopes.iter().map(wire::to_bytes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hub_directory_of_protocol_2_opens_and_is_served_byte_for_byte() {
    let (_dir, hub) = open_fixture("hub-v2");
    let status: BTreeMap<String, (usize, u64)> = hub
        .status()
        .await
        .unwrap()
        .into_iter()
        .map(|q| (q.name.to_string(), (q.dead_letters, q.pinned_from)))
        .collect();
    assert_eq!(
        status,
        BTreeMap::from([
            ("archive".into(), (0, 2)),
            ("idle".into(), (0, 0)),
            ("mails".into(), (0, 1)),
        ]),
        "three subscribers at their cursors; archive's dead letter was replayed"
    );

    let client = support::client_of(&hub);
    let mut archive = client
        .subscribe(&Subscription::new("archive".parse().unwrap()))
        .await
        .unwrap();
    let got = receive(&mut archive, 3, "archive's unsettled and its replay").await;
    assert_eq!(
        one_strings(&got),
        vec![published_v2(2), published_v2(3), published_v2(1)],
        "the private mail, the membership event, then mail 1 replayed"
    );

    let mut mails = client
        .subscribe(
            &Subscription::new("mails".parse().unwrap()).select(Selection::all().only(Kind::Mail)),
        )
        .await
        .unwrap();
    let got = receive(&mut mails, 2, "mails' unsettled mails").await;
    assert_eq!(
        one_strings(&got),
        vec![published_v2(1), published_v2(2)],
        "mails only, and not archive's replay"
    );

    let mut idle = client
        .subscribe(&Subscription::new("idle".parse().unwrap()))
        .await
        .unwrap();
    let got = receive(&mut idle, 4, "idle's envelopes").await;
    assert_eq!(
        one_strings(&got),
        (0..4).map(published_v2).collect::<Vec<_>>()
    );

    // The next thing each gets is a new publish: the old replay record was
    // for archive alone.
    let new = Envelope {
        id: archiver_core::EnvelopeId::new(),
        ..got[0].clone()
    };
    hub.publish(&new).await.unwrap();
    for (deliveries, who) in [
        (&mut archive, "archive"),
        (&mut mails, "mails"),
        (&mut idle, "idle"),
    ] {
        assert_eq!(
            receive(deliveries, 1, who).await,
            vec![new.clone()],
            "{who}: the new publish, nothing else before it"
        );
    }
    client.close().await.unwrap();
    hub.close().await.unwrap();
}
