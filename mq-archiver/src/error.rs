//! The facade's one error type: what was wrong with the URL or an option
//! (naming the key, never its value, so credentials stay out), or what the
//! backend said.

use archiver_core::{BackendError, ErrorDetail, InvalidBaseUrl, journal::JournalError};

/// Why a URL and its options could not give a client or an archiver.
/// No variant carries a password: URLs are shown through
/// [`archiver_core::redact_url`] and option values are never shown.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL's scheme names no backend (or one this build leaves out).
    #[error(
        "{url}: unknown scheme {scheme:?}; use memory:, redis://, rediss://, redis+unix://, amqp://, amqps://, tcp:// or ipc://"
    )]
    UnknownScheme {
        /// The URL, redacted.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The scheme is known but its crate was left out at build time.
    #[error("scheme {scheme:?} needs the facade's feature {feature:?}")]
    FeatureDisabled {
        /// The URL's scheme.
        scheme: String,
        /// The cargo feature that brings it.
        feature: &'static str,
    },
    /// The URL does not parse, or its form is wrong for its scheme.
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl {
        /// The URL, redacted.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A form reserved for a later version (several hubs, Redis Cluster,
    /// several RabbitMQ nodes): it parses, so configurations can be written
    /// now, but no backend serves it yet.
    #[error("{what} is not supported yet")]
    NotSupportedYet {
        /// The reserved form.
        what: &'static str,
    },
    /// No such option key.
    #[error("unknown option {key:?}")]
    UnknownOption {
        /// The key as given.
        key: String,
    },
    /// The key exists but means nothing for this URL's backend.
    #[error("option {key:?} does not apply to {scheme}")]
    OptionNotApplicable {
        /// The key.
        key: String,
        /// The URL's scheme.
        scheme: String,
    },
    /// The option's value does not parse (the value is not repeated here:
    /// it may be a credential).
    #[error("option {key:?}: {expected}")]
    InvalidOption {
        /// The key.
        key: String,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// The `grant-file` option's file cannot be read or is not a grant:
    /// which file and why (never its content).
    #[error("option \"grant-file\": {0}")]
    GrantFile(String),
    /// An option this call needs is missing.
    #[error("option {key:?} is required {why}")]
    MissingOption {
        /// The key.
        key: &'static str,
        /// When it is needed.
        why: &'static str,
    },
    /// Neither `ARCHIVER_URL` nor a legacy variable is set.
    #[error("set ARCHIVER_URL (or ARCHIVER_REDIS_URL / ARCHIVER_AMQP_URL)")]
    NoUrlInEnvironment,
    /// An environment variable is not valid Unicode.
    #[error("environment variable {0} is not valid Unicode")]
    NotUnicode(String),
    /// The backend refused to connect or bind.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The spool's journal could not be opened.
    #[error("the spool: {0}")]
    Spool(#[from] JournalError),
    /// The `base-url` option is not a usable archive URL.
    #[error(transparent)]
    BaseUrl(#[from] InvalidBaseUrl),
}

/// For code that speaks [`BackendError`] (a `LazyPublisher`'s connect, a
/// retry loop): a backend's error as it was, a URL's as
/// [`BackendError::InvalidUrl`], anything else (an option, a file it
/// names, the spool, the environment; already redacted) as
/// [`BackendError::InvalidConfig`].
impl From<Error> for BackendError {
    fn from(error: Error) -> Self {
        match error {
            Error::Backend(error) => error,
            url @ (Error::UnknownScheme { .. }
            | Error::FeatureDisabled { .. }
            | Error::InvalidUrl { .. }
            | Error::NotSupportedYet { .. }) => BackendError::InvalidUrl(url.to_string().into()),
            // Keeps the spool's or the file's error as the source.
            other => BackendError::InvalidConfig(ErrorDetail::from_error(other)),
        }
    }
}
