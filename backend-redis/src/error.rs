//! Redis errors as the core's typed [`BackendError`].

use archiver_core::{BackendError, ErrorDetail};
use redis::{ErrorKind, RedisError};

/// Maps a redis-rs error; messages carry no credentials (redis-rs never
/// puts the password in its errors).
pub(crate) fn backend_error(error: RedisError) -> BackendError {
    if is_no_perm(&error) {
        // Redis names the refused command or key, never a credential.
        return BackendError::Forbidden(ErrorDetail::from_error(error));
    }
    if is_auth_error(&error) {
        return BackendError::Auth(ErrorDetail::from_error(error));
    }
    match error.kind() {
        ErrorKind::InvalidClientConfig => BackendError::InvalidUrl(ErrorDetail::from_error(error)),
        ErrorKind::Io => BackendError::Unavailable(ErrorDetail::from_error(error)),
        _ if error.is_timeout()
            || error.is_connection_dropped()
            || error.is_connection_refusal() =>
        {
            BackendError::Unavailable(ErrorDetail::from_error(error))
        }
        _ => BackendError::Broker(ErrorDetail::from_error(error)),
    }
}

/// Maps a redis-rs error as [`backend_error`] does, a refusal naming
/// `what` was refused (the key or command): Redis's NOPERM reply names a
/// command but not a key.
pub(crate) fn refusing(what: &str) -> impl Fn(RedisError) -> BackendError + '_ {
    move |error| match backend_error(error) {
        BackendError::Forbidden(reply) => BackendError::Forbidden(reply.context(what)),
        other => other,
    }
}

fn is_auth_error(error: &RedisError) -> bool {
    matches!(error.kind(), ErrorKind::AuthenticationFailed)
        || matches!(error.code(), Some("NOAUTH" | "WRONGPASS"))
}

/// The Redis user may not run this command on this key (its ACL): a
/// refusal, not a failure to retry.
pub(crate) fn is_no_perm(error: &RedisError) -> bool {
    error.code() == Some("NOPERM")
}

/// The group or its stream is gone: Redis lost data, or the subscriber was
/// deleted.
pub(crate) fn is_no_group(error: &RedisError) -> bool {
    error.code() == Some("NOGROUP")
}

/// XGROUP CREATE on a group that exists.
pub(crate) fn is_busy_group(error: &RedisError) -> bool {
    error.code() == Some("BUSYGROUP")
}

/// XGROUP CREATE without MKSTREAM on a stream that does not exist.
pub(crate) fn is_no_stream(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.contains("requires the key to exist"))
}
