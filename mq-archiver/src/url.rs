//! Which backend a URL names, and where it points.

use std::fmt;

use archiver_core::redact_url;

use crate::Error;

/// The backends a URL can name ([`Config::backend`](crate::Config::backend)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    /// `memory:[name]`: in this process.
    Memory,
    /// `redis://`, `rediss://`, `redis+unix://`.
    Redis,
    /// `amqp://`, `amqps://`.
    Rabbitmq,
    /// `tcp://`, `ipc://`: no broker.
    Zeromq,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Memory => "memory:",
            Self::Redis => "Redis (redis://, rediss://, redis+unix://)",
            Self::Rabbitmq => "RabbitMQ (amqp://, amqps://)",
            Self::Zeromq => "ZeroMQ (tcp://, ipc://)",
        })
    }
}

/// A parsed URL: the backend and its address, credentials split off for
/// ZeroMQ (whose endpoints carry none).
#[derive(Clone)]
pub(crate) enum Target {
    /// An in-process broker, by name (`memory:` is `memory:default`).
    Memory(String),
    /// A Redis URL, as the client takes it.
    Redis(String),
    /// A RabbitMQ URL, as the client takes it.
    Rabbitmq(String),
    /// A ZeroMQ endpoint, and the ZAP PLAIN user and password of its user
    /// info.
    Zeromq {
        endpoint: String,
        user: Option<(String, String)>,
    },
}

impl Target {
    /// Reads a URL; nothing is contacted.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let Some((scheme, rest)) = raw.split_once(':') else {
            return Err(Error::InvalidUrl {
                url: redact_url(raw),
                reason: "no scheme (e.g. redis://host:6379)".into(),
            });
        };
        let invalid = |reason: String| Error::InvalidUrl {
            url: redact_url(raw),
            reason,
        };
        match scheme.to_ascii_lowercase().as_str() {
            "memory" => {
                let name = rest.trim_start_matches("//");
                Ok(Self::Memory(
                    if name.is_empty() { "default" } else { name }.into(),
                ))
            }
            "redis+cluster" | "rediss+cluster" => Err(Error::NotSupportedYet {
                what: "Redis Cluster (redis+cluster://seed1:7000,seed2:7001/)",
            }),
            "redis" | "rediss" | "redis+unix" => {
                feature(scheme, cfg!(feature = "redis"), "redis")?;
                url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
                Ok(Self::Redis(raw.into()))
            }
            "amqp" | "amqps" => {
                feature(scheme, cfg!(feature = "rabbitmq"), "rabbitmq")?;
                let url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
                if url.host_str().is_some_and(|h| h.contains(',')) {
                    return Err(Error::NotSupportedYet {
                        what: "several RabbitMQ nodes (give each as an option node)",
                    });
                }
                Ok(Self::Rabbitmq(raw.into()))
            }
            "tcp" | "ipc" => {
                feature(scheme, cfg!(feature = "zeromq"), "zeromq")?;
                zeromq(raw, invalid)
            }
            other => Err(Error::UnknownScheme {
                url: redact_url(raw),
                scheme: other.into(),
            }),
        }
    }

    /// The backend.
    pub fn scheme(&self) -> BackendKind {
        match self {
            Self::Memory(_) => BackendKind::Memory,
            Self::Redis(_) => BackendKind::Redis,
            Self::Rabbitmq(_) => BackendKind::Rabbitmq,
            Self::Zeromq { .. } => BackendKind::Zeromq,
        }
    }
}

/// Errs when the scheme's backend is not built in.
fn feature(scheme: &str, enabled: bool, feature: &'static str) -> Result<(), Error> {
    if enabled {
        Ok(())
    } else {
        Err(Error::FeatureDisabled {
            scheme: scheme.into(),
            feature,
        })
    }
}

/// `tcp://[user:password@]host:port` (`*` as the port binds any free one;
/// user and password as written, not percent-decoded)
/// or `ipc:///path`; a comma in the host is the reserved form for several
/// hubs.
fn zeromq(raw: &str, invalid: impl Fn(String) -> Error) -> Result<Target, Error> {
    let (scheme, address) = raw
        .split_once("://")
        .ok_or_else(|| invalid("a ZeroMQ endpoint is tcp://host:port or ipc:///path".into()))?;
    let (user, address) = match address.rsplit_once('@') {
        Some((info, address)) if scheme == "tcp" => {
            let (user, password) = info.split_once(':').unwrap_or((info, ""));
            (Some((user.to_owned(), password.to_owned())), address)
        }
        _ => (None, address),
    };
    if scheme == "tcp" && address.contains(',') {
        return Err(Error::NotSupportedYet {
            what: "several ZeroMQ hubs for one subscriber (give each as an option hub)",
        });
    }
    if address.is_empty() {
        return Err(invalid("no host or path".into()));
    }
    Ok(Target::Zeromq {
        endpoint: format!("{scheme}://{address}"),
        user,
    })
}
