//! The Python exceptions, one class per way a call can fail, so a caller
//! (the Mailman plugin) decides by class what to do: retry later
//! ([`TransientError`]), park the mail for an operator (too large,
//! forbidden, unroutable), or fix the configuration. Each Rust error maps
//! to exactly one class; the message is the Rust error's text, which never
//! carries a credential (URLs are redacted, option values are not shown)
//! nor a mail body.

use mq_archiver::{ArchiveError, BackendError, MailError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    mq_archiver,
    ArchiverError,
    PyException,
    "Base class of every error the archiver raises."
);
create_exception!(
    mq_archiver,
    ConfigError,
    ArchiverError,
    "The URL or an option cannot give an archiver; retrying will not help."
);
create_exception!(
    mq_archiver,
    InvalidUrlError,
    ConfigError,
    "The URL does not parse, names no backend, or uses a form not supported yet."
);
create_exception!(
    mq_archiver,
    InvalidOptionError,
    ConfigError,
    "An option is unknown, does not apply to the URL's backend, has a bad value, or is missing (e.g. base-url)."
);
create_exception!(
    mq_archiver,
    InvalidArgumentError,
    ArchiverError,
    "A list id, list address, archive policy, event or duration handed to a method is not valid."
);
create_exception!(
    mq_archiver,
    InvalidMailError,
    ArchiverError,
    "The bytes cannot be archived as a mail (empty, no header); nothing was published or spooled."
);
create_exception!(
    mq_archiver,
    TooLargeError,
    InvalidMailError,
    "The mail is above the archiver's mail limit or the backend's envelope limit (max-envelope-bytes)."
);
create_exception!(
    mq_archiver,
    ForbiddenError,
    ArchiverError,
    "The backend's grants do not allow this principal to do it; asking again is refused again."
);
create_exception!(
    mq_archiver,
    UnroutableError,
    ArchiverError,
    "The backend routed the envelope to no queue and is set to refuse such mail (RabbitMQ keep-unrouted=false)."
);
create_exception!(
    mq_archiver,
    SpoolError,
    ArchiverError,
    "The local spool could not be opened or could not keep the envelope, or the archiver has no spool."
);
create_exception!(
    mq_archiver,
    TransientError,
    ArchiverError,
    "The backend did not take it now; the same call may succeed later (an archiver with a spool-dir spools instead)."
);
create_exception!(
    mq_archiver,
    UnavailableError,
    TransientError,
    "The broker cannot be reached, went away, or did not confirm durability in time."
);
create_exception!(
    mq_archiver,
    BrokerError,
    TransientError,
    "The broker refused or lost the request."
);
create_exception!(
    mq_archiver,
    AuthError,
    TransientError,
    "The broker refused the credentials (transient because they may be fixed on the broker)."
);
create_exception!(
    mq_archiver,
    ClosedError,
    TransientError,
    "The archiver was closed; open a new one."
);

/// Adds every exception class to the module, so `mq_archiver` re-exports
/// them and callers can catch them by name.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ArchiverError", py.get_type::<ArchiverError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InvalidUrlError", py.get_type::<InvalidUrlError>())?;
    m.add("InvalidOptionError", py.get_type::<InvalidOptionError>())?;
    m.add(
        "InvalidArgumentError",
        py.get_type::<InvalidArgumentError>(),
    )?;
    m.add("InvalidMailError", py.get_type::<InvalidMailError>())?;
    m.add("TooLargeError", py.get_type::<TooLargeError>())?;
    m.add("ForbiddenError", py.get_type::<ForbiddenError>())?;
    m.add("UnroutableError", py.get_type::<UnroutableError>())?;
    m.add("SpoolError", py.get_type::<SpoolError>())?;
    m.add("TransientError", py.get_type::<TransientError>())?;
    m.add("UnavailableError", py.get_type::<UnavailableError>())?;
    m.add("BrokerError", py.get_type::<BrokerError>())?;
    m.add("AuthError", py.get_type::<AuthError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}

/// The exception for an error of opening an archiver.
pub(crate) fn open_error(error: mq_archiver::Error) -> PyErr {
    use mq_archiver::Error as E;
    let message = error.to_string();
    match error {
        E::UnknownScheme { .. }
        | E::FeatureDisabled { .. }
        | E::InvalidUrl { .. }
        | E::NotSupportedYet { .. } => InvalidUrlError::new_err(message),
        E::UnknownOption { .. }
        | E::OptionNotApplicable { .. }
        | E::InvalidOption { .. }
        | E::MissingOption { .. }
        | E::BaseUrl(_) => InvalidOptionError::new_err(message),
        E::Backend(error) => backend_error(error),
        E::Spool(_) => SpoolError::new_err(message),
        // The environment's errors (Config::from_env, which the bindings
        // do not use: Mailman's master strips the environment) and any
        // variant added later.
        _ => ArchiverError::new_err(message),
    }
}

/// The exception for an error of archiving a mail or an event.
pub(crate) fn archive_error(error: ArchiveError) -> PyErr {
    let message = error.to_string();
    match error {
        ArchiveError::Mail(MailError::TooLarge { .. }) => TooLargeError::new_err(message),
        ArchiveError::Mail(MailError::Empty | MailError::NoHeaders) => {
            InvalidMailError::new_err(message)
        }
        ArchiveError::Backend(error) => backend_error(error),
        ArchiveError::Spool(_) | ArchiveError::NoSpool => SpoolError::new_err(message),
        ArchiveError::WrongList { .. } => InvalidArgumentError::new_err(message),
    }
}

/// The exception for a backend's error, by what it means for a retry.
pub(crate) fn backend_error(error: BackendError) -> PyErr {
    let message = error.to_string();
    match error {
        BackendError::Closed => ClosedError::new_err(message),
        BackendError::TooLarge { .. } => TooLargeError::new_err(message),
        BackendError::InvalidUrl(_) => InvalidUrlError::new_err(message),
        // A bad option value or a file an option names (tls-ca-file,
        // curve-key, grants-file) that cannot be used.
        BackendError::InvalidConfig(_) => InvalidOptionError::new_err(message),
        BackendError::Auth(_) => AuthError::new_err(message),
        BackendError::Forbidden(_) => ForbiddenError::new_err(message),
        BackendError::Unavailable(_) => UnavailableError::new_err(message),
        BackendError::Broker(_) => BrokerError::new_err(message),
        BackendError::Unroutable(_) => UnroutableError::new_err(message),
        // Unsupported, InvalidSubscription and Wire are the subscriber
        // side's; a publisher does not return them. Any variant added
        // later lands here too.
        _ => ArchiverError::new_err(message),
    }
}
