//! Why the bridge stopped.

use mq_archiver::BackendError;

/// What ends [`HyperKittyBridge::run`](crate::HyperKittyBridge::run) with
/// an error: a configuration no retry can fix, or the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    /// HyperKitty refused the key (401) or this client's address (403),
    /// the base URL is wrong (a redirect, 404, 405, Django's HTML 400 for a
    /// host not in `ALLOWED_HOSTS`), the anonymous list API is blocked, or
    /// the bridge's own settings are unusable: the deliveries in hand were
    /// released for when it is fixed (those on their last attempt
    /// dead-lettered saying so).
    #[error("configuration error: {0}")]
    Configuration(String),
    /// Subscribing failed, or the broker refused the subscription.
    #[error("broker: {0}")]
    Backend(#[from] BackendError),
}
