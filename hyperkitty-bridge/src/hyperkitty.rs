//! HyperKitty's HTTP side: the TLS client on the workspace's ring
//! provider, the archive POST, the list check and the probe, each answer
//! sorted into what the bridge does with it.

use std::path::Path;
use std::time::Duration;

use mq_archiver::{Bytes, ListAddress};
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use url::Url;

use crate::config::{ApiKey, BridgeConfig};
use crate::error::BridgeError;

/// What HyperKitty's answer to one request means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PostOutcome {
    /// 200: archived (a duplicate answers 200 too: at-least-once is safe).
    Archived,
    /// No HyperKitty answered: refused or failed connection, connect
    /// timeout, 502/503/504 from a proxy, or 429 (slow down): not an
    /// attempt of this mail; the bridge stops taking deliveries and probes.
    Unreachable(String),
    /// HyperKitty's own 400 about this mail (JSON with an `error`): it will
    /// never take it (its error text).
    Rejected(String),
    /// A running HyperKitty failed on this mail: try again later (an
    /// attempt). `sick` for a 5xx or a timeout after connecting, which in
    /// a row on distinct mails mean HyperKitty itself is failing.
    Failed {
        /// What went wrong, for the log and the dead letter at the limit.
        why: String,
        /// A 5xx or a read timeout (not a 4xx of a proxy).
        sick: bool,
    },
    /// 401/403, a redirect, 404/405, a 400 that is not HyperKitty's own, or
    /// a list API the bridge cannot read: the key, this client's address
    /// or the base URL is wrong; every mail would fail the same way.
    Misconfigured(String),
}

/// How HyperKitty holds a list, as its public list API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ListStatus {
    /// Held as private (the anonymous API answers Django REST framework's
    /// JSON 403 for it, or 200 with `archive_policy: private`).
    Private,
    /// Held with another policy (`public`, `never`).
    Other(String),
    /// Not in HyperKitty: its first mail would create it public.
    Absent,
}

/// The client and the endpoints of one HyperKitty.
pub(crate) struct HyperKitty {
    client: reqwest::Client,
    archive: Url,
    lists: Url,
    base: Url,
    key: ApiKey,
}

impl HyperKitty {
    pub(crate) fn new(config: &BridgeConfig) -> Result<Self, BridgeError> {
        let tls = tls_config(config.ca_file.as_deref())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            // A redirect turns the POST into a GET without its body (and
            // drops the key on a host change): HyperKitty would answer 405
            // to every mail. The base URL must be where HyperKitty is.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| {
                BridgeError::Configuration(format!("cannot build the HTTP client: {e}"))
            })?;
        let mut base = config.base_url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        let endpoint = |path: &str| {
            base.join(path)
                .map_err(|e| BridgeError::Configuration(format!("base URL: {e}")))
        };
        let archive = endpoint("api/mailman/archive")?;
        let mut lists = endpoint("api/lists/")?;
        lists.set_query(Some("limit=1"));
        Ok(Self {
            client,
            archive,
            lists,
            base,
            key: config.api_key.clone(),
        })
    }

    /// POSTs one mail to `mlist` (a list posting address).
    pub(crate) async fn post(&self, mlist: &ListAddress, mail: Bytes) -> PostOutcome {
        let part = match Part::bytes(mail.to_vec())
            .file_name("message.eml")
            .mime_str("message/rfc822")
        {
            Ok(part) => part,
            Err(e) => {
                return PostOutcome::Failed {
                    why: format!("multipart: {e}"),
                    sick: false,
                };
            }
        };
        let form = Form::new()
            .text("mlist", mlist.as_str().to_owned())
            .part("message", part);
        let sent = self
            .client
            .post(self.archive.clone())
            .header("Authorization", format!("Token {}", self.key.expose()))
            .multipart(form)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return transport_outcome(&e),
        };
        let status = response.status();
        let location = location(&response);
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::OK => PostOutcome::Archived,
            StatusCode::BAD_REQUEST => match json_error(&text) {
                Some(error) => PostOutcome::Rejected(format!(
                    "HyperKitty refused the mail (HTTP 400): {error}"
                )),
                None => PostOutcome::Misconfigured(format!(
                    "{} answered HTTP 400 without HyperKitty's JSON error (Django answers so to every request when the base URL's host is not in HyperKitty's ALLOWED_HOSTS): add the host to ALLOWED_HOSTS or fix the base URL; the answer began: {}",
                    redact(&self.archive),
                    snippet(&text)
                )),
            },
            StatusCode::UNAUTHORIZED => PostOutcome::Misconfigured(
                "HyperKitty refused the archiver key (HTTP 401): the bridge's key must be HyperKitty's MAILMAN_ARCHIVER_KEY"
                .to_owned(),
            ),
            StatusCode::FORBIDDEN => PostOutcome::Misconfigured(
                "HyperKitty refused this client's address (HTTP 403): add the bridge's address to HyperKitty's MAILMAN_ARCHIVER_FROM"
                .to_owned(),
            ),
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
                PostOutcome::Misconfigured(format!(
                    "{} answered HTTP {status}: the base URL must be HyperKitty's root (e.g. https://lists.example.org/hyperkitty/)",
                    redact(&self.archive)
                ))
            }
            other if other.is_redirection() => PostOutcome::Misconfigured(format!(
                "{} answered HTTP {other} (redirect to {}): the bridge follows no redirect (a POST would become a GET and lose its key); set the base URL to where HyperKitty is",
                redact(&self.archive),
                location.as_deref().unwrap_or("nowhere")
            )),
            other => status_outcome(other, || {
                format!("HyperKitty answered HTTP {other}: {}", error_text(&text))
            }),
        }
    }

    /// How HyperKitty holds `address`, through its anonymous list API
    /// (`GET {base}/api/list/{address}/`): 404 absent, Django REST
    /// framework's JSON 403 private (the API shows a private list only to
    /// its members), 200 its `archive_policy`. Any other 403 (a proxy
    /// blocking the API) or 401 is a configuration error: only
    /// HyperKitty's own answer may let a private mail through.
    pub(crate) async fn list_status(
        &self,
        address: &ListAddress,
    ) -> Result<ListStatus, PostOutcome> {
        let mut url = self.base.clone();
        // Pushed as one segment (percent-encoded), never joined: an
        // address cannot climb to another list's URL.
        url.path_segments_mut()
            .map_err(|()| PostOutcome::Misconfigured("the base URL cannot be a base".to_owned()))?
            .pop_if_empty()
            .extend(["api", "list", address.as_str(), ""]);
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(e) => return Err(transport_outcome(&e)),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::NOT_FOUND => Ok(ListStatus::Absent),
            StatusCode::FORBIDDEN if is_rest_framework_detail(&text) => Ok(ListStatus::Private),
            StatusCode::OK => {
                let policy = serde_json::from_str::<serde_json::Value>(&text)
                    .ok()
                    .and_then(|v| v.get("archive_policy")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| "unknown".to_owned());
                Ok(if policy == "private" {
                    ListStatus::Private
                } else {
                    ListStatus::Other(policy)
                })
            }
            other
                if other.is_redirection()
                    || other.is_client_error() && other != StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(PostOutcome::Misconfigured(format!(
                    "HyperKitty's list API (api/list/<address>/) answered HTTP {other} without HyperKitty's own JSON: the bridge must read it anonymously to tell private lists (a proxy must let it through); the answer began: {}",
                    snippet(&text)
                )))
            }
            other => Err(status_outcome(other, || {
                format!("HyperKitty's list API answered HTTP {other}")
            })),
        }
    }

    /// Whether HyperKitty's anonymous list index (`GET {base}/api/lists/`)
    /// answers 200 JSON: checked before trusting a 403 of the list API,
    /// and while probing a HyperKitty that failed with 5xx (the index
    /// needs its database).
    pub(crate) async fn lists_api(&self) -> Result<(), PostOutcome> {
        let response = match self.client.get(self.lists.clone()).send().await {
            Ok(response) => response,
            Err(e) => return Err(transport_outcome(&e)),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        let json = serde_json::from_str::<serde_json::Value>(&text).is_ok();
        match status {
            StatusCode::OK if json => Ok(()),
            other
                if other == StatusCode::OK
                    || other.is_redirection()
                    || other.is_client_error() && other != StatusCode::TOO_MANY_REQUESTS =>
            {
                Err(PostOutcome::Misconfigured(format!(
                    "{} answered HTTP {other}{}: the bridge must read HyperKitty's anonymous list API (api/lists/) to tell private lists (a proxy must let it through, REST_FRAMEWORK must allow anonymous reads); the answer began: {}",
                    redact(&self.lists),
                    if json { "" } else { " without JSON" },
                    snippet(&text)
                )))
            }
            other => Err(status_outcome(other, || {
                format!("HyperKitty's list index answered HTTP {other}")
            })),
        }
    }

    /// True once HyperKitty itself answers: only the archive view's own
    /// 405 to a GET counts (it answers so before any authentication, so
    /// the probe sends no key); with `database`, `api/lists/` must answer
    /// 200 JSON too. Anything else (a proxy's 502/503/504 or maintenance
    /// page, a redirect, a 5xx) means still down: a misconfiguration shows
    /// on the next POST, which stops the bridge.
    pub(crate) async fn probe(&self, database: bool) -> bool {
        match self.client.get(self.archive.clone()).send().await {
            Ok(response) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {}
            Ok(response) => {
                tracing::debug!(status = %response.status(), "probe: not HyperKitty's archive view");
                return false;
            }
            Err(_) => return false,
        }
        !database || self.lists_api().await.is_ok()
    }
}

/// A failed request: a timeout once connected is this mail's (HyperKitty
/// is up and slow on it: an attempt); anything else means no HyperKitty.
fn transport_outcome(error: &reqwest::Error) -> PostOutcome {
    if error.is_timeout() && !error.is_connect() {
        PostOutcome::Failed {
            why: format!("HyperKitty {}", describe(error)),
            sick: true,
        }
    } else {
        PostOutcome::Unreachable(describe(error))
    }
}

/// 502/503/504/429 unreachable; 5xx a sick failure; the rest a failure.
fn status_outcome(status: StatusCode, why: impl FnOnce() -> String) -> PostOutcome {
    match status {
        StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE | StatusCode::GATEWAY_TIMEOUT => {
            PostOutcome::Unreachable(format!("HTTP {status} from a proxy"))
        }
        StatusCode::TOO_MANY_REQUESTS => {
            PostOutcome::Unreachable("HTTP 429: HyperKitty or a proxy asks to slow down".to_owned())
        }
        other => PostOutcome::Failed {
            why: why(),
            sick: other.is_server_error(),
        },
    }
}

/// The redirect target of an answer, without credentials.
fn location(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(reqwest::header::LOCATION)?;
    Some(mq_archiver::redact_url(&String::from_utf8_lossy(
        value.as_bytes(),
    )))
}

fn redact(url: &Url) -> String {
    mq_archiver::redact_url(url.as_str())
}

/// Django REST framework's error body, `{"detail": "..."}`, which
/// HyperKitty's API gives for a private list.
fn is_rest_framework_detail(body: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|v| v.get("detail").is_some_and(serde_json::Value::is_string))
}

/// HyperKitty's own `{"error": ...}` text, if the body is that.
fn json_error(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
}

/// The body's first 300 characters.
fn snippet(body: &str) -> String {
    body.trim().chars().take(300).collect()
}

/// A transport error in words, without the URL's query (there is none
/// with a secret: the key travels in a header, never in the URL).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection refused or failed"
    } else {
        "request failed"
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

/// HyperKitty's `{"error": ...}` text, else the body's first 300 characters.
fn error_text(body: &str) -> String {
    json_error(body).unwrap_or_else(|| snippet(body))
}

/// A rustls client configuration on the ring provider, which the
/// workspace's Redis and RabbitMQ clients use too: a second provider
/// (aws-lc-rs, reqwest's default) in one process makes rustls refuse to
/// pick one, and redis-rs's TLS set-up fails at run time. Trusts the
/// system's roots, or only the PEM CA file when given.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, BridgeError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    BridgeError::Configuration(format!("CA file {}: {e}", path.display()))
                })?;
            if certs.is_empty() {
                return Err(BridgeError::Configuration(format!(
                    "CA file {} holds no certificate",
                    path.display()
                )));
            }
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    BridgeError::Configuration(format!("CA file {}: {e}", path.display()))
                })?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BridgeError::Configuration(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}
