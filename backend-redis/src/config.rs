//! How to reach Redis and how the backend behaves.

use std::path::PathBuf;
use std::time::Duration;

use archiver_core::backend::check_url;
use archiver_core::{BackendError, Prefix, PublisherCapabilities, redact_url as redact};

/// What `publish` waits for before it returns Ok.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// The XADD reply: the entry is in the primary's memory, and on disk as
    /// the server's persistence says (nothing without persistence, within a
    /// second with `appendfsync everysec`, before the reply with
    /// `appendfsync always`).
    #[default]
    Reply,
    /// Also `WAIT count timeout`: that many replicas have the entry.
    Replicas {
        /// Replicas that must acknowledge.
        count: u32,
        /// How long to wait for them; fewer is an error.
        timeout: Duration,
    },
    /// Also `WAITAOF 1 replicas timeout` (Redis 7.2 or later): the entry is
    /// fsynced to the primary's append-only file, and to that many replicas'.
    Fsync {
        /// Replicas whose AOF must also be fsynced.
        replicas: u32,
        /// How long to wait; less is an error.
        timeout: Duration,
    },
}

/// Configuration of a [`RedisBackend`](crate::RedisBackend). Its `Debug`
/// shows the URL redacted ([`archiver_core::redact_url`]).
///
/// ```
/// use std::time::Duration;
/// use backend_redis::RedisConfig;
/// # fn main() -> Result<(), archiver_core::InvalidPrefix> {
/// let config = RedisConfig::new("redis://archiver:secret@127.0.0.1:6379/0")
///     .prefix("lists-a".parse()?)
///     .claim_idle(Duration::from_secs(120));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]`, `rediss://` for TLS,
    /// or `redis+unix:///path/to/socket`.
    pub url: String,
    /// Prefix of every key the backend writes (`<prefix>:stream:...`), so
    /// several deployments can share one Redis.
    pub prefix: Prefix,
    /// A delivery left unsettled this long (its consumer crashed or hangs)
    /// is given to another consumer. Longer than your slowest handler.
    pub claim_idle: Duration,
    /// Longest a consumer blocks on Redis before it looks for new lists and
    /// due retries; bounds the latency of a list's first message.
    pub poll_interval: Duration,
    /// What `publish` waits for.
    pub durability: Durability,
    /// Largest envelope body accepted, in bytes.
    pub max_envelope_bytes: usize,
    /// How often a consumer trims the streams it reads; also how often a
    /// stream or registry set Redis refused this user is tried again.
    pub retention_interval: Duration,
    /// Entries younger than this are never trimmed, even when acknowledged:
    /// covers a subscriber created while a trim computes what is needed.
    pub retention_min_age: Duration,
    /// PEM file of the CA that signed the server's certificate, for
    /// `rediss://` to a server whose CA is not in the system's trust store.
    pub tls_ca_file: Option<PathBuf>,
    /// This process instance's consumer name within every group it reads.
    /// Stable across restarts, so a restarted instance is the same consumer
    /// and consumers do not pile up; instances sharing one (two on a host
    /// with the default) still compete safely, as entries are claimed by
    /// idle time, never by consumer name. Default: the host name.
    pub consumer_name: String,
}

/// By hand, so that `?config` in a log never prints the URL's credentials.
impl std::fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("claim_idle", &self.claim_idle)
            .field("poll_interval", &self.poll_interval)
            .field("durability", &self.durability)
            .field("max_envelope_bytes", &self.max_envelope_bytes)
            .field("retention_interval", &self.retention_interval)
            .field("retention_min_age", &self.retention_min_age)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("consumer_name", &self.consumer_name)
            .finish()
    }
}

impl RedisConfig {
    /// What publishing through a client of this configuration guarantees:
    /// known before connecting, so a publisher that connects lazily can
    /// report it.
    pub fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            max_envelope_bytes: self.max_envelope_bytes,
            publish_durability: match self.durability {
                Durability::Reply => {
                    "XADD answered: in Redis memory, on disk as the server's appendfsync policy says"
                }
                Durability::Replicas { .. } => {
                    "XADD answered and WAIT saw the configured number of replicas"
                }
                Durability::Fsync { .. } => {
                    "XADD answered and WAITAOF saw it fsynced locally and on the configured replicas"
                }
            },
            // In the Redis server's care, wherever it runs.
            locally_durable: false,
        }
    }

    /// Defaults for a URL: prefix `archiver`, 60 s claim idle, 200 ms poll,
    /// XADD-reply durability, 32 MiB bodies
    /// ([`archiver_core::DEFAULT_MAX_ENVELOPE_BYTES`]), trimming every 10 s
    /// of entries older than a minute.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: Prefix::default(),
            claim_idle: Duration::from_secs(60),
            poll_interval: Duration::from_millis(200),
            durability: Durability::Reply,
            max_envelope_bytes: archiver_core::DEFAULT_MAX_ENVELOPE_BYTES,
            retention_interval: Duration::from_secs(10),
            retention_min_age: Duration::from_secs(60),
            tls_ca_file: None,
            consumer_name: default_consumer_name(),
        }
    }

    /// From `ARCHIVER_REDIS_URL`, else `redis://127.0.0.1:6379`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("ARCHIVER_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        )
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// Sets how long an unsettled delivery waits before it is reclaimed.
    pub fn claim_idle(mut self, idle: Duration) -> Self {
        self.claim_idle = idle;
        self
    }

    /// Sets the poll interval.
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// Sets what `publish` waits for.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets the largest body accepted.
    pub fn max_envelope_bytes(mut self, limit: usize) -> Self {
        self.max_envelope_bytes = limit;
        self
    }

    /// Sets how often consumers trim.
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.retention_interval = interval;
        self
    }

    /// Trusts the CA in this PEM file for `rediss://` (instead of the
    /// system's trust store).
    pub fn tls_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Sets this instance's consumer name (e.g. `archive-2` for the second
    /// instance on one host).
    pub fn consumer_name(mut self, name: impl Into<String>) -> Self {
        self.consumer_name = name.into();
        self
    }

    /// Sets the age below which entries are never trimmed.
    pub fn retention_min_age(mut self, age: Duration) -> Self {
        self.retention_min_age = age;
        self
    }

    /// Checks the URL's form and the consumer name before any connection
    /// is made (the prefix was checked when it was made).
    pub(crate) fn validate(&self) -> Result<(), BackendError> {
        check_url(&self.url, &["redis", "rediss", "redis+unix", "unix"])?;
        if self.consumer_name.is_empty() || self.consumer_name.contains(char::is_whitespace) {
            return Err(BackendError::InvalidConfig(
                format!(
                    "consumer name {:?} must be non-empty without spaces",
                    self.consumer_name
                )
                .into(),
            ));
        }
        Ok(())
    }

    /// Longest a command on the shared connection may wait server-side.
    pub(crate) fn durability_wait(&self) -> Duration {
        match self.durability {
            Durability::Reply => Duration::ZERO,
            Durability::Replicas { timeout, .. } | Durability::Fsync { timeout, .. } => timeout,
        }
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }
}

/// The host's name (`HOSTNAME`, else `/etc/hostname`), else `archiver`.
fn default_consumer_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().replace(char::is_whitespace, "-"))
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "archiver".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_passwords_never_shown() {
        assert!(
            RedisConfig::new("redis://127.0.0.1:6379")
                .validate()
                .is_ok()
        );
        assert!(
            RedisConfig::new("rediss://u:p@host:6380/2")
                .validate()
                .is_ok()
        );
        let wrong = RedisConfig::new("http://user:hunter2@host/")
            .validate()
            .unwrap_err();
        assert!(
            matches!(&wrong, BackendError::InvalidUrl(m) if !m.contains("hunter2") && m.contains("scheme")),
            "{wrong}"
        );
        let garbage = RedisConfig::new("not a url hunter2")
            .validate()
            .unwrap_err();
        assert!(!garbage.to_string().contains("hunter2"));
        assert_eq!(
            RedisConfig::new("redis://u:hunter2@h/").redacted_url(),
            "redis://u:***@h/"
        );
    }

    /// `{:?}` of a configuration (as `tracing`'s `?config` prints it) shows
    /// no password.
    #[test]
    fn debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            RedisConfig::new("redis+unix:///run/redis.sock?user=archiver&pass=hunter2")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(shown.contains("prefix: \"archiver\""), "{shown}");
    }
}
