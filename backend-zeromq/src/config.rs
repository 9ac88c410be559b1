//! How a hub binds and how a client connects, with the defaults an operator
//! would pick.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use archiver_core::journal::SyncPolicy;
use archiver_core::{BackendError, Grant, ListPattern, PublisherCapabilities};
use serde::Deserialize;

/// Largest envelope body a hub takes by default: the wire format's mail
/// limit (32 MiB).
pub const DEFAULT_MAX_ENVELOPE_BYTES: usize = 32 * 1024 * 1024;

/// How often each side says it is alive by default.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(1);

/// Silence after which a peer is treated as gone by default: a dead
/// archive server's unsettled deliveries go to the others after this.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest delay a NACK may ask for by default: a longer one is cut to
/// this, so no peer can pin the journal with a delay of centuries.
pub const DEFAULT_MAX_NACK_DELAY: Duration = Duration::from_secs(24 * 60 * 60);

/// How long a connection may hold a delivery unsettled by default: after
/// this it goes back to the queue, counted as an attempt, even if the
/// connection still pings (a mail that hangs every consumer reaches the
/// dead letters).
pub const DEFAULT_ACK_DEADLINE: Duration = Duration::from_secs(5 * 60);

/// Most envelope bytes a hub has delivered and not yet seen settled on one
/// connection by default, whatever its prefetch: a connection that never
/// reads costs the hub at most this plus one envelope (the bound is
/// checked before each delivery), so a peer with N connections N times
/// that.
pub const DEFAULT_MAX_UNACKED_BYTES: usize = 64 * 1024 * 1024;

/// Most dead-letter bytes in one DEAD-LETTERS reply page by default (a
/// page holds at least one dead letter, whatever its size).
pub const DEFAULT_DEAD_LETTER_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// A user name and password for ZAP PLAIN. PLAIN sends them in clear text,
/// like everything else on these sockets: see the crate docs.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub user: String,
    /// The password (never logged; `Debug` hides it).
    pub password: String,
}

impl Credentials {
    /// A user and password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({:?}, ****)", self.user)
    }
}

/// A grant of everything (every subscriber name and list, private lists,
/// membership events, operator actions): what anonymous peers of a hub on
/// loopback get ([`HubConfig::allow_anonymous`]), and what a hub with one
/// shared user gives it, as before grants existed.
pub fn full_access(principal: impl Into<String>) -> Grant {
    Grant::new(principal)
        .lists(ListPattern::new("#").expect("`#` is a valid pattern"))
        .private_lists(true)
        .membership_events(true)
        .operator(true)
}

/// One allowlist entry: credentials and the grant of the principal they
/// log in as (the grant's principal is the ZAP user id the hub checks).
#[derive(Debug, Clone)]
pub struct Allowed {
    /// What the peer sends.
    pub credentials: Credentials,
    /// What it may do once logged in.
    pub grant: Grant,
}

/// An allowlist entry as a grants file writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedText {
    user: String,
    password: String,
    grant: Grant,
}

impl Allowed {
    /// Reads a grants file: a JSON list of `{"user", "password", "grant"}`
    /// (the grant as [`Grant`]'s JSON), so an operator keeps the allowlist
    /// outside the code. An error names the file and where it is wrong,
    /// never a value (it may be a password).
    ///
    /// ```json
    /// [{"user": "web", "password": "s3cret",
    ///   "grant": {"principal": "web", "subscribers": ["web"], "lists": ["#"]}}]
    /// ```
    pub fn read_file(path: &Path) -> Result<Vec<Self>, BackendError> {
        let refused =
            |why: String| BackendError::Auth(format!("grants file {}: {why}", path.display()));
        let bytes = std::fs::read(path).map_err(|e| refused(e.to_string()))?;
        let entries: Vec<AllowedText> = serde_json::from_slice(&bytes).map_err(|e| {
            let text = e.to_string();
            // A grant's own refusal names the principal and the field;
            // serde's type errors may quote a value, so only where.
            let why = match text.find("grant of ") {
                Some(at) => text[at..].to_owned(),
                None => format!(
                    "not a list of {{user, password, grant}} at line {} column {}",
                    e.line(),
                    e.column()
                ),
            };
            refused(why)
        })?;
        Ok(entries
            .into_iter()
            .map(|entry| Self {
                credentials: Credentials::new(entry.user, entry.password),
                grant: entry.grant,
            })
            .collect())
    }
}

/// The list server's side: where it listens and where it keeps the queues.
///
/// ```
/// use archiver_core::Grant;
/// use backend_zeromq::{Credentials, HubConfig};
/// let config = HubConfig::new("tcp://0.0.0.0:5555", "/var/lib/mailman/archiver")
///     .tail("tcp://0.0.0.0:5556")
///     .allow(
///         Credentials::new("hyperkitty", "s3cret"),
///         Grant::new("hyperkitty")
///             .subscriber("hyperkitty".parse().unwrap())
///             .lists("#".parse().unwrap()),
///     );
/// ```
#[derive(Debug, Clone)]
pub struct HubConfig {
    /// Endpoint archive servers connect to (`tcp://host:port`,
    /// `ipc:///path`); a port of `*` picks a free one (see
    /// [`ZmqHub::endpoint`](crate::ZmqHub::endpoint)).
    pub endpoint: String,
    /// Endpoint of the live tail (PUB/SUB); none by default.
    pub tail_endpoint: Option<String>,
    /// Directory of the journal, the subscriber registry and dead letters.
    pub dir: PathBuf,
    /// Accepted credentials, each with its principal's grant.
    pub allowed: Vec<Allowed>,
    /// No authentication, every peer with [`full_access`]: only with
    /// [`allow_anonymous`](Self::allow_anonymous), only on `ipc://` or
    /// loopback endpoints, and never together with `allowed`.
    pub anonymous: bool,
    /// How often the hub pings each connection.
    pub heartbeat: Duration,
    /// Silence after which a connection is dropped and its deliveries given
    /// to the subscriber's other connections.
    pub timeout: Duration,
    /// Largest envelope body accepted.
    pub max_envelope_bytes: usize,
    /// When a publish is durable (default: synced to disk before `Ok`).
    pub sync: SyncPolicy,
    /// Longest NACK delay honoured ([`DEFAULT_MAX_NACK_DELAY`]).
    pub max_nack_delay: Duration,
    /// How long a delivery may stay unsettled ([`DEFAULT_ACK_DEADLINE`]).
    pub ack_deadline: Duration,
    /// Most unsettled envelope bytes per connection
    /// ([`DEFAULT_MAX_UNACKED_BYTES`]).
    pub max_unacked_bytes: usize,
    /// Most bytes per DEAD-LETTERS reply page
    /// ([`DEFAULT_DEAD_LETTER_PAGE_BYTES`]).
    pub dead_letter_page_bytes: usize,
}

impl HubConfig {
    /// What publishing through a hub of this configuration guarantees:
    /// known before connecting, so a publisher that connects lazily can
    /// report it.
    pub fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            max_envelope_bytes: self.max_envelope_bytes,
            publish_durability: match self.sync {
                SyncPolicy::Always => {
                    "appended to the list server's journal and synced to its disk (fdatasync); delivered to each subscriber from there"
                }
                SyncPolicy::Within(_) => {
                    "appended to the list server's journal, synced to its disk within the configured time (a power loss may lose the last ones); delivered to each subscriber from there"
                }
            },
        }
    }

    /// A hub on `endpoint` keeping its state in `dir`.
    pub fn new(endpoint: impl Into<String>, dir: impl Into<PathBuf>) -> Self {
        Self {
            endpoint: endpoint.into(),
            tail_endpoint: None,
            dir: dir.into(),
            allowed: Vec::new(),
            anonymous: false,
            heartbeat: DEFAULT_HEARTBEAT,
            timeout: DEFAULT_TIMEOUT,
            max_envelope_bytes: DEFAULT_MAX_ENVELOPE_BYTES,
            sync: SyncPolicy::Always,
            max_nack_delay: DEFAULT_MAX_NACK_DELAY,
            ack_deadline: DEFAULT_ACK_DEADLINE,
            max_unacked_bytes: DEFAULT_MAX_UNACKED_BYTES,
            dead_letter_page_bytes: DEFAULT_DEAD_LETTER_PAGE_BYTES,
        }
    }

    /// Also serves a live tail on this endpoint.
    pub fn tail(mut self, endpoint: impl Into<String>) -> Self {
        self.tail_endpoint = Some(endpoint.into());
        self
    }

    /// Accepts these credentials, as the principal of `grant` with what it
    /// grants (and, once one is given, refuses peers without valid ones,
    /// replacing anonymous access if it was allowed before).
    pub fn allow(mut self, credentials: Credentials, grant: Grant) -> Self {
        self.allowed.push(Allowed { credentials, grant });
        self.anonymous = false;
        self
    }

    /// Serves peers without authentication, each with [`full_access`]:
    /// for a hub whose endpoints are `ipc://` or loopback only (anyone on
    /// the machine is trusted); [`ZmqHub::bind`](crate::ZmqHub::bind)
    /// refuses any other endpoint, and warns. After [`allow`](Self::allow)
    /// it is refused at bind (credentials are never dropped silently).
    pub fn allow_anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Sets the heartbeat interval and the silence after which a peer is gone.
    pub fn heartbeat(mut self, every: Duration, timeout: Duration) -> Self {
        self.heartbeat = every;
        self.timeout = timeout.max(every * 2);
        self
    }

    /// Sets the largest envelope body accepted.
    pub fn max_envelope_bytes(mut self, limit: usize) -> Self {
        self.max_envelope_bytes = limit;
        self
    }

    /// Sets the longest NACK delay honoured; longer ones are cut to it.
    pub fn max_nack_delay(mut self, limit: Duration) -> Self {
        self.max_nack_delay = limit;
        self
    }

    /// Sets how long a delivery may stay unsettled before it goes back to
    /// the queue as a failed attempt.
    pub fn ack_deadline(mut self, deadline: Duration) -> Self {
        self.ack_deadline = deadline;
        self
    }

    /// Sets the most unsettled envelope bytes one connection may hold (at
    /// least one delivery is always allowed, whatever its size, and the
    /// last one may go over by up to its own size).
    pub fn max_unacked_bytes(mut self, limit: usize) -> Self {
        self.max_unacked_bytes = limit;
        self
    }

    /// Sets the most bytes per DEAD-LETTERS reply page.
    pub fn dead_letter_page_bytes(mut self, limit: usize) -> Self {
        self.dead_letter_page_bytes = limit;
        self
    }
}

/// The archive server's side: which hubs it connects to.
///
/// ```
/// use backend_zeromq::{ClientConfig, Credentials};
/// let config = ClientConfig::new("tcp://lists.example.org:5555")
///     .also("tcp://lists2.example.org:5555")
///     .credentials(Credentials::new("hyperkitty", "s3cret"));
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Hub endpoints; a subscription consumes from all of them.
    pub endpoints: Vec<String>,
    /// Tail endpoints, one per hub that serves a tail.
    pub tail_endpoints: Vec<String>,
    /// Credentials for hubs that require them.
    pub credentials: Option<Credentials>,
    /// How long `subscribe` and requests wait for every hub to answer.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// A client of the hub at `endpoint`.
    pub fn new(endpoint: impl Into<String>) -> Self {
        Self {
            endpoints: vec![endpoint.into()],
            tail_endpoints: Vec::new(),
            credentials: None,
            connect_timeout: Duration::from_secs(10),
        }
    }

    /// Also consumes from the hub at `endpoint` (another list server).
    pub fn also(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoints.push(endpoint.into());
        self
    }

    /// Tails the hub tail at `endpoint` (may be given once per hub).
    pub fn tail(mut self, endpoint: impl Into<String>) -> Self {
        self.tail_endpoints.push(endpoint.into());
        self
    }

    /// Authenticates with these credentials.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets how long to wait for the hubs to answer.
    pub fn connect_timeout(mut self, wait: Duration) -> Self {
        self.connect_timeout = wait;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_files_are_read_and_their_errors_quote_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("grants.json");
        std::fs::write(
            &path,
            r##"[{"user": "web", "password": "hunter2",
                 "grant": {"principal": "web-archive", "subscribers": ["web"], "lists": ["#"]}}]"##,
        )
        .unwrap();
        let allowed = Allowed::read_file(&path).unwrap();
        assert_eq!(allowed[0].credentials, Credentials::new("web", "hunter2"));
        assert_eq!(allowed[0].grant.principal(), "web-archive");

        for (text, says) in [
            (
                r#"[{"user": "web", "password": 271828, "grant": {"principal": "w"}}]"#,
                "line 1",
            ),
            (
                r#"[{"user": "web", "password": "x", "grant": {"principal": "w", "lists": ["a b"]}}]"#,
                "grant of \"w\"",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let error = Allowed::read_file(&path).unwrap_err().to_string();
            assert!(error.contains(says), "{error}");
            assert!(!error.contains("271828"), "{error}");
        }
        assert!(Allowed::read_file(&dir.path().join("none")).is_err());
    }

    #[test]
    fn passwords_are_not_printed() {
        let config = ClientConfig::new("tcp://x:1").credentials(Credentials::new("u", "hunter2"));
        assert!(!format!("{config:?}").contains("hunter2"));
        let hub = HubConfig::new("tcp://*:1", "/tmp/x")
            .allow(Credentials::new("u", "hunter2"), full_access("u"));
        assert!(!format!("{hub:?}").contains("hunter2"));
    }
}
