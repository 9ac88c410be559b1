//! What the bridge needs to know: where HyperKitty is, its key, and how
//! hard to push it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mq_archiver::{Backoff, ListId};
use url::Url;

/// HyperKitty's `MAILMAN_ARCHIVER_KEY`. Its `Debug` and `Display` never
/// show it, so no log line or error message can leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// Wraps the key.
    pub fn new(key: impl Into<String>) -> Self {
        Self(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// The bridge's settings.
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// HyperKitty's root, e.g. `https://lists.example.org/hyperkitty/`:
    /// the archive API is `{base}/api/mailman/archive`.
    pub base_url: Url,
    /// HyperKitty's `MAILMAN_ARCHIVER_KEY`.
    pub api_key: ApiKey,
    /// List id to posting address, for mails whose envelope has no
    /// `list-address` and whose headers no `List-Post`.
    pub list_addresses: HashMap<ListId, String>,
    /// Most POSTs at once (HyperKitty on sqlite wants 1; default 4).
    pub concurrency: usize,
    /// How long one request may take before HyperKitty counts as
    /// unreachable (30 s).
    pub request_timeout: Duration,
    /// Delays between probes while HyperKitty is unreachable, with jitter
    /// (500 ms doubling to 30 s).
    pub probe_backoff: Backoff,
    /// Delays before a mail HyperKitty failed on (5xx) comes again, by
    /// attempt (the core's default: 1 s doubling to 5 minutes).
    pub retry_backoff: Backoff,
    /// A PEM CA file to trust instead of the system's roots, for a
    /// HyperKitty behind a private CA.
    pub ca_file: Option<PathBuf>,
}

impl BridgeConfig {
    /// The defaults for a HyperKitty at `base_url` with `api_key`.
    pub fn new(base_url: Url, api_key: ApiKey) -> Self {
        Self {
            base_url,
            api_key,
            list_addresses: HashMap::new(),
            concurrency: 4,
            request_timeout: Duration::from_secs(30),
            probe_backoff: Backoff::new(Duration::from_millis(500), Duration::from_secs(30)),
            retry_backoff: Backoff::default(),
            ca_file: None,
        }
    }
}
