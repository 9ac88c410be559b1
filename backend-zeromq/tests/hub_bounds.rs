//! What one peer can make a hub hold, against a hub run as a child process
//! (its memory read from `/proc/<pid>/status`) and raw zmq peers: every
//! bound holds, and the hub keeps serving everyone else.
//!
//! The child is this test binary run again with `FAULT_ROLE=hub` (see
//! [`child`]): it binds a hub on `HUB_DIR` and `HUB_ENDPOINT`, prints
//! `listening`, and takes commands on stdin (`publish <count> <bytes>`,
//! `status`, `stop`), answering on stdout with lines marked `@ `.

mod support;

use std::time::{Duration, Instant};

use archiver_core::{
    ArchivedMail, Connection, Deliveries, Envelope, ListId, MailLimits, MailingList, Operator,
    Publisher, Subscriber, Subscription, wire,
};
use backend_zeromq::protocol::{self, DeadLetterMeta, command};
use backend_zeromq::{ClientConfig, HubConfig, ZmqClient, ZmqHub};
use futures::StreamExt;
use support::{Role, free_port};

const DEADLINE: Duration = Duration::from_secs(20);
const MIB: u64 = 1024;

/// A mail of about `bytes` bytes, numbered `i`.
fn mail(i: usize, bytes: usize) -> Envelope {
    let line = "x".repeat(76) + "\r\n";
    let body = line.repeat(bytes / line.len() + 1);
    let raw = format!(
        "Message-ID: <{i}.{}@bounds.example.org>\r\nSubject: {i}\r\n\r\n{body}",
        uuid::Uuid::now_v7()
    );
    let mail = ArchivedMail::parse(raw.into_bytes().into(), &MailLimits::default()).unwrap();
    Envelope::mail(
        &mail,
        &MailingList::public(ListId::new("bounds.example.org").unwrap()),
    )
}

/// A hub child on its own port in `dir`, with extra settings, listening.
async fn start_hub(dir: &std::path::Path, settings: &[(&str, String)]) -> (Role, String) {
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let mut env = vec![
        ("HUB_ENDPOINT", endpoint.clone()),
        ("HUB_DIR", dir.display().to_string()),
    ];
    env.extend(settings.iter().cloned());
    let mut hub = Role::start("hub", &env);
    assert_eq!(hub.line("hub").await.as_deref(), Some("listening"));
    (hub, endpoint)
}

/// The hub child's `status`: one `name unsettled unexamined dead held
/// error` line per queue.
async fn status(hub: &mut Role) -> Vec<Vec<String>> {
    hub.say("status");
    let mut queues = Vec::new();
    loop {
        let line = hub.line("status").await.expect("the hub runs");
        if line == "end" {
            return queues;
        }
        queues.push(line.splitn(6, ' ').map(str::to_owned).collect());
    }
}

async fn publish(hub: &mut Role, count: usize, bytes: usize) {
    hub.say(&format!("publish {count} {bytes}"));
    assert_eq!(
        hub.line("publish").await,
        Some(format!("published {count}"))
    );
}

/// A raw DEALER on the hub.
/// Receives and acks `count` deliveries of the `web` subscriber.
async fn ack_served(deliveries: &mut Deliveries, count: usize) {
    for _ in 0..count {
        let delivery = tokio::time::timeout(DEADLINE, deliveries.next())
            .await
            .expect("web is served")
            .unwrap()
            .unwrap();
        delivery.ack().await.unwrap();
    }
}

fn raw_peer(context: &zmq::Context, endpoint: &str) -> zmq::Socket {
    let socket = context.socket(zmq::DEALER).unwrap();
    socket.set_linger(0).unwrap();
    socket.connect(endpoint).unwrap();
    socket
}

/// The next message on a raw socket other than a PING, within `DEADLINE`.
fn recv(socket: &zmq::Socket, what: &str) -> Vec<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            socket.poll(zmq::POLLIN, left.as_millis() as i64).unwrap() > 0,
            "{what}: nothing received within {DEADLINE:?}"
        );
        let got = socket.recv_multipart(0).unwrap();
        if got[0] != command::PING {
            return got;
        }
    }
}

fn hello(name: &str, lists: &[String], prefetch: u16, max_attempts: u32) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "version": protocol::PROTOCOL_VERSION, "name": name, "lists": lists, "prefetch": prefetch,
        "max_attempts": max_attempts, "start": "beginning"
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtracking_patterns_are_refused_and_a_stored_one_selects_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let four_hundred = vec!["#"; 400].join(".");
    // Saved by a hub from before the caps.
    std::fs::write(
        dir.path().join("subscribers.json"),
        serde_json::json!({"old": {"lists": [four_hundred], "kind": null, "max_attempts": 5}})
            .to_string(),
    )
    .unwrap();
    let (mut hub, endpoint) = start_hub(dir.path(), &[]).await;

    let context = zmq::Context::new();
    let greedy = raw_peer(&context, &endpoint);
    greedy
        .send_multipart([command::HELLO, &hello("greedy", &[four_hundred], 1, 5)], 0)
        .unwrap();
    let answer = recv(&greedy, "hello with 400 `#`");
    assert_eq!(
        String::from_utf8_lossy(&answer[0]),
        "DENIED",
        "the 400-`#` hello is refused: {:?}",
        String::from_utf8_lossy(answer.get(1).map_or(&[][..], |r| r))
    );
    assert!(String::from_utf8_lossy(&answer[1]).contains("more than 32 labels"));

    // Everyone else is served while the stored one matches nothing.
    let client = ZmqClient::connect(ClientConfig::new(&endpoint)).unwrap();
    let mut deliveries = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await
        .unwrap();
    publish(&mut hub, 3, 100).await;
    ack_served(&mut deliveries, 3).await;
    let queues = status(&mut hub).await;
    let old = queues
        .iter()
        .find(|q| q[0] == "old")
        .expect("old is listed");
    assert_eq!(old[1], "0", "old holds nothing: {old:?}");
    assert!(
        old[5].contains("more than 32 labels"),
        "old reports why: {old:?}"
    );
    assert!(!queues.iter().any(|q| q[0] == "greedy"), "{queues:?}");
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nack_delays_are_capped_and_held_deliveries_expire_to_the_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("HUB_MAX_NACK_DELAY_MS", "300".to_owned()),
        ("HUB_ACK_DEADLINE_MS", "1000".to_owned()),
    ];
    let (mut hub, endpoint) = start_hub(dir.path(), &settings).await;
    let context = zmq::Context::new();
    let peer = raw_peer(&context, &endpoint);
    peer.send_multipart([command::HELLO, &hello("slow", &[], 1, 3)], 0)
        .unwrap();
    assert_eq!(recv(&peer, "welcome")[0], command::WELCOME);
    publish(&mut hub, 1, 100).await;

    let first = recv(&peer, "first delivery");
    assert_eq!(
        (&first[0][..], &first[2][..]),
        (command::DELIVER, &b"1"[..])
    );
    peer.send_multipart([command::NACK, &first[1], b"18446744073709551615"], 0)
        .unwrap();
    let second = recv(&peer, "the nacked delivery, after the capped delay");
    assert_eq!((&second[1], &second[2][..]), (&first[1], &b"2"[..]));

    // Now it pings and never settles: the deadline takes the delivery back,
    // as attempt 3, then to the dead letters.
    let deadline = Instant::now() + DEADLINE;
    let mut third = None;
    loop {
        assert!(Instant::now() < deadline, "held past the ack deadline");
        peer.send(command::PING, 0).unwrap();
        if peer.poll(zmq::POLLIN, 100).unwrap() > 0 {
            let got = peer.recv_multipart(0).unwrap();
            if got[0] == command::DELIVER {
                third = Some(got[2].clone());
            }
        }
        let queues = status(&mut hub).await;
        if queues[0][3] == "1" {
            assert_eq!(queues[0][1], "0", "{queues:?}");
            break;
        }
    }
    assert_eq!(
        third.as_deref(),
        Some(&b"3"[..]),
        "redelivered once expired"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_counted_without_reading_them_and_listed_in_pages() {
    const LETTERS: usize = 40;
    const BYTES: usize = 2 << 20;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("subscribers.json"),
        serde_json::json!({"web": {"lists": [], "kind": null, "max_attempts": 5}}).to_string(),
    )
    .unwrap();
    let letters = dir.path().join("dead-letters/web");
    std::fs::create_dir_all(&letters).unwrap();
    let envelope = mail(0, BYTES);
    let mut ids = Vec::new();
    for seq in 0..LETTERS {
        let mut envelope = envelope.clone();
        envelope.id = archiver_core::EnvelopeId::new();
        let meta = DeadLetterMeta {
            attempts: 5,
            reason: "broken".into(),
            dead_at: chrono::Utc::now(),
        };
        let mut bytes = serde_json::to_vec(&meta).unwrap();
        bytes.push(b'\n');
        bytes.extend_from_slice(&wire::to_bytes(&envelope));
        std::fs::write(
            letters.join(format!("{seq:020}-{}.dead", envelope.id)),
            bytes,
        )
        .unwrap();
        ids.push(envelope.id);
    }
    let (mut hub, endpoint) = start_hub(dir.path(), &[]).await;
    let baseline = hub.memory_kib("VmHWM");

    let queues = status(&mut hub).await;
    assert_eq!(queues[0][3], LETTERS.to_string());
    let after_status = hub.memory_kib("VmHWM");
    eprintln!("status: hub VmHWM {baseline} KiB -> {after_status} KiB");
    assert!(
        after_status < baseline + 10 * MIB,
        "counting {LETTERS} dead letters of 2 MiB read them: VmHWM {baseline} -> {after_status} KiB"
    );

    let client = ZmqClient::connect(ClientConfig::new(&endpoint)).unwrap();
    let listed = client.dead_letters(&"web".parse().unwrap()).await.unwrap();
    let after_listing = hub.memory_kib("VmHWM");
    eprintln!("listing: hub VmHWM {baseline} KiB -> {after_listing} KiB");
    assert_eq!(
        listed.iter().map(|l| l.envelope.id).collect::<Vec<_>>(),
        ids
    );
    assert!(listed.iter().all(|l| l.envelope.body == envelope.body));
    assert!(
        after_listing < baseline + 40 * MIB,
        "listing {LETTERS} dead letters of 2 MiB held them all: VmHWM {baseline} -> {after_listing} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_reads_costs_the_hub_at_most_its_byte_bound() {
    const BOUND: u64 = 4 << 20;
    const PEERS: usize = 3;
    let dir = tempfile::tempdir().unwrap();
    let settings = [("HUB_MAX_UNACKED_BYTES", BOUND.to_string())];
    let (mut hub, endpoint) = start_hub(dir.path(), &settings).await;
    publish(&mut hub, 40, 1 << 20).await;
    let baseline = hub.memory_kib("VmHWM");

    // The audit's peers: the most credit a hello can ask for, and sockets
    // that take one message in and then read nothing more.
    let context = zmq::Context::new();
    let peers: Vec<zmq::Socket> = (0..PEERS)
        .map(|i| {
            let socket = context.socket(zmq::DEALER).unwrap();
            socket.set_rcvhwm(1).unwrap();
            socket.set_rcvbuf(4096).unwrap();
            socket.set_linger(0).unwrap();
            socket.connect(&endpoint).unwrap();
            socket
                .send_multipart(
                    [
                        command::HELLO,
                        &hello(&format!("never-reads-{i}"), &[], u16::MAX, 5),
                    ],
                    0,
                )
                .unwrap();
            assert_eq!(recv(&socket, "welcome")[0], command::WELCOME);
            socket
        })
        .collect();
    // Two status round trips: the hub has delivered what it will on the
    // hellos (it delivers after reading them, before the next command).
    status(&mut hub).await;
    let queues = status(&mut hub).await;
    let peak = hub.memory_kib("VmHWM");
    eprintln!(
        "{PEERS} peers that never read, 40 MiB journal: hub VmHWM {baseline} KiB -> {peak} KiB; {queues:?}"
    );
    // Each holds what its byte bound allows (1 MiB envelopes, at least
    // the bound and at most one envelope over it), so the bound was
    // reached and applied, not merely unreached.
    let envelopes = (BOUND >> 20) as usize;
    assert_eq!(queues.len(), PEERS, "{queues:?}");
    for queue in &queues {
        let held: usize = queue[4].parse().unwrap();
        assert!(
            (envelopes..=envelopes + 1).contains(&held),
            "{} holds {held} deliveries of 1 MiB with a {} KiB bound: {queues:?}",
            queue[0],
            BOUND / 1024
        );
    }
    assert!(
        peak < baseline + PEERS as u64 * BOUND / 1024 + 20 * MIB,
        "{PEERS} peers that never read grew the hub from {baseline} KiB to {peak} KiB (bound {} KiB each)",
        BOUND / 1024
    );
    drop(peers);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_deliveries_to_a_peer_that_never_reads_stay_charged_to_its_connection() {
    const BOUND: u64 = 1 << 20;
    const ENVELOPE: usize = 256 << 10;
    const ROUNDS: u32 = 15;
    let ack_deadline = Duration::from_millis(200);
    let dir = tempfile::tempdir().unwrap();
    let settings = [
        ("HUB_MAX_UNACKED_BYTES", BOUND.to_string()),
        ("HUB_ACK_DEADLINE_MS", ack_deadline.as_millis().to_string()),
        ("HUB_HEARTBEAT_MS", "50".to_owned()),
    ];
    let (mut hub, endpoint) = start_hub(dir.path(), &settings).await;
    publish(&mut hub, 40, ENVELOPE).await;
    let baseline = hub.memory_kib("VmHWM");

    let context = zmq::Context::new();
    let peer = context.socket(zmq::DEALER).unwrap();
    peer.set_rcvhwm(1).unwrap();
    peer.set_rcvbuf(4096).unwrap();
    peer.set_linger(0).unwrap();
    peer.connect(&endpoint).unwrap();
    peer.send_multipart(
        [command::HELLO, &hello("pings-only", &[], u16::MAX, 1000)],
        0,
    )
    .unwrap();
    assert_eq!(recv(&peer, "welcome")[0], command::WELCOME);
    // It pings through several ack deadlines and reads nothing.
    let until = Instant::now() + ack_deadline * ROUNDS;
    while Instant::now() < until {
        peer.send(command::PING, 0).unwrap();
        status(&mut hub).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let peak = hub.memory_kib("VmHWM");
    eprintln!(
        "{ROUNDS} ack deadlines of a peer that pings and never reads: hub VmHWM {baseline} KiB -> {peak} KiB"
    );
    assert!(
        peak < baseline + BOUND / 1024 + 8 * MIB,
        "a peer that never reads grew the hub from {baseline} KiB to {peak} KiB over {ROUNDS} ack deadlines (bound {} KiB)",
        BOUND / 1024
    );
    // Now it reads what was sent to it, settling nothing: that is every
    // delivery the hub queued for it (none more come while it settles nothing).
    let mut delivered = 0;
    // Done once no delivery has come for a few deadlines (PINGs go on).
    let quiet = ack_deadline * 4;
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        let left = quiet.saturating_sub(last.elapsed());
        if peer.poll(zmq::POLLIN, left.as_millis() as i64).unwrap() == 0 {
            continue;
        }
        if peer.recv_multipart(0).unwrap()[0] == command::DELIVER {
            delivered += 1;
            last = Instant::now();
        }
        assert!(
            delivered <= 100,
            "over 100 deliveries of {ENVELOPE} bytes to one connection with a {BOUND}-byte bound"
        );
    }
    eprintln!("{delivered} deliveries sent to it");
    let most = (BOUND as usize).div_ceil(ENVELOPE) + 1;
    assert!(
        delivered <= most,
        "{delivered} deliveries sent to one connection, more than its bound allows ({most})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_multipart_command_is_dropped_frame_by_frame_while_others_are_served() {
    const FRAMES: usize = 1500;
    const FRAME: usize = 60_000;
    let dir = tempfile::tempdir().unwrap();
    let (mut hub, endpoint) = start_hub(dir.path(), &[]).await;
    let client = ZmqClient::connect(ClientConfig::new(&endpoint)).unwrap();
    let mut deliveries = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await
        .unwrap();
    let baseline = hub.memory_kib("VmHWM");

    let context = zmq::Context::new();
    let peer = raw_peer(&context, &endpoint);
    let sender = std::thread::spawn(move || {
        let frame = vec![b'x'; FRAME];
        peer.send(command::DEAD_LETTERS, zmq::SNDMORE).unwrap();
        for i in 0..FRAMES {
            let more = if i + 1 < FRAMES { zmq::SNDMORE } else { 0 };
            peer.send(&frame[..], more).unwrap();
        }
        recv(&peer, "the reply to the huge command")
    });
    publish(&mut hub, 3, 100).await;
    ack_served(&mut deliveries, 3).await;
    let reply = sender.join().unwrap();
    assert_eq!(reply[0], command::ERROR);
    let peak = hub.memory_kib("VmHWM");
    let size = (FRAMES * FRAME) as u64 / 1024;
    eprintln!("a {size} KiB message: hub VmHWM {baseline} KiB -> {peak} KiB");
    assert!(
        peak < baseline + size + 10 * MIB,
        "a {size} KiB message took the hub from {baseline} KiB to {peak} KiB: more than one copy"
    );
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_subscribers_are_listed_with_what_they_pin_and_can_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(support::hub_config(dir.path())).unwrap();
    let context = zmq::Context::new();
    let peer = raw_peer(&context, hub.endpoint());
    for i in 0..30 {
        peer.send_multipart([command::HELLO, &hello(&format!("n{i}"), &[], 1, 5)], 0)
            .unwrap();
        assert_eq!(recv(&peer, "welcome")[0], command::WELCOME);
    }
    drop(peer);
    for i in 0..5 {
        hub.publish(&mail(i, 100)).await.unwrap();
    }
    let queues = hub.status().await.unwrap();
    assert_eq!(queues.len(), 30, "30 hellos, 30 subscribers");
    assert!(
        queues
            .iter()
            .all(|q| q.pinned_from == 0 && q.floor_moved_at <= chrono::Utc::now()),
        "each pins the journal from its start: {:?}",
        queues[0]
    );
    for queue in &queues {
        hub.delete_subscriber(&queue.name).await.unwrap();
    }
    assert!(hub.status().await.unwrap().is_empty());
    hub.delete_subscriber(&"n0".parse().unwrap()).await.unwrap();
    // A name said again starts afresh (from the start asked for), with no
    // memory of the deleted queue.
    let client = support::client_of(&hub);
    let mut deliveries = client
        .subscribe(&Subscription::new("n0".parse().unwrap()))
        .await
        .unwrap();
    let ninth = mail(9, 100);
    hub.publish(&ninth).await.unwrap();
    let delivery = tokio::time::timeout(DEADLINE, deliveries.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(
        delivery.envelope(),
        &ninth,
        "not one of the deleted queue's"
    );
    assert_eq!(hub.status().await.unwrap().len(), 1);
    client.close().await.unwrap();
    hub.close().await.unwrap();
}

/// The child role (each line it prints starts with `@ `); a no-op when run
/// as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(role) = std::env::var("FAULT_ROLE") else {
        return;
    };
    assert_eq!(role, "hub");
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let var = |name: &str| std::env::var(name).ok();
    let config =
        HubConfig::new(var("HUB_ENDPOINT").unwrap(), var("HUB_DIR").unwrap()).allow_anonymous();
    let hub = ZmqHub::bind(configure(config, var)).unwrap();
    println!("@ listening");
    let mut i = 0;
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words[..] {
            ["publish", count, bytes] => {
                let (count, bytes): (usize, usize) =
                    (count.parse().unwrap(), bytes.parse().unwrap());
                for _ in 0..count {
                    hub.publish(&mail(i, bytes)).await.unwrap();
                    i += 1;
                }
                println!("@ published {count}");
            }
            ["status"] => {
                for q in hub.status().await.unwrap() {
                    println!(
                        "@ {} {} {} {} {} {}",
                        q.name,
                        q.unsettled,
                        q.unexamined,
                        q.dead_letters,
                        q.held,
                        q.error.unwrap_or_default()
                    );
                }
                println!("@ end");
            }
            _ => break,
        }
    }
    hub.close().await.unwrap();
}

/// The hub's settings from the child's environment.
fn configure(config: HubConfig, var: impl Fn(&str) -> Option<String>) -> HubConfig {
    let ms = |name: &str| var(name).map(|v| Duration::from_millis(v.parse().unwrap()));
    let mut config = config;
    if let Some(delay) = ms("HUB_MAX_NACK_DELAY_MS") {
        config = config.max_nack_delay(delay);
    }
    if let Some(deadline) = ms("HUB_ACK_DEADLINE_MS") {
        config = config.ack_deadline(deadline);
    }
    if let Some(every) = ms("HUB_HEARTBEAT_MS") {
        config = config.heartbeat(every, Duration::from_secs(30));
    }
    if let Some(bytes) = var("HUB_MAX_UNACKED_BYTES") {
        config = config.max_unacked_bytes(bytes.parse().unwrap());
    }
    config
}
