//! Least privilege on a real broker: a vhost and users this test creates
//! with the `rabbitmqctl` lines `permissions` prints (and deletes at the
//! end), a list-server user and three archive-server users (public lists
//! only, one private list, everything). Each receives exactly what its
//! grant allows, byte for byte; then a raw pika client as each archive
//! server (`tests/least_privilege.py`), after a granted action on the same
//! channel, tries every way around its grant and is refused with 403,
//! while every queue of the vhost keeps its messages and the victims then
//! receive exactly what they should.
//!
//! `ARCHIVER_LP_SHARED_ACCOUNT=1` gives the archive-server users today's
//! shared account's permissions (`.* .* .*`, no topic permissions)
//! instead, to show the test fails without the restriction.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use archiver_core::conformance::fixtures::{
    BOARD, PUBLIC_LISTS, TEAM, event, list, member_joined, name, small_mail,
};
use archiver_core::conformance::interop::python_with;
use archiver_core::{
    BackendError, Connection, Deliveries, Envelope, EnvelopeId, Grant, Kind, ListChange, Operator,
    Prefix, Publisher, Selection, Subscriber, SubscriberName, Subscription,
};
use backend_rabbitmq::permissions::{self, UserSetup};
use backend_rabbitmq::{RabbitBackend, RabbitConfig};
use futures::StreamExt;

/// Runs `rabbitmqctl` on the broker of 127.0.0.1:5672; panics unless it
/// succeeds (arguments may hold a password: never printed).
fn ctl(args: &[String]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {} failed: {}",
        args.first().map_or("", String::as_str),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The vhost and users of one run, deleted when dropped (even after a
/// failed assertion).
struct Broker {
    vhost: String,
    users: Vec<String>,
}

impl Broker {
    fn new(run: &str) -> Self {
        let vhost = format!("archiver-lp-{run}");
        ctl(&["add_vhost".into(), vhost.clone()]);
        Self {
            vhost,
            users: Vec::new(),
        }
    }

    /// Creates the user with the printed lines, or (shared) today's
    /// shared-account permissions; returns its URL.
    fn add(&mut self, setup: &UserSetup, shared: bool) -> String {
        let password = uuid::Uuid::now_v7().simple().to_string();
        let mut commands = setup.commands(&password);
        if shared {
            commands.truncate(1);
            commands.push(
                [
                    "rabbitmqctl",
                    "set_permissions",
                    "-p",
                    &self.vhost,
                    &setup.user,
                    ".*",
                    ".*",
                    ".*",
                ]
                .map(String::from)
                .to_vec(),
            );
        }
        self.users.push(setup.user.clone());
        for command in commands {
            assert_eq!(command[0], "rabbitmqctl");
            ctl(&command[1..]);
        }
        format!(
            "amqp://{}:{password}@127.0.0.1:5672/{}",
            setup.user, self.vhost
        )
    }

    /// Every queue of the vhost and how many messages it holds.
    fn queue_counts(&self) -> BTreeMap<String, u64> {
        let output = Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "-p", &self.vhost, "name", "messages"])
            .output()
            .expect("rabbitmqctl runs");
        assert!(output.status.success());
        String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let (name, count) = line.split_once('\t')?;
                Some((name.to_owned(), count.trim().parse().ok()?))
            })
            .filter(|(name, _)| !name.starts_with("amq.gen-"))
            .collect()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        for user in &self.users {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", user])
                .output();
        }
        let _ = Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.vhost])
            .output();
    }
}

/// One archive server of the test.
struct Archive {
    grant: Grant,
    subscriber: SubscriberName,
    selection: Selection,
    url: String,
    backend: RabbitBackend,
    /// Its consumer, while it consumes.
    deliveries: Option<Deliveries>,
}

/// Everything the list server publishes in one round: mail to every list,
/// and of each list a settings event and a membership event; then a public
/// and a team sentinel, so that every archive's last expected envelope comes
/// after everything else of the round (a leak of anything earlier, private
/// lists included, arrives before it and is seen).
fn round() -> Vec<Envelope> {
    let mut envelopes = Vec::new();
    for id in [PUBLIC_LISTS[0], PUBLIC_LISTS[1], TEAM, BOARD] {
        let list = list(id);
        envelopes.push(small_mail(&list, "least-privilege.example.org"));
        let created = ListChange::ListCreated {
            posting_address: format!("{}@example.org", id.split('.').next().unwrap()).into(),
        };
        envelopes.push(event(&list, created));
        envelopes.push(member_joined(&list));
    }
    for id in [PUBLIC_LISTS[0], TEAM] {
        envelopes.push(small_mail(&list(id), "least-privilege.example.org"));
    }
    envelopes
}

/// Receives (and acks) until
/// the round's final envelope this archive gets (its queue is first in,
/// first out): what arrives is exactly `expected`, byte for byte.
async fn receive_exactly(archive: &mut Archive, expected: &[Envelope]) {
    let last = expected.last().expect("every archive gets something").id;
    let mut received: Vec<Envelope> = Vec::new();
    while !received.iter().any(|e| e.id == last) {
        let deliveries = archive.deliveries.as_mut().expect("consuming");
        let item = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{}: waited 20 s after {} of {}",
                    archive.grant.principal(),
                    received.len(),
                    expected.len()
                )
            })
            .expect("the stream goes on");
        let delivery = item.unwrap_or_else(|e| panic!("{}: {e}", archive.grant.principal()));
        received.push(delivery.envelope().clone());
        delivery.ack().await.unwrap();
    }
    let ids = |envelopes: &[Envelope]| {
        let mut ids: Vec<EnvelopeId> = envelopes.iter().map(|e| e.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(
        ids(&received),
        ids(expected),
        "{} received other envelopes than its grant allows",
        archive.grant.principal()
    );
    for envelope in expected {
        let got = received.iter().find(|e| e.id == envelope.id).unwrap();
        assert_eq!(got, envelope, "not byte-identical");
    }
}

/// Publishes a round; returns what was published.
async fn publish_round(publisher: &RabbitBackend) -> Vec<Envelope> {
    let envelopes = round();
    for envelope in &envelopes {
        publisher.publish(envelope).await.unwrap();
    }
    envelopes
}

fn share(archive: &Archive, envelopes: &[Envelope]) -> Vec<Envelope> {
    envelopes
        .iter()
        .filter(|e| archive.grant.may_receive(e) && archive.selection.matches(e))
        .cloned()
        .collect()
}

#[tokio::test]
async fn each_archive_server_gets_exactly_its_grant_and_the_broker_refuses_the_rest() {
    let shared = std::env::var_os("ARCHIVER_LP_SHARED_ACCOUNT").is_some();
    let run = uuid::Uuid::now_v7().simple().to_string();
    let run = &run[run.len() - 12..];
    let mut broker = Broker::new(run);
    let prefix = Prefix::new("archiver").unwrap();

    let list_server = permissions::list_server(&prefix, &broker.vhost, &format!("ls-{run}"));
    let url = broker.add(&list_server, false);
    let list_server_url = url;

    let grants = [
        (
            Grant::new(format!("public-{run}"))
                .subscriber(name("public-archive"))
                .lists("#".parse().unwrap()),
            Selection::all(),
        ),
        (
            Grant::new(format!("team-{run}"))
                .subscriber(name("team-archive"))
                .lists(TEAM.parse().unwrap())
                .private_lists(true),
            Selection::all().list(TEAM.parse().unwrap()),
        ),
        (
            Grant::new(format!("all-{run}"))
                .subscriber(name("all-archive"))
                .lists("#".parse().unwrap())
                .private_lists(true)
                .membership_events(true),
            Selection::all(),
        ),
    ];
    let mut archives = Vec::new();
    let mut publisher = None;
    for (grant, selection) in grants {
        let setup = permissions::archive_server(&prefix, &broker.vhost, &grant);
        let url = broker.add(&setup, shared);
        let subscriber = grant.subscribers()[0].clone();
        let config = RabbitConfig::new(url.clone())
            .prefix(prefix.clone())
            .archive_server(grant.clone());
        if publisher.is_none() {
            // An archive server declares nothing shared: before the list
            // server ever connected, there is nothing to consume from.
            let early = RabbitBackend::connect(config.clone()).await.map(drop);
            assert!(
                matches!(&early, Err(BackendError::Unavailable(why)) if why.contains("does not exist yet")),
                "{early:?}"
            );
            publisher = Some(
                RabbitBackend::connect(
                    RabbitConfig::new(list_server_url.clone()).prefix(prefix.clone()),
                )
                .await
                .unwrap(),
            );
        }
        let backend = RabbitBackend::connect(config).await.unwrap();
        let deliveries = backend
            .subscribe(&Subscription::new(subscriber.clone()).select(selection.clone()))
            .await
            .unwrap();
        archives.push(Archive {
            grant,
            subscriber,
            selection,
            url,
            backend,
            deliveries: Some(deliveries),
        });
    }

    let publisher = publisher.expect("connected with the first archive server");
    // Round 1: each archive server receives exactly its grant.
    let first = publish_round(&publisher).await;
    for archive in &mut archives {
        let expected = share(archive, &first);
        receive_exactly(archive, &expected).await;
    }

    // An archive server may not publish: the refusal is the retryable
    // Auth (a spool keeps the mail), naming the exchange, not Forbidden.
    let refused = archives[0]
        .backend
        .publish(&small_mail(
            &list(PUBLIC_LISTS[0]),
            "least-privilege.example.org",
        ))
        .await;
    assert!(
        matches!(&refused, Err(BackendError::Auth(why)) if why.contains("archiver")),
        "{refused:?}"
    );

    // The client refuses a selection outside its grant; the broker refuses
    // one the client was wrongly told it may make (a grant wider than the
    // user's permissions), naming the binding key.
    let team = &archives[1];
    let refused = team
        .backend
        .subscribe(
            &Subscription::new(team.subscriber.clone()).select(
                Selection::all()
                    .list(BOARD.parse().unwrap())
                    .only(Kind::Mail),
            ),
        )
        .await
        .map(drop);
    assert!(
        matches!(&refused, Err(BackendError::Forbidden(why)) if why.contains(BOARD)),
        "{refused:?}"
    );
    let public = &archives[0];
    let boasting = RabbitBackend::connect(
        RabbitConfig::new(public.url.clone())
            .prefix(prefix.clone())
            .archive_server(public.grant.clone().private_lists(true)),
    )
    .await
    .unwrap();
    let refused = boasting
        .subscribe(&Subscription::new(public.subscriber.clone()))
        .await
        .map(drop);
    boasting.close().await.unwrap();
    let mut table = vec![(
        public.grant.principal().to_owned(),
        "subscribe # under a grant claiming private lists (lapin)".to_owned(),
        "connected".to_owned(),
        match &refused {
            Err(BackendError::Forbidden(why))
                if why.contains("mail.private.#") || why.contains("event.private.#") =>
            {
                "403".to_owned()
            }
            other => format!("{other:?}"),
        },
    )];
    // Its own selection again: unbinds what a successful attempt bound.
    drop(
        public
            .backend
            .subscribe(&Subscription::new(public.subscriber.clone()).select(Selection::all()))
            .await
            .unwrap(),
    );

    // Round 2 stays in the queues while the attacks run.
    for archive in &mut archives {
        archive.deliveries = None;
    }
    let second = publish_round(&publisher).await;
    let counts = wait_for_counts(&broker, &archives, &second).await;

    if python_with("pika") {
        // Deleting the shared exchange comes last, for every user: where it
        // is not refused, it would make the others' attempts meaningless.
        for last in [false, true] {
            for (attacker, victim) in [(0, 1), (1, 0), (2, 1)] {
                let rows = attack(&prefix, &archives[attacker], &archives[victim], last);
                table.extend(rows);
            }
        }
    }
    for (user, attempt, granted, outcome) in &table {
        println!("| {user} | {attempt} | granted action: {granted} | {outcome} |");
    }
    assert_eq!(
        broker.queue_counts(),
        counts,
        "an attack changed what a queue holds"
    );
    let allowed: Vec<_> = table.iter().filter(|row| row.3 != "403").collect();
    assert!(allowed.is_empty(), "not refused with 403: {allowed:?}");

    // The victims then receive exactly round 2: nothing taken, nothing forged.
    for archive in &mut archives {
        archive.deliveries = Some(
            archive
                .backend
                .subscribe(
                    &Subscription::new(archive.subscriber.clone())
                        .select(archive.selection.clone()),
                )
                .await
                .unwrap(),
        );
        let expected = share(archive, &second);
        receive_exactly(archive, &expected).await;
    }
    // Everything an archive server does runs under its restricted user:
    // a retry through its retry queue, a dead letter, listing and replay,
    // and a live tail of what it may read.
    let public = &mut archives[0];
    let mut tail = public.backend.tail(&Selection::all()).await.unwrap();
    let deliveries = public.deliveries.as_mut().unwrap();
    let mail = small_mail(&list(PUBLIC_LISTS[0]), "least-privilege.example.org");
    let secret = small_mail(&list(BOARD), "least-privilege.example.org");
    publisher.publish(&secret).await.unwrap();
    publisher.publish(&mail).await.unwrap();
    let next = async |deliveries: &mut Deliveries| {
        tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .expect("a delivery")
            .expect("the stream goes on")
            .unwrap()
    };
    let first = next(deliveries).await;
    assert_eq!(first.envelope(), &mail);
    first.nack(Duration::from_millis(100)).await.unwrap();
    let second = next(deliveries).await;
    assert_eq!((second.envelope(), second.attempt()), (&mail, 2));
    second.reject("refused by the test").await.unwrap();
    let subscriber = public.subscriber.clone();
    let dead = public.backend.dead_letters(&subscriber).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].envelope, mail);
    let replayed = public
        .backend
        .replay_dead_letters(&subscriber, archiver_core::Replay::All)
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    let again = next(deliveries).await;
    assert_eq!(again.envelope(), &mail);
    again.ack().await.unwrap();
    let tailed = tokio::time::timeout(Duration::from_secs(20), tail.next())
        .await
        .expect("the tail carries it")
        .unwrap()
        .unwrap();
    assert_eq!(
        tailed, mail,
        "the tail carries the public mail, not the private one"
    );
    drop(tail);

    for archive in archives {
        drop(archive.deliveries);
        archive.backend.close().await.unwrap();
    }
    publisher.close().await.unwrap();
}

/// Waits until each subscriber's queue holds its share of `round`; returns
/// every queue's count then.
async fn wait_for_counts(
    broker: &Broker,
    archives: &[Archive],
    round: &[Envelope],
) -> BTreeMap<String, u64> {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let counts = broker.queue_counts();
        let settled = archives.iter().all(|a| {
            counts.get(&format!("archiver.q.{}", a.subscriber)).copied()
                == Some(share(a, round).len() as u64)
        });
        if settled {
            return counts;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the queues never held round 2: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Runs the pika attacker as `attacker` against `victim`'s objects (and
/// the private list `team`), or only the deletion of the shared exchange
/// (`last`); returns (user, attempt, granted action, outcome) rows.
fn attack(
    prefix: &Prefix,
    attacker: &Archive,
    victim: &Archive,
    last: bool,
) -> Vec<(String, String, String, String)> {
    let private_list = TEAM;
    let own_queue = format!("{prefix}.q.{}", attacker.subscriber);
    let victim_queue = format!("{prefix}.q.{}", victim.subscriber);
    let granted_key =
        if attacker.grant.allows_private_lists() && attacker.selection.lists().len() == 1 {
            format!("mail.private.{private_list}")
        } else {
            "mail.public.dev.example.org".to_owned()
        };
    // A private list the attacker is not granted.
    let forbidden_private = if attacker.grant.allows_private_lists() {
        BOARD
    } else {
        private_list
    };
    let suffix = forbidden_private;
    let bind = |key: &str| serde_json::json!({"action": "bind", "queue": own_queue, "key": key});
    let mut attempts = vec![
        ("bind #", bind("#")),
        ("bind mail.#", bind("mail.#")),
        ("bind mail.#.<suffix>", bind(&format!("mail.#.{suffix}"))),
        ("bind mail.*.<suffix>", bind(&format!("mail.*.{suffix}"))),
        (
            "read other's queue",
            serde_json::json!({"action": "get", "queue": victim_queue}),
        ),
        (
            "read other's dead letters",
            serde_json::json!({"action": "get", "queue": format!("{prefix}.dead.{}", victim.subscriber)}),
        ),
        (
            "read unrouted",
            serde_json::json!({"action": "get", "queue": format!("{prefix}.unrouted")}),
        ),
        (
            "publish via default exchange into other's queue",
            serde_json::json!({"action": "publish", "exchange": "", "key": victim_queue}),
        ),
        (
            "publish via other's own exchange",
            serde_json::json!({"action": "publish", "exchange": format!("{prefix}.x.{}", victim.subscriber), "key": victim_queue}),
        ),
        (
            "publish to the topic exchange",
            serde_json::json!({"action": "publish", "exchange": prefix.as_str(), "key": format!("mail.private.{private_list}")}),
        ),
        (
            "declare own queue dead-lettering to <p> (forgery)",
            serde_json::json!({"action": "declare-dlx", "queue": format!("{prefix}.retry.{}.7", attacker.subscriber), "exchange": prefix.as_str(), "key": format!("mail.private.{private_list}")}),
        ),
        (
            "exchange.bind own exchange to <p> with #",
            serde_json::json!({"action": "exchange-bind", "destination": format!("{prefix}.x.{}", attacker.subscriber), "exchange": prefix.as_str(), "key": "#"}),
        ),
        (
            "bind own queue to <p>.unrouted",
            serde_json::json!({"action": "bind", "queue": own_queue, "exchange": format!("{prefix}.unrouted"), "key": ""}),
        ),
        (
            "bind own queue to other's own exchange",
            serde_json::json!({"action": "bind", "queue": own_queue, "exchange": format!("{prefix}.x.{}", victim.subscriber), "key": victim_queue}),
        ),
        (
            "bind an amq.gen queue with mail.#",
            serde_json::json!({"action": "gen-bind", "key": "mail.#"}),
        ),
    ];
    if last {
        attempts = vec![(
            "delete the shared exchange",
            serde_json::json!({"action": "delete-exchange", "exchange": prefix.as_str()}),
        )];
    } else if !(attacker.grant.allows_private_lists() && attacker.selection.lists().is_empty()) {
        attempts.insert(
            4,
            (
                "bind a private list's key",
                bind(&format!("mail.private.{forbidden_private}")),
            ),
        );
    }
    let names: Vec<&str> = attempts.iter().map(|(n, _)| *n).collect();
    let specs: Vec<serde_json::Value> = attempts
        .iter()
        .map(|(n, spec)| {
            let mut spec = spec.clone();
            spec["name"] = serde_json::json!(n);
            spec
        })
        .collect();
    let task = serde_json::json!({
        "url": attacker.url,
        "prefix": prefix.as_str(),
        "own_queue": own_queue,
        "granted_key": granted_key,
        "attempts": specs,
    });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/least_privilege.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(task.to_string().as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "the pika attacker failed");
    let rows: Vec<(String, String, String, String)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |k: &str| row[k].as_str().unwrap().to_owned();
            (
                attacker.grant.principal().to_owned(),
                text("attempt"),
                text("granted"),
                text("outcome"),
            )
        })
        .collect();
    assert_eq!(rows.len(), names.len(), "an attempt did not report");
    rows
}
