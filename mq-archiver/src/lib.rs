//! The message-queue mailing-list archiver behind one front door: a URL
//! picks the backend, so switching an embedding from Redis to RabbitMQ or
//! ZeroMQ is a configuration change, not a code change (arrow-rs
//! `object_store`'s `parse_url_opts` is the model).
//!
//! ```
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let archiver = mq_archiver::open_archiver(
//!     "memory:",
//!     [("base-url", "https://archive.example.org/list/{list_id}/")],
//! )
//! .await?;
//! # Ok(()) }
//! ```
//!
//! It re-exports everything of `archiver_core` a list server and an
//! archive server use (and [`Bytes`], [`async_trait`](macro@async_trait)), so one dependency
//! is enough; the backend crates are there too, as [`redis`], [`rabbitmq`]
//! and [`zeromq`] (features of the same names, all on by default), for
//! what only one backend has.
//!
//! # URLs
//!
//! | URL | backend |
//! |---|---|
//! | `memory:` or `memory:NAME` | in this process; clients of one name share one broker |
//! | `redis://[user:password@]host[:port][/db]`, `rediss://`, `redis+unix:///path` | Redis Streams |
//! | `amqp://user:password@host[:port]/vhost`, `amqps://` | RabbitMQ |
//! | `tcp://[user:password@]host:port`, `ipc:///path` | ZeroMQ, no broker: [`connect_publisher`] binds a hub there (option `hub-dir` required; port `*` picks a free one), [`connect_subscriber`] connects to it |
//!
//! Reserved for later, so configurations need not change: Redis Cluster
//! (`redis+cluster://h1:7000,h2:7001/`), several RabbitMQ nodes (the
//! repeatable option `node`), several ZeroMQ hubs for one subscriber (the
//! repeatable option `hub`, or `tcp://h1:5555,h2:5555`). They parse and
//! fail with [`Error::NotSupportedYet`].
//!
//! # Options
//!
//! String pairs, each key at most for some backends ([`OPTION_KEYS`]); an
//! unknown key, a key of another backend or a bad value is an [`Error`]
//! naming the key (never the value). Durations are `500ms` or `2s`.
//!
//! | key | backends | meaning (default) |
//! |---|---|---|
//! | `prefix` | all (memory and ZeroMQ ignore it) | Redis key prefix, RabbitMQ exchange and queue prefix: 1 to 100 of `A-Z a-z 0-9 . _ -` ([`Prefix`]; `archiver`) |
//! | `user`, `password` | Redis, RabbitMQ, ZeroMQ | credentials, instead of the URL's user info (ZeroMQ: ZAP PLAIN, not encrypted, for tests and loopback; the subscriber sends them and the hub allows them with every grant, operator included) |
//! | `grants-file` | ZeroMQ | the hub's allowlist: a JSON list of `{"user", "password", "grant"}` (PLAIN) or `{"curve_public_key", "grant"}` (with `curve-key`), each grant as `archiver_core::Grant`'s JSON (`{"principal", "subscribers", "lists", "private_lists", "membership_events", "operator"}`) |
//! | `curve-key` | ZeroMQ | CURVE (encrypted, both sides authenticated): this side's key pair file, `NAME.key` as `mq-archiver-admin keygen NAME` writes it: [`connect_publisher`]'s hub's own (its allowlist is then the `curve_public_key` entries of the `grants-file`, required), [`connect_subscriber`]'s archive server's (with `curve-server-key`); not with `user`/`password` (none: PLAIN or anonymous) |
//! | `curve-server-key` | ZeroMQ | CURVE, [`connect_subscriber`]: the hub's public key file (`NAME.pub`); the subscriber talks only to a hub holding its secret half |
//! | `anonymous` | ZeroMQ | `true`: the hub serves peers without authentication, on `ipc://` and loopback endpoints only (logged at warn); a hub needs this, credentials or a `grants-file` (`false`) |
//! | `tls-ca-file` | Redis, RabbitMQ | PEM CA for `rediss://` / `amqps://` (the system's trust store) |
//! | `max-envelope-bytes` | Redis, RabbitMQ, ZeroMQ | largest body (32 MiB, [`DEFAULT_MAX_ENVELOPE_BYTES`]) |
//! | `durability` | Redis | `reply` (default), `replicas:COUNT:TIMEOUT`, `fsync:REPLICAS:TIMEOUT` |
//! | `claim-idle`, `poll-interval`, `consumer-name` | Redis | see `RedisConfig` (60s, 200ms, host name) |
//! | `queue-type`, `keep-unrouted` | RabbitMQ | `quorum` or `classic` (quorum); `true` or `false` (true) |
//! | `legacy-routing-keys` | RabbitMQ | `true` or `false` (decided at connect: on only while an earlier version may have subscribers): the upgrade's earlier routing keys and bindings (backend-rabbitmq docs, Upgrading) |
//! | `grant-file` | RabbitMQ | an archive server's grant (`archiver_core::Grant`'s JSON): the client runs as that least-privilege user, declares no shared exchange and binds only what the grant allows (README, "RabbitMQ: one least-privilege broker user") |
//! | `hub-dir` | ZeroMQ | the hub's journal and queues (required by [`connect_publisher`]) |
//! | `connect-timeout` | ZeroMQ | how long a subscriber waits for the hub (10s) |
//! | `tail` | ZeroMQ | the live tail's endpoint: [`connect_publisher`]'s hub binds it (port `*` picks a free one, see the hub's `tail_endpoint`), [`connect_subscriber`] tails it (none: no tail) |
//! | `spool-dir`, `publish-timeout` | all | [`open_archiver`]'s spool (none), and how long a publish may take before its envelope is spooled (2s) |
//! | `base-url`, `archiver-name` | all | [`open_archiver`]'s archive URL with `{list_id}` (required), its name (`mq-archiver`) |
//!
//! [`Config::from_env`] reads the URL from `ARCHIVER_URL` (else, as
//! before, `ARCHIVER_REDIS_URL`, then `ARCHIVER_AMQP_URL`) and each option
//! from `ARCHIVER_` + its key upper-cased with `_` for `-` (e.g.
//! `ARCHIVER_TLS_CA_FILE`); for ZeroMQ also `ARCHIVER_ZMQ_USER` and
//! `ARCHIVER_ZMQ_PASSWORD`.
//!
//! # Why one client type per role, delegating to a trait object
//!
//! A publisher of Redis and one of RabbitMQ are different types, yet the
//! caller of [`connect_publisher`] cannot name the type before reading the
//! URL. The core traits are object-safe (`async_trait`), so
//! [`PublisherClient`] holds the backend's client as an `Arc<dyn
//! Publisher>` and [`SubscriberClient`] as a trait object of
//! [`Subscriber`] and [`Operator`], each implementing its role by
//! delegation: one virtual call per operation, negligible next to a network
//! round trip, and adding a backend adds no variant to every method. A
//! list server gets only what it can use (publish, and its
//! [`PublisherCapabilities`]); an archive server or operator the rest. The
//! two are separate because ZeroMQ's are separate objects: a list server's
//! hub, and its archive servers' client. What only one backend offers (a
//! ZeroMQ list server's hub, purging a Redis or RabbitMQ deployment) sits
//! next to the trait object.

// With a backend left out, its URL forms and option keys are still parsed
// (and refused with a typed error), so their fields go unread.
#![cfg_attr(
    not(all(feature = "redis", feature = "rabbitmq", feature = "zeromq")),
    allow(dead_code, unused_variables)
)]

mod client;
mod error;
mod options;
mod url;

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

pub use archiver_core::*;
pub use async_trait::async_trait;
#[cfg(feature = "rabbitmq")]
pub use backend_rabbitmq as rabbitmq;
#[cfg(feature = "redis")]
pub use backend_redis as redis;
#[cfg(feature = "zeromq")]
pub use backend_zeromq as zeromq;
pub use bytes::Bytes;

pub use client::{PublisherClient, SubscriberClient};
pub use error::Error;
pub use options::OPTION_KEYS;
pub use url::BackendKind;

use options::Settings;
use url::Target;

/// The README's examples, compiled and run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

/// A checked URL and its options: nothing contacted yet. Its `Debug`
/// shows the URL redacted and no option value.
#[derive(Clone)]
pub struct Config {
    url: String,
    target: Target,
    settings: Settings,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("url", &self.redacted_url())
            .finish_non_exhaustive()
    }
}

/// No options, for a URL that needs none (`[]` alone has no item type).
pub const NO_OPTIONS: [(&str, &str); 0] = [];

/// Connects a list server's client: for ZeroMQ, binds the hub.
pub async fn connect_publisher<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<PublisherClient, Error> {
    Config::parse(url, options)?.connect_publisher().await
}

/// Connects an archive server's client, which is the operator's too (dead
/// letters, unsubscribe): for ZeroMQ, to the hub.
pub async fn connect_subscriber<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<SubscriberClient, Error> {
    Config::parse(url, options)?.connect_subscriber().await
}

/// A list server's ready [`QueueArchiver`]: connected, with its spool
/// when `spool-dir` is given.
pub async fn open_archiver<K: AsRef<str>, V: AsRef<str>>(
    url: &str,
    options: impl IntoIterator<Item = (K, V)>,
) -> Result<QueueArchiver<PublisherClient>, Error> {
    Config::parse(url, options)?.open_archiver().await
}

impl Config {
    /// Checks a URL and its options.
    pub fn parse<K: AsRef<str>, V: AsRef<str>>(
        url: &str,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, Error> {
        let target = Target::parse(url)?;
        let settings = Settings::parse(target.scheme(), options)?;
        Ok(Self {
            url: url.to_owned(),
            target,
            settings,
        })
    }

    /// From the environment (see the crate docs).
    pub fn from_env() -> Result<Self, Error> {
        Self::from_lookup(|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(Error::NotUnicode(name.to_owned())),
        })
    }

    /// [`Config::from_env`] over any variable lookup.
    fn from_lookup(get: impl Fn(&str) -> Result<Option<String>, Error>) -> Result<Self, Error> {
        let url = match get("ARCHIVER_URL")? {
            Some(url) => url,
            None => get("ARCHIVER_REDIS_URL")?
                .or(get("ARCHIVER_AMQP_URL")?)
                .ok_or(Error::NoUrlInEnvironment)?,
        };
        let mut options = Vec::new();
        for key in OPTION_KEYS {
            let name = format!("ARCHIVER_{}", key.to_ascii_uppercase().replace('-', "_"));
            if let Some(value) = get(&name)? {
                options.push((*key, value));
            }
        }
        if Target::parse(&url)?.scheme() == BackendKind::Zeromq {
            for (key, name) in [
                ("user", "ARCHIVER_ZMQ_USER"),
                ("password", "ARCHIVER_ZMQ_PASSWORD"),
            ] {
                if !options.iter().any(|(k, _)| *k == key)
                    && let Some(value) = get(name)?
                {
                    options.push((key, value));
                }
            }
        }
        Self::parse(&url, options)
    }

    /// The backend the URL names.
    pub fn backend(&self) -> BackendKind {
        self.target.scheme()
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Connects a list server's client: for ZeroMQ, binds the hub.
    pub async fn connect_publisher(&self) -> Result<PublisherClient, Error> {
        self.connect_list_server().await
    }

    /// Connects an archive server's client, which is the operator's too:
    /// for ZeroMQ, to the hub.
    pub async fn connect_subscriber(&self) -> Result<SubscriberClient, Error> {
        self.connect_archive_server().await
    }

    /// A list server's ready [`QueueArchiver`], with its spool when
    /// `spool-dir` is given.
    pub async fn open_archiver(&self) -> Result<QueueArchiver<PublisherClient>, Error> {
        let s = &self.settings;
        let base = s.base_url.as_deref().ok_or(Error::MissingOption {
            key: "base-url",
            why: "by open_archiver (the archive's URL, with {list_id})",
        })?;
        let urls = ArchiveUrls::new(base)?;
        let name = s.archiver_name.as_deref().unwrap_or("mq-archiver");
        let archiver = QueueArchiver::new(name, self.connect_publisher().await?, urls);
        Ok(match &s.spool_dir {
            Some(dir) => {
                let mut spool = SpoolOptions::new(dir);
                if let Some(timeout) = s.publish_timeout {
                    spool = spool.publish_timeout(timeout);
                }
                archiver.with_spool(spool)?
            }
            None => archiver,
        })
    }

    /// The Redis configuration of the URL and options.
    #[cfg(feature = "redis")]
    fn redis_config(&self, url: &str) -> Result<backend_redis::RedisConfig, Error> {
        let s = &self.settings;
        let mut config = backend_redis::RedisConfig::new(self.with_credentials(url)?);
        if let Some(v) = &s.prefix {
            config = config.prefix(v.clone());
        }
        if let Some(v) = &s.tls_ca_file {
            config = config.tls_ca_file(v);
        }
        if let Some(v) = s.max_envelope_bytes {
            config = config.max_envelope_bytes(v);
        }
        if let Some(v) = s.durability {
            config = config.durability(v);
        }
        if let Some(v) = s.claim_idle {
            config = config.claim_idle(v);
        }
        if let Some(v) = s.poll_interval {
            config = config.poll_interval(v);
        }
        if let Some(v) = &s.consumer_name {
            config = config.consumer_name(v);
        }
        Ok(config)
    }

    /// The RabbitMQ configuration of the URL and options.
    #[cfg(feature = "rabbitmq")]
    fn rabbit_config(&self, url: &str) -> Result<backend_rabbitmq::RabbitConfig, Error> {
        let s = &self.settings;
        let mut config = backend_rabbitmq::RabbitConfig::new(self.with_credentials(url)?);
        if let Some(v) = &s.prefix {
            config = config.prefix(v.clone());
        }
        if let Some(v) = &s.tls_ca_file {
            config = config.tls_ca_file(v);
        }
        if let Some(v) = s.max_envelope_bytes {
            config = config.max_envelope_bytes(v);
        }
        if let Some(v) = s.queue_type {
            config = config.queue_type(v);
        }
        if let Some(v) = s.keep_unrouted {
            config = config.keep_unrouted(v);
        }
        if let Some(v) = s.legacy_routing_keys {
            config = config.legacy_routing_keys(v);
        }
        if let Some(path) = &s.grant_file {
            let grant = archiver_core::Grant::read_file(path).map_err(Error::GrantFile)?;
            config = config.archive_server(grant);
        }
        Ok(config)
    }

    /// The ZeroMQ credentials of the options, else of the URL.
    #[cfg(feature = "zeromq")]
    fn zmq_credentials(
        &self,
        user: &Option<(String, String)>,
    ) -> Option<backend_zeromq::Credentials> {
        use backend_zeromq::Credentials;
        let s = &self.settings;
        match (&s.user, &s.password, user) {
            (Some(u), p, _) => Some(Credentials::new(u, p.clone().unwrap_or_default())),
            (None, _, Some((u, p))) => Some(Credentials::new(u, p)),
            (None, _, None) => None,
        }
    }

    /// Refuses PLAIN credentials beside `curve-key`: a ZeroMQ socket has
    /// one mechanism, and credentials given with CURVE were meant for
    /// something else.
    #[cfg(feature = "zeromq")]
    fn not_with_curve(&self) -> Result<(), Error> {
        if self.settings.curve_key.is_some() {
            return Err(Error::InvalidOption {
                key: "curve-key".into(),
                expected: "not together with user and password (ZeroMQ takes CURVE keys or PLAIN credentials, not both)",
            });
        }
        Ok(())
    }

    /// The ZeroMQ client (archive server) configuration of the URL and
    /// options.
    #[cfg(feature = "zeromq")]
    fn client_config(
        &self,
        endpoint: &str,
        user: &Option<(String, String)>,
    ) -> Result<backend_zeromq::ClientConfig, Error> {
        use backend_zeromq::{ClientConfig, CurveKey, CurveKeyPair};
        let s = &self.settings;
        let mut config = ClientConfig::new(endpoint);
        if let Some(c) = self.zmq_credentials(user) {
            self.not_with_curve()?;
            config = config.credentials(c);
        }
        match (&s.curve_key, &s.curve_server_key) {
            (Some(own), Some(server)) => {
                config = config.curve(CurveKey::read_file(server)?, CurveKeyPair::read_file(own)?);
            }
            (Some(_), None) => {
                return Err(Error::MissingOption {
                    key: "curve-server-key",
                    why: "to connect with curve-key: the hub's public key file",
                });
            }
            (None, Some(_)) => {
                return Err(Error::MissingOption {
                    key: "curve-key",
                    why: "to connect with curve-server-key: this archive server's key pair file",
                });
            }
            (None, None) => {}
        }
        if let Some(v) = s.connect_timeout {
            config = config.connect_timeout(v);
        }
        if let Some(v) = &s.tail {
            config = config.tail(v);
        }
        Ok(config)
    }

    /// The ZeroMQ hub configuration of the URL and options.
    #[cfg(feature = "zeromq")]
    fn hub_config(
        &self,
        endpoint: &str,
        user: &Option<(String, String)>,
    ) -> Result<backend_zeromq::HubConfig, Error> {
        let s = &self.settings;
        let dir = s.hub_dir.as_ref().ok_or(Error::MissingOption {
            key: "hub-dir",
            why: "to bind a ZeroMQ hub (its journal and queues)",
        })?;
        let mut config = backend_zeromq::HubConfig::new(endpoint, dir);
        if let Some(path) = &s.curve_key {
            config = config.curve(backend_zeromq::CurveKeyPair::read_file(path)?);
        }
        if let Some(path) = &s.grants_file {
            config.allowed = backend_zeromq::Allowed::read_file(path)?;
        }
        if let Some(c) = self.zmq_credentials(user) {
            self.not_with_curve()?;
            let grant = backend_zeromq::full_access(c.user.clone());
            config = config.allow(c, grant);
        }
        if config.curve.is_some() && config.allowed.is_empty() {
            return Err(Error::MissingOption {
                key: "grants-file",
                why: "for a ZeroMQ hub with curve-key: it serves the client public keys of its grants-file (curve_public_key entries)",
            });
        }
        match (config.allowed.is_empty(), s.anonymous) {
            // Asked for: the hub allows it on ipc:// and loopback only,
            // and warns.
            (true, Some(true)) => config = config.allow_anonymous(),
            (true, _) => {
                return Err(Error::MissingOption {
                    key: "anonymous",
                    why: "a ZeroMQ hub needs user and password, a grants-file, or anonymous=true (ipc:// and loopback only)",
                });
            }
            (false, Some(true)) => {
                return Err(Error::InvalidOption {
                    key: "anonymous".into(),
                    expected: "false when credentials or a grants-file are given",
                });
            }
            (false, _) => {}
        }
        if let Some(v) = s.max_envelope_bytes {
            config = config.max_envelope_bytes(v);
        }
        if let Some(v) = &s.tail {
            config = config.tail(v);
        }
        Ok(config)
    }

    /// What a list server's client of this URL and options will guarantee,
    /// without connecting: for a [`LazyPublisher`] over
    /// [`Config::connect_publisher`], which reports them before it has
    /// connected.
    pub fn publisher_capabilities(&self) -> Result<PublisherCapabilities, Error> {
        match &self.target {
            Target::Memory(name) => Ok(memory_broker(name).publisher_capabilities()),
            #[cfg(feature = "redis")]
            Target::Redis(url) => Ok(self.redis_config(url)?.publisher_capabilities()),
            #[cfg(feature = "rabbitmq")]
            Target::Rabbitmq(url) => Ok(self.rabbit_config(url)?.publisher_capabilities()),
            #[cfg(feature = "zeromq")]
            Target::Zeromq { endpoint, user } => {
                Ok(self.hub_config(endpoint, user)?.publisher_capabilities())
            }
            #[cfg(not(all(feature = "redis", feature = "rabbitmq", feature = "zeromq")))]
            _ => unreachable!("Target::parse refuses the schemes of left-out backends"),
        }
    }

    async fn connect_list_server(&self) -> Result<PublisherClient, Error> {
        match &self.target {
            Target::Memory(name) => Ok(PublisherClient::memory(memory_broker(name))),
            #[cfg(feature = "redis")]
            Target::Redis(url) => Ok(PublisherClient::redis(
                backend_redis::RedisBackend::connect(self.redis_config(url)?).await?,
            )),
            #[cfg(feature = "rabbitmq")]
            Target::Rabbitmq(url) => Ok(PublisherClient::rabbitmq(
                backend_rabbitmq::RabbitBackend::connect(self.rabbit_config(url)?).await?,
            )),
            #[cfg(feature = "zeromq")]
            Target::Zeromq { endpoint, user } => Ok(PublisherClient::hub(
                backend_zeromq::ZmqHub::bind(self.hub_config(endpoint, user)?)?,
            )),
            #[cfg(not(all(feature = "redis", feature = "rabbitmq", feature = "zeromq")))]
            _ => unreachable!("Target::parse refuses the schemes of left-out backends"),
        }
    }

    async fn connect_archive_server(&self) -> Result<SubscriberClient, Error> {
        match &self.target {
            Target::Memory(name) => Ok(SubscriberClient::memory(memory_broker(name))),
            #[cfg(feature = "redis")]
            Target::Redis(url) => Ok(SubscriberClient::redis(
                backend_redis::RedisBackend::connect(self.redis_config(url)?).await?,
            )),
            #[cfg(feature = "rabbitmq")]
            Target::Rabbitmq(url) => Ok(SubscriberClient::rabbitmq(
                backend_rabbitmq::RabbitBackend::connect(self.rabbit_config(url)?).await?,
            )),
            #[cfg(feature = "zeromq")]
            Target::Zeromq { endpoint, user } => Ok(SubscriberClient::zeromq(
                backend_zeromq::ZmqClient::connect(self.client_config(endpoint, user)?)?,
            )),
            #[cfg(not(all(feature = "redis", feature = "rabbitmq", feature = "zeromq")))]
            _ => unreachable!("Target::parse refuses the schemes of left-out backends"),
        }
    }

    /// The URL with the `user` and `password` options in its user info.
    #[cfg(any(feature = "redis", feature = "rabbitmq"))]
    fn with_credentials(&self, url: &str) -> Result<String, Error> {
        let s = &self.settings;
        if s.user.is_none() && s.password.is_none() {
            return Ok(url.to_owned());
        }
        let mut parsed = ::url::Url::parse(url).map_err(|e| Error::InvalidUrl {
            url: redact_url(url),
            reason: e.to_string(),
        })?;
        let refused = |key: &str| Error::InvalidOption {
            key: key.into(),
            expected: "credentials this URL can carry (it has no host)",
        };
        if let Some(user) = &s.user {
            parsed.set_username(user).map_err(|()| refused("user"))?;
        }
        if let Some(password) = &s.password {
            parsed
                .set_password(Some(password))
                .map_err(|()| refused("password"))?;
        }
        Ok(parsed.into())
    }
}

/// The in-process broker of a `memory:` name, made at first use.
fn memory_broker(name: &str) -> MemoryBackend {
    static BROKERS: OnceLock<Mutex<HashMap<String, MemoryBackend>>> = OnceLock::new();
    let mut brokers = BROKERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    brokers.entry(name.to_owned()).or_default().connect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `from_env` over a fixed set of variables.
    fn from(vars: &[(&str, &str)]) -> Result<Config, Error> {
        Config::from_lookup(|name| {
            Ok(vars
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned()))
        })
    }

    #[test]
    fn the_environment_gives_the_url_and_options() {
        let config = from(&[
            ("ARCHIVER_URL", "amqp://guest:guest@127.0.0.1/%2f"),
            ("ARCHIVER_REDIS_URL", "redis://127.0.0.1"),
            ("ARCHIVER_QUEUE_TYPE", "classic"),
            ("ARCHIVER_SPOOL_DIR", "/var/spool/archiver"),
        ])
        .unwrap();
        assert_eq!(config.backend(), BackendKind::Rabbitmq);
        assert_eq!(
            config.settings.spool_dir,
            Some("/var/spool/archiver".into())
        );
        assert_eq!(
            config.settings.queue_type,
            Some(backend_rabbitmq::QueueType::Classic)
        );
    }

    #[test]
    fn the_legacy_variables_still_count() {
        let redis = from(&[("ARCHIVER_REDIS_URL", "redis://127.0.0.1")]).unwrap();
        assert_eq!(redis.backend(), BackendKind::Redis);
        let amqp = from(&[("ARCHIVER_AMQP_URL", "amqp://127.0.0.1/%2f")]).unwrap();
        assert_eq!(amqp.backend(), BackendKind::Rabbitmq);
        assert!(matches!(from(&[]), Err(Error::NoUrlInEnvironment)));
        let zmq = from(&[
            ("ARCHIVER_URL", "tcp://127.0.0.1:5555"),
            ("ARCHIVER_ZMQ_USER", "hyperkitty"),
            ("ARCHIVER_ZMQ_PASSWORD", "s3cret"),
        ])
        .unwrap();
        assert_eq!(zmq.settings.user.as_deref(), Some("hyperkitty"));
        assert_eq!(zmq.settings.password.as_deref(), Some("s3cret"));
    }

    /// A URL's error stays `InvalidUrl` for code that speaks
    /// `BackendError`; an option's (a bad prefix) is `InvalidConfig`.
    #[test]
    fn url_and_configuration_errors_stay_apart_as_backend_errors() {
        let url = Config::parse("redis//nowhere", NO_OPTIONS).unwrap_err();
        assert!(
            matches!(BackendError::from(url), BackendError::InvalidUrl(_)),
            "a URL without a scheme"
        );
        let prefix = Config::parse("redis://127.0.0.1", [("prefix", "no spaces")]).unwrap_err();
        match BackendError::from(prefix) {
            BackendError::InvalidConfig(why) => assert!(why.contains("prefix"), "{why}"),
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn a_bad_environment_option_is_named() {
        let error = from(&[
            ("ARCHIVER_URL", "redis://127.0.0.1"),
            ("ARCHIVER_CLAIM_IDLE", "forever"),
        ])
        .unwrap_err();
        assert!(matches!(error, Error::InvalidOption { ref key, .. } if key == "claim-idle"));
    }
}
