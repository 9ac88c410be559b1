//! The Redis Streams backend: every message pattern of `archiver-core` on
//! Redis 6.2 or later, with nothing lost while Redis keeps its data.
//!
//! # Layout
//!
//! One stream per list, access class and content
//! (`<prefix>:stream:<class>:<content>:{<list-id>}`, `{<list-id>}` a
//! Redis Cluster hash tag): the class is `public` or `private` (the envelope's
//! `archive-policy`; unmarked counts as private), the content `mail`,
//! `event`, or `members` for membership events, which carry member
//! addresses. Each is registered in the set `<prefix>:lists:<class>:<content>`
//! so consumers find new lists. The lists and kinds a subscriber selects
//! are chosen by *which streams it reads*: a subscriber never receives, nor
//! even transfers, entries of lists or kinds it did not select. Each entry
//! is stored once, however many subscribers read it: fan-out is one
//! consumer group per subscriber on each stream it selects, competing
//! consumers are consumers of that group. Mails of a list are in order;
//! its events are in order within the membership and the other events (two
//! streams), and a list whose policy changes starts a new stream.
//!
//! A subscriber's record (`<prefix>:sub:<name>`) keeps its selection and
//! its creation time; its group on any stream, even one created later,
//! starts at that time, so no mail published after a subscriber exists is
//! missed, however late its consumers discover the list.
//!
//! Data of earlier versions (`<prefix>:stream:<kind>:<list-id>`,
//! `<prefix>:streams`, the `<prefix>:subscribers` hash) is migrated when a
//! client allowed to read it (the list server's) connects: each old stream
//! moves in one script, its groups keep what they had not acknowledged.
//! Stop consumers of earlier versions first.
//!
//! # Access control: archive servers as Redis ACL users
//!
//! Redis (7.0 or later: ACL selectors) enforces the grants
//! ([`archiver_core::Grant`]): [`acl_setuser_lines`]
//! prints an archive server's `ACL SETUSER` line from its grant (one
//! command with every selector, so re-applying it is atomic),
//! [`list_server_acl_lines`] the list server's (`mq-archiver-admin acl-lines`
//! prints both). An archive server's user reads only the streams of its
//! granted classes and lists (`#` alone: every list of them; exact list
//! ids: only theirs, found without reading the registry) and writes only
//! its own subscribers' record, dead letters, replay stream, delayed
//! retries, and group state on the streams it reads; no XADD, XTRIM or
//! XDEL of a list stream, no `XGROUP SETID/DESTROY/DELCONSUMER`, no
//! `XAUTOCLAIM`, scripts, `KEYS` or `CONFIG`. A subscription selecting
//! more than its user may read receives exactly what Redis lets it read:
//! a stream or registry set refused (NOPERM) is left out with a warning
//! and tried again every [`RedisConfig::retention_interval`] (a widened
//! grant is read without a restart); the consumer notes its refusals in
//! its own record, and retention waits for no subscriber on what its user
//! is refused. A subscription whose every selected stream is refused is
//! [`BackendError::Forbidden`] at subscribe. A database number in the URL
//! needs `+select` added to the users. A command Redis refuses is [`BackendError::Forbidden`]
//! naming the key or command. Trimming, unsubscribing and removing
//! consumers are the list server's; a publishing client trims every
//! [`RedisConfig::retention_interval`].
//!
//! What Redis ACLs cannot restrict is consumer-group names. Principals
//! granted one stream share it (choice (b) of the grant design: shared
//! streams, no copy per subscriber): any of them can read through
//! another's group there and `XACK` or `XCLAIM` its entries, and that
//! other then never receives them (the `acl` test measures it: each entry
//! so acked is lost to its victim). Two more of the same kind: `XCLAIM
//! ... LASTID <future id>` moves another group's position ahead on a
//! shared stream (it skips every entry up to that id), and `XGROUP CREATE
//! <stream> <other's name> $ MKSTREAM` on a granted stream the other has
//! not found yet makes it start at `$` (it skips what was there); the
//! test shows both allowed and measures the first. Public streams are shared by every
//! archive server, a private list's only by those granted it; a principal
//! that must not be able to make another skip mail needs a Redis (or
//! prefix) of its own, or the ZeroMQ hub, which checks every settlement.
//! Other residuals: an archive server granted every list of a class sees
//! the names of that class's lists (the registry sets); one can write its
//! own record with any selection, which holds back trimming of what it
//! selects (memory, not mail).
//!
//! # Delivery
//!
//! - every consumer of one process instance reads under one stable name,
//!   [`RedisConfig::consumer_name`] (the host name by default), so
//!   subscribing again or restarting adds no consumer; consumers of
//!   retired instances are removed with
//!   [`RedisBackend::remove_consumers_without_pending`], which never drops
//!   an entry still pending;
//! - attempts are Redis's own delivery counter (XPENDING), 1 on first read;
//! - `nack(delay)` leaves the entry pending and records it in
//!   `<prefix>:delayed:<name>`; a consumer claims it (XCLAIM) when due;
//! - an entry left unsettled longer than [`RedisConfig::claim_idle`] (its
//!   consumer crashed) is claimed by another consumer (XPENDING IDLE and
//!   XCLAIM, which skips entries waiting for their nack delay);
//! - at the attempt limit, and on `reject`, the entry is copied to
//!   `<prefix>:dead:<name>` with its reason and acknowledged, atomically;
//!   replay moves it to `<prefix>:replay:<name>`, which the subscriber's
//!   consumers also read; [`RedisBackend::dead_letter_page`] lists every
//!   dead letter a page at a time, malformed ones too;
//! - an entry whose kind and list id are not those of its stream (or, for a
//!   replayed one, of the stream it was first added to) is dead-lettered
//!   as malformed, never delivered;
//! - retention trims a stream only below what every subscriber has
//!   acknowledged, and never entries younger than
//!   [`RedisConfig::retention_min_age`]; consumers trim every
//!   [`RedisConfig::retention_interval`], [`RedisBackend::trim`] trims now.
//!
//! # Durability
//!
//! `publish` returns Ok once XADD answered: the entry is in Redis's memory.
//! What survives a crash is the server's persistence setting:
//!
//! | Redis setting | a crash of Redis loses |
//! |---|---|
//! | no persistence (`--save "" --appendonly no`) | everything it held |
//! | `appendonly yes`, `appendfsync everysec` (default) | up to the last second of publishes |
//! | `appendonly yes`, `appendfsync always` | nothing that was answered |
//!
//! Only the last row keeps the promise of
//! [`Publisher::publish`] with the
//! default [`Durability::Reply`]; at connect the backend reads the server's
//! settings (`CONFIG GET appendonly appendfsync save`, else `INFO
//! persistence`) and logs a warning saying what a returned publish
//! survives, or that its persistence is unknown.
//!
//! [`Durability::Replicas`] adds `WAIT` (replicas have it);
//! [`Durability::Fsync`] adds `WAITAOF` (Redis 7.2+: fsynced). A consumer
//! that finds its groups gone after a restart without persistence re-creates
//! them, goes on, and reports the loss window as an error item in its
//! delivery stream and in the log.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use archiver_core::{ArchiveUrls, QueueArchiver};
//! use backend_redis::{RedisBackend, RedisConfig};
//! let backend = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
//! let archiver = QueueArchiver::new("mq-archiver", backend, ArchiveUrls::new("https://archive.example.org/")?);
//! # Ok(()) }
//! ```

pub mod acl;
mod batcher;
mod config;
mod connection;
mod consumer;
mod consumers;
mod dead_letters;
mod entry;
mod error;
mod keys;
mod migrate;
mod persistence;
mod publish;
mod registry;
mod retention;
mod settle;
mod tail;

use std::sync::Arc;

use archiver_core::{
    BackendError, CloseFlag, Connection, DeadLetter, Deliveries, Envelope, Operator, Publisher,
    PublisherCapabilities, Replay, Selection, Subscriber, SubscriberCapabilities, SubscriberName,
    Subscription, Tail,
};
use async_trait::async_trait;
use redis::aio::ConnectionManager;

pub use acl::{UngrantableGrant, acl_setuser_lines, list_server_acl_lines};
pub use archiver_core::RawDeadLetter;
pub use config::{Durability, RedisConfig};
pub use dead_letters::DeadLetterPage;

use batcher::Batcher;
use error::{backend_error, refusing};
use keys::Keys;
use settle::Ack;

/// What every handle of one client shares.
pub(crate) struct Shared {
    pub(crate) config: RedisConfig,
    pub(crate) keys: Keys,
    pub(crate) client: redis::Client,
    /// Multiplexed connection for all non-blocking commands.
    pub(crate) conn: ConnectionManager,
    /// Where publishes go, to be sent together.
    pub(crate) publishes: Batcher<Envelope>,
    /// Where deliveries' acks go, to be sent together.
    pub(crate) acks: Batcher<Ack>,
    pub(crate) closed: CloseFlag,
}

impl Shared {
    pub(crate) fn ensure_open(&self) -> Result<(), BackendError> {
        self.closed.ensure_open()
    }
}

/// A client of Redis implementing every message pattern. Cheap to clone;
/// clones share the connection.
#[derive(Clone)]
pub struct RedisBackend {
    shared: Arc<Shared>,
}

impl RedisBackend {
    /// Connects, checking the URL, the credentials and that the server
    /// answers. Errors: [`BackendError::InvalidUrl`],
    /// [`BackendError::InvalidConfig`] (an unusable TLS CA file or consumer
    /// name), [`BackendError::Auth`], [`BackendError::Unavailable`].
    pub async fn connect(config: RedisConfig) -> Result<Self, BackendError> {
        let client = connection::client(&config)?;
        let mut conn = connection::open(&client, &config, config.durability_wait()).await?;
        redis::cmd("PING")
            .query_async::<()>(&mut conn)
            .await
            .map_err(backend_error)?;
        if matches!(config.durability, Durability::Fsync { .. }) {
            ensure_waitaof(&mut conn).await?;
        }
        migrate::migrate(&mut conn, &Keys::new(&config.prefix)).await?;
        tracing::info!(url = %config.redacted_url(), prefix = %config.prefix, "connected to Redis");
        let persistence = persistence::Persistence::read(&mut conn).await;
        match (persistence.warning(), config.durability) {
            (_, Durability::Fsync { .. }) => {
                tracing::info!("publishes wait for WAITAOF: a returned publish is fsynced")
            }
            (Some(warning), _) => tracing::warn!(?persistence, "{warning}"),
            (None, _) => tracing::info!(
                ?persistence,
                "Redis fsyncs every write (appendfsync always): a returned publish survives a crash of Redis and its host"
            ),
        }
        Ok(Self {
            shared: Arc::new(Shared {
                keys: Keys::new(&config.prefix),
                publishes: publish::batcher(conn.clone(), Keys::new(&config.prefix), &config),
                config,
                client,
                acks: settle::ack_batcher(conn.clone()),
                conn,
                closed: CloseFlag::new(),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedisConfig {
        &self.shared.config
    }

    /// Trims every list stream now, as consumers do periodically: removes
    /// what every subscriber has acknowledged; returns how many entries.
    pub async fn trim(&self) -> Result<u64, BackendError> {
        self.shared.ensure_open()?;
        let mut conn = self.shared.conn.clone();
        let refused = refusing("trimming (SMEMBERS, SCAN, XTRIM: the list server's)");
        let streams: Vec<String> = registry::streams(&mut conn, &self.shared.keys)
            .await
            .map_err(&refused)?
            .into_iter()
            .map(|stream| stream.key)
            .collect();
        retention::trim(
            &mut conn,
            &self.shared.keys,
            &streams,
            self.shared.config.retention_min_age,
        )
        .await
        .map_err(refused)
    }

    /// Removes the consumers of the subscriber's groups that have nothing
    /// pending, except this instance's ([`RedisConfig::consumer_name`]):
    /// those of instances renamed or retired. Each removal checks and
    /// deletes in one script, so an entry pending for a consumer is never
    /// dropped. For an operator or a maintenance job, not a hot path;
    /// returns how many were removed.
    pub async fn remove_consumers_without_pending(
        &self,
        name: &SubscriberName,
    ) -> Result<usize, BackendError> {
        self.shared.ensure_open()?;
        consumers::remove_without_pending(&self.shared, name).await
    }

    /// Up to `limit` of the subscriber's dead letters after the one with id
    /// `after` (from the oldest without), malformed ones included as they
    /// are stored: `XRANGE` with `COUNT` from an exclusive start, so any
    /// number of dead letters can be paged through.
    pub async fn dead_letter_page(
        &self,
        name: &SubscriberName,
        after: Option<&str>,
        limit: usize,
    ) -> Result<DeadLetterPage, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::page(
            &mut self.shared.conn.clone(),
            &self.shared.keys,
            name,
            after,
            limit,
        )
        .await
    }

    /// Deletes the subscriber's malformed dead letters (those
    /// [`RawDeadLetter::is_malformed`] says), which replay never puts back;
    /// returns how many.
    pub async fn purge_malformed_dead_letters(
        &self,
        name: &SubscriberName,
    ) -> Result<usize, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::purge_malformed(&mut self.shared.conn.clone(), &self.shared.keys, name).await
    }

    /// Deletes every key under this client's prefix: for tests and for
    /// decommissioning a deployment. What was in them is gone.
    pub async fn purge(&self) -> Result<usize, BackendError> {
        let mut conn = self.shared.conn.clone();
        let mut cursor = 0u64;
        let mut deleted = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(self.shared.keys.all())
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(backend_error)?;
            if !keys.is_empty() {
                deleted += redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async::<usize>(&mut conn)
                    .await
                    .map_err(backend_error)?;
            }
            if next == 0 {
                return Ok(deleted);
            }
            cursor = next;
        }
    }
}

/// `Durability::Fsync` needs WAITAOF (Redis 7.2+): refuse at connect rather
/// than fail every publish.
async fn ensure_waitaof(conn: &mut ConnectionManager) -> Result<(), BackendError> {
    let info: redis::Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("WAITAOF")
        .query_async(conn)
        .await
        .map_err(backend_error)?;
    match info {
        redis::Value::Array(commands) if commands.iter().any(|c| *c != redis::Value::Nil) => Ok(()),
        _ => Err(BackendError::Unsupported(
            "Durability::Fsync needs WAITAOF, which this Redis lacks (7.2 or later has it)",
        )),
    }
}

#[async_trait]
impl Connection for RedisBackend {
    async fn close(&self) -> Result<(), BackendError> {
        self.shared.closed.close();
        Ok(())
    }
}

#[async_trait]
impl Publisher for RedisBackend {
    fn publisher_capabilities(&self) -> PublisherCapabilities {
        self.shared.config.publisher_capabilities()
    }

    async fn publish(&self, envelope: &Envelope) -> Result<(), BackendError> {
        publish::publish(&self.shared, envelope).await
    }
}

#[async_trait]
impl Subscriber for RedisBackend {
    fn subscriber_capabilities(&self) -> SubscriberCapabilities {
        let config = &self.shared.config;
        SubscriberCapabilities {
            per_list_order: true,
            replay_from_start: true,
            native_dead_letter: false,
            abandoned_redelivery: config.claim_idle
                + (config.claim_idle / 4).max(config.poll_interval)
                + config.poll_interval,
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
impl Operator for RedisBackend {
    async fn unsubscribe(&self, name: &SubscriberName) -> Result<(), BackendError> {
        self.shared.ensure_open()?;
        let keys = &self.shared.keys;
        let mut conn = self.shared.conn.clone();
        let refused = refusing("unsubscribe (XGROUP DESTROY, DEL: the list server's)");
        let mut pipe = redis::pipe();
        for stream in registry::streams(&mut conn, keys).await.map_err(&refused)? {
            pipe.cmd("XGROUP")
                .arg("DESTROY")
                .arg(stream.key)
                .arg(name.as_str())
                .ignore();
        }
        pipe.cmd("DEL")
            .arg(keys.subscriber(name))
            .arg(keys.replay(name))
            .arg(keys.dead(name))
            .arg(keys.delayed(name))
            .ignore();
        pipe.query_async::<()>(&mut conn).await.map_err(refused)?;
        tracing::info!(subscriber = %name, "subscriber deleted");
        Ok(())
    }

    async fn dead_letters(&self, name: &SubscriberName) -> Result<Vec<DeadLetter>, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::list(&mut self.shared.conn.clone(), &self.shared.keys, name).await
    }

    async fn purge_dead_letters(&self, name: &SubscriberName) -> Result<usize, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::purge(&mut self.shared.conn.clone(), &self.shared.keys, name).await
    }

    async fn replay_dead_letters(
        &self,
        name: &SubscriberName,
        which: Replay,
    ) -> Result<usize, BackendError> {
        self.shared.ensure_open()?;
        dead_letters::replay(
            &mut self.shared.conn.clone(),
            &self.shared.keys,
            name,
            &which,
        )
        .await
    }
}
