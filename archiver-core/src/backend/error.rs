//! The one error type every backend returns, so callers match on meaning
//! (closed, too large, unreachable, refused credentials) not on a client
//! library's error.

use crate::wire::WireError;

/// What went wrong in a backend. Whenever `publish` returns one, the
/// envelope was not taken: the caller still owns it and may retry or spool.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// This client was closed; open a new one.
    #[error("the backend client is closed")]
    Closed,
    /// The envelope is larger than the backend carries.
    #[error("message of {size} bytes exceeds the backend's limit of {limit} bytes")]
    TooLarge {
        /// Body size of the refused envelope.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The connection URL cannot be used (wrong scheme, syntax, missing host).
    #[error("invalid backend URL: {0}")]
    InvalidUrl(String),
    /// The configuration cannot be used, whatever the URL: a bad option
    /// value or prefix, a file it names that cannot be read or used (a TLS
    /// CA file, a CURVE key or grants file), settings that exclude each
    /// other. Not transient: asking again fails the same way until the
    /// configuration is fixed.
    #[error("invalid backend configuration: {0}")]
    InvalidConfig(String),
    /// The broker refused the credentials or the permissions (never contains
    /// the credentials themselves).
    #[error("authentication refused by the broker: {0}")]
    Auth(String),
    /// The authenticated principal is not granted this (a subscriber name,
    /// a list, another subscriber's dead letters, ...): the message names
    /// what was refused. Not transient: asking again is refused again, so
    /// a [`Runner`](crate::Runner) stops on it rather than retrying.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The broker cannot be reached or went away; retrying later may work.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused or lost the request; retrying may work.
    #[error("broker error: {0}")]
    Broker(String),
    /// The broker took the envelope to no queue: no subscriber selects its
    /// list and kind, and the backend is set to refuse such mail instead of
    /// keeping it (RabbitMQ's `keep_unrouted(false)`). Publishing it again
    /// fails the same way until a subscriber selects it, so it is not
    /// transient: a spool sets it aside (reason `unroutable`) rather than
    /// retrying it while everything queues behind it.
    #[error("unroutable: {0}")]
    Unroutable(String),
    /// The backend cannot do what was asked (see its capabilities).
    #[error("not supported by this backend: {0}")]
    Unsupported(&'static str),
    /// The subscription's parameters are not acceptable.
    #[error("invalid subscription: {0}")]
    InvalidSubscription(String),
    /// A received message is not a valid envelope.
    #[error("malformed message on the wire: {0}")]
    Wire(#[from] WireError),
}

impl BackendError {
    /// Whether publishing the same envelope again later may succeed: the
    /// broker was away, refused for now, or the credentials may be fixed.
    /// A list server's spool keeps such envelopes; the others (too large,
    /// invalid, unroutable, unsupported) would fail forever.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Broker(_) | Self::Auth(_) | Self::Closed
        )
    }

    /// [`BackendError::TooLarge`] when the envelope's body is above `limit`:
    /// the check every backend makes before it sends anything.
    pub fn check_size(envelope: &crate::envelope::Envelope, limit: usize) -> Result<(), Self> {
        let size = envelope.body.len();
        if size > limit {
            Err(Self::TooLarge { size, limit })
        } else {
            Ok(())
        }
    }
}
