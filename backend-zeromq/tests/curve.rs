//! CURVE on a real hub: a corpus run through TCP relays that record the
//! traffic of the router and of the live tail carries no Message-ID and no
//! body line of any mail, while the
//! same run over PLAIN carries them all (so the check can fail); a wrong
//! hub key, an unknown client key and a revoked key each get their own
//! typed error while the others keep receiving; a revoked principal's
//! queue stays; a raw pyzmq peer with an unknown key is refused.

mod support;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use archiver_core::conformance::faults::corpus_envelopes;
use archiver_core::conformance::fixtures::{next_delivery, small_mail};
use archiver_core::conformance::interop::python_with;
use archiver_core::{
    BackendError, Connection, Envelope, Grant, ListId, MailingList, Operator, Publisher, Selection,
    Subscriber, SubscriberName, Subscription,
};
use backend_zeromq::{
    Allowed, ClientConfig, Credentials, CurveKeyPair, HubConfig, Login, ZmqClient, ZmqHub,
    full_access,
};
use futures::StreamExt;

/// How long a test waits for an envelope or an error.
const WAIT: Duration = Duration::from_secs(20);

/// The connect timeout of the clients: each refusal must come before it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A TCP relay between clients and a hub, recording every byte both ways,
/// each direction of each connection on its own (interleaved, a line
/// could be cut by bytes of the other direction).
struct Relay {
    endpoint: String,
    streams: Streams,
    /// The client side of every connection relayed so far.
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// How many of the next connections to cut as soon as their first
    /// bytes come (mid-handshake).
    cut: Arc<std::sync::atomic::AtomicUsize>,
}

/// What each direction of each relayed connection carried.
type Streams = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

impl Relay {
    /// What each direction of each connection carried so far.
    fn capture(&self) -> Vec<Vec<u8>> {
        let streams = self.streams.lock().unwrap();
        streams.iter().map(|s| s.lock().unwrap().clone()).collect()
    }

    /// Closes every relayed connection, as a hub restarting does, and
    /// cuts the next `cut` connections mid-handshake.
    fn restart(&self, cut: usize) {
        self.cut.store(cut, std::sync::atomic::Ordering::SeqCst);
        for stream in self.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Relays `tcp://127.0.0.1:PORT` connections to `upstream` (a hub's
/// endpoint); the threads live as long as the test binary.
fn relay(upstream: &str) -> Relay {
    let upstream = upstream.trim_start_matches("tcp://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("tcp://{}", listener.local_addr().unwrap());
    let streams: Streams = Arc::default();
    let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
    let cut: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
    let (registry, opened, cutting) = (Arc::clone(&streams), Arc::clone(&open), Arc::clone(&cut));
    std::thread::spawn(move || {
        for mut client in listener.incoming().map_while(Result::ok) {
            let to_cut = cutting.load(std::sync::atomic::Ordering::SeqCst);
            if to_cut > 0 {
                cutting.store(to_cut - 1, std::sync::atomic::Ordering::SeqCst);
                let _ = client.read(&mut [0; 64]);
                let _ = client.shutdown(Shutdown::Both);
                continue;
            }
            let Ok(hub) = TcpStream::connect(&upstream) else {
                continue;
            };
            opened.lock().unwrap().push(client.try_clone().unwrap());
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), hub.try_clone().unwrap()),
                (hub, client),
            ] {
                let recording = Arc::new(Mutex::new(Vec::new()));
                registry.lock().unwrap().push(Arc::clone(&recording));
                std::thread::spawn(move || {
                    let mut buffer = vec![0; 64 * 1024];
                    while let Ok(n @ 1..) = from.read(&mut buffer) {
                        recording.lock().unwrap().extend_from_slice(&buffer[..n]);
                        if to.write_all(&buffer[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = to.shutdown(Shutdown::Both);
                });
            }
        }
    });
    Relay {
        endpoint,
        streams,
        open,
        cut,
    }
}

/// The mechanism of a run.
#[derive(Clone, Copy, Debug)]
enum Mechanism {
    Plain,
    Curve,
}

/// Publishes the corpus through a hub, consumes it through a relay over
/// `mechanism`, checks it arrived byte for byte, and returns the relay's
/// capture with what was published; None without the corpus.
async fn corpus_run(mechanism: Mechanism) -> Option<(Vec<Vec<u8>>, Vec<Envelope>)> {
    let envelopes = corpus_envelopes(576)?;
    let dir = tempfile::tempdir().unwrap();
    let config = HubConfig::new("tcp://127.0.0.1:*", dir.path()).tail("tcp://127.0.0.1:*");
    let (config, client) = match mechanism {
        Mechanism::Plain => {
            let credentials = Credentials::new("web", "pw-web");
            (
                config.allow(credentials.clone(), full_access("web")),
                ClientConfig::new("").credentials(credentials),
            )
        }
        Mechanism::Curve => {
            let (hub_keys, web_keys) = (
                CurveKeyPair::generate().unwrap(),
                CurveKeyPair::generate().unwrap(),
            );
            (
                config
                    .curve(hub_keys.clone())
                    .allow_key(web_keys.public, full_access("web")),
                ClientConfig::new("").curve(hub_keys.public, web_keys),
            )
        }
    };
    let hub = ZmqHub::bind(config).unwrap();
    // The router and the live tail, each through its own relay.
    let (relay, tail_relay) = (relay(hub.endpoint()), relay(hub.tail_endpoint().unwrap()));
    let client = ZmqClient::connect(ClientConfig {
        endpoints: vec![relay.endpoint.clone()],
        tail_endpoints: vec![tail_relay.endpoint.clone()],
        ..client
    })
    .unwrap();
    let mut tailed = client.tail(&Selection::all()).await.unwrap();
    let mut deliveries = client
        .subscribe(&Subscription::new("web".parse().unwrap()).prefetch(64))
        .await
        .unwrap();
    for envelope in &envelopes {
        hub.publish(envelope).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < envelopes.len() {
        let delivery = next_delivery(&mut deliveries).await;
        got.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, envelopes, "{mechanism:?}: the corpus, byte for byte");
    // The tail carries the mail of public lists, in order.
    let public = Grant::new("tail").lists("#".parse().unwrap());
    let expected: Vec<&Envelope> = envelopes.iter().filter(|e| public.may_receive(e)).collect();
    assert!(!expected.is_empty(), "the corpus has public lists");
    for want in expected {
        let on_tail = tokio::time::timeout(WAIT, tailed.next()).await;
        assert_eq!(
            &on_tail.unwrap().unwrap().unwrap(),
            want,
            "{mechanism:?}: the tail"
        );
    }
    client.close().await.unwrap();
    hub.close().await.unwrap();
    let (mut capture, tail_capture) = (relay.capture(), tail_relay.capture());
    if let Mechanism::Plain = mechanism {
        // The tail's own streams can show mail too (so checking them can fail).
        let (ids, _) = secrets(&envelopes);
        assert!(
            !found(&tail_capture, &ids).is_empty(),
            "PLAIN tail in clear"
        );
    }
    capture.extend(tail_capture);
    Some((capture, envelopes))
}

/// Each mail's Message-ID header line and its body lines of at least 12
/// bytes (a shorter one could turn up in any ciphertext by chance), each
/// distinct text once.
fn secrets(envelopes: &[Envelope]) -> (Vec<&[u8]>, Vec<&[u8]>) {
    let (mut ids, mut lines) = (Vec::new(), Vec::new());
    for envelope in envelopes {
        let mut in_headers = true;
        for line in envelope.body.split(|b| *b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.is_empty() {
                in_headers = false;
            }
            if in_headers && line.len() > 11 && line[..11].eq_ignore_ascii_case(b"message-id:") {
                ids.push(line);
            } else if !in_headers && line.len() >= 12 {
                lines.push(line);
            }
        }
    }
    for texts in [&mut ids, &mut lines] {
        texts.sort_unstable();
        texts.dedup();
    }
    (ids, lines)
}

/// The needles that occur in any stream of the capture.
fn found<'a>(capture: &[Vec<u8>], needles: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let mut found: Vec<&[u8]> = capture
        .iter()
        .flat_map(|stream| found_in(stream, needles))
        .collect();
    found.sort_unstable();
    found.dedup();
    found
}

/// The needles that occur in one stream, found through a sorted index of
/// its 8-byte windows (a plain search of each would take minutes here).
fn found_in<'a>(capture: &[u8], needles: &[&'a [u8]]) -> Vec<&'a [u8]> {
    let key = |bytes: &[u8]| u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let mut index: Vec<(u64, usize)> = capture
        .windows(8)
        .enumerate()
        .map(|(at, window)| (key(window), at))
        .collect();
    index.sort_unstable();
    needles
        .iter()
        .copied()
        .filter(|needle| {
            let first = index.partition_point(|(k, _)| *k < key(needle));
            index[first..]
                .iter()
                .take_while(|(k, _)| *k == key(needle))
                .any(|(_, at)| capture[*at..].starts_with(needle))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corpus_run_over_curve_shows_no_mail_on_the_wire_and_over_plain_all_of_it() {
    let Some((plain, envelopes)) = corpus_run(Mechanism::Plain).await else {
        return;
    };
    let (ids, lines) = secrets(&envelopes);
    assert!(
        ids.len() >= envelopes.len() / 2,
        "the corpus has Message-IDs"
    );
    // The check can fail: over PLAIN, every mail is readable on the wire.
    let plain_ids = found(&plain, &ids);
    let plain_lines = found(&plain, &lines);
    eprintln!(
        "PLAIN capture: {} streams, {} bytes, {} of {} Message-ID lines and {} of {} body lines in clear",
        plain.len(),
        plain.iter().map(Vec::len).sum::<usize>(),
        plain_ids.len(),
        ids.len(),
        plain_lines.len(),
        lines.len()
    );
    assert_eq!(plain_ids.len(), ids.len());
    assert_eq!(plain_lines.len(), lines.len());

    let (curve, _) = corpus_run(Mechanism::Curve).await.unwrap();
    let leaked_ids = found(&curve, &ids);
    let leaked_lines = found(&curve, &lines);
    eprintln!(
        "CURVE capture: {} streams, {} bytes, {} Message-ID lines and {} body lines in clear",
        curve.len(),
        curve.iter().map(Vec::len).sum::<usize>(),
        leaked_ids.len(),
        leaked_lines.len()
    );
    assert!(
        curve.iter().map(Vec::len).sum::<usize>()
            >= envelopes.iter().map(|e| e.body.len()).sum::<usize>(),
        "the CURVE capture holds the whole run"
    );
    assert!(
        leaked_ids.is_empty() && leaked_lines.is_empty(),
        "over CURVE, {} Message-ID lines and {} body lines crossed the wire in clear, e.g. {:?}",
        leaked_ids.len(),
        leaked_lines.len(),
        leaked_ids
            .first()
            .or(leaked_lines.first())
            .map(|l| String::from_utf8_lossy(l))
    );
}

/// A CURVE hub with two principals, `web` and `other`, each its own name
/// and every list.
struct Keys {
    hub: CurveKeyPair,
    web: CurveKeyPair,
    other: CurveKeyPair,
}

fn grant(principal: &str) -> Grant {
    Grant::new(principal)
        .subscriber(principal.parse().unwrap())
        .lists("#".parse().unwrap())
}

fn allowlist(keys: &Keys, principals: &[&str]) -> Vec<Allowed> {
    principals
        .iter()
        .map(|p| Allowed {
            login: Login::Curve(if *p == "web" {
                keys.web.public
            } else {
                keys.other.public
            }),
            grant: grant(p),
        })
        .collect()
}

fn curve_client(hub: &ZmqHub, server: &CurveKeyPair, own: &CurveKeyPair) -> ZmqClient {
    let mut config = ClientConfig::new(hub.endpoint())
        .curve(server.public, own.clone())
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(tail) = hub.tail_endpoint() {
        config = config.tail(tail);
    }
    ZmqClient::connect(config).unwrap()
}

/// A CURVE hub bound in `dir` (with a live tail when `tail`) that allows
/// the one key `client` with `grant`, and the hub's key pair.
fn curve_hub(
    dir: &std::path::Path,
    tail: bool,
    client: &CurveKeyPair,
    grant: Grant,
) -> (ZmqHub, CurveKeyPair) {
    let keys = CurveKeyPair::generate().unwrap();
    let mut config = HubConfig::new("tcp://127.0.0.1:*", dir)
        .curve(keys.clone())
        .allow_key(client.public, grant);
    if tail {
        config = config.tail("tcp://127.0.0.1:*");
    }
    (ZmqHub::bind(config).unwrap(), keys)
}

/// Replaces the hub's allowlist by the one key `new` with `grant`: a
/// principal's key rotated, its old key stolen.
async fn rotate(hub: &ZmqHub, new: &CurveKeyPair, grant: Grant) {
    hub.reload_allowlist(vec![Allowed {
        login: Login::Curve(new.public),
        grant,
    }])
    .await
    .unwrap();
}

/// Fails unless `result` is `Auth` naming `naming`, before the connect
/// timeout.
fn refused<T>(result: Result<T, BackendError>, started: Instant, naming: &str) {
    match result {
        Err(BackendError::Auth(why)) => {
            assert!(why.contains(naming), "{why:?} should name {naming:?}");
            assert!(
                started.elapsed() < CONNECT_TIMEOUT,
                "refused only after {:?}",
                started.elapsed()
            );
        }
        Err(other) => panic!("expected Auth naming {naming:?}, got {other:?}"),
        Ok(_) => panic!("expected Auth naming {naming:?}, got Ok"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_hub_key_unknown_client_key_and_revoked_key_each_get_their_error() {
    let keys = Keys {
        hub: CurveKeyPair::generate().unwrap(),
        web: CurveKeyPair::generate().unwrap(),
        other: CurveKeyPair::generate().unwrap(),
    };
    let dir = tempfile::tempdir().unwrap();
    let mut config = HubConfig::new("tcp://127.0.0.1:*", dir.path())
        .tail("tcp://127.0.0.1:*")
        .curve(keys.hub.clone());
    config.allowed = allowlist(&keys, &["web", "other"]);
    let hub = ZmqHub::bind(config).unwrap();
    let list = MailingList::public(ListId::new("curve.example.org").unwrap());
    let web_name: SubscriberName = "web".parse().unwrap();
    let other_name: SubscriberName = "other".parse().unwrap();

    let web = curve_client(&hub, &keys.hub, &keys.web);
    let mut web_tail = web.tail(&Selection::all()).await.unwrap();
    let mut web_queue = web
        .subscribe(&Subscription::new(web_name.clone()))
        .await
        .unwrap();
    let other = curve_client(&hub, &keys.hub, &keys.other);
    let mut other_tail = other.tail(&Selection::all()).await.unwrap();
    let mut other_queue = other
        .subscribe(&Subscription::new(other_name))
        .await
        .unwrap();

    // A hub that does not hold the secret half of the key the client
    // checks it by (an impostor, or a wrong key configured).
    let impostor = CurveKeyPair::generate().unwrap();
    let wrong_hub = curve_client(&hub, &impostor, &keys.web);
    let started = Instant::now();
    refused(
        wrong_hub
            .subscribe(&Subscription::new(web_name.clone()))
            .await,
        started,
        "wrong hub key",
    );
    let started = Instant::now();
    refused(
        wrong_hub.dead_letters(&web_name).await,
        started,
        "wrong hub key",
    );
    let stranger = curve_client(&hub, &keys.hub, &CurveKeyPair::generate().unwrap());
    let started = Instant::now();
    refused(
        stranger
            .subscribe(&Subscription::new(web_name.clone()))
            .await,
        started,
        "unknown client key",
    );

    let first = small_mail(&list, "curve.example.org");
    hub.publish(&first).await.unwrap();
    for queue in [&mut web_queue, &mut other_queue] {
        let delivery = next_delivery(queue).await;
        assert_eq!(delivery.envelope(), &first);
        delivery.ack().await.unwrap();
    }

    // Revoke web: its live subscription ends with Forbidden, a new
    // handshake with its key is refused, other keeps receiving.
    hub.reload_allowlist(allowlist(&keys, &["other"]))
        .await
        .unwrap();
    match tokio::time::timeout(WAIT, web_queue.next()).await {
        Ok(Some(Err(BackendError::Forbidden(why)))) => {
            assert!(why.contains("revoked"), "{why}")
        }
        other => panic!("the revoked subscription should end with Forbidden, got {other:?}"),
    }
    let started = Instant::now();
    refused(
        curve_client(&hub, &keys.hub, &keys.web)
            .subscribe(&Subscription::new(web_name.clone()))
            .await,
        started,
        "unknown client key",
    );
    // The tail's peers were disconnected: web's cannot come back, other's
    // does (mail published while it reconnects is not on its tail, as
    // after any reconnection of a tail).
    loop {
        match tokio::time::timeout(WAIT, web_tail.next()).await {
            // Tailed before the reload.
            Ok(Some(Ok(tailed))) => assert_eq!(tailed, first),
            Ok(Some(Err(BackendError::Auth(why)))) => {
                assert!(why.contains("unknown client key"), "{why}");
                break;
            }
            other => panic!("the revoked tail should end with Auth, got {other:?}"),
        }
    }
    let mut queued = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "other's tail never came back");
        let marker = small_mail(&list, "curve.example.org");
        hub.publish(&marker).await.unwrap();
        queued.push(marker.clone());
        if let Ok(Some(tailed)) =
            tokio::time::timeout(Duration::from_millis(200), other_tail.next()).await
        {
            let tailed = tailed.unwrap();
            if tailed != first {
                assert!(queued.contains(&tailed));
                break;
            }
        }
    }
    for expected in &queued {
        let delivery = next_delivery(&mut other_queue).await;
        assert_eq!(delivery.envelope(), expected);
        delivery.ack().await.unwrap();
    }

    // The revoked principal's queue stays and keeps what it selects, for
    // when it is granted back (or an operator deletes it).
    let status = hub.status().await.unwrap();
    let kept = status.iter().find(|q| q.name == web_name).unwrap();
    assert_eq!(kept.connections, 0);
    assert!(!kept.is_drained(), "{kept:?}");
    hub.reload_allowlist(allowlist(&keys, &["web", "other"]))
        .await
        .unwrap();
    let back = curve_client(&hub, &keys.hub, &keys.web);
    let mut back_queue = back
        .subscribe(&Subscription::new(web_name.clone()))
        .await
        .unwrap();
    // `first` again if web's ack had not reached the hub when its
    // connection was dropped (at least once), then the rest in order.
    let mut resumed = Vec::new();
    while resumed.len() < queued.len() {
        let delivery = next_delivery(&mut back_queue).await;
        if delivery.envelope() != &first || !resumed.is_empty() {
            resumed.push(delivery.envelope().clone());
        }
        delivery.ack().await.unwrap();
    }
    assert_eq!(resumed, queued);

    for client in [web, other, back, wrong_hub, stranger] {
        client.close().await.unwrap();
    }
    hub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnection_cut_mid_handshake_is_retried_not_taken_for_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let web = CurveKeyPair::generate().unwrap();
    let (hub, hub_keys) = curve_hub(dir.path(), true, &web, full_access("web"));
    let (router, tail) = (relay(hub.endpoint()), relay(hub.tail_endpoint().unwrap()));
    let client = ZmqClient::connect(
        ClientConfig::new(&router.endpoint)
            .tail(&tail.endpoint)
            .curve(hub_keys.public, web)
            .connect_timeout(CONNECT_TIMEOUT),
    )
    .unwrap();
    let mut tailed = client.tail(&Selection::all()).await.unwrap();
    let mut queue = client
        .subscribe(&Subscription::new("web".parse().unwrap()))
        .await
        .unwrap();
    let list = MailingList::public(ListId::new("curve.example.org").unwrap());
    // As a hub restart (or a tail rebind) does: the connections close and
    // the first reconnection is cut mid-handshake; the next goes through.
    router.restart(1);
    tail.restart(1);
    // Mail published while the tail reconnects is not on it: publish
    // until one is; the queue gets every one.
    let mut published = Vec::new();
    let deadline = Instant::now() + WAIT;
    loop {
        assert!(Instant::now() < deadline, "the tail never came back");
        let mail = small_mail(&list, "curve.example.org");
        hub.publish(&mail).await.unwrap();
        published.push(mail);
        match tokio::time::timeout(Duration::from_millis(200), tailed.next()).await {
            Ok(Some(tailed)) => {
                assert!(published.contains(&tailed.unwrap()));
                break;
            }
            Ok(None) => panic!("the tail ended"),
            Err(_) => {}
        }
    }
    let mut got = Vec::new();
    while got.len() < published.len() {
        let delivery = next_delivery(&mut queue).await;
        if !got.contains(delivery.envelope()) {
            got.push(delivery.envelope().clone());
        }
        delivery.ack().await.unwrap();
    }
    assert_eq!(got, published);
    client.close().await.unwrap();
    hub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_cuts_the_tail_opened_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        CurveKeyPair::generate().unwrap(),
        CurveKeyPair::generate().unwrap(),
    );
    let (hub, hub_keys) = curve_hub(dir.path(), true, &old, full_access("ops"));
    let stolen = curve_client(&hub, &hub_keys, &old);
    let mut tail = stolen.tail(&Selection::all()).await.unwrap();
    // Same principal, same grant, a new key.
    rotate(&hub, &new, full_access("ops")).await;
    match tokio::time::timeout(WAIT, tail.next()).await {
        Ok(Some(Err(BackendError::Auth(why)))) => {
            assert!(why.contains("unknown client key"), "{why}")
        }
        other => panic!("the tail of the old key should end with Auth, got {other:?}"),
    }
    let current = curve_client(&hub, &hub_keys, &new);
    let mut current_tail = current.tail(&Selection::all()).await.unwrap();
    let list = MailingList::public(ListId::new("curve.example.org").unwrap());
    let mail = small_mail(&list, "curve.example.org");
    hub.publish(&mail).await.unwrap();
    let on_tail = tokio::time::timeout(WAIT, current_tail.next()).await;
    assert_eq!(on_tail.unwrap().unwrap().unwrap(), mail);
    for client in [stolen, current] {
        client.close().await.unwrap();
    }
    hub.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_curve_together_are_refused_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let pair = CurveKeyPair::generate().unwrap();
    let mixed = HubConfig::new("tcp://127.0.0.1:*", dir.path())
        .curve(pair.clone())
        .allow(Credentials::new("web", "pw"), full_access("web"));
    match ZmqHub::bind(mixed) {
        Err(BackendError::Auth(why)) => assert!(why.contains("not PLAIN"), "{why}"),
        other => panic!("expected Auth, got {:?}", other.err()),
    }
    let keys_only =
        HubConfig::new("tcp://127.0.0.1:*", dir.path()).allow_key(pair.public, full_access("web"));
    match ZmqHub::bind(keys_only) {
        Err(BackendError::Auth(why)) => assert!(why.contains("HubConfig::curve"), "{why}"),
        other => panic!("expected Auth, got {:?}", other.err()),
    }
    let client = ClientConfig::new("tcp://127.0.0.1:1")
        .credentials(Credentials::new("web", "pw"))
        .curve(pair.public, pair.clone());
    match ZmqClient::connect(client) {
        Err(BackendError::Auth(why)) => assert!(why.contains("not both"), "{why}"),
        other => panic!("expected Auth, got {:?}", other.err()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_raw_pyzmq_peer_with_an_unknown_key_is_refused() {
    if !python_with("zmq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let known = CurveKeyPair::generate().unwrap();
    let (hub, hub_keys) = curve_hub(dir.path(), false, &known, grant("known"));
    // The key pair files as the keygen writes them give the Z85 text.
    let keys = |pair: &CurveKeyPair, name: &str| {
        let both = z85(pair, dir.path(), name);
        let text = |half: &str| both[half].as_str().unwrap().to_owned();
        (text("public"), text("secret"))
    };
    let (known_public, known_secret) = keys(&known, "known");
    let (stranger_public, stranger_secret) = keys(&CurveKeyPair::generate().unwrap(), "stranger");
    let config = serde_json::json!({
        "endpoint": hub.endpoint(),
        "server_key": hub_keys.public.to_string(),
        "peers": [
            {"label": "known", "public": known_public, "secret": known_secret, "name": "known"},
            {"label": "stranger", "public": stranger_public, "secret": stranger_secret, "name": "known"},
            {"label": "plain", "mechanism": "plain", "name": "known"},
            {"label": "null", "mechanism": "null", "name": "known"},
        ],
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/curve.py");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .args([script, &config.to_string()])
            .output()
            .expect("python3 starts")
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "curve.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    eprintln!("pyzmq peers of a CURVE hub: {outcomes:?}");
    assert_eq!(
        outcomes[..2],
        [
            serde_json::json!({"label": "known", "outcome": "WELCOME"}),
            serde_json::json!({"label": "stranger", "outcome": "HANDSHAKE_FAILED_AUTH"}),
        ]
    );
    // A peer of another mechanism never gets past the handshake.
    for (outcome, label) in outcomes[2..].iter().zip(["plain", "null"]) {
        assert_eq!(outcome["label"], label);
        let outcome = outcome["outcome"].as_str().unwrap();
        assert!(
            outcome.starts_with("HANDSHAKE_FAILED_"),
            "{label}: {outcome}"
        );
    }
    assert_eq!(outcomes.len(), 4);
    hub.close().await.unwrap();
}

/// The Z85 public and secret keys of a pair, as the keygen's file gives
/// them.
fn z85(pair: &CurveKeyPair, dir: &std::path::Path, name: &str) -> serde_json::Value {
    let (secret, _) = pair.write_files(&dir.join(name)).unwrap();
    let text = std::fs::read_to_string(secret).unwrap();
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{key} = \"")))
            .unwrap()
            .trim_end_matches('"')
            .to_owned()
    };
    serde_json::json!({"public": field("public-key"), "secret": field("secret-key")})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_no_longer_serves_the_connection_made_with_it() {
    use std::io::{BufRead, BufReader};
    if !python_with("zmq") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (
        CurveKeyPair::generate().unwrap(),
        CurveKeyPair::generate().unwrap(),
    );
    let (hub, hub_keys) = curve_hub(dir.path(), false, &old, grant("p"));
    let config = serde_json::json!({
        "endpoint": hub.endpoint(),
        "server_key": hub_keys.public.to_string(),
        "name": "p",
        "old": z85(&old, dir.path(), "old"),
        "new": z85(&new, dir.path(), "new"),
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/curve_rotation.py");
    let mut child = std::process::Command::new("python3")
        .args([script, &config.to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python3 starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut next = || {
        let line = tokio::task::block_in_place(|| lines.next())
            .expect("curve_rotation.py reports a step")
            .unwrap();
        serde_json::from_str::<serde_json::Value>(&line).unwrap()
    };
    let welcomed = next();
    assert_eq!(
        welcomed,
        serde_json::json!({"step": "old key", "outcome": ["WELCOME"]})
    );
    // The stolen old key is replaced by the new one.
    rotate(&hub, &new, grant("p")).await;
    writeln!(stdin, "rotated").unwrap();
    let steps = [next(), next(), next()];
    eprintln!("after the rotation: {steps:?}");
    assert_eq!(
        steps,
        [
            // Dropped at the reload, then its hello is refused.
            serde_json::json!({"step": "old connection after rotation", "outcome": ["UNKNOWN", "FORBIDDEN"]}),
            serde_json::json!({"step": "new key", "outcome": "WELCOME"}),
            serde_json::json!({"step": "old key again", "outcome": "HANDSHAKE_FAILED_AUTH"}),
        ]
    );
    assert!(
        tokio::task::block_in_place(|| child.wait())
            .unwrap()
            .success()
    );
    hub.close().await.unwrap();
}
