//! Fault tests with child processes killed with SIGKILL (`kill -9`):
//!
//! - an archive server killed while it holds unacked deliveries, then
//!   restarted: every mail is stored, and the ones it held come back;
//! - the list server (the hub) killed mid-run and restarted on the same
//!   directory: every mail whose publish returned Ok is delivered.
//!
//! The children are this test binary run again with `FAULT_ROLE` set
//! (see [`child`]); they report on stdout, one line per event. Mails are
//! corpus mails with ids made from their index, so a restarted child
//! rebuilds exactly the same envelopes and the parent checks every
//! delivery byte for byte.

mod support;

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use archiver_core::conformance::faults::corpus_envelopes;
use archiver_core::{Connection, Envelope, Publisher, Subscriber, Subscription};
use backend_zeromq::{ClientConfig, HubConfig, ZmqClient, ZmqHub};
use futures::StreamExt;
use support::{Role, free_port};

const SUBSCRIBER: &str = "faults";
const DEADLINE: Duration = Duration::from_secs(120);

/// The `i`th test mail: a corpus mail with an id and time made from `i`.
fn envelope(i: usize) -> Option<Envelope> {
    static BASE: OnceLock<Option<Vec<Envelope>>> = OnceLock::new();
    let base = BASE.get_or_init(|| corpus_envelopes(576)).as_ref()?;
    let mut envelope = base[i % base.len()].clone();
    envelope.id = format!("01900000-0000-7000-8000-{i:012x}").parse().unwrap();
    envelope.published_at =
        chrono::DateTime::from_timestamp_millis(1_790_000_000_000 + i as i64).unwrap();
    Some(envelope)
}

/// The index an id was made from.
fn index(envelope: &Envelope) -> usize {
    usize::from_str_radix(&envelope.id.to_string()[24..], 16).unwrap()
}

fn subscription() -> Subscription {
    Subscription::new(SUBSCRIBER.parse().unwrap()).prefetch(16)
}

/// Counts one archive server's deliveries.
#[derive(Default, Debug)]
struct Tally {
    stored: HashSet<usize>,
    delivered: usize,
    duplicates: usize,
    redelivered: usize,
}

impl Tally {
    fn record(&mut self, i: usize, attempt: u32) {
        self.delivered += 1;
        if attempt > 1 {
            self.redelivered += 1;
        }
        if !self.stored.insert(i) {
            self.duplicates += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_server_killed_holding_unacked_deliveries_loses_nothing() {
    const COUNT: usize = 2000;
    if envelope(0).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = ZmqHub::bind(
        HubConfig::new("tcp://127.0.0.1:*", dir.path())
            .allow_anonymous()
            .heartbeat(Duration::from_millis(500), Duration::from_secs(3)),
    )
    .unwrap();
    let env = |hold: &str| {
        vec![
            ("FAULT_ENDPOINT", hub.endpoint().to_owned()),
            ("FAULT_HOLD_AFTER", hold.to_owned()),
        ]
    };
    let mut first = Role::start("subscriber", &env("500"));
    assert_eq!(
        first.line("first subscriber").await.as_deref(),
        Some("subscribed")
    );
    for i in 0..COUNT {
        hub.publish(&envelope(i).unwrap()).await.unwrap();
    }

    let mut tally = Tally::default();
    let mut held = Vec::new();
    while held.len() < 16 {
        let line = first
            .line("first subscriber")
            .await
            .expect("first subscriber runs");
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["stored", i, attempt] => tally.record(i.parse().unwrap(), attempt.parse().unwrap()),
            ["holding", i] => held.push(i.parse::<usize>().unwrap()),
            _ => panic!("first subscriber: {line}"),
        }
    }
    first.kill();
    let stored_before_kill = tally.stored.len();

    let mut second = Role::start("subscriber", &env("never"));
    assert_eq!(
        second.line("second subscriber").await.as_deref(),
        Some("subscribed")
    );
    let mut came_back = HashSet::new();
    while tally.stored.len() < COUNT {
        let line = second
            .line("second subscriber")
            .await
            .expect("second subscriber runs");
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["stored", i, attempt] => {
                let (i, attempt) = (i.parse().unwrap(), attempt.parse::<u32>().unwrap());
                if held.contains(&i) {
                    assert!(attempt >= 2, "held mail {i} came back as attempt {attempt}");
                    came_back.insert(i);
                }
                tally.record(i, attempt);
            }
            _ => panic!("second subscriber: {line}"),
        }
    }
    assert_eq!(came_back.len(), held.len(), "every held delivery came back");
    eprintln!(
        "archive server kill -9: published {COUNT}; stored before the kill {stored_before_kill}, held unacked at the kill {}; \
         after restart: delivered {} in all, stored {}, duplicates {}, redelivered {}, lost {}",
        held.len(),
        tally.delivered,
        tally.stored.len(),
        tally.duplicates,
        tally.redelivered,
        COUNT - tally.stored.len()
    );
    let status = hub.status().await.unwrap();
    assert!(
        poll_drained(&hub).await,
        "the queue drains once everything is acked: {status:?}"
    );
    hub.close().await.unwrap();
}

async fn poll_drained(hub: &ZmqHub) -> bool {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if hub.status().await.unwrap().iter().all(|q| q.is_drained()) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_server_killed_and_restarted_on_its_journal_loses_nothing() {
    const COUNT: usize = 3000;
    const KILL_AFTER: usize = 1000;
    if envelope(0).is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let endpoint = format!("tcp://127.0.0.1:{}", free_port());
    let env = |from: usize| {
        vec![
            ("FAULT_ENDPOINT", endpoint.clone()),
            ("FAULT_DIR", dir.path().display().to_string()),
            ("FAULT_FROM", from.to_string()),
            ("FAULT_COUNT", COUNT.to_string()),
        ]
    };
    let mut publisher = Role::start("publisher", &env(0));
    assert_eq!(
        publisher.line("publisher").await.as_deref(),
        Some("listening")
    );
    let client = ZmqClient::connect(ClientConfig::new(&endpoint)).unwrap();
    let mut deliveries = client.subscribe(&subscription()).await.unwrap();
    publisher.say("go");

    let mut ok = HashSet::new();
    let mut tally = Tally::default();
    let verify = |delivery: &archiver_core::Delivery, tally: &mut Tally| {
        let i = index(delivery.envelope());
        assert_eq!(
            delivery.envelope(),
            &envelope(i).unwrap(),
            "mail {i} delivered byte for byte"
        );
        tally.record(i, delivery.attempt());
    };
    // First run: consume while it publishes; kill it after KILL_AFTER Oks.
    while ok.len() < KILL_AFTER {
        tokio::select! {
            line = publisher.line("publisher") => {
                let line = line.expect("publisher runs");
                ok.insert(ok_index(&line));
            }
            Some(delivery) = deliveries.next() => {
                if let Ok(delivery) = delivery {
                    verify(&delivery, &mut tally);
                    delivery.ack().await.unwrap();
                }
            }
        }
    }
    publisher.kill();
    let ok_at_kill = ok.len();
    let from = (0..COUNT).find(|i| !ok.contains(i)).unwrap();

    // Restarted on the same directory and port, from the first mail not
    // reported Ok (as a list server retries what it was not told was taken).
    let mut publisher = Role::start("publisher", &env(from));
    assert_eq!(
        publisher.line("restarted publisher").await.as_deref(),
        Some("listening")
    );
    publisher.say("go");
    let mut done = false;
    let deadline = Instant::now() + DEADLINE;
    while !done || !ok.iter().all(|i| tally.stored.contains(i)) {
        assert!(
            Instant::now() < deadline,
            "{} of {} mails reported Ok were delivered before the deadline; missing: {:?}",
            ok.iter().filter(|i| tally.stored.contains(i)).count(),
            ok.len(),
            ok.iter()
                .filter(|i| !tally.stored.contains(i))
                .take(20)
                .collect::<Vec<_>>()
        );
        tokio::select! {
            line = publisher.line("restarted publisher"), if !done => {
                match line.as_deref() {
                    Some("done") => done = true,
                    Some(line) => { ok.insert(ok_index(line)); }
                    None => panic!("the restarted publisher died"),
                }
            }
            delivery = tokio::time::timeout(Duration::from_secs(1), deliveries.next()) => {
                if let Ok(Some(Ok(delivery))) = delivery {
                    verify(&delivery, &mut tally);
                    delivery.ack().await.unwrap();
                }
            }
        }
    }
    assert_eq!(ok.len(), COUNT, "the restarted publisher finished the run");
    eprintln!(
        "list server kill -9: {ok_at_kill} published Ok before the kill, restarted from mail {from}; \
         published Ok {} in all; delivered {}, stored {}, duplicates {}, redelivered {}, lost {}",
        ok.len(),
        tally.delivered,
        tally.stored.len(),
        tally.duplicates,
        tally.redelivered,
        ok.iter().filter(|i| !tally.stored.contains(i)).count()
    );
    client.close().await.unwrap();
    publisher.say("stop");
    assert!(
        publisher.child.wait().unwrap().success(),
        "the publisher closes cleanly"
    );
}

fn ok_index(line: &str) -> usize {
    line.strip_prefix("ok ")
        .and_then(|i| i.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line from the publisher: {line}"))
}

/// The child roles (each line they print starts with `@ `); a no-op when
/// run as an ordinary test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child() {
    let Ok(role) = std::env::var("FAULT_ROLE") else {
        return;
    };
    // Warnings (a hub restarting, a connection dropped) on stderr; more
    // with RUST_LOG.
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let var = |name: &str| std::env::var(name).unwrap();
    match role.as_str() {
        "subscriber" => run_subscriber(&var("FAULT_ENDPOINT"), &var("FAULT_HOLD_AFTER")).await,
        "publisher" => {
            run_publisher(
                &var("FAULT_ENDPOINT"),
                &var("FAULT_DIR"),
                var("FAULT_FROM").parse().unwrap(),
                var("FAULT_COUNT").parse().unwrap(),
            )
            .await
        }
        other => panic!("unknown role {other}"),
    }
}

/// An archive server: checks each delivery byte for byte, prints
/// `stored <i> <attempt>` and acks; after `hold_after` acks it holds every
/// further delivery unacked (`holding <i>`), until it is killed.
async fn run_subscriber(endpoint: &str, hold_after: &str) {
    let hold_after: usize = hold_after.parse().unwrap_or(usize::MAX);
    let client = ZmqClient::connect(ClientConfig::new(endpoint)).unwrap();
    let mut deliveries = client.subscribe(&subscription()).await.unwrap();
    println!("@ subscribed");
    let mut acked = 0;
    let mut held = Vec::new();
    while let Some(delivery) = deliveries.next().await {
        let Ok(delivery) = delivery else { continue };
        let i = index(delivery.envelope());
        assert_eq!(
            delivery.envelope(),
            &envelope(i).unwrap(),
            "mail {i} byte for byte"
        );
        if acked >= hold_after {
            println!("@ holding {i}");
            held.push(delivery);
            continue;
        }
        let attempt = delivery.attempt();
        delivery.ack().await.unwrap();
        acked += 1;
        println!("@ stored {i} {attempt}");
    }
}

/// A list server: binds the hub on `dir`, prints `listening`, waits for
/// `go` on stdin, publishes mails `from..count` 8 at a time printing
/// `ok <i>` for each publish that returned Ok, then `done`, and serves
/// until a line on stdin.
async fn run_publisher(endpoint: &str, dir: &str, from: usize, count: usize) {
    let hub = ZmqHub::bind(HubConfig::new(endpoint, dir).allow_anonymous()).unwrap();
    println!("@ listening");
    let mut go = String::new();
    std::io::stdin().read_line(&mut go).unwrap();
    let mut publishing = futures::stream::iter(from..count)
        .map(|i| {
            let hub = hub.clone();
            async move {
                hub.publish(&envelope(i).unwrap()).await.unwrap();
                i
            }
        })
        .buffer_unordered(8);
    while let Some(i) = publishing.next().await {
        println!("@ ok {i}");
    }
    println!("@ done");
    // A list server keeps serving its queues: until told to stop.
    let mut stop = String::new();
    std::io::stdin().read_line(&mut stop).unwrap();
    hub.close().await.unwrap();
}
