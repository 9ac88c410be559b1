//! Malformed frames from a peer, sent with raw zmq sockets: refused and
//! logged, never a panic, never a lost or corrupted mail. On the hub's
//! side a raw DEALER sends garbage; on the client's side a raw ROUTER
//! plays a misbehaving hub.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use archiver_core::{
    ArchivedMail, Connection, Envelope, ListId, MailLimits, MailingList, Publisher, Subscriber,
    Subscription, wire,
};
use backend_zeromq::protocol::{self, command};
use backend_zeromq::{ClientConfig, ZmqClient, ZmqHub};
use futures::StreamExt;

const DEADLINE: Duration = support::RAW_DEADLINE;

fn mail(i: usize) -> Envelope {
    let raw = format!(
        "Message-ID: <{i}.{}@malformed.example.org>\r\nSubject: {i}\r\n\r\nbody {i} \u{e9}\r\n",
        uuid::Uuid::now_v7()
    );
    let mail = ArchivedMail::parse(raw.into_bytes().into(), &MailLimits::default()).unwrap();
    Envelope::mail(
        &mail,
        &MailingList::public(ListId::new("malformed.example.org").unwrap()),
    )
}

/// The reply to a message, skipping the hub's pings and deliveries.
fn reply(socket: &zmq::Socket, frames: &[&[u8]], what: &str) -> Vec<Vec<u8>> {
    socket.send_multipart(frames, 0).unwrap();
    loop {
        let got = support::recv_raw(socket, what);
        if got[0] != command::PING && got[0] != command::DELIVER {
            return got;
        }
    }
}

fn hello(name: &str, prefetch: u16) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": protocol::PROTOCOL_VERSION, "name": name, "prefetch": prefetch, "max_attempts": 5
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_from_a_peer_is_refused_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(
        support::hub_config(dir.path())
            .heartbeat(Duration::from_millis(500), Duration::from_secs(3)),
    )
    .unwrap();
    let subscription = Subscription::new("web".parse().unwrap());
    let client = support::client_of(&hub);
    let mut deliveries = client.subscribe(&subscription).await.unwrap();

    let context = zmq::Context::new();
    let raw = context.socket(zmq::DEALER).unwrap();
    raw.connect(hub.endpoint()).unwrap();
    let endpoint = hub.endpoint().to_owned();
    // Malformed messages each get an ERROR (or DENIED for a bad hello).
    let raw = tokio::task::spawn_blocking(move || {
        // Of this protocol's version, so it is the name that is refused.
        let bad_name = serde_json::to_vec(&serde_json::json!({
            "version": protocol::PROTOCOL_VERSION, "name": "a b", "prefetch": 1, "max_attempts": 1
        }))
        .unwrap();
        let cases: Vec<(Vec<&[u8]>, &[u8])> = vec![
            (vec![b""], command::ERROR),
            (vec![b"GARBAGE", b"\xff\x00"], command::ERROR),
            (vec![b"HELLO"], command::ERROR),
            (vec![b"HELLO", b"{not json"], command::DENIED),
            (vec![b"HELLO", &bad_name], command::DENIED),
            (vec![b"ACK", b"12"], command::UNKNOWN),
            (vec![b"REPLAY"], command::ERROR),
            (vec![b"DEAD-LETTERS", b"../etc"], command::ERROR),
        ];
        for (frames, expected) in cases {
            let got = reply(&raw, &frames, "a malformed message");
            assert_eq!(got[0], expected, "reply to {frames:?}: {got:?}");
        }
        // Now a real consumer of "web" that takes one delivery and then
        // misbehaves until the hub drops it.
        let hello = hello("web", 1);
        assert_eq!(
            reply(&raw, &[command::HELLO, &hello], "hello")[0],
            command::WELCOME
        );
        for frames in [
            vec![&b"ACK"[..], b"not-a-number"],
            vec![b"NACK", b"1"],
            vec![b"REJECT", b"1", b"why", b"extra"],
        ] {
            assert_eq!(
                reply(&raw, &frames, "a malformed settlement")[0],
                command::ERROR
            );
        }
        (raw, endpoint)
    })
    .await
    .unwrap();
    let (raw, _endpoint) = raw;

    let published: Vec<Envelope> = (0..20).map(mail).collect();
    for envelope in &published {
        hub.publish(envelope).await.unwrap();
    }
    // The raw consumer gets (at most) one delivery, then sends a message
    // far above the hub's command limit: libzmq cuts it off, and it never
    // speaks again.
    let raw_held = tokio::task::spawn_blocking(move || {
        let held = loop {
            let got = support::recv_raw(&raw, "a delivery to the raw consumer");
            if got[0] == command::DELIVER {
                break got;
            }
        };
        let oversize = vec![b'x'; 1 << 20];
        raw.send_multipart([&b"PING"[..], &oversize], 0).unwrap();
        (raw, String::from_utf8(held[1].clone()).unwrap())
    })
    .await
    .unwrap();

    let mut received: HashMap<_, (Envelope, u32)> = HashMap::new();
    let deadline = Instant::now() + DEADLINE;
    while received.len() < published.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, deliveries.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of 20 delivered", received.len()))
            .unwrap()
            .unwrap();
        let previous = received.insert(
            delivery.envelope().id,
            (delivery.envelope().clone(), delivery.attempt()),
        );
        assert!(previous.is_none(), "delivered twice to the good consumer");
        delivery.ack().await.unwrap();
    }
    for envelope in &published {
        assert_eq!(&received[&envelope.id].0, envelope, "byte for byte");
    }
    let redelivered: Vec<u32> = received
        .values()
        .map(|(_, a)| *a)
        .filter(|a| *a > 1)
        .collect();
    assert_eq!(
        redelivered,
        vec![2],
        "the delivery the dropped raw consumer held came back once, as attempt 2 (held tag {})",
        raw_held.1
    );
    client.close().await.unwrap();
    hub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_misbehaving_hub_cannot_corrupt_deliveries() {
    let context = zmq::Context::new();
    let fake = context.socket(zmq::ROUTER).unwrap();
    fake.bind("tcp://127.0.0.1:*").unwrap();
    let endpoint = fake.get_last_endpoint().unwrap().unwrap();
    let good = mail(1);
    let good_frame = wire::to_bytes(&good);
    let good_body = good.body.to_vec();
    let fake_hub = std::thread::spawn(move || {
        let hello = support::recv_raw(&fake, "hello");
        assert_eq!(hello[1], command::HELLO);
        let peer = hello[0].clone();
        let send = |frames: Vec<Vec<u8>>| {
            let mut message = vec![peer.clone()];
            message.extend(frames);
            fake.send_multipart(message, 0).unwrap();
        };
        send(vec![
            command::WELCOME.to_vec(),
            br#"{"heartbeat_ms":1000,"timeout_ms":10000}"#.to_vec(),
        ]);
        // A delivery whose envelope is garbage: the client rejects it.
        send(vec![
            command::DELIVER.to_vec(),
            b"7".to_vec(),
            b"1".to_vec(),
            b"format-version: 1.2".to_vec(),
        ]);
        // Field frames as protocol 2 sent them: not one envelope frame,
        // so ignored.
        send(vec![
            command::DELIVER.to_vec(),
            b"9".to_vec(),
            b"1".to_vec(),
            b"format-version".to_vec(),
            b"1.2".to_vec(),
            good_body,
        ]);
        // A delivery with an unreadable tag, a short one, an unknown
        // command: ignored.
        let mut bad_tag = vec![command::DELIVER.to_vec(), b"x".to_vec(), b"1".to_vec()];
        bad_tag.push(good_frame.clone());
        send(bad_tag);
        send(vec![command::DELIVER.to_vec()]);
        send(vec![b"\x00\xffWHAT".to_vec()]);
        // Then a good one.
        let mut ok = vec![command::DELIVER.to_vec(), b"8".to_vec(), b"1".to_vec()];
        ok.push(good_frame);
        send(ok);
        let mut seen = Vec::new();
        while seen.len() < 2 {
            let got = support::recv_raw(&fake, "settlements");
            if got[1] != command::PING {
                seen.push(got[1..].to_vec());
            }
        }
        seen
    });

    let client = ZmqClient::connect(ClientConfig::new(endpoint)).unwrap();
    let mut deliveries = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await
        .unwrap();
    let delivery = tokio::time::timeout(DEADLINE, deliveries.next())
        .await
        .expect("the good delivery arrives")
        .unwrap()
        .unwrap();
    assert_eq!(delivery.envelope(), &good);
    delivery.ack().await.unwrap();
    let seen = tokio::task::spawn_blocking(move || fake_hub.join().unwrap())
        .await
        .unwrap();
    assert_eq!(seen[0][0], command::REJECT);
    assert_eq!(seen[0][1], b"7");
    assert!(String::from_utf8_lossy(&seen[0][2]).contains("malformed"));
    assert_eq!(seen[1], vec![command::ACK.to_vec(), b"8".to_vec()]);
    client.close().await.unwrap();
}

/// A hand-built envelope no reader could decode (a line break in its
/// content type, a hash or an event type of the wrong shape) is refused by
/// the hub's publish with a typed error and never journalled: the hub
/// routes on a record's header without decoding it, so such a record would
/// be delivered, rejected as malformed, and never dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_envelope_no_reader_could_decode_is_refused_at_publish() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(support::hub_config(dir.path())).unwrap();
    let mut bad: Vec<Envelope> = (0..3).map(mail).collect();
    bad[0].content_type = "message/rfc822\r\nx-injected: 1".into();
    bad[1].message_id_hash = Some("not-a-hash".into());
    bad[2].event_type = Some("Not An Event Type".into());
    for (envelope, field) in bad
        .iter()
        .zip(["content-type", "message-id-hash", "event-type"])
    {
        match hub.publish(envelope).await {
            Err(archiver_core::BackendError::Wire(wire::WireError::Invalid {
                field: got, ..
            })) => {
                assert_eq!(got, field)
            }
            other => panic!("publishing a bad {field} gave {other:?}"),
        }
    }
    let good = mail(3);
    hub.publish(&good).await.unwrap();
    let subscription =
        Subscription::new("web".parse().unwrap()).start(archiver_core::StartPosition::Beginning);
    let client = support::client_of(&hub);
    let mut deliveries = client.subscribe(&subscription).await.unwrap();
    let first = tokio::time::timeout(DEADLINE, deliveries.next())
        .await
        .expect("a delivery")
        .unwrap()
        .unwrap();
    assert_eq!(
        first.envelope(),
        &good,
        "the journal holds only the good mail"
    );
    first.ack().await.unwrap();
    client.close().await.unwrap();
    hub.close().await.unwrap();
}
