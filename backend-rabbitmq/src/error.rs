//! lapin errors as the core's typed [`BackendError`].

use archiver_core::BackendError;
use lapin::ErrorKind;

/// AMQP reply codes that mean the credentials or permissions were refused.
const ACCESS_REFUSED: u16 = 403;
const NOT_ALLOWED: u16 = 530;

/// Maps a lapin error (whose messages carry no credentials).
pub(crate) fn backend_error(error: lapin::Error) -> BackendError {
    match error.kind() {
        ErrorKind::IOError(_)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::InvalidChannelState(..) => BackendError::Unavailable(error.to_string()),
        ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
            ACCESS_REFUSED | NOT_ALLOWED => BackendError::Auth(amqp.get_message().to_string()),
            _ => BackendError::Broker(error.to_string()),
        },
        ErrorKind::AuthProviderError(reason) => BackendError::Auth(reason.clone()),
        _ => BackendError::Broker(error.to_string()),
    }
}

/// The broker refused a declaration because the entity exists with other
/// arguments (PRECONDITION_FAILED).
pub(crate) fn is_precondition_failed(error: &lapin::Error) -> bool {
    matches!(error.kind(), ErrorKind::ProtocolError(amqp) if amqp.get_id() == 406)
}
