//! The string options that go with a URL (object_store's `parse_url_opts`
//! style), checked once into typed settings before anything connects.

use std::path::PathBuf;
use std::time::Duration;

use crate::url::BackendKind;
use crate::{Error, Prefix};

/// Every option key, with the backends it applies to. The environment form
/// of a key is `ARCHIVER_` + the key upper-cased with `-` as `_`.
pub const OPTION_KEYS: &[&str] = &[
    "prefix",
    "user",
    "password",
    "tls-ca-file",
    "max-envelope-bytes",
    "durability",
    "claim-idle",
    "poll-interval",
    "consumer-name",
    "queue-type",
    "keep-unrouted",
    "legacy-routing-keys",
    "grant-file",
    "node",
    "hub-dir",
    "grants-file",
    "anonymous",
    "curve-key",
    "curve-server-key",
    "connect-timeout",
    "tail",
    "hub",
    "spool-dir",
    "publish-timeout",
    "base-url",
    "archiver-name",
];

/// The settings the options gave, each `None` when not given (the
/// backend's own default applies).
#[derive(Default, Clone)]
pub(crate) struct Settings {
    /// Key prefix (Redis) or exchange and queue prefix (RabbitMQ).
    pub prefix: Option<Prefix>,
    /// User name, when not in the URL (some clients ignore user info).
    pub user: Option<String>,
    /// Password, when not in the URL.
    pub password: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub max_envelope_bytes: Option<usize>,
    #[cfg(feature = "redis")]
    pub durability: Option<backend_redis::Durability>,
    pub claim_idle: Option<Duration>,
    pub poll_interval: Option<Duration>,
    pub consumer_name: Option<String>,
    #[cfg(feature = "rabbitmq")]
    pub queue_type: Option<backend_rabbitmq::QueueType>,
    pub keep_unrouted: Option<bool>,
    /// RabbitMQ: keep the upgrade's earlier routing keys and bindings.
    pub legacy_routing_keys: Option<bool>,
    /// RabbitMQ: run as an archive server's restricted user under the
    /// grant in this JSON file.
    pub grant_file: Option<PathBuf>,
    pub hub_dir: Option<PathBuf>,
    /// ZeroMQ hub: the allowlist with each principal's grant.
    pub grants_file: Option<PathBuf>,
    /// ZeroMQ hub: serve peers without authentication (loopback and ipc
    /// only), which must be asked for.
    pub anonymous: Option<bool>,
    /// ZeroMQ CURVE: this side's key pair file (the hub's, or the archive
    /// server's).
    pub curve_key: Option<PathBuf>,
    /// ZeroMQ CURVE, archive server side: the hub's public key file.
    pub curve_server_key: Option<PathBuf>,
    pub connect_timeout: Option<Duration>,
    /// ZeroMQ live tail: the endpoint the hub binds, or a subscriber connects to.
    pub tail: Option<String>,
    pub spool_dir: Option<PathBuf>,
    pub publish_timeout: Option<Duration>,
    pub base_url: Option<String>,
    pub archiver_name: Option<String>,
}

/// Which backends a key applies to; `None` for an unknown key.
fn applies(key: &str, scheme: BackendKind) -> Option<bool> {
    use BackendKind::*;
    let yes = match key {
        "prefix" | "spool-dir" | "publish-timeout" | "base-url" | "archiver-name" => true,
        "user" | "password" | "max-envelope-bytes" => scheme != Memory,
        "tls-ca-file" => matches!(scheme, Redis | Rabbitmq),
        "durability" | "claim-idle" | "poll-interval" | "consumer-name" => scheme == Redis,
        "queue-type" | "keep-unrouted" | "legacy-routing-keys" | "grant-file" | "node" => {
            scheme == Rabbitmq
        }
        "hub-dir" | "grants-file" | "anonymous" | "curve-key" | "curve-server-key"
        | "connect-timeout" | "tail" | "hub" => scheme == Zeromq,
        _ => return None,
    };
    Some(yes)
}

impl Settings {
    /// Checks and types every option for a backend: an unknown key, a key
    /// of another backend, or a bad value is an error naming the key.
    pub fn parse<K, V>(
        scheme: BackendKind,
        options: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, Error>
    where
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut settings = Self::default();
        for (key, value) in options {
            let (key, value) = (key.as_ref(), value.as_ref());
            match applies(key, scheme) {
                None => return Err(Error::UnknownOption { key: key.into() }),
                Some(false) => {
                    return Err(Error::OptionNotApplicable {
                        key: key.into(),
                        scheme: scheme.to_string(),
                    });
                }
                Some(true) => settings.set(key, value)?,
            }
        }
        Ok(settings)
    }

    /// Sets one checked key.
    fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let invalid = |expected| Error::InvalidOption {
            key: key.into(),
            expected,
        };
        let text = |expected| {
            if value.is_empty() {
                Err(invalid(expected))
            } else {
                Ok(value.to_owned())
            }
        };
        match key {
            "prefix" => {
                self.prefix = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("1 to 100 of A-Z a-z 0-9 . _ -, e.g. archiver"))?,
                )
            }
            "user" => self.user = Some(text("a non-empty user name")?),
            "password" => self.password = Some(value.to_owned()),
            "tls-ca-file" => self.tls_ca_file = Some(text("a PEM file's path")?.into()),
            "max-envelope-bytes" => {
                self.max_envelope_bytes = Some(
                    value
                        .parse()
                        .map_err(|_| invalid("a number of bytes, e.g. 67108864"))?,
                );
            }
            #[cfg(feature = "redis")]
            "durability" => {
                self.durability = Some(durability(value).ok_or_else(|| {
                    invalid("reply, replicas:COUNT:TIMEOUT or fsync:REPLICAS:TIMEOUT, e.g. replicas:1:500ms")
                })?);
            }
            "claim-idle" => {
                self.claim_idle = Some(duration(value).ok_or_else(|| invalid(DURATION))?)
            }
            "poll-interval" => {
                self.poll_interval = Some(duration(value).ok_or_else(|| invalid(DURATION))?);
            }
            "consumer-name" => self.consumer_name = Some(text("a non-empty consumer name")?),
            #[cfg(feature = "rabbitmq")]
            "queue-type" => {
                self.queue_type = Some(match value {
                    "quorum" => backend_rabbitmq::QueueType::Quorum,
                    "classic" => backend_rabbitmq::QueueType::Classic,
                    _ => return Err(invalid("quorum or classic")),
                });
            }
            "keep-unrouted" => {
                self.keep_unrouted = Some(value.parse().map_err(|_| invalid("true or false"))?);
            }
            "legacy-routing-keys" => {
                self.legacy_routing_keys =
                    Some(value.parse().map_err(|_| invalid("true or false"))?);
            }
            "grant-file" => self.grant_file = Some(text("a JSON file's path")?.into()),
            "node" => {
                return Err(Error::NotSupportedYet {
                    what: "several RabbitMQ nodes (option node)",
                });
            }
            "hub-dir" => self.hub_dir = Some(text("a directory")?.into()),
            "grants-file" => self.grants_file = Some(text("a JSON file's path")?.into()),
            "anonymous" => {
                self.anonymous = Some(value.parse().map_err(|_| invalid("true or false"))?);
            }
            "curve-key" => self.curve_key = Some(text("a key pair file's path (NAME.key)")?.into()),
            "curve-server-key" => {
                self.curve_server_key = Some(text("a public key file's path (NAME.pub)")?.into())
            }
            "connect-timeout" => {
                self.connect_timeout = Some(duration(value).ok_or_else(|| invalid(DURATION))?);
            }
            "tail" => self.tail = Some(text("an endpoint, e.g. tcp://127.0.0.1:5556")?),
            "hub" => {
                return Err(Error::NotSupportedYet {
                    what: "several ZeroMQ hubs for one subscriber (option hub)",
                });
            }
            "spool-dir" => self.spool_dir = Some(text("a directory")?.into()),
            "publish-timeout" => {
                self.publish_timeout = Some(duration(value).ok_or_else(|| invalid(DURATION))?);
            }
            "base-url" => self.base_url = Some(text("an archive URL with {list_id}")?),
            "archiver-name" => self.archiver_name = Some(text("a non-empty name")?),
            // A key of a backend this build leaves out.
            _ => {
                return Err(Error::OptionNotApplicable {
                    key: key.into(),
                    scheme: "this build".into(),
                });
            }
        }
        Ok(())
    }
}

/// What a duration option looks like.
const DURATION: &str = "a duration: a whole number with ms or s, e.g. 500ms or 2s";

/// `500ms` or `2s`.
fn duration(value: &str) -> Option<Duration> {
    if let Some(ms) = value.strip_suffix("ms") {
        ms.parse().ok().map(Duration::from_millis)
    } else {
        value
            .strip_suffix('s')?
            .parse()
            .ok()
            .map(Duration::from_secs)
    }
}

/// `reply`, `replicas:COUNT:TIMEOUT` or `fsync:REPLICAS:TIMEOUT`.
#[cfg(feature = "redis")]
fn durability(value: &str) -> Option<backend_redis::Durability> {
    use backend_redis::Durability;
    if value == "reply" {
        return Some(Durability::Reply);
    }
    let mut parts = value.split(':');
    let (kind, count, timeout) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let (count, timeout) = (count.parse().ok()?, duration(timeout)?);
    match kind {
        "replicas" => Some(Durability::Replicas { count, timeout }),
        "fsync" => Some(Durability::Fsync {
            replicas: count,
            timeout,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_and_s_only() {
        assert_eq!(duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(duration("2"), None);
        assert_eq!(duration("2m"), None);
        assert_eq!(duration("-1s"), None);
    }

    #[cfg(feature = "redis")]
    #[test]
    fn durability_forms() {
        use backend_redis::Durability;
        assert_eq!(durability("reply"), Some(Durability::Reply));
        assert_eq!(
            durability("replicas:1:500ms"),
            Some(Durability::Replicas {
                count: 1,
                timeout: Duration::from_millis(500)
            })
        );
        assert_eq!(
            durability("fsync:0:1s"),
            Some(Durability::Fsync {
                replicas: 0,
                timeout: Duration::from_secs(1)
            })
        );
        assert_eq!(durability("replicas:1"), None);
        assert_eq!(durability("always"), None);
    }
}
