//! The connection errors every backend must report the same way: a URL
//! of another backend is `InvalidUrl`, no broker on the port is
//! `Unavailable`, a wrong password is `Auth`; none shows the password.
//! A backend implements [`Endpoints`] (how it connects, its URL forms) and
//! calls each scenario from a test of its own.

use async_trait::async_trait;

use super::server::spare_port;
use crate::backend::BackendError;

/// How a backend connects, and the URLs it is given.
#[async_trait]
pub trait Endpoints: Send + Sync {
    /// Connects a new client to `url`, keeping only whether it could.
    async fn connect(&self, url: &str) -> Result<(), BackendError>;

    /// This backend's URL of 127.0.0.1:`port` with `password` (and the
    /// user it needs, if any).
    fn url(&self, port: u16, password: &str) -> String;

    /// Another backend's URL carrying `password`: this one must refuse it.
    fn foreign_url(&self, password: &str) -> String;
}

async fn refused(endpoints: &impl Endpoints, url: &str) -> BackendError {
    match endpoints.connect(url).await {
        Ok(()) => panic!("connecting to that URL must fail"),
        Err(error) => error,
    }
}

/// Another backend's URL is `InvalidUrl`, and the error hides its password.
pub async fn wrong_scheme_is_invalid_url(endpoints: &impl Endpoints) {
    let error = refused(endpoints, &endpoints.foreign_url("hunter2")).await;
    assert!(matches!(error, BackendError::InvalidUrl(_)), "{error:?}");
    assert!(!format!("{error} {error:?}").contains("hunter2"), "{error}");
}

/// A port nothing listens on is `Unavailable` (which a spool retries).
pub async fn unreachable_is_unavailable(endpoints: &impl Endpoints) {
    let error = refused(endpoints, &endpoints.url(spare_port(), "guest")).await;
    assert!(matches!(error, BackendError::Unavailable(_)), "{error:?}");
}

/// On the broker at `port`, whose password is `right`: a wrong password
/// is `Auth` and the error hides it; the right one connects.
pub async fn wrong_password_is_auth(endpoints: &impl Endpoints, port: u16, right: &str) {
    let wrong = refused(endpoints, &endpoints.url(port, "wrong-password")).await;
    assert!(matches!(wrong, BackendError::Auth(_)), "{wrong:?}");
    assert!(
        !format!("{wrong} {wrong:?}").contains("wrong-password"),
        "{wrong}"
    );
    let connected = endpoints.connect(&endpoints.url(port, right)).await;
    assert!(
        connected.is_ok(),
        "the right password connects: {connected:?}"
    );
}

/// The client library's error (of type `E`) stays behind the typed one as
/// its [`source`](std::error::Error::source), for an unreachable broker
/// and for refused credentials on the broker at `port`: a caller can still
/// downcast it to read what the library said.
pub async fn client_error_is_the_source<E: std::error::Error + 'static>(
    endpoints: &impl Endpoints,
    port: u16,
) {
    let unreachable = refused(endpoints, &endpoints.url(spare_port(), "guest")).await;
    let wrong = refused(endpoints, &endpoints.url(port, "wrong-password")).await;
    for error in [unreachable, wrong] {
        let source = std::error::Error::source(&error);
        assert!(
            source.is_some_and(|source| source.is::<E>()),
            "{error:?} has the source {source:?}, not a {}",
            std::any::type_name::<E>()
        );
    }
}
