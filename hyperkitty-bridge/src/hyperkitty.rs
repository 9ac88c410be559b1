//! HyperKitty's HTTP side: the TLS client on the workspace's ring
//! provider, the archive POST, the list check and the probe, each answer
//! sorted into what the bridge does with it.

use std::path::Path;
use std::time::Duration;

use mq_archiver::Bytes;
use reqwest::StatusCode;
use reqwest::multipart::{Form, Part};
use url::Url;

use crate::config::{ApiKey, BridgeConfig};
use crate::error::BridgeError;

/// What HyperKitty's answer to one archive POST means for the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 200: archived (a duplicate answers 200 too: at-least-once is safe).
    Archived,
    /// Refused connection, timeout, or 502/503/504 from a proxy: HyperKitty
    /// is not running; not an attempt of this mail.
    Unreachable(String),
    /// 400: HyperKitty will never take this mail (its error text).
    Rejected(String),
    /// Another answer of a running HyperKitty (5xx): try again later.
    Failed(String),
    /// 401/403: the key or this client's address is wrong; every mail
    /// would fail the same way.
    Misconfigured(String),
}

/// How HyperKitty holds a list, as its public list API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListStatus {
    /// Held as private (the anonymous API answers 403 for it, or 200 with
    /// `archive_policy: private`).
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
    base: Url,
    key: ApiKey,
}

impl HyperKitty {
    pub(crate) fn new(config: &BridgeConfig) -> Result<Self, BridgeError> {
        let tls = tls_config(config.ca_file.as_deref())?;
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
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
        let archive = base
            .join("api/mailman/archive")
            .map_err(|e| BridgeError::Configuration(format!("base URL: {e}")))?;
        Ok(Self {
            client,
            archive,
            base,
            key: config.api_key.clone(),
        })
    }

    /// POSTs one mail to `mlist` (a list posting address).
    pub(crate) async fn post(&self, mlist: &str, mail: Bytes) -> PostOutcome {
        let part = match Part::stream(mail)
            .file_name("message.eml")
            .mime_str("message/rfc822")
        {
            Ok(part) => part,
            Err(e) => return PostOutcome::Failed(format!("multipart: {e}")),
        };
        let form = Form::new()
            .text("mlist", mlist.to_owned())
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
            Err(e) => return PostOutcome::Unreachable(describe(&e)),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::OK => PostOutcome::Archived,
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => {
                PostOutcome::Unreachable(format!("HTTP {status} from a proxy"))
            }
            StatusCode::BAD_REQUEST => PostOutcome::Rejected(format!(
                "HyperKitty refused the mail (HTTP 400): {}",
                error_text(&text)
            )),
            StatusCode::UNAUTHORIZED => PostOutcome::Misconfigured(
                "HyperKitty refused the archiver key (HTTP 401): the bridge's key must be HyperKitty's MAILMAN_ARCHIVER_KEY"
                .to_owned(),
            ),
            StatusCode::FORBIDDEN => PostOutcome::Misconfigured(
                "HyperKitty refused this client's address (HTTP 403): add the bridge's address to HyperKitty's MAILMAN_ARCHIVER_FROM"
                .to_owned(),
            ),
            other => PostOutcome::Failed(format!(
                "HyperKitty answered HTTP {other}: {}",
                error_text(&text)
            )),
        }
    }

    /// How HyperKitty holds `address`, through its anonymous list API
    /// (`GET {base}/api/list/{address}/`): 404 absent, 403 private (the API
    /// shows a private list only to its members), 200 its `archive_policy`.
    pub(crate) async fn list_status(&self, address: &str) -> Result<ListStatus, PostOutcome> {
        let url = self
            .base
            .join(&format!("api/list/{address}/"))
            .map_err(|e| {
                PostOutcome::Rejected(format!("list address {address:?} makes no URL: {e}"))
            })?;
        let response = match self.client.get(url).send().await {
            Ok(response) => response,
            Err(e) => return Err(PostOutcome::Unreachable(describe(&e))),
        };
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::NOT_FOUND => Ok(ListStatus::Absent),
            StatusCode::FORBIDDEN => Ok(ListStatus::Private),
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
            StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => Err(PostOutcome::Unreachable(format!(
                "HTTP {status} from a proxy"
            ))),
            other => Err(PostOutcome::Failed(format!(
                "HyperKitty's list API answered HTTP {other}"
            ))),
        }
    }

    /// True once HyperKitty itself answers: any status but a proxy's
    /// 502/503/504 (the archive endpoint answers a GET with 405 before
    /// any authentication, so the probe sends no key).
    pub(crate) async fn probe(&self) -> bool {
        match self.client.get(self.archive.clone()).send().await {
            Ok(response) => !matches!(
                response.status(),
                StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            ),
            Err(_) => false,
        }
    }
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
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| body.chars().take(300).collect())
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
