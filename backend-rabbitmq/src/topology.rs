//! Declaring what the backend needs on the broker: the exchanges, and a
//! subscriber's queues and bindings. Every declaration is idempotent and is
//! repeated after a reconnect; the upgrade mode is decided by a client's
//! first one only ([`decide_legacy_keys`]) and kept for its life.

use std::collections::BTreeSet;

use archiver_core::{BackendError, ErrorDetail, SubscriberName, Subscription};
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ExchangeDeclareOptions,
    QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};

use crate::Shared;
use crate::config::QueueType;
use crate::error::{backend_error, is_not_found, is_precondition_failed};
use crate::link::confirm_channel;
use crate::names::Names;
use crate::publish::refusal;

/// Builds a field table.
pub(crate) fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut table = FieldTable::default();
    for (name, value) in entries {
        table.insert(ShortString::from(name), value);
    }
    table
}

pub(crate) fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn durable() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

/// The topic exchange, and (when kept) the unrouted exchange and queue
/// behind it as its alternate exchange, then (outside the upgrade) the
/// layout marker; only checked to exist (a passive declare) by an archive
/// server, which may neither configure them nor read the unrouted queue.
/// The first call of a client decides the upgrade mode
/// ([`decide_legacy_keys`]); later ones (reconnects, tails) keep it.
/// Returns a usable confirm channel (a refused declaration closes one).
pub(crate) async fn declare_exchanges(
    connection: &Connection,
    channel: Channel,
    shared: &Shared,
) -> Result<Channel, BackendError> {
    let names = &shared.names;
    if !shared.config.role.declares_shared() {
        // It never publishes to `<p>` and may bind no earlier key: decided
        // off, so nothing reads an undecided value.
        shared.decide_legacy_keys(false);
        let passive = ExchangeDeclareOptions {
            passive: true,
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        return match channel
            .exchange_declare(
                names.exchange().into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => Ok(channel),
            Err(error) if is_not_found(&error) => {
                Err(BackendError::Unavailable(ErrorDetail::caused_by(
                    format!(
                        "the exchange {} does not exist yet: the list server declares it when it connects",
                        names.exchange()
                    ),
                    error,
                )))
            }
            Err(error) => Err(backend_error(error)),
        };
    }
    let (mut channel, decision) = decide_legacy_keys(connection, channel, shared).await?;
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    let mut arguments = FieldTable::default();
    if shared.config.keep_unrouted {
        let unrouted = names.unrouted();
        declare_fanout(&channel, shared, &unrouted).await?;
        // Full, it refuses: the publish is nacked and the mail stays with
        // the caller (its spool), where dropping the oldest would lose it.
        let mut limits = vec![
            (
                "x-max-length",
                AMQPValue::LongLongInt(i64::from(shared.config.unrouted_max_length)),
            ),
            ("x-overflow", text("reject-publish")),
        ];
        if shared.config.queue_type == QueueType::Quorum {
            limits.push(("x-queue-type", text("quorum")));
        }
        channel = declare_or_keep(connection, channel, &unrouted, limits, KEPT_UNROUTED).await?;
        channel
            .queue_bind(
                unrouted.as_str().into(),
                unrouted.as_str().into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend_error)?;
        shared.record(&unrouted, Entity::Queue);
        arguments.insert("alternate-exchange".into(), text(&unrouted));
    }
    channel
        .exchange_declare(
            names.exchange().into(),
            ExchangeKind::Topic,
            options,
            arguments,
        )
        .await
        .map_err(backend_error)?;
    shared.record(names.exchange(), Entity::Exchange);
    if !decision.legacy {
        // Only once `<p>` exists (this client's declaration succeeded): a
        // marker without the exchange would make the clients connecting
        // after an earlier version's list server then declares `<p>`
        // decide that no earlier subscriber can be bound, and publish
        // without the keys those subscribers are bound with. The other
        // order's window (a client connecting between the two declarations
        // decides the upgrade is on) only costs it throughput.
        declare_fanout(&channel, shared, &names.layout_marker()).await?;
        if decision.marker_was_missing {
            tracing::info!(
                exchange = names.exchange(),
                marker = %names.layout_marker(),
                "declared the layout marker: clients connecting from now on publish the new \
                 routing keys only (no earlier version's client may publish or subscribe here)"
            );
        }
    }
    Ok(channel)
}

/// The upgrade mode in force for this client, and whether its first
/// declaration should say it creates the marker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Decision {
    /// Whether publishes carry the earlier routing keys too.
    pub(crate) legacy: bool,
    /// This call made the decision and saw no marker `<p>.layout`, which
    /// its declaration then creates.
    pub(crate) marker_was_missing: bool,
}

/// Decides once per client whether it uses the upgrade's earlier routing
/// keys (`RabbitConfig::legacy_routing_keys`): the configured value, else
/// whether the exchange exists without the layout marker. Once decided,
/// the stored decision is returned without asking the broker, so a
/// reconnect or a tail after another client declared the marker (or the
/// marker this client declared) never switches it: a client changes mode
/// only by restarting. Returns the channel to go on with (a passive
/// declaration of what is missing closes one).
pub(crate) async fn decide_legacy_keys(
    connection: &Connection,
    channel: Channel,
    shared: &Shared,
) -> Result<(Channel, Decision), BackendError> {
    if let Some(legacy) = shared.decided_legacy_keys() {
        let decision = Decision {
            legacy,
            marker_was_missing: false,
        };
        return Ok((channel, decision));
    }
    let (channel, legacy, marker_was_missing) = match shared.config.legacy_routing_keys {
        Some(true) => (channel, true, false),
        Some(false) => {
            let marker = shared.names.layout_marker();
            let (channel, marked) =
                exists(connection, channel, &marker, ExchangeKind::Fanout).await?;
            (channel, false, !marked)
        }
        None => {
            let (channel, layout) = earlier_layout(connection, channel, shared).await?;
            (channel, layout == Layout::Earlier, layout == Layout::New)
        }
    };
    // A concurrent first declaration of this client may have decided
    // meanwhile: its decision stands.
    let (legacy, mine) = shared.decide_legacy_keys(legacy);
    let decision = Decision {
        legacy,
        marker_was_missing: mine && marker_was_missing,
    };
    Ok((channel, decision))
}

/// What [`earlier_layout`] found on the broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// No exchange yet: a new deployment (the marker comes with it).
    New,
    /// The exchange with the marker: this version's layout.
    Marked,
    /// The exchange without the marker: an earlier version's.
    Earlier,
}

/// Declares the durable fanout exchange `name` and records it.
async fn declare_fanout(
    channel: &Channel,
    shared: &Shared,
    name: &str,
) -> Result<(), BackendError> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            name.into(),
            ExchangeKind::Fanout,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(backend_error)?;
    shared.record(name, Entity::Exchange);
    Ok(())
}

/// Whether an earlier version's subscribers may be bound to the exchange:
/// it exists, without the layout marker (`RabbitConfig::legacy_routing_keys`).
/// A passive declaration of what is missing closes its channel, so this
/// returns the channel to go on with.
async fn earlier_layout(
    connection: &Connection,
    channel: Channel,
    shared: &Shared,
) -> Result<(Channel, Layout), BackendError> {
    let names = &shared.names;
    let (channel, exchange) =
        exists(connection, channel, names.exchange(), ExchangeKind::Topic).await?;
    if !exchange {
        return Ok((channel, Layout::New));
    }
    let marker = names.layout_marker();
    let (channel, marked) = exists(connection, channel, &marker, ExchangeKind::Fanout).await?;
    if marked {
        return Ok((channel, Layout::Marked));
    }
    tracing::info!(
        exchange = names.exchange(),
        "the exchange has no layout marker: an earlier version's subscribers may be bound, so \
         this client's publishes carry the earlier routing keys too until it restarts \
         (legacy-routing-keys=false ends this)"
    );
    Ok((channel, Layout::Earlier))
}

/// Whether the exchange `name` exists (a passive declaration), and the
/// channel to go on with.
async fn exists(
    connection: &Connection,
    channel: Channel,
    name: &str,
    kind: ExchangeKind,
) -> Result<(Channel, bool), BackendError> {
    let passive = ExchangeDeclareOptions {
        passive: true,
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    match channel
        .exchange_declare(name.into(), kind, passive, FieldTable::default())
        .await
    {
        Ok(()) => Ok((channel, true)),
        Err(error) if is_not_found(&error) => Ok((confirm_channel(connection).await?, false)),
        Err(error) => Err(backend_error(error)),
    }
}

/// What to do about a subscriber's queue kept with an earlier version's
/// arguments.
const KEPT_QUEUE: &str = "it is kept as it is; the crate docs give the policy that makes an earlier \
    version's quorum queue dead-letter at least once";

/// What to do about a dead-letter queue kept with other arguments (an
/// earlier version's classic one, or the other queue type).
const KEPT_DEAD: &str = "it is kept as it is and works (listing and replay cope with either queue \
    type); to give it this configuration's type, stop the subscriber, replay or move its dead \
    letters, delete it once empty (rabbitmqctl delete_queue --if-empty) and subscribe again (crate \
    docs, Queue type)";

/// What to do about an unrouted queue kept with other arguments (an
/// earlier version's, which drops its oldest mail when full).
const KEPT_UNROUTED: &str = "it is kept as it is (an earlier version's drops its oldest mail when \
    full instead of refusing new mail); to replace it, stop the publishers, move its messages elsewhere \
    (a shovel, or any AMQP client), delete it once empty (rabbitmqctl delete_queue --if-empty) and \
    connect again (crate docs, Queue type)";

/// What [`Shared::record`] remembers, for clean-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Entity {
    Exchange,
    Queue,
}

/// Declares everything a subscriber needs and binds its selection; returns
/// a usable confirm channel (a refused declaration closes a channel). An
/// archive server's subscription was checked against its grant before
/// connecting (`consumer::subscribe`).
pub(crate) async fn declare_subscriber(
    connection: &Connection,
    shared: &Shared,
    subscription: &Subscription,
) -> Result<Channel, BackendError> {
    let names = &shared.names;
    let name = &subscription.name;
    let channel = confirm_channel(connection).await?;
    let mut channel = declare_exchanges(connection, channel, shared).await?;
    declare_own_exchange(&channel, shared, name).await?;
    let dead = names.dead(name);
    // Listing rotates it through copies (`dead_letters`), so a quorum
    // queue keeps its order and counts no delivery.
    let dead_arguments = match shared.config.queue_type {
        QueueType::Quorum => vec![("x-queue-type", text("quorum"))],
        QueueType::Classic => vec![],
    };
    channel = declare_or_keep(connection, channel, &dead, dead_arguments, KEPT_DEAD).await?;
    shared.record(&dead, Entity::Queue);
    bind_own(&channel, shared, name, &dead).await?;

    let queue = names.queue(name);
    let own = names.own_exchange(name);
    let mut arguments = vec![
        ("x-dead-letter-exchange", text(&own)),
        ("x-dead-letter-routing-key", text(&dead)),
    ];
    match shared.config.queue_type {
        QueueType::Quorum => {
            arguments.push(("x-queue-type", text("quorum")));
            // Returned more often than this, the broker dead-letters it.
            let limit = i64::from(subscription.max_attempts.saturating_sub(1));
            arguments.push(("x-delivery-limit", AMQPValue::LongLongInt(limit)));
            // The broker keeps what it dead-letters until the dead-letter
            // queue confirms it (at-most-once, the default, drops it when
            // that queue is missing or refuses); RabbitMQ needs
            // reject-publish overflow for it.
            arguments.push(("x-dead-letter-strategy", text("at-least-once")));
            arguments.push(("x-overflow", text("reject-publish")));
        }
        QueueType::Classic => arguments.push(("x-queue-type", text("classic"))),
    }
    channel = declare_or_keep(connection, channel, &queue, arguments, KEPT_QUEUE).await?;
    shared.record(&queue, Entity::Queue);
    bind_own(&channel, shared, name, &queue).await?;
    rebind(&channel, shared, subscription, &queue).await?;
    Ok(channel)
}

/// Declares the subscriber's own direct exchange, `<p>.x.<name>`: its
/// copies (retries, requeues, dead letters, replays, its selection record)
/// and its queues' dead-lettering go through it, so it needs no write on
/// the default exchange, which would reach every queue of the vhost.
pub(crate) async fn declare_own_exchange(
    channel: &Channel,
    shared: &Shared,
    name: &SubscriberName,
) -> Result<(), BackendError> {
    let own = shared.names.own_exchange(name);
    let options = ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    };
    channel
        .exchange_declare(
            own.as_str().into(),
            ExchangeKind::Direct,
            options,
            FieldTable::default(),
        )
        .await
        .map_err(backend_error)?;
    shared.record(&own, Entity::Exchange);
    Ok(())
}

/// Binds one of the subscriber's queues to its own exchange under the
/// queue's name, the key its copies are published with.
pub(crate) async fn bind_own(
    channel: &Channel,
    shared: &Shared,
    name: &SubscriberName,
    queue: &str,
) -> Result<(), BackendError> {
    channel
        .queue_bind(
            queue.into(),
            shared.names.own_exchange(name).as_str().into(),
            queue.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(backend_error)
}

/// Publishes `body` into one of the subscriber's queues through its own
/// exchange, mandatory (a queue not bound there is an error, not a loss),
/// on a confirm channel; returns the confirm to wait for.
pub(crate) async fn send_own(
    channel: &Channel,
    shared: &Shared,
    name: &SubscriberName,
    queue: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<lapin::PublisherConfirm, BackendError> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    channel
        .basic_publish(
            shared.names.own_exchange(name).as_str().into(),
            queue.into(),
            options,
            body,
            properties,
        )
        .await
        .map_err(backend_error)
}

/// Declares a durable queue with `arguments`; when it exists with other
/// ones (declared by an earlier version, or another queue type), keeps it
/// as it is and warns with `what_to_do`. Returns a usable channel: a
/// refused declaration closes one.
async fn declare_or_keep(
    connection: &Connection,
    channel: Channel,
    queue: &str,
    arguments: Vec<(&str, AMQPValue)>,
    what_to_do: &str,
) -> Result<Channel, BackendError> {
    match channel
        .queue_declare(queue.into(), durable(), table(arguments))
        .await
    {
        Ok(_) => Ok(channel),
        Err(error) if is_precondition_failed(&error) => {
            tracing::warn!(
                queue,
                "the queue exists with other arguments (another queue type, attempt limit, or an earlier \
                 version's): {what_to_do}"
            );
            let channel = confirm_channel(connection).await?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..durable()
            };
            channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await
                .map_err(backend_error)?;
            Ok(channel)
        }
        Err(error) => Err(backend_error(error)),
    }
}

/// Binds the selection's keys, then removes bindings an earlier selection
/// of this subscriber left, which `<p>.sub.<name>` remembers (RabbitMQ cannot
/// list bindings over AMQP).
async fn rebind(
    channel: &Channel,
    shared: &Shared,
    subscription: &Subscription,
    queue: &str,
) -> Result<(), BackendError> {
    let names = &shared.names;
    let registry = names.registry(&subscription.name);
    let one = table(vec![
        ("x-max-length", AMQPValue::LongLongInt(1)),
        ("x-overflow", text("drop-head")),
    ]);
    channel
        .queue_declare(registry.as_str().into(), durable(), one)
        .await
        .map_err(backend_error)?;
    shared.record(&registry, Entity::Queue);
    bind_own(channel, shared, &subscription.name, &registry).await?;

    let previous = channel
        .basic_get(registry.as_str().into(), BasicGetOptions::default())
        .await
        .map_err(backend_error)?;
    let old: BTreeSet<String> = previous
        .as_ref()
        .and_then(|m| serde_json::from_slice(&m.delivery.data).ok())
        .unwrap_or_default();
    let mut new: BTreeSet<String> =
        Names::binding_keys(&subscription.selection, shared.config.role.classes())
            .into_iter()
            .collect();
    // During the upgrade an earlier list server's keys still reach it
    // (crate docs, Upgrading); a restricted user may bind no such key.
    if shared.legacy_keys() && shared.config.role.declares_shared() {
        new.extend(Names::legacy_binding_keys(&subscription.selection));
    }
    // Every new key is bound before any old one goes: a list selected by
    // both (through a pattern before, its exact id now, or the reverse)
    // is routed to the queue at every moment.
    for key in &new {
        channel
            .queue_bind(
                queue.into(),
                names.exchange().into(),
                key.as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(backend_error)?;
    }
    for key in old.difference(&new) {
        channel
            .queue_unbind(
                queue.into(),
                names.exchange().into(),
                key.as_str().into(),
                FieldTable::default(),
            )
            .await
            .map_err(backend_error)?;
    }
    let record = serde_json::to_vec(&new).expect("binding keys serialise");
    let properties = BasicProperties::default().with_delivery_mode(2);
    let confirm = send_own(
        channel,
        shared,
        &subscription.name,
        &registry,
        &record,
        properties,
    )
    .await?
    .await
    .map_err(backend_error)?;
    if let Some(refused) = refusal(&confirm) {
        return Err(BackendError::Broker(
            format!("the selection record for {registry} was not taken ({refused})").into(),
        ));
    }
    if let Some(message) = previous {
        message
            .delivery
            .ack(BasicAckOptions::default())
            .await
            .map_err(backend_error)?;
    }
    Ok(())
}

/// Declares the retry queue for a delay and binds it to the subscriber's
/// own exchange: messages wait there `delay_ms`, then the broker
/// dead-letters them back into the subscriber's queue through that
/// exchange. One an earlier version declared (dead-lettering through the
/// default exchange) is kept as it is, and still hands its messages back.
/// On channels of the client's own connection, so that a refusal never
/// closes the consumer's channel.
///
/// Its `x-expires` lease (2·delay + 1 h) runs from its last declaration
/// (or consume, or get), never from a publish: a bucket only ever
/// published into would be deleted with the copies in it. So it is
/// declared again before each copy once its last declaration is
/// [`RETRY_LEASE_RENEWAL`] old: a copy published at `t` expires at
/// `t + delay`, and the lease then runs to at least
/// `t - RENEWAL + 2·delay + 1 h`, later. Only a bucket no copy went
/// into for 2·delay + 1 h goes away.
pub(crate) async fn declare_retry_queue(
    shared: &Shared,
    name: &SubscriberName,
    retry: &str,
    delay_ms: u64,
) -> Result<(), BackendError> {
    if shared.retry_lease_is_fresh(retry, RETRY_LEASE_RENEWAL) {
        return Ok(());
    }
    let ttl = i64::try_from(delay_ms).unwrap_or(i64::MAX);
    let own = shared.names.own_exchange(name);
    let queue = shared.names.queue(name);
    let mut arguments = vec![
        ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
        ("x-dead-letter-exchange", text(&own)),
        ("x-dead-letter-routing-key", text(&queue)),
        // Unused for long after its last message expired, it goes away.
        (
            "x-expires",
            AMQPValue::LongLongInt(ttl.saturating_mul(2).saturating_add(3_600_000)),
        ),
    ];
    if shared.config.queue_type == QueueType::Quorum {
        // Replicated like the subscriber's queue, and handing each copy
        // back at least once (a classic queue's expiry hands it back at
        // most once).
        arguments.extend([
            ("x-queue-type", text("quorum")),
            ("x-dead-letter-strategy", text("at-least-once")),
            ("x-overflow", text("reject-publish")),
        ]);
    }
    let mut channel = shared.new_channel(false).await?;
    match channel
        .queue_declare(retry.into(), durable(), table(arguments))
        .await
    {
        Ok(_) => {}
        Err(error) if is_precondition_failed(&error) => {
            tracing::warn!(
                queue = retry,
                "the retry queue exists with an earlier version's arguments; it is kept and still \
                 hands its messages back"
            );
            channel = shared.new_channel(false).await?;
        }
        Err(error) => return Err(backend_error(error)),
    }
    bind_own(&channel, shared, name, retry).await?;
    let _ = channel.close(200, "retry queue declared".into()).await;
    shared.record(retry, Entity::Queue);
    shared.renew_retry_lease(retry);
    Ok(())
}

/// How old a retry queue's last declaration may be before a copy is put
/// in it without declaring it again: well under the hour its `x-expires`
/// lease outlasts any copy's delay by.
const RETRY_LEASE_RENEWAL: std::time::Duration = std::time::Duration::from_secs(30 * 60);
