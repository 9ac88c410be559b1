//! How to reach RabbitMQ and how the backend behaves.

use archiver_core::{BackendError, Grant, Prefix, PublisherCapabilities};

use crate::names::Classes;

/// Who a client is on the broker, which decides what it declares and binds
/// (crate docs, Least privilege).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Role {
    /// The list server's principal, or one trusted account doing
    /// everything (the default, and what earlier versions did): declares
    /// the topic exchange and `<p>.unrouted`, and a subscription binds every
    /// access class of what it selects.
    #[default]
    ListServer,
    /// An archive server running as a broker user restricted to this grant
    /// ([`crate::permissions::archive_server`]): the shared exchanges are
    /// declared passively (the list server must have connected once), the
    /// unrouted queue is never touched, and a subscription or tail binds
    /// only the access classes the grant allows, after the grant's own
    /// check (a selection outside it is [`BackendError::Forbidden`] before
    /// the broker refuses it).
    ArchiveServer(Box<Grant>),
}

impl Role {
    /// Whether this client declares the shared exchanges and the unrouted
    /// queue.
    pub(crate) fn declares_shared(&self) -> bool {
        matches!(self, Self::ListServer)
    }

    /// The access classes its subscriptions and tails bind.
    pub(crate) fn classes(&self) -> Classes {
        match self {
            Self::ListServer => Classes::ALL,
            Self::ArchiveServer(grant) => Classes::granted(grant),
        }
    }

    /// The grant this client runs under, if restricted.
    pub(crate) fn grant(&self) -> Option<&Grant> {
        match self {
            Self::ListServer => None,
            Self::ArchiveServer(grant) => Some(grant),
        }
    }
}

/// The kind of queue each durable subscriber gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueueType {
    /// Quorum queues (the default): replicated Raft log, messages on disk
    /// before the publisher confirm, a delivery counter (`x-delivery-count`)
    /// that makes attempt numbers exact, and a delivery limit after which
    /// the broker itself dead-letters a message that keeps coming back.
    #[default]
    Quorum,
    /// Classic durable queues: lighter on a single node, but no delivery
    /// counter: a redelivery after a consumer vanished counts as attempt 2
    /// however often it happened, and there is no broker-side limit.
    Classic,
}

/// Configuration of a [`RabbitBackend`](crate::RabbitBackend). Its `Debug`
/// shows the URL redacted ([`archiver_core::redact_url`]).
///
/// ```
/// use backend_rabbitmq::{QueueType, RabbitConfig};
/// # fn main() -> Result<(), archiver_core::InvalidPrefix> {
/// let config = RabbitConfig::new("amqp://archiver:secret@127.0.0.1:5672/lists")
///     .prefix("lists-a".parse()?)
///     .queue_type(QueueType::Quorum);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RabbitConfig {
    /// `amqp://user:password@host:port/vhost`, `amqps://` for TLS.
    pub url: String,
    /// Name of the topic exchange, and prefix of every queue.
    pub prefix: Prefix,
    /// Queue type of durable subscribers.
    pub queue_type: QueueType,
    /// Largest envelope body accepted, in bytes (RabbitMQ 3.10 refuses
    /// messages above 128 MiB by default).
    pub max_envelope_bytes: usize,
    /// Keep messages no subscriber selects in `<prefix>.unrouted` (through
    /// an alternate exchange) instead of failing their publish with the
    /// permanent [`BackendError::Unroutable`].
    pub keep_unrouted: bool,
    /// Most messages kept in `<prefix>.unrouted` (a quorum queue may take
    /// one more); beyond it a publish is refused
    /// ([`BackendError::Broker`], transient: a spool keeps the mail),
    /// never is a kept message dropped.
    pub unrouted_max_length: u32,
    /// PEM file of the CA that signed the broker's certificate, for
    /// `amqps://` to a broker whose CA is not in the system's trust store.
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// Who this client is on the broker: the list server (the default) or
    /// an archive server under a grant.
    pub role: Role,
    /// The upgrade from the layout without access classes (crate docs,
    /// Upgrading): while on, a publish is routed with the earlier key
    /// `<kind>.<list-id>` and, in the same message (RabbitMQ's `BCC`
    /// header), the new `<kind>.<class>.<list-id>`, so queues bound either
    /// way get it, once each; and a subscription of the list server's role
    /// binds the earlier keys of its selection besides the new ones, so an
    /// earlier list server's mail still reaches it. It costs about a fifth
    /// of RabbitMQ's throughput (the broker routes two keys).
    ///
    /// `None` (the default) decides at connect: on only where an earlier
    /// version may have subscribers, i.e. the exchange exists without the
    /// marker exchange `<p>.layout` that this version's list server
    /// declares when it creates the exchange or when told `Some(false)`.
    /// So a new deployment never pays for it, and an upgraded one does
    /// until an operator ends the upgrade with `Some(false)` once (then
    /// subscribe each subscriber once, which drops its earlier bindings).
    /// Either way it is decided once per client, at its first declaration
    /// of the exchanges (at connect), and kept across reconnects, so a
    /// running client changes mode only by restarting. An archive server's
    /// role ([`Role::ArchiveServer`]) ignores it: always off (it publishes
    /// nothing to `<p>`, and its user may bind no earlier key).
    pub legacy_routing_keys: Option<bool>,
}

/// By hand, so that `?config` in a log never prints the URL's password.
impl std::fmt::Debug for RabbitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConfig")
            .field("url", &self.redacted_url())
            .field("prefix", &self.prefix)
            .field("queue_type", &self.queue_type)
            .field("max_envelope_bytes", &self.max_envelope_bytes)
            .field("keep_unrouted", &self.keep_unrouted)
            .field("unrouted_max_length", &self.unrouted_max_length)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("role", &self.role)
            .field("legacy_routing_keys", &self.legacy_routing_keys)
            .finish()
    }
}

impl RabbitConfig {
    /// What publishing through a client of this configuration guarantees:
    /// known before connecting, so a publisher that connects lazily can
    /// report it.
    pub fn publisher_capabilities(&self) -> PublisherCapabilities {
        PublisherCapabilities {
            max_envelope_bytes: self.max_envelope_bytes,
            publish_durability: "publisher confirm: routed to every bound queue and written to disk (quorum queues: fsynced)",
            locally_durable: false,
        }
    }

    /// Defaults for a URL: prefix `archiver`, quorum queues, 32 MiB bodies
    /// ([`archiver_core::DEFAULT_MAX_ENVELOPE_BYTES`]),
    /// unrouted messages kept (up to 100,000).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: Prefix::default(),
            queue_type: QueueType::Quorum,
            max_envelope_bytes: archiver_core::DEFAULT_MAX_ENVELOPE_BYTES,
            keep_unrouted: true,
            unrouted_max_length: 100_000,
            tls_ca_file: None,
            role: Role::ListServer,
            legacy_routing_keys: None,
        }
    }

    /// From `ARCHIVER_AMQP_URL`, else `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub fn from_env() -> Self {
        Self::new(
            std::env::var("ARCHIVER_AMQP_URL")
                .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into()),
        )
    }

    /// Sets the exchange name and queue prefix.
    pub fn prefix(mut self, prefix: Prefix) -> Self {
        self.prefix = prefix;
        self
    }

    /// Sets the queue type of new subscribers.
    pub fn queue_type(mut self, queue_type: QueueType) -> Self {
        self.queue_type = queue_type;
        self
    }

    /// Sets the largest body accepted.
    pub fn max_envelope_bytes(mut self, limit: usize) -> Self {
        self.max_envelope_bytes = limit;
        self
    }

    /// Keeps (true) or refuses (false) messages no subscriber selects.
    pub fn keep_unrouted(mut self, keep: bool) -> Self {
        self.keep_unrouted = keep;
        self
    }

    /// Sets [`unrouted_max_length`](Self::unrouted_max_length): how many
    /// unrouted messages `archiver.unrouted` keeps before a publish is
    /// refused (transient, so a spool keeps the mail).
    pub fn unrouted_max_length(mut self, messages: u32) -> Self {
        self.unrouted_max_length = messages;
        self
    }

    /// Keeps (true) or ends (false) the upgrade's earlier routing keys and
    /// bindings, instead of deciding at connect
    /// ([`RabbitConfig::legacy_routing_keys`]).
    pub fn legacy_routing_keys(mut self, on: bool) -> Self {
        self.legacy_routing_keys = Some(on);
        self
    }

    /// Trusts the CA in this PEM file for `amqps://`.
    pub fn tls_ca_file(mut self, path: impl Into<std::path::PathBuf>) -> Self {
        self.tls_ca_file = Some(path.into());
        self
    }

    /// Runs as an archive server restricted to `grant`: declares nothing
    /// shared and binds only what the grant allows ([`Role::ArchiveServer`]).
    pub fn archive_server(mut self, grant: Grant) -> Self {
        self.role = Role::ArchiveServer(Box::new(grant));
        self
    }

    /// Checks the URL's form before any connection is made (the prefix was
    /// checked when it was made).
    pub(crate) fn validate(&self) -> Result<(), BackendError> {
        archiver_core::backend::check_url(&self.url, &["amqp", "amqps"]).map(drop)
    }

    /// The URL with any password replaced, for messages and logs.
    pub fn redacted_url(&self) -> String {
        archiver_core::redact_url(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_has_its_setter_and_one_default_envelope_limit() {
        let config = RabbitConfig::new("amqp://127.0.0.1/%2f").unrouted_max_length(7);
        assert_eq!(config.unrouted_max_length, 7);
        assert_eq!(
            config.max_envelope_bytes,
            archiver_core::DEFAULT_MAX_ENVELOPE_BYTES
        );
    }

    #[test]
    fn urls_are_checked_without_showing_passwords() {
        assert!(
            RabbitConfig::new("amqp://guest:guest@localhost:5672/%2f")
                .validate()
                .is_ok()
        );
        assert!(
            RabbitConfig::new("amqps://u:p@host/vhost")
                .validate()
                .is_ok()
        );
        let wrong = RabbitConfig::new("redis://u:hunter2@host/")
            .validate()
            .unwrap_err();
        assert!(
            matches!(&wrong, BackendError::InvalidUrl(m) if m.contains("scheme") && !m.contains("hunter2"))
        );
        assert_eq!(
            RabbitConfig::new("amqp://u:hunter2@h/v").redacted_url(),
            "amqp://u:***@h/v"
        );
    }

    /// `{:?}` of a configuration (as `tracing`'s `?config` prints it) shows
    /// no password.
    #[test]
    fn debug_hides_the_password() {
        let shown = format!(
            "{:?}",
            RabbitConfig::new("amqp://archiver:hunter2@127.0.0.1:5672/lists")
        );
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("***"), "{shown}");
        assert!(shown.contains("prefix: \"archiver\""), "{shown}");
    }
}
