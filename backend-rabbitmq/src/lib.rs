//! The RabbitMQ backend: every message pattern of `archiver-core` on
//! RabbitMQ 3.10 or later, through lapin.
//!
//! # Layout
//!
//! Envelopes are published, persistent and mandatory, to one topic exchange
//! with the routing key `<kind>.<class>.<list-id>`, the class being the
//! access class (below); each durable subscriber has its own queue bound
//! with `<kind>.<class>.<pattern>` for what it selects, so the broker
//! routes exact lists, `*`/`#` patterns and kinds and a subscriber never
//! receives what it did not select. Instances of one subscriber are
//! competing consumers of its queue; `basic.qos` is the in-flight bound.
//!
//! | name | what |
//! |---|---|
//! | `<p>` | topic exchange every envelope is published to |
//! | `<p>.unrouted` | alternate exchange (fanout) and queue: what no subscriber selects |
//! | `<p>.x.<name>` | a subscriber's own direct exchange: its queues dead-letter to it, and its retries, requeues, dead letters and replays are published to it with the target queue's name as key |
//! | `<p>.q.<name>` | a durable subscriber's queue |
//! | `<p>.dead.<name>` | its dead letters |
//! | `<p>.retry.<name>.<ms>.quorum` | nacked messages waiting `<ms>` before going back (`<p>.retry.<name>.<ms>` with classic queues) |
//! | `<p>.sub.<name>` | its current selection (one message), to remove stale bindings |
//!
//! # Least privilege
//!
//! Each archive server can run as a broker user of its own that RabbitMQ
//! restricts to its grant ([`permissions`] prints the `rabbitmqctl` lines
//! from a [`archiver_core::Grant`]; the README shows them), configured
//! with [`RabbitConfig::archive_server`]. Only the list server's user
//! ([`Role::ListServer`], the default) declares `<p>` and `<p>.unrouted`;
//! an archive server checks `<p>` exists, never touches the unrouted
//! queue, and writes only to its own exchange `<p>.x.<name>`, never to
//! the default exchange (write there would reach every queue of the
//! vhost). A refusal by the broker (403 `ACCESS_REFUSED`) is
//! [`BackendError::Forbidden`] with the broker's text, which names the
//! object (or the binding key and exchange) and the user.
//!
//! Access classes, the second word of a routing key:
//!
//! | class | what |
//! |---|---|
//! | `public` | mail and (non-membership) events of public lists |
//! | `private` | the same of private lists, and envelopes without a policy |
//! | `members` | membership events (member addresses) of public lists |
//! | `private-members` | membership events of private lists |
//!
//! A grant without private lists never gets a binding key of `private` or
//! `private-members` past the broker, one without membership events never
//! one of `members` or `private-members`. A client binds, for what it
//! selects, every class its role allows (the list server's role: all).
//!
//! When a list's policy changes, the list server publishes its new mail
//! with the new class at once. Public to private: archive servers granted
//! only public lists are bound to `…public.<list>` keys, which no new mail
//! carries, so nothing new reaches them (no leak); those granted private
//! lists bound both classes, so they lose nothing; what was in queues
//! before the change stays there (it was public when published). Private
//! to public: public archives start receiving the new mail; nothing
//! already queued moves. Bindings never need to change. A grant that is
//! narrowed (new topic permissions) leaves the subscriber's old bindings
//! in place, and the broker refuses their unbinding to the user at its
//! next subscribe ([`BackendError::Forbidden`]): an administrator removes
//! them (`rabbitmqadmin delete binding`, or deleting the subscriber's
//! queue once drained).
//!
//! # Upgrading from the layout without classes
//!
//! Earlier versions published `<kind>.<list-id>`, bound `<kind>.<pattern>`
//! and dead-lettered through the default exchange. Their queues keep
//! working: a subscriber's next subscribe (as a user that may configure it:
//! the shared account of that version, or the list server's role) keeps
//! its queues as they are, binds them to `<p>.x.<name>` and binds the new
//! keys, and what was in them is delivered: a message's origin may be an
//! old key.
//!
//! Neither side's keys match the other side's bindings (`mail.dev.example.org`
//! never matches `mail.public.dev.example.org`), so during the upgrade
//! ([`RabbitConfig::legacy_routing_keys`]) both are used. Unset, it is
//! decided at connect: on where the exchange exists without the marker
//! exchange `<p>.layout`, which this version's list server declares when
//! it creates the exchange, so a new deployment is never in the upgrade
//! (it costs about a fifth of the throughput: the broker routes two keys).
//! The decision is made once per client, by its first declaration of the
//! exchanges, and kept for the client's life: its reconnects and live
//! tails declare the exchanges again but never change it, so a client
//! changes mode only by restarting (and a marker another client declares
//! meanwhile does not switch it). An archive server's role always decides
//! it off.
//!
//! Every client of a role that declares the shared exchanges (the list
//! server's role, the default: a publisher, and also a subscriber, a live
//! tail or an operator's client connecting as it) declares `<p>` and then,
//! when it decided the upgrade is off, the marker, only after `<p>` was
//! declared (a marker left without `<p>` would make the clients after an
//! earlier version's list server declares `<p>` decide no earlier
//! subscriber can be bound). So the first such client of this version
//! where `<p>` does not exist yet makes a new deployment; it logs at
//! info level when it creates the marker. A client connecting at the very
//! moment the first one declares `<p>` (between the two declarations)
//! decides the upgrade is on: safe (both keys are routed), it costs that
//! client throughput until it restarts.
//!
//! Where the marker exists (a new deployment, or an upgrade that ended),
//! run no earlier version beside this one: an earlier list server
//! publishes `<kind>.<list-id>` only, which matches no binding of this
//! version's subscribers (they bind `<kind>.<class>.<pattern>`, the
//! earlier keys only while the upgrade is on), so its mail reaches none of
//! them (at best it lands in `<p>.unrouted`); and an earlier subscriber,
//! bound with `<kind>.<pattern>`, gets nothing this version's list server
//! publishes.
//!
//! While the upgrade is on:
//!
//! - a publish is routed with the earlier key and carries the new one in
//!   RabbitMQ's `BCC` header (sender-selected distribution: the broker
//!   routes by every key, a queue gets one copy however many of its
//!   bindings match, and strips `BCC`), so an earlier subscriber gets it
//!   with the key it checks, and a restricted archive server by its class;
//! - a subscription of the list server's role binds its selection's
//!   earlier keys besides the new ones (its selection record lists both),
//!   so an earlier list server's mail reaches it;
//! - a consumer drops (acknowledges, with a warning) a delivery its
//!   selection does not select: an earlier binding starting with `*`
//!   (`mail.*.example.org`) matches another list's new key
//!   (`mail.private.example.org`, list `example.org`).
//!
//! Safe order: (1) upgrade the list server and the shared-account
//! subscribers in either order, but the subscribers first when an earlier
//! one selects a pattern starting with `*` whose suffix is itself a list
//! (an earlier version does not drop what it did not select); (2) when
//! every client runs this version, connect one client once with
//! `legacy_routing_keys` `Some(false)` (it declares the marker, so clients
//! connecting after it decide the upgrade is over; restart the others: a
//! reconnect keeps a client's decision)
//! and subscribe each subscriber once, which unbinds its earlier keys (the
//! explicit step that ends the upgrade); (3) then switch archive servers
//! to restricted users, whose topic permissions refuse the earlier keys.
//! A list id starting with a class word (`public.example.org`) is published
//! with the new key only, its earlier key being another list's new one. A
//! live tail binds the new keys only, so during step 1 it shows only what
//! an upgraded list server publishes.
//!
//! # Queue type
//!
//! Quorum queues by default, for every queue that holds mail (a
//! subscriber's, its retry and dead-letter queues, `<p>.unrouted`): they
//! keep messages in a replicated Raft log on disk before confirming, count
//! deliveries (so attempt numbers are exact), and dead-letter a message
//! returned more often than the attempt limit by themselves. Classic
//! durable queues ([`QueueType::Classic`]) are lighter on a single node but
//! count no deliveries.
//!
//! A subscriber's quorum queue dead-letters at least once
//! (`x-dead-letter-strategy: at-least-once`, which needs `x-overflow:
//! reject-publish`): a message reaching the delivery limit while
//! `<p>.dead.<name>` is missing or refusing stays in the broker until that
//! queue takes it, instead of being dropped. `<p>.unrouted` holds at most
//! [`RabbitConfig::unrouted_max_length`] messages (a quorum queue one more)
//! and then refuses (`x-overflow: reject-publish`): the publish fails with
//! a transient [`BackendError::Broker`] and the mail stays in the caller's
//! spool, where dropping the oldest would lose mail.
//!
//! Queue arguments cannot change, so a queue declared by an earlier
//! version is kept as it is, with a warning at each declaration saying
//! what to do:
//!
//! - a subscriber's quorum queue without at-least-once dead-lettering gets
//!   it from a policy (RabbitMQ 3.10+; the queue's own arguments still
//!   win, so it changes nothing else), for the default prefix `archiver`:
//!
//!   ```text
//!   rabbitmqctl set_policy --apply-to queues archiver-at-least-once '^archiver\.q\.' \
//!       '{"dead-letter-strategy":"at-least-once","overflow":"reject-publish"}'
//!   ```
//!
//!   (A queue takes one policy, the highest priority one that matches:
//!   merge these two keys into a policy already applying to these queues.)
//! - a classic `<p>.dead.<name>` keeps working (listing and replay work on
//!   either type), unreplicated. To make it quorum: stop the subscriber's
//!   consumers, replay (or move) its dead letters, `rabbitmqctl
//!   delete_queue --if-empty archiver.dead.<name>`, and subscribe again.
//! - a classic `<p>.unrouted` still drops its oldest message when full. To
//!   replace it: stop the publishers, move its messages elsewhere (a shovel,
//!   or any AMQP client), `rabbitmqctl delete_queue --if-empty
//!   archiver.unrouted`, and connect again.
//!
//! A queue type cannot come from a policy; the type and arguments of the
//! queues a client declares follow its [`RabbitConfig`].
//!
//! # Delivery
//!
//! - `nack` without delay requeues (the quorum queue counts it); with a
//!   delay, a copy waits in a retry queue (one per delay,
//!   rounded up to a power of two of ms) whose TTL dead-letters it back;
//! - at the attempt limit, and on `reject`, a copy with the reason goes to
//!   `<p>.dead.<name>`; listing, purge and replay are one pass over it
//!   that takes each letter with `basic.get` and puts a confirmed copy of
//!   the ones that stay at its end before acknowledging it, so the order
//!   stays and no delivery is counted, whatever the queue type
//!   ([`RabbitBackend::dead_letter_page`]: the first `limit`, malformed
//!   ones too, and the total);
//! - a message whose kind and list id are not those of the routing key it
//!   was first published with (its own, or the `origin` header on copies)
//!   is dead-lettered as malformed, never delivered;
//! - every copy is confirmed before the original is acknowledged;
//! - a consumer that vanishes: the broker requeues what it held.
//!
//! # Durability
//!
//! `publish` returns Ok once the broker confirmed the message (publisher
//! confirm): routed to every bound queue and, for durable queues, written
//! (fsynced for quorum queues). A nack is a (transient) error; a message no
//! queue takes while [`RabbitConfig::keep_unrouted`] is off is
//! [`BackendError::Unroutable`], which is not transient: a spool sets it
//! aside instead of retrying it. With it on (the
//! default), messages no subscriber selects go to `<p>.unrouted` through
//! the exchange's alternate exchange instead of being lost.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use archiver_core::{ArchiveUrls, QueueArchiver};
//! use backend_rabbitmq::{RabbitBackend, RabbitConfig};
//! let backend = RabbitBackend::connect(RabbitConfig::new("amqp://guest:guest@127.0.0.1:5672/%2f")).await?;
//! let archiver = QueueArchiver::new("mq-archiver", backend, ArchiveUrls::new("https://archive.example.org/")?);
//! # Ok(()) }
//! ```

mod config;
mod consumer;
mod dead_letters;
mod error;
mod link;
mod message;
mod names;
pub mod permissions;
mod publish;
mod settle;
mod tail;
mod topology;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use archiver_core::{
    BackendError, CloseFlag, Connection, DeadLetter, Deliveries, Envelope, Operator, Publisher,
    PublisherCapabilities, Replay, Selection, Subscriber, SubscriberCapabilities, SubscriberName,
    Subscription, Tail,
};
use async_trait::async_trait;
use lapin::Channel;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};

pub use archiver_core::RawDeadLetter;
pub use config::{QueueType, RabbitConfig, Role};
pub use dead_letters::DeadLetterPage;

use error::backend_error;
use link::Link;
use names::Names;
use topology::Entity;

/// What every handle of one client shares.
pub(crate) struct Shared {
    pub(crate) config: RabbitConfig,
    pub(crate) names: Names,
    pub(crate) closed: CloseFlag,
    /// The publishing connection, re-opened on demand after a failure.
    link: tokio::sync::Mutex<Option<Link>>,
    /// Exchanges and queues this client declared, for clean-up.
    declared: Mutex<BTreeSet<(Entity, String)>>,
    /// When each retry queue was last declared: a declaration renews its
    /// `x-expires` lease, which publishing into it does not.
    retry_leases: Mutex<std::collections::HashMap<String, std::time::Instant>>,
    /// Whether the upgrade's earlier routing keys are used, decided once
    /// per client by the first declaration of the exchanges (at connect)
    /// and kept for its life: a reconnect or a tail that sees the marker
    /// another client declared meanwhile must not switch it mid-life
    /// ([`topology::decide_legacy_keys`]).
    legacy_keys: OnceLock<bool>,
}

impl Shared {
    pub(crate) fn ensure_open(&self) -> Result<(), BackendError> {
        self.closed.ensure_open()
    }

    pub(crate) fn record(&self, name: &str, entity: Entity) {
        self.declared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((entity, name.to_owned()));
    }

    /// Whether the retry queue `name` was declared less than `within` ago
    /// (its lease then still runs long enough).
    pub(crate) fn retry_lease_is_fresh(&self, name: &str, within: std::time::Duration) -> bool {
        self.retry_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|at| at.elapsed() < within)
    }

    /// Whether publishes and the list server's subscriptions use the
    /// upgrade's earlier routing keys ([`RabbitConfig::legacy_routing_keys`]).
    /// Read on every publish, so only a load. Every reader declared the
    /// exchanges first (which decides), so it is never undecided; were it,
    /// on is the side that loses no mail (both keys are routed).
    pub(crate) fn legacy_keys(&self) -> bool {
        self.legacy_keys.get().copied().unwrap_or(true)
    }

    /// The decision, if made.
    pub(crate) fn decided_legacy_keys(&self) -> Option<bool> {
        self.legacy_keys.get().copied()
    }

    /// Records `on` as the decision unless one was made (by a concurrent
    /// first declaration); returns the decision in force and whether it
    /// is this call's.
    pub(crate) fn decide_legacy_keys(&self, on: bool) -> (bool, bool) {
        let mine = self.legacy_keys.set(on).is_ok();
        (self.legacy_keys(), mine)
    }

    /// Notes that the retry queue `name` was declared now.
    pub(crate) fn renew_retry_lease(&self, name: &str) {
        self.retry_leases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), std::time::Instant::now());
    }

    /// The publishing link, (re)connected and its exchanges declared.
    async fn link(&self) -> Result<tokio::sync::MutexGuard<'_, Option<Link>>, BackendError> {
        self.ensure_open()?;
        let mut link = self.link.lock().await;
        if !link.as_ref().is_some_and(Link::is_usable) {
            let connection = link::connect(&self.config, "publisher").await?;
            let channel = link::confirm_channel(&connection).await?;
            let channel = topology::declare_exchanges(&connection, channel, self).await?;
            *link = Some(Link {
                connection,
                channel,
            });
        }
        Ok(link)
    }

    /// The confirm-mode publishing channel.
    pub(crate) async fn publish_channel(&self) -> Result<Channel, BackendError> {
        Ok(self
            .link()
            .await?
            .as_ref()
            .expect("link() connects")
            .channel
            .clone())
    }

    /// A short-lived channel on the publishing connection; in confirm mode
    /// when asked.
    pub(crate) async fn new_channel(&self, confirm: bool) -> Result<Channel, BackendError> {
        let link = self.link().await?;
        let connection = &link.as_ref().expect("link() connects").connection;
        if confirm {
            link::confirm_channel(connection).await
        } else {
            connection.create_channel().await.map_err(backend_error)
        }
    }

    /// Drops the publishing link after a failure; the next call reconnects.
    pub(crate) async fn reset_link(&self) {
        self.link.lock().await.take();
    }
}

/// A client of RabbitMQ implementing every message pattern. Cheap to
/// clone; clones share the publishing connection.
#[derive(Clone)]
pub struct RabbitBackend {
    shared: Arc<Shared>,
}

impl RabbitBackend {
    /// Connects and declares the exchanges, checking the URL, the
    /// credentials and the vhost. Errors: [`BackendError::InvalidUrl`],
    /// [`BackendError::InvalidConfig`] (an unusable TLS CA file),
    /// [`BackendError::Auth`] (refused credentials, unknown or forbidden
    /// vhost), [`BackendError::Unavailable`].
    pub async fn connect(config: RabbitConfig) -> Result<Self, BackendError> {
        config.validate()?;
        let shared = Arc::new(Shared {
            names: Names::new(&config.prefix),
            config,
            closed: CloseFlag::new(),
            link: tokio::sync::Mutex::new(None),
            declared: Mutex::default(),
            retry_leases: Mutex::default(),
            legacy_keys: OnceLock::new(),
        });
        drop(shared.link().await?);
        tracing::info!(url = %shared.config.redacted_url(), prefix = %shared.config.prefix, "connected to RabbitMQ");
        Ok(Self { shared })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RabbitConfig {
        &self.shared.config
    }

    /// The subscriber's first `limit` dead letters, oldest first, malformed
    /// ones included as they are, and how many the queue holds (from a
    /// passive declare). An AMQP queue can only be read from its head, so
    /// listing cannot start further on: past the first `limit`, replay or
    /// purge the ones seen, or raise `limit`. It passes over the whole
    /// queue (copying each letter to its end, as the module docs say), so
    /// it costs as much as the queue is long; run one listing, purge or
    /// replay of a subscriber at a time (another one meanwhile sees only
    /// what this one has not taken yet).
    pub async fn dead_letter_page(
        &self,
        name: &SubscriberName,
        limit: usize,
    ) -> Result<DeadLetterPage, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::page(&self.shared, name, limit).await
    }

    /// Deletes the subscriber's malformed dead letters (those
    /// [`RawDeadLetter::is_malformed`] says), which replay never puts back;
    /// returns how many.
    pub async fn purge_malformed_dead_letters(
        &self,
        name: &SubscriberName,
    ) -> Result<usize, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::purge_malformed(&self.shared, name).await
    }

    /// Deletes every exchange and queue this client declared (for tests and
    /// decommissioning), over a connection of its own so that it also works
    /// after `close`. What was in them is gone.
    pub async fn purge(&self) -> Result<usize, BackendError> {
        let declared = std::mem::take(
            &mut *self
                .shared
                .declared
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        let connection = link::connect(&self.shared.config, "purge").await?;
        let channel = connection.create_channel().await.map_err(backend_error)?;
        for (entity, name) in &declared {
            let deleted = match entity {
                Entity::Queue => channel
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map(drop),
                Entity::Exchange => {
                    channel
                        .exchange_delete(name.as_str().into(), ExchangeDeleteOptions::default())
                        .await
                }
            };
            deleted.map_err(backend_error)?;
        }
        let _ = connection.close(200, "purged".into()).await;
        Ok(declared.len())
    }
}

#[async_trait]
impl Connection for RabbitBackend {
    async fn close(&self) -> Result<(), BackendError> {
        self.shared.closed.close();
        if let Some(link) = self.shared.link.lock().await.take() {
            let _ = link.connection.close(200, "client closed".into()).await;
        }
        Ok(())
    }
}

#[async_trait]
impl Publisher for RabbitBackend {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        self.shared.config.publisher_capabilities()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        publish::publish(&self.shared, envelope).await
    }
}

#[async_trait]
impl Subscriber for RabbitBackend {
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        SubscriberCapabilities {
            per_list_order: true,
            replay_from_start: false,
            native_dead_letter: self.shared.config.queue_type == QueueType::Quorum,
            // The broker requeues at once when the connection closes; a
            // half-open one is noticed by the heartbeat.
            abandoned_redelivery: Duration::from_secs(120),
        }
    }

    async fn subscribe(&self, subscription: &Subscription) -> Result<Deliveries, BackendError> {
        consumer::subscribe(&self.shared, subscription).await
    }

    async fn tail(&self, selection: &Selection) -> Result<Tail, BackendError> {
        tail::tail(&self.shared, selection).await
    }
}

#[async_trait]
impl Operator for RabbitBackend {
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        let channel = self.shared.new_channel(false).await?;
        let names = &self.shared.names;
        let retry_prefix = format!("{}.retry.{name}.", names.exchange());
        let mut queues = vec![names.queue(name), names.dead(name), names.registry(name)];
        queues.extend(
            self.shared
                .declared
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .filter(|(_, q)| q.starts_with(&retry_prefix))
                .map(|(_, q)| q.clone()),
        );
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(backend_error)?;
        }
        channel
            .exchange_delete(
                names.own_exchange(name).as_str().into(),
                ExchangeDeleteOptions::default(),
            )
            .await
            .map_err(backend_error)?;
        let _ = channel.close(200, "unsubscribed".into()).await;
        tracing::info!(subscriber = %name, "subscriber deleted");
        Ok(())
    }

    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        dead_letters::list(&self.shared, name).await
    }

    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError> {
        dead_letters::purge(&self.shared, name).await
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        dead_letters::replay(&self.shared, name, &which).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(config: RabbitConfig) -> Shared {
        Shared {
            names: Names::new(&config.prefix),
            config,
            closed: CloseFlag::new(),
            link: tokio::sync::Mutex::new(None),
            declared: Mutex::default(),
            retry_leases: Mutex::default(),
            legacy_keys: OnceLock::new(),
        }
    }

    /// The first decision stands for the client's life: a later one (a
    /// reconnect or tail seeing the marker another client declared) is
    /// ignored and told so.
    #[test]
    fn the_first_decision_of_the_upgrade_mode_stands() {
        let shared = shared(RabbitConfig::new("amqp://127.0.0.1:5672/%2f"));
        assert_eq!(shared.decided_legacy_keys(), None);
        assert_eq!(shared.decide_legacy_keys(true), (true, true));
        assert_eq!(shared.decide_legacy_keys(false), (true, false));
        assert_eq!(shared.decided_legacy_keys(), Some(true));
        assert!(shared.legacy_keys());
    }
}
