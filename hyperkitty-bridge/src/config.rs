//! What the bridge needs to know: where HyperKitty is, its key, and how
//! hard to push it.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use mq_archiver::{Backoff, ListAddress, ListId};
use url::Url;

/// HyperKitty's `MAILMAN_ARCHIVER_KEY`. Its `Debug` never shows it, and it
/// has no `Display`, so no log line or error message can leak it.
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

/// The bridge's settings. Its `Debug` redacts the key and any password in
/// the base URL's userinfo.
#[derive(Clone)]
pub struct BridgeConfig {
    /// HyperKitty's root, e.g. `https://lists.example.org/hyperkitty/`:
    /// the archive API is `{base}/api/mailman/archive`.
    pub base_url: Url,
    /// HyperKitty's `MAILMAN_ARCHIVER_KEY`.
    pub api_key: ApiKey,
    /// List id to posting address, for mails whose envelope has no
    /// `list-address` and whose headers no `List-Post`.
    /// Valid posting addresses only (as `--list-address` checks them).
    pub list_addresses: HashMap<ListId, ListAddress>,
    /// Most POSTs at once (HyperKitty on sqlite wants 1; default 4).
    pub concurrency: usize,
    /// How long one request may take (30 s). A connect that takes longer
    /// means HyperKitty is unreachable; an answer that takes longer is a
    /// failed attempt of that mail.
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
    /// How long a list seen private in HyperKitty is trusted without
    /// asking again (5 minutes; a list event of it drops it at once), so a
    /// list an admin made public stops getting private mail.
    pub private_list_ttl: Duration,
    /// 5xx answers (or timeouts once connected) in a row on distinct mails
    /// that make an outage (3): the deliveries in hand are released and
    /// HyperKitty is probed until its database answers, instead of every
    /// mail spending its attempts on a HyperKitty whose database is down.
    pub sick_run_limit: usize,
}

impl fmt::Debug for BridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BridgeConfig")
            .field("base_url", &mq_archiver::redact_url(self.base_url.as_str()))
            .field("api_key", &self.api_key)
            .field("list_addresses", &self.list_addresses)
            .field("concurrency", &self.concurrency)
            .field("request_timeout", &self.request_timeout)
            .field("probe_backoff", &self.probe_backoff)
            .field("retry_backoff", &self.retry_backoff)
            .field("ca_file", &self.ca_file)
            .field("private_list_ttl", &self.private_list_ttl)
            .field("sick_run_limit", &self.sick_run_limit)
            .finish()
    }
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
            private_list_ttl: Duration::from_secs(300),
            sick_run_limit: 3,
        }
    }

    /// Sets [`list_addresses`](Self::list_addresses).
    pub fn list_addresses(mut self, map: HashMap<ListId, ListAddress>) -> Self {
        self.list_addresses = map;
        self
    }

    /// Sets [`concurrency`](Self::concurrency).
    pub fn concurrency(mut self, concurrency: usize) -> Self {
        self.concurrency = concurrency;
        self
    }

    /// Sets [`request_timeout`](Self::request_timeout).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Sets [`probe_backoff`](Self::probe_backoff).
    pub fn probe_backoff(mut self, backoff: Backoff) -> Self {
        self.probe_backoff = backoff;
        self
    }

    /// Sets [`retry_backoff`](Self::retry_backoff).
    pub fn retry_backoff(mut self, backoff: Backoff) -> Self {
        self.retry_backoff = backoff;
        self
    }

    /// Sets [`ca_file`](Self::ca_file).
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Sets [`private_list_ttl`](Self::private_list_ttl).
    pub fn private_list_ttl(mut self, ttl: Duration) -> Self {
        self.private_list_ttl = ttl;
        self
    }

    /// Sets [`sick_run_limit`](Self::sick_run_limit).
    pub fn sick_run_limit(mut self, limit: usize) -> Self {
        self.sick_run_limit = limit;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_key_and_the_url_password() {
        let config = BridgeConfig::new(
            "https://bridge:s3cret-pw@lists.example.org/hyperkitty/"
                .parse()
                .unwrap(),
            ApiKey::new("s3cret-key"),
        );
        let shown = format!("{config:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("lists.example.org"), "{shown}");
    }
}
