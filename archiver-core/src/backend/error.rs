//! The one error type every backend returns, so callers match on meaning
//! (closed, too large, unreachable, refused credentials) not on a client
//! library's error, which still travels behind it as the error's
//! [`source`](std::error::Error::source) for those who need its details.

use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

use crate::wire::WireError;

/// What went wrong in a backend. Whenever `publish` returns one, the
/// envelope was not taken: the caller still owns it and may retry or spool.
///
/// Its `Display` is the whole story (logs print only that), and when a
/// client library's error caused it (redis-rs, lapin, zmq, the operating
/// system), [`source`](std::error::Error::source) returns that error itself,
/// so a caller can downcast it (an `std::io::ErrorKind`, a Redis error
/// code). The text includes the cause's message, so a report that walks
/// the whole chain (anyhow's `{:#}`) shows it twice; Display and source are
/// written by hand rather than derived because thiserror's `#[source]` must
/// name a field, which would put the [`ErrorDetail`] itself in the chain
/// and show it three times.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendError {
    /// This client was closed; open a new one.
    Closed,
    /// The envelope is larger than the backend carries.
    TooLarge {
        /// Body size of the refused envelope.
        size: usize,
        /// The backend's limit.
        limit: usize,
    },
    /// The connection URL cannot be used (wrong scheme, syntax, missing host).
    InvalidUrl(ErrorDetail),
    /// The configuration cannot be used, whatever the URL: a bad option
    /// value or prefix, a file it names that cannot be read or used (a TLS
    /// CA file, a CURVE key or grants file), settings that exclude each
    /// other. Not transient: asking again fails the same way until the
    /// configuration is fixed.
    InvalidConfig(ErrorDetail),
    /// The broker refused the credentials or the permissions (never contains
    /// the credentials themselves).
    Auth(ErrorDetail),
    /// The authenticated principal is not granted this (a subscriber name,
    /// a list, another subscriber's dead letters, ...): the message names
    /// what was refused. Not transient: asking again is refused again, so
    /// a [`Runner`](crate::Runner) stops on it rather than retrying.
    Forbidden(ErrorDetail),
    /// The broker cannot be reached or went away; retrying later may work.
    Unavailable(ErrorDetail),
    /// The broker refused or lost the request; retrying may work.
    Broker(ErrorDetail),
    /// The broker took the envelope to no queue: no subscriber selects its
    /// list and kind, and the backend is set to refuse such mail instead of
    /// keeping it (RabbitMQ's `keep_unrouted(false)`). Publishing it again
    /// fails the same way until a subscriber selects it, so it is not
    /// transient: a spool sets it aside (reason `unroutable`) rather than
    /// retrying it while everything queues behind it.
    Unroutable(String),
    /// The backend cannot do what was asked (see its capabilities).
    Unsupported(&'static str),
    /// The subscription's parameters are not acceptable.
    InvalidSubscription(String),
    /// A received message is not a valid envelope.
    Wire(WireError),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the backend client is closed"),
            Self::TooLarge { size, limit } => write!(
                f,
                "message of {size} bytes exceeds the backend's limit of {limit} bytes"
            ),
            Self::InvalidUrl(detail) => write!(f, "invalid backend URL: {detail}"),
            Self::InvalidConfig(detail) => write!(f, "invalid backend configuration: {detail}"),
            Self::Auth(detail) => write!(f, "authentication refused by the broker: {detail}"),
            Self::Forbidden(detail) => write!(f, "forbidden: {detail}"),
            Self::Unavailable(detail) => write!(f, "broker unavailable: {detail}"),
            Self::Broker(detail) => write!(f, "broker error: {detail}"),
            Self::Unroutable(why) => write!(f, "unroutable: {why}"),
            Self::Unsupported(what) => write!(f, "not supported by this backend: {what}"),
            Self::InvalidSubscription(why) => write!(f, "invalid subscription: {why}"),
            Self::Wire(error) => write!(f, "malformed message on the wire: {error}"),
        }
    }
}

impl Error for BackendError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::InvalidUrl(detail)
            | Self::InvalidConfig(detail)
            | Self::Auth(detail)
            | Self::Forbidden(detail)
            | Self::Unavailable(detail)
            | Self::Broker(detail) => detail.cause(),
            Self::Wire(error) => Some(error),
            _ => None,
        }
    }
}

impl From<WireError> for BackendError {
    fn from(error: WireError) -> Self {
        Self::Wire(error)
    }
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

/// The text of a [`BackendError`], and the client library's error that
/// caused it when there is one. Two details are equal when their texts
/// are: an error compares by what it says, whatever object it came from.
/// The cause is shared so the error stays `Clone` (a publish error goes to
/// every caller waiting on one batch).
#[derive(Clone)]
pub struct ErrorDetail {
    text: String,
    cause: Option<Arc<dyn Error + Send + Sync + 'static>>,
}

impl ErrorDetail {
    /// `text`, caused by a client library's error. The text should say
    /// what was being done and include the cause's message: logs print the
    /// text alone.
    pub fn caused_by(text: impl Into<String>, cause: impl Error + Send + Sync + 'static) -> Self {
        Self {
            text: text.into(),
            cause: Some(Arc::new(cause)),
        }
    }

    /// A client library's error as its own message, keeping it as the cause.
    pub fn from_error(cause: impl Error + Send + Sync + 'static) -> Self {
        let text = cause.to_string();
        Self::caused_by(text, cause)
    }

    /// The same detail, its text prefixed with what was being done
    /// (`"<context>: <text>"`); the cause stays.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Self {
            text: format!("{context}: {}", self.text),
            cause: self.cause,
        }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The error that caused this one, if a client library's did.
    pub fn cause(&self) -> Option<&(dyn Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn Error + 'static))
    }
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text, and whether a cause is kept: the cause's own Debug may show
/// more than its message (a client library's internals), so it stays out.
impl fmt::Debug for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErrorDetail")
            .field("text", &self.text)
            .field("has_cause", &self.cause.is_some())
            .finish()
    }
}

impl PartialEq<str> for ErrorDetail {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq for ErrorDetail {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for ErrorDetail {}

/// Reads as its text, as a `String` would (what these variants held
/// before they kept a cause), so `detail.contains("...")` still works.
impl Deref for ErrorDetail {
    type Target = str;

    fn deref(&self) -> &str {
        &self.text
    }
}

impl From<String> for ErrorDetail {
    fn from(text: String) -> Self {
        Self { text, cause: None }
    }
}

impl From<&str> for ErrorDetail {
    fn from(text: &str) -> Self {
        text.to_string().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_source_is_the_client_error_and_equality_is_by_text() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let error = BackendError::Unavailable(ErrorDetail::caused_by("connecting: refused", io));
        assert_eq!(error.to_string(), "broker unavailable: connecting: refused");
        let source = error.source().expect("the io error is kept");
        let io = source
            .downcast_ref::<std::io::Error>()
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
        assert!(source.source().is_none());
        assert_eq!(
            error,
            BackendError::Unavailable("connecting: refused".into())
        );
        assert!(BackendError::Broker("no reply".into()).source().is_none());
    }
}
