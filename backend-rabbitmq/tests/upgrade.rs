//! A subscriber declared by the layout without access classes (routing
//! keys `<kind>.<list-id>`, bindings `mail.#`, dead-lettering through the
//! default exchange) and the mail in its queue survive the upgrade: the
//! new client keeps the queue, delivers what it held and what comes
//! after, dead-letters through the subscriber's own exchange, and drops
//! the old bindings (an old `mail.#` would also match new private keys).

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::conformance::fixtures::small_mail;
use archiver_core::{
    ArchivePolicy, Connection, Envelope, EnvelopeId, ListId, MailingList, Operator, Publisher,
    Selection, Subscriber, SubscriberName, Subscription,
};
use backend_rabbitmq::RabbitBackend;
use futures::StreamExt;
use lapin::options::{
    BasicPublishOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use support::RabbitHarness;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn table(entries: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert(ShortString::from(*name), value.clone());
    }
    table
}

/// The AMQP properties the earlier version published an envelope with.
fn properties(envelope: &Envelope) -> lapin::BasicProperties {
    let mut headers = FieldTable::default();
    for (field, value) in archiver_core::wire::to_fields(envelope) {
        headers.insert(ShortString::from(field), text(&value));
    }
    lapin::BasicProperties::default()
        .with_delivery_mode(2)
        .with_headers(headers)
}

#[tokio::test]
async fn a_subscriber_of_the_earlier_layout_keeps_its_queue_and_mail() {
    let harness = RabbitHarness::new();
    // The exchanges as the earlier version declared them.
    let backend = connect_to_earlier_layout(&harness).await;
    let prefix = harness.config.prefix.as_str().to_owned();
    let name = SubscriberName::new("old").unwrap();
    let (queue, dead, registry) = (
        format!("{prefix}.q.old"),
        format!("{prefix}.dead.old"),
        format!("{prefix}.sub.old"),
    );

    // The earlier version's subscriber "old", selecting everything.
    let (connection, channel) = raw_channel(&harness).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            dead.as_str().into(),
            durable,
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            queue.as_str().into(),
            durable,
            table(&[
                ("x-dead-letter-exchange", text("")),
                ("x-dead-letter-routing-key", text(&dead)),
                ("x-queue-type", text("quorum")),
                ("x-delivery-limit", AMQPValue::LongLongInt(4)),
                ("x-dead-letter-strategy", text("at-least-once")),
                ("x-overflow", text("reject-publish")),
            ]),
        )
        .await
        .unwrap();
    channel
        .queue_declare(
            registry.as_str().into(),
            durable,
            table(&[
                ("x-max-length", AMQPValue::LongLongInt(1)),
                ("x-overflow", text("drop-head")),
            ]),
        )
        .await
        .unwrap();
    for key in ["event.#", "mail.#"] {
        channel
            .queue_bind(
                queue.as_str().into(),
                prefix.as_str().into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    let publish = async |exchange: &str, key: &str, body: &[u8], properties| {
        channel
            .basic_publish(
                exchange.into(),
                key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    };
    publish(
        "",
        &registry,
        br#"["event.#","mail.#"]"#,
        lapin::BasicProperties::default().with_delivery_mode(2),
    )
    .await;
    // Mail the earlier list server published, waiting in the queue.
    let public = MailingList::public(ListId::new("dev.example.org").unwrap());
    let private = MailingList {
        archive_policy: ArchivePolicy::Private,
        ..MailingList::public(ListId::new("board.example.org").unwrap())
    };
    let mut expected: Vec<Envelope> = Vec::new();
    for list in [&public, &private, &public] {
        let envelope = small_mail(list, "upgrade.example.org");
        let key = format!("mail.{}", envelope.list_id);
        publish(&prefix, &key, &envelope.body, properties(&envelope)).await;
        expected.push(envelope);
    }

    // The upgrade: the new client subscribes "old" (the shared account).
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    for list in [&private, &public] {
        let envelope = small_mail(list, "upgrade.example.org");
        backend.publish(&envelope).await.unwrap();
        expected.push(envelope);
    }
    // An earlier list server's mail (old-style key) still arrives: the
    // earlier bindings stay during the upgrade.
    let earlier = small_mail(&public, "upgrade.example.org");
    publish(
        &prefix,
        &format!("mail.{}", earlier.list_id),
        &earlier.body,
        properties(&earlier),
    )
    .await;
    expected.push(earlier);
    let last = small_mail(&public, "upgrade.example.org");
    backend.publish(&last).await.unwrap();
    expected.push(last.clone());

    let mut received: Vec<Envelope> = Vec::new();
    let mut rejected: Option<EnvelopeId> = None;
    while !received.iter().any(|e| e.id == last.id) {
        let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .expect("a delivery")
            .expect("the stream goes on")
            .unwrap();
        received.push(delivery.envelope().clone());
        // The first one is rejected: its copy goes through the subscriber's
        // own exchange into the kept dead-letter queue.
        if rejected.is_none() {
            rejected = Some(delivery.envelope().id);
            delivery.reject("refused after the upgrade").await.unwrap();
        } else {
            delivery.ack().await.unwrap();
        }
    }
    drop(deliveries);
    let dead_letters = backend.dead_letters(&name).await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    harness.cleanup().await;

    assert_eq!(received, expected, "every mail, in order, byte for byte");
    assert_eq!(
        dead_letters
            .iter()
            .map(|d| d.envelope.id)
            .collect::<Vec<_>>(),
        [rejected.unwrap()]
    );
}

/// A raw channel on the harness's broker, in confirm mode.
async fn raw_channel(harness: &RabbitHarness) -> (lapin::Connection, lapin::Channel) {
    let connection =
        lapin::Connection::connect(&harness.config.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    channel.confirm_select(Default::default()).await.unwrap();
    (connection, channel)
}

/// Removes the layout marker `<p>.layout`, leaving the exchanges as an
/// earlier version declared them (the same declarations, no marker).
async fn remove_layout_marker(harness: &RabbitHarness) {
    let (connection, channel) = raw_channel(harness).await;
    channel
        .exchange_delete(
            format!("{}.layout", harness.config.prefix.as_str())
                .as_str()
                .into(),
            ExchangeDeleteOptions::default(),
        )
        .await
        .unwrap();
    let _ = connection.close(200, "done".into()).await;
}

/// A client of this version connecting where an earlier version's list
/// server declared the exchanges: a first client declares them, the
/// marker goes, and the client returned decides at connect that the
/// upgrade is on.
async fn connect_to_earlier_layout(harness: &RabbitHarness) -> RabbitBackend {
    drop(harness.connect().await);
    remove_layout_marker(harness).await;
    harness.connect().await
}

/// Messages waiting in `queue` (its publishes confirmed: a confirmed
/// persistent message is in every queue it was routed to).
async fn depth(channel: &lapin::Channel, queue: &str) -> u32 {
    let passive = QueueDeclareOptions {
        passive: true,
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), passive, FieldTable::default())
        .await
        .unwrap()
        .message_count()
}

/// `legacy_routing_keys` unset decides at connect: a new deployment
/// publishes with the new key only (it pays nothing for the upgrade), an
/// exchange an earlier version declared (no layout marker) gets both keys,
/// and once an operator's client ends the upgrade (`false`, which declares
/// the marker) clients deciding by themselves use the new key only again.
#[tokio::test]
async fn the_upgrade_mode_is_decided_at_connect_by_the_layout_marker() {
    let harness = RabbitHarness::new();
    let prefix = harness.config.prefix.as_str().to_owned();
    let fresh = harness.connect().await;
    let (connection, channel) = raw_channel(&harness).await;
    let earlier =
        declare_earlier_subscriber(&channel, &prefix, "earlier", &["mail.dev.example.org"]).await;
    let new =
        declare_earlier_subscriber(&channel, &prefix, "new", &["mail.public.dev.example.org"])
            .await;
    let dev = MailingList::public(ListId::new("dev.example.org").unwrap());
    let publish = async |client: &RabbitBackend| {
        client
            .publish(&small_mail(&dev, "upgrade.example.org"))
            .await
            .unwrap();
    };

    publish(&fresh).await;
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (0, 1),
        "a new deployment publishes with the new key only"
    );

    remove_layout_marker(&harness).await;
    let upgraded = harness.connect().await;
    publish(&upgraded).await;
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (1, 2),
        "an earlier version's exchange: both keys, one copy each"
    );

    let ending = RabbitBackend::connect(harness.config.clone().legacy_routing_keys(false))
        .await
        .unwrap();
    ending.close().await.unwrap();
    let after = harness.connect().await;
    publish(&after).await;
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (1, 3),
        "the upgrade ended: the new key only"
    );
    let _ = connection.close(200, "done".into()).await;
    harness.cleanup().await;
}

/// Declares an earlier version's subscriber queue `<p>.q.<name>` bound
/// with `keys` (what `main` bound: `<kind>.<pattern>`), on `channel`.
async fn declare_earlier_subscriber(
    channel: &lapin::Channel,
    prefix: &str,
    name: &str,
    keys: &[&str],
) -> String {
    let queue = format!("{prefix}.q.{name}");
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            queue.as_str().into(),
            durable,
            table(&[("x-queue-type", text("quorum"))]),
        )
        .await
        .unwrap();
    for key in keys {
        channel
            .queue_bind(
                queue.as_str().into(),
                prefix.into(),
                (*key).into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
    }
    queue
}

/// Takes every message in `queue` (basic.get until empty), returning the
/// envelope ids and the routing keys they arrived with.
async fn drain(channel: &lapin::Channel, queue: &str) -> Vec<(String, String)> {
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let message = channel
            .basic_get(
                queue.into(),
                lapin::options::BasicGetOptions { no_ack: true },
            )
            .await
            .unwrap();
        match message {
            Some(m) => got.push((
                archiver_core::wire::from_fields(
                    m.delivery
                        .properties
                        .headers()
                        .as_ref()
                        .unwrap()
                        .inner()
                        .iter()
                        .filter_map(|(k, v)| match v {
                            AMQPValue::LongString(s) => Some((
                                k.as_str().to_owned(),
                                String::from_utf8(s.as_bytes().to_vec()).unwrap(),
                            )),
                            _ => None,
                        })
                        .collect::<Vec<_>>()
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str())),
                    bytes::Bytes::from(m.delivery.data.clone()),
                )
                .unwrap()
                .list_id
                .to_string(),
                m.delivery.routing_key.to_string(),
            )),
            None if std::time::Instant::now() > deadline || !got.is_empty() => return got,
            None => tokio::task::yield_now().await,
        }
    }
}

/// The list server upgraded first: an earlier version's subscriber bound
/// to one exact list still gets that list's mail, once, with the key the
/// earlier version checks (`<kind>.<list-id>`), and nothing selected lands
/// in `<p>.unrouted`. A subscriber with a pattern starting with `*`
/// upgraded too keeps its earlier binding `mail.*.example.org`, which the
/// new key of list `example.org` (`mail.private.example.org`) matches: the
/// consumer drops that list, since its selection does not select it, and
/// gets each selected mail once.
#[tokio::test]
async fn the_list_server_upgraded_first_still_reaches_exact_and_star_bindings() {
    let harness = RabbitHarness::new();
    let backend = connect_to_earlier_layout(&harness).await;
    let prefix = harness.config.prefix.as_str().to_owned();
    let (connection, channel) = raw_channel(&harness).await;
    let exact =
        declare_earlier_subscriber(&channel, &prefix, "exact", &["mail.dev.example.org"]).await;
    declare_earlier_subscriber(&channel, &prefix, "star", &["mail.*.example.org"]).await;
    let dev = MailingList::public(ListId::new("dev.example.org").unwrap());
    let board = MailingList {
        archive_policy: ArchivePolicy::Private,
        ..MailingList::public(ListId::new("board.example.org").unwrap())
    };
    let apex = MailingList {
        archive_policy: ArchivePolicy::Private,
        ..MailingList::public(ListId::new("example.org").unwrap())
    };
    // "star" upgrades (shared account), selecting `*.example.org`.
    let mut deliveries = backend
        .subscribe(&Subscription {
            selection: archiver_core::Selection::all().list("*.example.org".parse().unwrap()),
            ..Subscription::new(SubscriberName::new("star").unwrap())
        })
        .await
        .unwrap();
    for list in [&dev, &board] {
        backend
            .publish(&small_mail(list, "upgrade.example.org"))
            .await
            .unwrap();
    }
    let exact_got = drain(&channel, &exact).await;
    let unrouted = channel
        .queue_declare(
            format!("{prefix}.unrouted").as_str().into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
        .message_count();
    let last = small_mail(&board, "upgrade.example.org");
    for envelope in [
        small_mail(&apex, "upgrade.example.org"),
        small_mail(&dev, "upgrade.example.org"),
        last.clone(),
    ] {
        backend.publish(&envelope).await.unwrap();
    }
    let mut after = Vec::new();
    loop {
        let delivery = tokio::time::timeout(Duration::from_secs(20), deliveries.next())
            .await
            .expect("a delivery")
            .expect("the stream goes on")
            .unwrap();
        let envelope = delivery.envelope().clone();
        delivery.ack().await.unwrap();
        after.push(envelope.list_id.to_string());
        if envelope.id == last.id {
            break;
        }
    }
    drop(deliveries);
    let _ = connection.close(200, "done".into()).await;
    harness.cleanup().await;

    assert_eq!(
        exact_got,
        [(
            "dev.example.org".to_owned(),
            "mail.dev.example.org".to_owned()
        )],
        "the exact-list queue of the earlier version gets its list once, with the key it checks"
    );
    assert_eq!(unrouted, 0, "nothing selected lands in unrouted");
    assert_eq!(
        after,
        [
            "dev.example.org",
            "board.example.org",
            "dev.example.org",
            "board.example.org"
        ],
        "the upgraded subscriber gets what it selects, once each, never list example.org"
    );
}

/// `rabbitmqctl` on the shared broker; panics unless it succeeds.
fn rabbitmqctl(args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs (scripts/test installs RabbitMQ)");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The broker's pids of the connections whose client properties contain
/// `name` (a client names them `mq-archiver <prefix> <role>`).
fn connections_named(name: &str) -> Vec<String> {
    rabbitmqctl(&[
        "list_connections",
        "-q",
        "--no-table-headers",
        "pid",
        "client_properties",
    ])
    .lines()
    .filter(|l| l.contains(name))
    .filter_map(|l| l.split('\t').next().map(str::to_owned))
    .collect()
}

/// Whether `check` holds within 20 s, polled.
async fn eventually(mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

/// The upgrade mode is decided once per client, at its connect: a client
/// that decided the upgrade is on keeps routing with the earlier keys
/// after the marker appears (an operator's client ending the upgrade: the
/// others keep it until they restart), both when its live tail declares
/// the exchanges again and when it reconnects after the broker closed its
/// publishing connection.
#[tokio::test]
async fn the_upgrade_mode_is_decided_once_per_client() {
    let harness = RabbitHarness::new();
    let prefix = harness.config.prefix.as_str().to_owned();
    let upgraded = connect_to_earlier_layout(&harness).await;
    let (connection, channel) = raw_channel(&harness).await;
    let earlier =
        declare_earlier_subscriber(&channel, &prefix, "earlier", &["mail.dev.example.org"]).await;
    let new =
        declare_earlier_subscriber(&channel, &prefix, "new", &["mail.public.dev.example.org"])
            .await;
    let dev = MailingList::public(ListId::new("dev.example.org").unwrap());
    let mail = || small_mail(&dev, "upgrade.example.org");

    upgraded.publish(&mail()).await.unwrap();
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (1, 1),
        "an earlier version's exchange: both keys"
    );

    // The marker appears.
    let ending = RabbitBackend::connect(harness.config.clone().legacy_routing_keys(false))
        .await
        .unwrap();
    ending.close().await.unwrap();

    // Its live tail declares the exchanges again.
    drop(upgraded.tail(&Selection::all()).await.unwrap());
    upgraded.publish(&mail()).await.unwrap();
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (2, 2),
        "still both keys after its tail declared the exchanges"
    );

    // The broker closes the publishing connections of the prefix (this
    // client's and the first one's); it reconnects.
    let publisher = format!("mq-archiver {prefix} publisher");
    let before = connections_named(&publisher);
    assert!(!before.is_empty(), "publishing connections: {before:?}");
    for pid in &before {
        rabbitmqctl(&["close_connection", pid, "test: reconnect"]);
    }
    assert!(
        eventually(|| connections_named(&publisher).is_empty()).await,
        "the broker closed them"
    );
    // A publish on the closed link fails and drops it; the next reconnects.
    let deadline = Instant::now() + Duration::from_secs(20);
    let envelope = mail();
    while let Err(error) = upgraded.publish(&envelope).await {
        assert!(Instant::now() < deadline, "no reconnect: {error}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let after = connections_named(&publisher);
    assert!(
        after.len() == 1 && !before.contains(&after[0]),
        "a new publishing connection: {before:?} then {after:?}"
    );
    assert_eq!(
        (depth(&channel, &earlier).await, depth(&channel, &new).await),
        (3, 3),
        "still both keys after the reconnect"
    );
    let _ = connection.close(200, "done".into()).await;
    harness.cleanup().await;
}

/// The marker `<p>.layout` is declared only once `<p>` was: here `<p>`
/// exists without the alternate exchange this configuration declares it
/// with, so the declaration is refused (inequivalent argument) and no
/// marker may be left behind, which would make the clients after it
/// decide that no earlier subscriber can be bound.
#[tokio::test]
async fn no_marker_is_declared_when_the_exchange_declaration_fails() {
    let harness = RabbitHarness::new();
    let prefix = harness.config.prefix.as_str().to_owned();
    let marker = format!("{prefix}.layout");
    let (connection, channel) = raw_channel(&harness).await;
    channel
        .exchange_declare(
            prefix.as_str().into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let refused = RabbitBackend::connect(harness.config.clone().legacy_routing_keys(false)).await;
    assert!(
        refused.is_err(),
        "declaring {prefix} with an alternate exchange is refused"
    );
    let check = connection.create_channel().await.unwrap();
    let marked = check
        .exchange_declare(
            marker.as_str().into(),
            lapin::ExchangeKind::Fanout,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await;
    // Clean up by hand: no client of the harness declared these.
    let clean = connection.create_channel().await.unwrap();
    for exchange in [prefix.clone(), marker.clone(), format!("{prefix}.unrouted")] {
        let _ = clean
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = clean
        .queue_delete(
            format!("{prefix}.unrouted").as_str().into(),
            Default::default(),
        )
        .await;
    let _ = connection.close(200, "done".into()).await;
    assert!(
        marked.is_err(),
        "no marker {marker} when declaring {prefix} was refused"
    );
}

/// An archive server's role never uses the earlier keys, whatever its
/// configuration says: its decision is made (off) where it only checks
/// that `<p>` exists. Run as the shared account here, so that the broker
/// lets it publish and what it would route shows.
#[tokio::test]
async fn an_archive_server_decides_the_upgrade_off() {
    let harness = RabbitHarness::new();
    let prefix = harness.config.prefix.as_str().to_owned();
    drop(connect_to_earlier_layout(&harness).await);
    let (connection, channel) = raw_channel(&harness).await;
    let earlier =
        declare_earlier_subscriber(&channel, &prefix, "earlier", &["mail.dev.example.org"]).await;
    let new =
        declare_earlier_subscriber(&channel, &prefix, "new", &["mail.public.dev.example.org"])
            .await;
    let grant = archiver_core::Grant::new("archive").lists("dev.example.org".parse().unwrap());
    let archive = RabbitBackend::connect(
        harness
            .config
            .clone()
            .archive_server(grant)
            .legacy_routing_keys(true),
    )
    .await
    .unwrap();
    let dev = MailingList::public(ListId::new("dev.example.org").unwrap());
    archive
        .publish(&small_mail(&dev, "upgrade.example.org"))
        .await
        .unwrap();
    let depths = (depth(&channel, &earlier).await, depth(&channel, &new).await);
    archive.close().await.unwrap();
    let _ = connection.close(200, "done".into()).await;
    harness.cleanup().await;
    assert_eq!(depths, (0, 1), "the new key only");
}
