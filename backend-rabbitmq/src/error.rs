//! lapin errors as the core's typed [`BackendError`].

use archiver_core::{BackendError, ErrorDetail};
use lapin::ErrorKind;

/// AMQP reply codes that mean the credentials or permissions were refused.
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;

/// Maps a lapin error (whose messages carry no credentials). A 403 on a
/// channel is the broker refusing one object or binding key to the user
/// (its text names the object, or the key and exchange, the vhost and the
/// user): [`BackendError::Forbidden`], not transient. A refusal while
/// connecting is [`connect_error`]'s.
pub(crate) fn backend_error(error: lapin::Error) -> BackendError {
    match error.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannelState(..) => {
            BackendError::Unavailable(ErrorDetail::from_error(error))
        }
        ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
            ACCESS_REFUSED => BackendError::Forbidden(ErrorDetail::caused_by(
                format!("the broker refused it: {}", amqp.get_message()),
                error.clone(),
            )),
            NOT_ALLOWED => BackendError::Auth(ErrorDetail::caused_by(
                amqp.get_message().to_string(),
                error.clone(),
            )),
            _ => BackendError::Broker(ErrorDetail::from_error(error)),
        },
        ErrorKind::AuthProviderError(reason) => {
            BackendError::Auth(ErrorDetail::caused_by(reason.clone(), error.clone()))
        }
        _ => BackendError::Broker(ErrorDetail::from_error(error)),
    }
}

/// Maps an error of opening a connection: there a 403 is refused
/// credentials (or a vhost the user may not open), [`BackendError::Auth`].
pub(crate) fn connect_error(error: lapin::Error) -> BackendError {
    match error.kind() {
        ErrorKind::ProtocolError(amqp) if amqp.get_id() == ACCESS_REFUSED => BackendError::Auth(
            ErrorDetail::caused_by(amqp.get_message().to_string(), error.clone()),
        ),
        _ => backend_error(error),
    }
}

/// The broker refused a declaration because the entity exists with other
/// arguments (PRECONDITION_FAILED).
pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}

/// The object does not exist (NOT_FOUND).
pub(crate) fn is_not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}
