//! The broker-side topology under change: a subscriber's bindings replaced
//! while mail flows, and what its queues promise when dead-lettering.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use archiver_core::conformance::Harness;
use archiver_core::{
    ArchivedMail, Envelope, EnvelopeId, Kind, ListId, MailLimits, MailingList, Publisher,
    Selection, Subscriber, SubscriberName, Subscription,
};
use futures::StreamExt;
use support::RabbitHarness;

fn mail(list: &ListId, n: usize) -> Envelope {
    let raw = bytes::Bytes::from(format!(
        "Message-ID: <{n}.{}@topology.example.org>\r\n\r\nmail {n}\r\n",
        uuid::Uuid::now_v7()
    ));
    Envelope::mail(
        &ArchivedMail::parse(raw, &MailLimits::default()).unwrap(),
        &MailingList::public(list.clone()),
    )
}

/// A selection that keeps `dev.lists.example.org` selected through another
/// binding key each time (pattern, then exact, then pattern ...): no publish
/// confirmed meanwhile may miss the subscriber's queue.
#[tokio::test]
async fn rebinding_a_still_selected_list_loses_nothing() {
    let harness = RabbitHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("dev.lists.example.org").unwrap();
    let name = SubscriberName::new("rebind").unwrap();
    let pattern = Selection::all()
        .list("*.lists.example.org".parse().unwrap())
        .only(Kind::Mail);
    let exact = Selection::all()
        .list("dev.lists.example.org".parse().unwrap())
        .only(Kind::Mail);
    // Consumers come and go with each change: attempts must not run out.
    let subscription = |selection: &Selection| {
        Subscription::new(name.clone())
            .select(selection.clone())
            .max_attempts(10_000)
    };
    drop(backend.subscribe(&subscription(&pattern)).await.unwrap());

    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (backend, stop, list) = (backend.clone(), Arc::clone(&stop), list.clone());
        async move {
            let mut confirmed: Vec<EnvelopeId> = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                let envelope = mail(&list, n);
                backend.publish(&envelope).await.unwrap();
                confirmed.push(envelope.id);
                n += 1;
            }
            confirmed
        }
    });
    for change in 0..50 {
        let selection = if change % 2 == 0 { &exact } else { &pattern };
        drop(backend.subscribe(&subscription(selection)).await.unwrap());
    }
    stop.store(true, Ordering::Relaxed);
    let confirmed = publisher.await.unwrap();
    assert!(confirmed.len() > 50, "only {} publishes", confirmed.len());

    let mut deliveries = backend.subscribe(&subscription(&pattern)).await.unwrap();
    let mut wanted: HashSet<EnvelopeId> = confirmed.iter().copied().collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !wanted.is_empty() && Instant::now() < deadline {
        let Ok(Some(delivery)) =
            tokio::time::timeout(Duration::from_secs(2), deliveries.next()).await
        else {
            break;
        };
        let delivery = delivery.unwrap();
        wanted.remove(&delivery.envelope().id);
        delivery.ack().await.unwrap();
    }
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!(
        wanted.len(),
        0,
        "{} of {} confirmed publishes never reached the queue",
        wanted.len(),
        confirmed.len()
    );
}

/// Returns the mail in `queue` until the broker dead-letters it.
async fn return_until_dead_lettered(channel: &lapin::Channel, queue: &str) {
    use lapin::options::{BasicGetOptions, BasicNackOptions};
    let deadline = Instant::now() + Duration::from_secs(10);
    while let Some(message) = channel
        .basic_get(queue.into(), BasicGetOptions::default())
        .await
        .unwrap()
    {
        assert!(
            Instant::now() < deadline,
            "the broker never dead-lettered it"
        );
        let requeue = BasicNackOptions {
            requeue: true,
            multiple: false,
        };
        message.delivery.acker.nack(requeue).await.unwrap();
    }
}

/// A mail reaching its quorum queue's delivery limit while the dead-letter
/// queue is missing waits in the broker until it is back (at-least-once
/// dead-lettering) instead of being dropped: in a queue this version
/// declares, and, through the documented policy, in one an earlier version
/// declared without it.
#[tokio::test]
async fn a_mail_at_its_delivery_limit_waits_for_a_missing_dead_letter_queue() {
    use backend_rabbitmq::{RabbitBackend, RabbitConfig};
    use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
    use lapin::types::{AMQPValue, FieldTable, LongString};

    // The broker retries dead-lettering every second instead of every few
    // minutes, so the test is short.
    let node = support::RabbitNode::start_advanced(
        "",
        "[{rabbit, [{dead_letter_worker_publisher_confirm_timeout, 1000}]}].",
    );
    let url = format!("amqp://guest:guest@127.0.0.1:{}/%2f", node.port);
    let harness = RabbitHarness::on(RabbitConfig::new(&url));
    let prefix = harness.config.prefix.clone();
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // The queue of subscriber "earlier" as an earlier version declared it.
    let text = |s: &str| AMQPValue::LongString(LongString::from(s));
    let mut earlier = FieldTable::default();
    earlier.insert("x-queue-type".into(), text("quorum"));
    earlier.insert("x-dead-letter-exchange".into(), text(""));
    earlier.insert(
        "x-dead-letter-routing-key".into(),
        text(&format!("{prefix}.dead.earlier")),
    );
    earlier.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(1));
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(
            format!("{prefix}.q.earlier").as_str().into(),
            durable,
            earlier,
        )
        .await
        .unwrap();
    let backend: RabbitBackend = harness.connect().await;
    let list = ListId::new("limit.lists.example.org").unwrap();
    let mut published = Vec::new();
    for name in ["limited", "earlier"] {
        if name == "earlier" {
            // Only now, so that "limited" shows what its own arguments do.
            let policy = r#"{"dead-letter-strategy":"at-least-once","overflow":"reject-publish"}"#;
            let pattern = format!("^{}\\.q\\.", prefix.replace('.', "\\."));
            node.ctl(&[
                "set_policy",
                "--apply-to",
                "queues",
                "archiver-at-least-once",
                &pattern,
                policy,
            ]);
        }
        let name = SubscriberName::new(name).unwrap();
        let subscription = Subscription::new(name.clone()).max_attempts(2);
        drop(backend.subscribe(&subscription).await.unwrap());
        let envelope = mail(&list, published.len());
        backend.publish(&envelope).await.unwrap();
        channel
            .queue_delete(
                format!("{prefix}.dead.{name}").as_str().into(),
                QueueDeleteOptions::default(),
            )
            .await
            .unwrap();
        return_until_dead_lettered(&channel, &format!("{prefix}.q.{name}")).await;
        published.push((subscription, envelope));
    }
    for (subscription, envelope) in &published {
        // The subscriber comes back: its dead-letter queue is declared again.
        drop(backend.subscribe(subscription).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(15);
        let page = loop {
            let page = backend
                .dead_letter_page(&subscription.name, 10)
                .await
                .unwrap();
            if page.total > 0 || Instant::now() > deadline {
                break page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            page.total, 1,
            "{}: the mail was dropped at its delivery limit",
            subscription.name
        );
        assert_eq!(page.letters[0].envelope.as_ref().unwrap().id, envelope.id);
    }
    let _ = connection.close(200, "done".into()).await;
}

/// This prefix's queues on the shared broker: name, type and arguments as
/// `rabbitmqctl list_queues` prints them (AMQP cannot tell a queue's type).
fn queues_of(prefix: &str) -> Vec<(String, String, String)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["-q", "list_queues", "name", "type", "arguments"])
        .output()
        .expect("rabbitmqctl runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let mut columns = line.splitn(3, '\t');
            Some((columns.next()?, columns.next()?, columns.next()?))
        })
        .filter(|(name, _, _)| name.starts_with(prefix))
        .map(|(name, kind, arguments)| (name.to_owned(), kind.to_owned(), arguments.to_owned()))
        .collect()
}

/// A nack with a delay parks a copy in a retry queue: by default a quorum
/// queue that dead-letters it back at least once, like the subscriber's.
#[tokio::test]
async fn nacked_mail_waits_in_a_quorum_retry_queue() {
    let harness = RabbitHarness::new();
    let backend = harness.connect().await;
    let list = ListId::new("retry.lists.example.org").unwrap();
    let name = SubscriberName::new("retried").unwrap();
    let mut deliveries = backend
        .subscribe(&Subscription::new(name.clone()))
        .await
        .unwrap();
    let envelope = mail(&list, 0);
    backend.publish(&envelope).await.unwrap();
    let first = deliveries.next().await.unwrap().unwrap();
    first.nack(Duration::from_millis(100)).await.unwrap();
    let again = tokio::time::timeout(Duration::from_secs(10), deliveries.next())
        .await
        .expect("the nacked mail comes back")
        .unwrap()
        .unwrap();
    assert_eq!((again.envelope(), again.attempt()), (&envelope, 2));
    again.ack().await.unwrap();
    let retry: Vec<_> = queues_of(&harness.config.prefix)
        .into_iter()
        .filter(|(queue, _, _)| queue.contains(".retry."))
        .collect();
    drop(deliveries);
    harness.cleanup().await;
    assert_eq!(retry.len(), 1, "{retry:?}");
    assert_eq!(retry[0].1, "quorum", "{retry:?}");
}

/// Every queue that holds mail is durable and, by default, quorum: the
/// dead letters and the unrouted queue too, which refuses when full
/// instead of dropping its oldest; classic when asked.
#[tokio::test]
async fn dead_letter_and_unrouted_queues_are_quorum_by_default_and_classic_when_asked() {
    use backend_rabbitmq::{QueueType, RabbitConfig};
    for (queue_type, kind) in [
        (QueueType::Quorum, "quorum"),
        (QueueType::Classic, "classic"),
    ] {
        let harness = RabbitHarness::on(RabbitConfig::from_env().queue_type(queue_type));
        let backend = harness.connect().await;
        let name = SubscriberName::new("typed").unwrap();
        drop(
            backend
                .subscribe(&Subscription::new(name.clone()))
                .await
                .unwrap(),
        );
        let prefix = &harness.config.prefix;
        let queues = queues_of(prefix);
        harness.cleanup().await;
        let find = |queue: String| {
            queues
                .iter()
                .find(|(name, _, _)| *name == queue)
                .unwrap_or_else(|| panic!("{queue} declared: {queues:?}"))
                .clone()
        };
        let (_, dead_type, dead_arguments) = find(format!("{prefix}.dead.typed"));
        let (_, unrouted_type, unrouted_arguments) = find(format!("{prefix}.unrouted"));
        assert_eq!((dead_type.as_str(), unrouted_type.as_str()), (kind, kind));
        if queue_type == QueueType::Quorum {
            for arguments in [&dead_arguments, &unrouted_arguments] {
                assert!(
                    arguments.contains(r#"{"x-queue-type","quorum"}"#),
                    "{arguments}"
                );
            }
        }
        for wanted in [
            r#"{"x-overflow","reject-publish"}"#,
            r#"{"x-max-length",100000}"#,
        ] {
            assert!(
                unrouted_arguments.contains(wanted),
                "{kind}: {unrouted_arguments}"
            );
        }
    }
}

/// Takes every message of `queue` (acknowledging them); returns their
/// envelope ids, oldest first.
async fn drain(url: &str, queue: &str) -> Vec<String> {
    use lapin::options::BasicGetOptions;
    let connection = lapin::Connection::connect(url, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut ids = Vec::new();
    let no_ack = BasicGetOptions { no_ack: true };
    while let Some(message) = channel.basic_get(queue.into(), no_ack).await.unwrap() {
        let id = message.delivery.properties.message_id().clone().unwrap();
        ids.push(id.as_str().to_owned());
    }
    let _ = connection.close(200, "drained".into()).await;
    ids
}

/// Mail no subscriber selects fills `<p>.unrouted` up to its bound; then a
/// publish is refused with a transient error that says why (the mail stays
/// with the caller's spool) and nothing kept is dropped.
#[tokio::test]
async fn a_full_unrouted_queue_refuses_mail_instead_of_dropping_it() {
    use backend_rabbitmq::RabbitConfig;
    let mut config = RabbitConfig::from_env();
    config.unrouted_max_length = 3;
    let harness = RabbitHarness::on(config);
    let backend = harness.connect().await;
    let list = ListId::new("nobody.lists.example.org").unwrap();
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    for n in 0..8 {
        let envelope = mail(&list, n);
        match backend.publish(&envelope).await {
            Ok(()) => accepted.push(envelope.id.to_string()),
            Err(error) => refused.push(error),
        }
    }
    let kept = drain(
        &harness.config.url,
        &format!("{}.unrouted", harness.config.prefix),
    )
    .await;
    harness.cleanup().await;
    assert_eq!(kept, accepted, "every accepted mail kept, in order");
    // A quorum queue takes one more than its bound before it refuses.
    assert!(
        (3..=4).contains(&accepted.len()),
        "{} accepted",
        accepted.len()
    );
    assert_eq!(accepted.len() + refused.len(), 8);
    for error in &refused {
        assert!(error.is_transient(), "{error}");
        let text = error.to_string();
        assert!(
            text.contains("publisher nack") && text.contains(".unrouted"),
            "{text}"
        );
    }
}

/// The unrouted queue an earlier version declared (classic, dropping its
/// oldest when full) is kept: connecting and publishing still work.
#[tokio::test]
async fn an_earlier_versions_unrouted_queue_is_kept() {
    use lapin::options::QueueDeclareOptions;
    use lapin::types::{AMQPValue, FieldTable, LongString};
    let harness = RabbitHarness::new();
    let unrouted = format!("{}.unrouted", harness.config.prefix);
    let connection =
        lapin::Connection::connect(&harness.config.url, lapin::ConnectionProperties::default())
            .await
            .unwrap();
    let channel = connection.create_channel().await.unwrap();
    let mut earlier = FieldTable::default();
    earlier.insert("x-max-length".into(), AMQPValue::LongLongInt(100_000));
    earlier.insert(
        "x-overflow".into(),
        AMQPValue::LongString(LongString::from("drop-head")),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(unrouted.as_str().into(), durable, earlier)
        .await
        .unwrap();
    let _ = connection.close(200, "declared".into()).await;

    let backend = harness.connect().await;
    let envelope = mail(&ListId::new("nobody.lists.example.org").unwrap(), 0);
    let published = backend.publish(&envelope).await;
    let kept = drain(&harness.config.url, &unrouted).await;
    harness.cleanup().await;
    published.unwrap();
    assert_eq!(kept, [envelope.id.to_string()]);
}
