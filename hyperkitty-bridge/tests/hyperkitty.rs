//! The bridge against a real HyperKitty 1.3.12 (sqlite, started by the
//! test on a spare port) and a real Redis: corpus mails arrive once with
//! their Message-ID-Hash, a wrong key stops the bridge without dead
//! letters, a private list HyperKitty does not hold as private gets
//! nothing, and a 20 s HyperKitty outage loses and doubles nothing.
//!
//! Needs target/hyperkitty-venv (scripts/hyperkitty-venv): skipped without
//! it unless `ARCHIVER_REQUIRE_PYTHON` is set; the corpus likewise with
//! `ARCHIVER_REQUIRE_CORPUS`.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use hyperkitty_bridge::{ApiKey, BridgeError, BridgeStats, HyperKittyBridge};
use mq_archiver::conformance::corpus_mbox;
use mq_archiver::{ArchivePolicy, Bytes, ListId, MailingList, MboxReader, Operator, Replay};
use support::{Broker, Row, Site, bridge_config, hyperkitty_python};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(180);

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn list(name: &str, policy: ArchivePolicy) -> MailingList {
    let mut list = MailingList::public(ListId::new(&format!("{name}.hk.archiver.test")).unwrap())
        .with_address(&format!("{name}@hk.archiver.test"))
        .unwrap();
    list.archive_policy = policy;
    list
}

/// The first `count` corpus mails, alternately to lists alpha and beta.
fn corpus(test: &str, count: usize) -> Option<Vec<(MailingList, Bytes)>> {
    let mbox = corpus_mbox(test)?;
    let lists = [
        list("alpha", ArchivePolicy::Public),
        list("beta", ArchivePolicy::Public),
    ];
    Some(
        MboxReader::open(mbox)
            .unwrap()
            .take(count)
            .enumerate()
            .map(|(i, raw)| (lists[i % 2].clone(), raw.unwrap()))
            .collect(),
    )
}

/// A running bridge: its counters, and how to stop it and get its result.
struct Running {
    counters: Arc<hyperkitty_bridge::BridgeCounters>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<BridgeStats, BridgeError>>,
}

fn spawn(bridge: HyperKittyBridge, broker: &Broker) -> Running {
    let counters = bridge.counters();
    let (stop, stopped) = oneshot::channel::<()>();
    let subscriber = broker.subscriber.clone();
    let subscription = broker.subscription.clone();
    let task = tokio::spawn(async move {
        bridge
            .run(&subscriber, &subscription, async {
                let _ = stopped.await;
            })
            .await
    });
    Running {
        counters,
        stop,
        task,
    }
}

impl Running {
    async fn wait_until(&self, what: &str, done: impl Fn(&BridgeStats) -> bool) {
        tokio::time::timeout(WAIT, self.counters.wait_until(done))
            .await
            .unwrap_or_else(|_| panic!("{what}: timed out; {:?}", self.counters.snapshot()));
    }

    async fn finish(self) -> BridgeStats {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("bridge stops")
            .unwrap()
            .expect("bridge ran")
    }
}

/// Every (list, hash) HyperKitty holds exactly once, and it is `expected`.
fn assert_once(rows: &[Row], expected: &BTreeSet<(String, String)>) {
    let mut counts = BTreeMap::new();
    for row in rows {
        *counts
            .entry((row.list.clone(), row.message_id_hash.clone()))
            .or_insert(0) += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "archived more than once: {doubled:?}");
    let held: BTreeSet<_> = counts.into_keys().collect();
    let missing: Vec<_> = expected.difference(&held).collect();
    let extra: Vec<_> = held.difference(expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, unexpected {extra:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_mails_reach_hyperkitty_once_with_their_hash_and_page() {
    init();
    let Some(python) = hyperkitty_python("corpus_mails_reach_hyperkitty") else {
        return;
    };
    let Some(mut mails) = corpus("corpus_mails_reach_hyperkitty", 40) else {
        return;
    };
    // A mail without Message-ID: posted as a copy with the generated id.
    mails.push((
        list("alpha", ArchivePolicy::Public),
        Bytes::from_static(b"From: Ann <ann@example.org>\nSubject: no id\nDate: Thu, 03 Dec 2026 07:00:00 +0000\n\nno Message-ID here\n"),
    ));
    let site = Site::start(&python);
    let broker = Broker::new("corpus").await;
    let published = broker.archive(&mails).await;
    assert!(published.len() >= 30, "most corpus mails are archived");
    let expected: BTreeSet<_> = published.iter().cloned().collect();

    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    let total = published.len() as u64;
    running
        .wait_until("every mail settled", |s| {
            s.posted + s.dead_lettered >= total
        })
        .await;
    let stats = running.finish().await;
    let dead = broker.dead_letters().await;
    assert!(
        dead.is_empty(),
        "dead letters: {:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    assert_eq!(stats.posted, total);
    assert_eq!(stats.copies_with_generated_id, 1);

    let (rows, lists) = site.database();
    assert_once(&rows, &expected);
    assert_eq!(lists.get("alpha@hk.archiver.test"), Some(&2), "public");
    for row in &rows {
        assert_eq!(
            site.message_page(&row.list, &row.message_id_hash).await,
            200,
            "message page of {row:?}"
        );
    }
    eprintln!(
        "corpus: published {} / in HyperKitty {} / dead-lettered {} ({stats:?})",
        published.len(),
        rows.len(),
        dead.len()
    );
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_stops_the_bridge_and_dead_letters_nothing() {
    init();
    let Some(python) = hyperkitty_python("a_wrong_key_stops_the_bridge") else {
        return;
    };
    let site = Site::start(&python);
    let broker = Broker::new("wrongkey").await;
    let alpha = list("alpha", ArchivePolicy::Public);
    let mails: Vec<_> = (0..3)
        .map(|i| {
            let raw = format!(
                "Message-ID: <wrong-key-{i}@archiver.test>\nFrom: a@example.org\nSubject: {i}\n\nbody {i}\n"
            );
            (alpha.clone(), Bytes::from(raw))
        })
        .collect();
    let published = broker.archive(&mails).await;

    let mut config = bridge_config(&site);
    config.api_key = ApiKey::new("not-the-key-0123");
    let bridge = HyperKittyBridge::new(config).unwrap();
    let counters = bridge.counters();
    let result = tokio::time::timeout(
        WAIT,
        bridge.run(
            &broker.subscriber,
            &broker.subscription,
            std::future::pending(),
        ),
    )
    .await
    .expect("the bridge stops by itself");
    let Err(BridgeError::Configuration(why)) = result else {
        panic!("expected a configuration error, got {result:?}");
    };
    assert!(
        why.contains("401") && why.contains("MAILMAN_ARCHIVER_KEY"),
        "{why}"
    );
    assert!(!why.contains("not-the-key"), "the key is never in messages");
    assert_eq!(counters.snapshot().dead_lettered, 0);
    assert!(
        broker.dead_letters().await.is_empty(),
        "nothing dead-lettered"
    );
    assert!(site.database().0.is_empty());

    // Fixed key: every mail is still there and arrives.
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running.wait_until("all posted", |s| s.posted >= 3).await;
    running.finish().await;
    assert_once(&site.database().0, &published.into_iter().collect());
    assert!(broker.dead_letters().await.is_empty());
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_list_hyperkitty_does_not_hold_as_private_gets_nothing() {
    init();
    let Some(python) = hyperkitty_python("a_private_list_not_precreated") else {
        return;
    };
    let site = Site::start(&python);
    let broker = Broker::new("private").await;
    let secret = list("secret", ArchivePolicy::Private);
    let public = list("alpha", ArchivePolicy::Public);
    let mail = |list: &MailingList, id: &str| {
        (
            list.clone(),
            Bytes::from(format!(
                "Message-ID: <{id}@archiver.test>\nFrom: a@example.org\nSubject: {id}\n\nbody\n"
            )),
        )
    };
    let published = broker
        .archive(&[mail(&secret, "private-1"), mail(&public, "public-1")])
        .await;

    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running
        .wait_until("both settled", |s| s.posted + s.dead_lettered >= 2)
        .await;
    let stats = running.finish().await;
    let (rows, lists) = site.database();
    assert_eq!(
        lists.get("secret@hk.archiver.test"),
        None,
        "HyperKitty must not have created the private list (2 = public): {lists:?}"
    );
    assert!(rows.iter().all(|r| r.list != "secret@hk.archiver.test"));
    assert_eq!((stats.posted, stats.dead_lettered), (1, 1), "{stats:?}");
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .reason
            .contains("secret@hk.archiver.test is not in HyperKitty"),
        "{}",
        dead[0].reason
    );

    // The operator pre-creates the list as private and replays.
    site.create_private_list("secret@hk.archiver.test");
    let replayed = broker
        .subscriber
        .replay_dead_letters(&broker.subscription.name, Replay::All)
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running
        .wait_until("replayed mail posted", |s| s.posted >= 1)
        .await;
    running.finish().await;
    let (rows, lists) = site.database();
    assert_once(&rows, &published.into_iter().collect());
    assert_eq!(
        lists.get("secret@hk.archiver.test"),
        Some(&1),
        "still private"
    );
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperkitty_down_for_20_s_loses_and_doubles_nothing() {
    outage("hyperkitty_down_for_20_s", support::REDIS_URL).await;
}

/// The same through RabbitMQ (a quorum queue, where a release counts
/// toward the delivery limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hyperkitty_down_for_20_s_loses_and_doubles_nothing_on_rabbitmq() {
    outage(
        "hyperkitty_down_for_20_s_on_rabbitmq",
        support::RABBITMQ_URL,
    )
    .await;
}

async fn outage(test: &str, url: &str) {
    init();
    let Some(python) = hyperkitty_python(test) else {
        return;
    };
    let Some(mails) = corpus(test, 60) else {
        return;
    };
    let mut site = Site::start(&python);
    let broker = Broker::connect("outage", url).await;
    let mut published = broker.archive(&mails[..36]).await;

    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running.wait_until("some posted", |s| s.posted >= 8).await;
    let outage = std::time::Instant::now();
    site.stop();
    // Mails keep coming while HyperKitty is down.
    published.extend(broker.archive(&mails[36..]).await);
    running
        .wait_until("the outage noticed", |s| s.unreachable_answers >= 1)
        .await;
    // The outage itself lasts 20 s (the scenario, not a synchronisation).
    tokio::time::sleep(Duration::from_secs(20).saturating_sub(outage.elapsed())).await;
    // After 20 s down every release of this outage has happened.
    let during = running.counters.snapshot();
    let probes_during_outage = during.probes;
    site.resume();
    let total = published.len() as u64;
    running
        .wait_until("every mail settled", |s| {
            s.posted + s.dead_lettered >= total
        })
        .await;
    let stats = running.finish().await;

    let dead = broker.dead_letters().await;
    let (rows, _) = site.database();
    let expected: BTreeSet<_> = published.iter().cloned().collect();
    eprintln!(
        "{test}: published {} / in HyperKitty {} / duplicates re-posted {} / dead-lettered {}; {} probes during the 20 s outage; {stats:?}",
        published.len(),
        rows.len(),
        stats.posted - expected.len() as u64,
        dead.len(),
        probes_during_outage,
    );
    assert!(
        dead.is_empty(),
        "dead letters: {:?}",
        dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
    );
    assert_eq!(stats.dead_lettered, 0);
    assert_once(&rows, &expected);
    assert!(stats.unreachable_answers >= 1, "{stats:?}");
    assert!(stats.outages >= 1, "{stats:?}");
    let prefetch = u64::from(broker.subscription.prefetch);
    assert!(
        during.released >= 1 && during.released <= prefetch * during.outages,
        "the outage handed back at least one and at most the prefetch per outage: {during:?}"
    );
    assert!(
        stats.released <= prefetch * stats.outages,
        "at most the prefetch per outage: {stats:?}"
    );
    assert!(
        (1..=20).contains(&probes_during_outage),
        "a bounded number of probes in 20 s (no busy loop): {probes_during_outage}"
    );
    broker.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_hyperkitty_refuses_is_dead_lettered_with_its_error_text() {
    init();
    let Some(python) = hyperkitty_python("a_mail_hyperkitty_refuses") else {
        return;
    };
    let site = Site::start(&python);
    let broker = Broker::new("refused").await;
    let alpha = list("alpha", ArchivePolicy::Public);
    // HyperKitty answers 400 "Non-ascii sender address" to this one.
    let refused = Bytes::from(
        "Message-ID: <refused-1@archiver.test>\nFrom: J\u{f6}rg <j\u{f6}rg@example.org>\nSubject: x\n\nbody\n",
    );
    let fine = Bytes::from_static(
        b"Message-ID: <fine-1@archiver.test>\nFrom: a@example.org\nSubject: y\n\nbody\n",
    );
    let published = broker
        .archive(&[(alpha.clone(), refused), (alpha, fine)])
        .await;
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running
        .wait_until("both settled", |s| s.posted + s.dead_lettered >= 2)
        .await;
    let stats = running.finish().await;
    assert_eq!(
        (stats.posted, stats.dead_lettered, stats.retried),
        (1, 1, 0)
    );
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 1, "a 400 is not retried");
    assert!(
        dead[0].reason.contains("HTTP 400") && dead[0].reason.contains("Non-ascii sender address"),
        "{}",
        dead[0].reason
    );
    assert_once(
        &site.database().0,
        &published[1..].iter().cloned().collect(),
    );
    broker.cleanup().await;
}

/// The binary: configured from the environment like every archive server,
/// it exits non-zero with a clear message on a wrong key, and its output
/// never shows the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_with_a_clear_error_on_a_wrong_key() {
    init();
    let Some(python) = hyperkitty_python("the_binary_exits_on_a_wrong_key") else {
        return;
    };
    let site = Site::start(&python);
    let broker = Broker::new("binary").await;
    let alpha = list("alpha", ArchivePolicy::Public);
    broker
        .archive(&[(
            alpha,
            Bytes::from_static(b"Message-ID: <bin-1@archiver.test>\nFrom: a@example.org\n\nx\n"),
        )])
        .await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hyperkitty-bridge"))
        .args([
            "--base-url",
            site.base_url().as_str(),
            "--subscriber",
            "hyperkitty",
        ])
        .env("ARCHIVER_URL", "redis://127.0.0.1:6379")
        .env("ARCHIVER_PREFIX", &broker.prefix)
        .env("HYPERKITTY_API_KEY", "wrong-key-do-not-print")
        .env("RUST_LOG", "debug")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the bridge did not stop on a wrong key");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("configuration error") && stderr.contains("MAILMAN_ARCHIVER_KEY"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("wrong-key-do-not-print"),
        "the key leaked: {stderr}"
    );
    assert!(broker.dead_letters().await.is_empty());
    broker.cleanup().await;
}

/// A 5xx of a running HyperKitty is an attempt: nacked with back-off, and
/// dead-lettered at the attempt limit with HyperKitty's last answer. (A
/// posting address with `/` in its local part, valid for the bridge, makes
/// HyperKitty 1.3.12 answer 500: its URL patterns exclude `/`.) List
/// events are acked without a request. The list map is the last source of
/// the list address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_is_retried_to_the_attempt_limit_and_events_are_acked() {
    use mq_archiver::{Archiver, ListChange, ListEvent};
    init();
    let Some(python) = hyperkitty_python("a_5xx_is_retried") else {
        return;
    };
    let site = Site::start(&python);
    let mut broker = Broker::new("retry").await;
    broker.subscription = broker.subscription.clone().max_attempts(3);
    let mapped = MailingList::public(ListId::new("mapped.hk.archiver.test").unwrap());
    let broken = MailingList::public(ListId::new("broken.hk.archiver.test").unwrap());
    let mail = |id: &str| {
        Bytes::from(format!(
            "Message-ID: <{id}@archiver.test>\nFrom: a@example.org\nSubject: {id}\n\nbody\n"
        ))
    };
    broker
        .archive(&[
            (mapped.clone(), mail("mapped-1")),
            (broken.clone(), mail("broken-1")),
        ])
        .await;
    let urls = mq_archiver::ArchiveUrls::new("http://127.0.0.1/{list_id}/").unwrap();
    let archiver = mq_archiver::QueueArchiver::new("t", broker.publisher.clone(), urls);
    let event = ListEvent::now(
        mapped.list_id.clone(),
        ListChange::ListCreated {
            posting_address: None,
        },
    );
    archiver.archive_event(&mapped, &event).await.unwrap();

    let mut config = bridge_config(&site);
    config.list_addresses.insert(
        mapped.list_id.clone(),
        "mapped@hk.archiver.test".parse().unwrap(),
    );
    config.list_addresses.insert(
        broken.list_id.clone(),
        "broken/x@hk.archiver.test".parse().unwrap(),
    );
    let running = spawn(HyperKittyBridge::new(config).unwrap(), &broker);
    running
        .wait_until("all settled", |s| {
            s.posted + s.dead_lettered + s.events_acked >= 3
        })
        .await;
    let stats = running.finish().await;
    assert_eq!(
        (
            stats.posted,
            stats.events_acked,
            stats.retried,
            stats.dead_lettered
        ),
        (1, 1, 2, 1),
        "{stats:?}"
    );
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].attempts, 3);
    assert!(
        dead[0].reason.contains("HTTP 500")
            && dead[0]
                .reason
                .contains("attempt 3 of 3: attempt limit reached"),
        "{}",
        dead[0].reason
    );
    // (HyperKitty stores the broken one before failing to make its URL,
    // so only the mapped list is checked.)
    let (rows, _) = site.database();
    let mapped_rows: Vec<_> = rows
        .iter()
        .filter(|r| r.list == "mapped@hk.archiver.test")
        .collect();
    assert_eq!(mapped_rows.len(), 1, "{rows:?}");
    broker.cleanup().await;
}

// ---- Faults a reviewer found: each stops, retries or refuses as the crate
// docs' outcome table says, and none dead-letters the backlog. ----

/// Runs a bridge with `config` until it stops by itself (a configuration
/// error) or `limit` passes; on a timeout, panics with the dead letters.
async fn run_until_it_stops(
    config: hyperkitty_bridge::BridgeConfig,
    broker: &Broker,
    limit: Duration,
) -> (Result<BridgeStats, BridgeError>, BridgeStats) {
    let bridge = HyperKittyBridge::new(config).unwrap();
    let counters = bridge.counters();
    let result = tokio::time::timeout(
        limit,
        bridge.run(
            &broker.subscriber,
            &broker.subscription,
            std::future::pending(),
        ),
    )
    .await;
    let stats = counters.snapshot();
    match result {
        Ok(result) => (result, stats),
        Err(_) => {
            let dead = broker.dead_letters().await;
            panic!(
                "the bridge did not stop in {limit:?}: {stats:?}; dead letters {:?}",
                dead.iter().map(|d| &d.reason).collect::<Vec<_>>()
            );
        }
    }
}

fn plain_mails(list: &MailingList, tag: &str, count: usize) -> Vec<(MailingList, Bytes)> {
    (0..count)
        .map(|i| {
            let raw = format!(
                "Message-ID: <{tag}-{i}@archiver.test>\nFrom: a@example.org\nSubject: {tag} {i}\n\nbody {i}\n"
            );
            (list.clone(), Bytes::from(raw))
        })
        .collect()
}

fn configuration_error(result: Result<BridgeStats, BridgeError>) -> String {
    match result {
        Err(BridgeError::Configuration(why)) => why,
        other => panic!("expected a configuration error, got {other:?}"),
    }
}

/// A redirect (a proxy sending http to another host) and a base URL
/// without `/hyperkitty/` (404) stop the bridge: neither is about the mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_or_a_wrong_base_url_stops_the_bridge_and_dead_letters_nothing() {
    init();
    let Some(python) = hyperkitty_python("a_redirect_or_a_wrong_base_url") else {
        return;
    };
    let site = Site::start(&python);
    let mut broker = Broker::new("redirect").await;
    broker.subscription = broker.subscription.clone().max_attempts(3);
    let alpha = list("alpha", ArchivePolicy::Public);
    let published = broker.archive(&plain_mails(&alpha, "redirect", 3)).await;
    let redirect = support::FakeHttp::start(
        &python,
        "redirect",
        &format!("http://localhost:{}", site.port),
    );

    let mut config = bridge_config(&site);
    config.base_url = redirect.base_url();
    let (result, stats) = run_until_it_stops(config, &broker, WAIT).await;
    let why = configuration_error(result);
    assert!(why.contains("301"), "{why}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");

    let mut config = bridge_config(&site);
    config.base_url = format!("http://127.0.0.1:{}/", site.port).parse().unwrap();
    let (result, stats) = run_until_it_stops(config, &broker, WAIT).await;
    let why = configuration_error(result);
    assert!(why.contains("404"), "{why}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(broker.dead_letters().await.is_empty());
    assert!(site.database().0.is_empty());

    // Fixed URL: every mail is still there and arrives.
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running.wait_until("all posted", |s| s.posted >= 3).await;
    running.finish().await;
    assert_once(&site.database().0, &published.into_iter().collect());
    broker.cleanup().await;
}

/// Django's DisallowedHost (the bridge's Host not in ALLOWED_HOSTS) is an
/// HTML 400 for every request: a configuration error, not a bad mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disallowed_host_stops_the_bridge_and_dead_letters_nothing() {
    init();
    let Some(python) = hyperkitty_python("a_disallowed_host") else {
        return;
    };
    let site = Site::start_with_env(&python, &[("HK_ALLOWED_HOSTS", "lists.example.org")]);
    let broker = Broker::new("disallowed").await;
    let alpha = list("alpha", ArchivePolicy::Public);
    broker.archive(&plain_mails(&alpha, "disallowed", 3)).await;
    let (result, stats) = run_until_it_stops(bridge_config(&site), &broker, WAIT).await;
    let why = configuration_error(result);
    assert!(
        why.contains("400") && why.contains("ALLOWED_HOSTS"),
        "{why}"
    );
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(broker.dead_letters().await.is_empty());
    broker.cleanup().await;
}

/// A proxy that answers 403 for HyperKitty's list API (a WAF) must not
/// make the bridge believe an unknown list is private.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waf_blocking_the_list_api_does_not_make_a_private_list_public() {
    init();
    let Some(python) = hyperkitty_python("a_waf_blocking_the_list_api") else {
        return;
    };
    let site = Site::start(&python);
    let broker = Broker::new("waf").await;
    let secret = list("secret", ArchivePolicy::Private);
    broker.archive(&plain_mails(&secret, "waf", 1)).await;
    let waf = support::FakeHttp::start(
        &python,
        "block-api",
        &format!("http://127.0.0.1:{}", site.port),
    );
    let mut config = bridge_config(&site);
    config.base_url = waf.base_url();
    let (result, stats) = run_until_it_stops(config, &broker, WAIT).await;
    let (rows, lists) = site.database();
    assert_eq!(lists.get("secret@hk.archiver.test"), None, "{lists:?}");
    assert!(rows.is_empty(), "{rows:?}");
    let why = configuration_error(result);
    assert!(why.contains("403") && why.contains("api/lists"), "{why}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    broker.cleanup().await;
}

/// A forged List-Post (`x@y/../secret@...`) is no list address: it is
/// neither resolved to another list's URL nor posted as a new list.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_list_post_is_not_followed() {
    init();
    let Some(python) = hyperkitty_python("a_forged_list_post") else {
        return;
    };
    let site = Site::start(&python);
    site.create_private_list("secret@hk.archiver.test");
    let broker = Broker::new("forged").await;
    let mut junk = MailingList::public(ListId::new("junk.hk.archiver.test").unwrap());
    junk.archive_policy = ArchivePolicy::Private;
    let raw = Bytes::from_static(
        b"Message-ID: <forged-1@archiver.test>\nFrom: a@example.org\nList-Post: <mailto:x@y/../secret@hk.archiver.test>\nSubject: forged\n\nbody\n",
    );
    broker.archive(&[(junk, raw)]).await;
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running
        .wait_until("settled", |s| s.posted + s.dead_lettered >= 1)
        .await;
    let stats = running.finish().await;
    let (rows, lists) = site.database();
    assert!(rows.is_empty(), "{rows:?}");
    assert_eq!(lists.len(), 1, "no list created: {lists:?}");
    assert_eq!((stats.posted, stats.dead_lettered), (0, 1), "{stats:?}");
    let dead = broker.dead_letters().await;
    assert!(
        dead[0].reason.contains("no list address"),
        "{}",
        dead[0].reason
    );
    broker.cleanup().await;
}

/// A request that times out after connecting is an attempt on that mail
/// (HyperKitty is up, the mail is slow), not an outage: no release and
/// resubscribe cycle, and the dead letter says "timed out".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_timeout_is_an_attempt_not_an_outage() {
    init();
    let Some(python) = hyperkitty_python("a_read_timeout") else {
        return;
    };
    let site = Site::start(&python);
    let mut broker = Broker::new("slow").await;
    broker.subscription = broker.subscription.clone().max_attempts(2);
    let alpha = list("alpha", ArchivePolicy::Public);
    broker.archive(&plain_mails(&alpha, "slow", 1)).await;
    let slow = support::FakeHttp::start(
        &python,
        "slow-post",
        &format!("http://127.0.0.1:{}", site.port),
    );
    let mut config = bridge_config(&site);
    config.base_url = slow.base_url();
    config.request_timeout = Duration::from_secs(2);
    let running = spawn(HyperKittyBridge::new(config).unwrap(), &broker);
    running
        .wait_until("dead-lettered", |s| s.dead_lettered >= 1)
        .await;
    let stats = running.finish().await;
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(dead[0].reason.contains("timed out"), "{}", dead[0].reason);
    assert_eq!(stats.outages, 0, "{stats:?}");
    assert_eq!(stats.retried, 1, "{stats:?}");
    broker.cleanup().await;
}

/// HyperKitty's database down: every POST answers 500 while HyperKitty
/// itself answers. After a few 5xx on distinct mails that is an outage
/// (released, probed through an endpoint that needs the database), not the
/// whole backlog in the dead letters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_does_not_dead_letter_the_backlog() {
    init();
    let Some(python) = hyperkitty_python("a_database_outage") else {
        return;
    };
    let site = Site::start(&python);
    let mut broker = Broker::new("dbdown").await;
    broker.subscription = broker.subscription.clone().max_attempts(3);
    let alpha = list("alpha", ArchivePolicy::Public);
    let published = broker.archive(&plain_mails(&alpha, "dbdown", 8)).await;
    site.database_down();
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running
        .wait_until("an outage or a dead letter", |s| {
            s.outages >= 1 || s.dead_lettered >= 1
        })
        .await;
    // Some seconds of database outage (the scenario, not a synchronisation).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = running.counters.snapshot();
    assert_eq!(during.dead_lettered, 0, "{during:?}");
    assert_eq!(during.outages, 1, "a run of 5xx is one outage: {during:?}");
    assert!(
        during.posted == 0 && during.probes >= 1,
        "the probe waits for the database: {during:?}"
    );
    site.database_up();
    running.wait_until("all posted", |s| s.posted >= 8).await;
    let stats = running.finish().await;
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(broker.dead_letters().await.is_empty());
    assert_once(&site.database().0, &published.into_iter().collect());
    broker.cleanup().await;
}

/// A delivery on its last attempt when the bridge stops for a wrong key
/// reaches the dead letters saying why and what to do, not "nacked".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_last_attempt_at_a_wrong_key_says_why_in_the_dead_letters() {
    init();
    let Some(python) = hyperkitty_python("a_last_attempt_at_a_wrong_key") else {
        return;
    };
    let site = Site::start(&python);
    let mut broker = Broker::new("lastattempt").await;
    broker.subscription = broker.subscription.clone().max_attempts(1);
    let alpha = list("alpha", ArchivePolicy::Public);
    broker.archive(&plain_mails(&alpha, "last", 1)).await;
    let mut config = bridge_config(&site);
    config.api_key = ApiKey::new("not-the-key-0123");
    let (result, _) = run_until_it_stops(config, &broker, WAIT).await;
    configuration_error(result);
    let dead = broker.dead_letters().await;
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0].reason.contains("401") && dead[0].reason.contains("replay the dead letters"),
        "{}",
        dead[0].reason
    );
    broker.cleanup().await;
}

/// A list HyperKitty held as private and an admin then made public: after
/// a list event of that list the bridge checks again and posts no more
/// private mail to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_made_public_gets_no_more_private_mail_after_its_event() {
    use mq_archiver::{Archiver, ListChange, ListEvent};
    init();
    let Some(python) = hyperkitty_python("a_list_made_public") else {
        return;
    };
    let site = Site::start(&python);
    site.create_private_list("secret@hk.archiver.test");
    let broker = Broker::new("madepublic").await;
    let secret = list("secret", ArchivePolicy::Private);
    broker.archive(&plain_mails(&secret, "before", 1)).await;
    let running = spawn(
        HyperKittyBridge::new(bridge_config(&site)).unwrap(),
        &broker,
    );
    running.wait_until("first posted", |s| s.posted >= 1).await;
    site.make_list_public("secret@hk.archiver.test");
    let urls = mq_archiver::ArchiveUrls::new("http://127.0.0.1/{list_id}/").unwrap();
    let archiver = mq_archiver::QueueArchiver::new("t", broker.publisher.clone(), urls);
    let event = ListEvent::now(
        secret.list_id.clone(),
        ListChange::ListCreated {
            posting_address: None,
        },
    );
    archiver.archive_event(&secret, &event).await.unwrap();
    running
        .wait_until("event acked", |s| s.events_acked >= 1)
        .await;
    broker.archive(&plain_mails(&secret, "after", 1)).await;
    running
        .wait_until("second settled", |s| s.posted + s.dead_lettered >= 2)
        .await;
    let stats = running.finish().await;
    assert_eq!((stats.posted, stats.dead_lettered), (1, 1), "{stats:?}");
    let dead = broker.dead_letters().await;
    assert!(
        dead[0].reason.contains("archive policy public"),
        "{}",
        dead[0].reason
    );
    broker.cleanup().await;
}

/// A site whose REST API wants a login first answers the anonymous list
/// API 401: a configuration error (the bridge cannot tell private lists),
/// not a failure of each private mail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_api_wanting_a_login_stops_the_bridge() {
    init();
    let Some(python) = hyperkitty_python("a_list_api_wanting_a_login") else {
        return;
    };
    let site = Site::start_with_env(&python, &[("HK_REST_AUTH_FIRST", "1")]);
    site.create_private_list("secret@hk.archiver.test");
    let mut broker = Broker::new("authfirst").await;
    broker.subscription = broker.subscription.clone().max_attempts(3);
    let secret = list("secret", ArchivePolicy::Private);
    broker.archive(&plain_mails(&secret, "authfirst", 2)).await;
    let (result, stats) = run_until_it_stops(bridge_config(&site), &broker, WAIT).await;
    let why = configuration_error(result);
    assert!(why.contains("401") && why.contains("api/lists"), "{why}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
    assert!(broker.dead_letters().await.is_empty());
    assert!(site.database().0.is_empty());
    broker.cleanup().await;
}
