//! `mq_archiver.Archiver`: the facade's `QueueArchiver` for Python. Each
//! method converts its Python arguments first (holding the GIL), then
//! releases the GIL while the Rust side parses, publishes or waits, so
//! the list server's other threads run meanwhile.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use mq_archiver::{
    ArchiveError, ArchivedMail, Archiver as _, ListEvent, ListId, MailingList, PublisherClient,
    QueueArchiver,
};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{InvalidArgumentError, archive_error, backend_error, open_error};
use crate::receipts::{EventReceipt, Receipt, SpoolStatus};
use crate::runtime;

/// A list server's archiver: publishes each mail and list event once to
/// the backend a URL names (Redis, RabbitMQ, ZeroMQ, or `memory:` in this
/// process), spooling to local disk while the broker is away when the
/// `spool-dir` option is given. Thread-safe: one per process is enough,
/// and every thread may use it at once.
#[pyclass(frozen, module = "mq_archiver")]
pub struct Archiver {
    inner: QueueArchiver<PublisherClient>,
}

/// The list as Rust knows it, from the three strings a list server has.
fn mailing_list(
    list_id: &str,
    list_address: Option<&str>,
    archive_policy: &str,
) -> PyResult<MailingList> {
    let invalid = |message: String| InvalidArgumentError::new_err(message);
    let mut list = MailingList::public(ListId::new(list_id).map_err(|e| invalid(e.to_string()))?);
    list.archive_policy = archive_policy.parse().map_err(invalid)?;
    if let Some(address) = list_address {
        list = list
            .with_address(address)
            .map_err(|e| invalid(e.to_string()))?;
    }
    Ok(list)
}

/// A list event from its JSON form as a dict (`docs/wire-format.md`):
/// `type` and the fields of that type are required; `list_id` defaults to
/// the list's and `at` to now.
fn list_event(event: &Bound<'_, PyDict>, list: &ListId) -> PyResult<ListEvent> {
    let invalid = |message: String| InvalidArgumentError::new_err(message);
    let json: String = event
        .py()
        .import("json")?
        .call_method1("dumps", (event,))?
        .extract()?;
    let mut fields: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&json).map_err(|e| invalid(e.to_string()))?;
    fields
        .entry("list_id")
        .or_insert_with(|| list.as_str().into());
    if !fields.contains_key("at") {
        let now = serde_json::to_value(chrono::Utc::now()).map_err(|e| invalid(e.to_string()))?;
        fields.insert("at".into(), now);
    }
    serde_json::from_value(fields.into()).map_err(|e| invalid(format!("invalid list event: {e}")))
}

impl Archiver {
    /// Runs the future `call` makes of the archiver on the process's
    /// runtime with the GIL released, so that the list server's other
    /// threads run while it publishes or waits; its error is raised as the
    /// matching Python exception.
    fn detached<'a, T, F>(
        &'a self,
        py: Python<'_>,
        call: impl FnOnce(&'a QueueArchiver<PublisherClient>) -> F + Send,
    ) -> PyResult<T>
    where
        F: Future<Output = Result<T, ArchiveError>>,
        T: Send,
    {
        let archiver = &self.inner;
        py.detach(|| runtime().block_on(call(archiver)))
            .map_err(archive_error)
    }
}

#[pymethods]
impl Archiver {
    /// Connects to the backend `url` names (for ZeroMQ: binds the hub) and
    /// opens the spool when `spool-dir` is given. `options` are the
    /// facade's string options (`base-url` is required; `prefix`,
    /// `spool-dir`, `publish-timeout`, ...: see the README). Raises
    /// `ConfigError` for a bad URL or option, a `TransientError` when the
    /// broker cannot be reached, `SpoolError` when the spool cannot open.
    #[staticmethod]
    #[pyo3(signature = (url, options = None))]
    fn open(
        py: Python<'_>,
        url: String,
        options: Option<BTreeMap<String, String>>,
    ) -> PyResult<Self> {
        let options = options.unwrap_or_default();
        let inner = py
            .detach(|| runtime().block_on(mq_archiver::open_archiver(&url, &options)))
            .map_err(open_error)?;
        Ok(Self { inner })
    }

    /// The archiver's name (option `archiver-name`, default `mq-archiver`).
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    /// Hands a mail, as received, to the archives and returns only once
    /// it is published durably or spooled (or deliberately skipped: an
    /// `X-No-Archive` or `X-Archive: no` header, or policy `never`).
    /// `archive_policy` is `"public"`, `"private"` or `"never"`;
    /// `list_address` is the posting address (or `None`), which every
    /// envelope carries.
    fn archive_message(
        &self,
        py: Python<'_>,
        list_id: &str,
        list_address: Option<&str>,
        archive_policy: &str,
        raw: &[u8],
    ) -> PyResult<Receipt> {
        let list = mailing_list(list_id, list_address, archive_policy)?;
        let raw = Bytes::copy_from_slice(raw);
        self.detached(py, |archiver| archiver.archive_message(&list, raw))
            .map(Receipt::from)
    }

    /// Hands a list event to the archives, marked with the list's policy
    /// (events of a `never` list are skipped). `event` is the event's JSON
    /// form as a dict: `{"type": "membership_added", "address":
    /// "ann@example.org", "role": "owner"}`; types `list_created`
    /// (optional `posting_address`), `list_deleted`, `membership_added`
    /// (`address`, `role`, optional `display_name`), `membership_removed`
    /// (`address`, `role`), `settings_changed` (`changes`: a dict of
    /// setting to new value); roles `member`, `owner`, `moderator`,
    /// `nonmember`. Optional everywhere: `actor` (who did it), `at` (RFC
    /// 3339 time, default now), `list_id` (default and only valid value:
    /// the list's).
    fn archive_event(
        &self,
        py: Python<'_>,
        list_id: &str,
        list_address: Option<&str>,
        archive_policy: &str,
        event: &Bound<'_, PyDict>,
    ) -> PyResult<EventReceipt> {
        let list = mailing_list(list_id, list_address, archive_policy)?;
        let event = list_event(event, &list.list_id)?;
        self.detached(py, |archiver| archiver.archive_event(&list, &event))
            .map(EventReceipt::from)
    }

    /// The URL the mail will have in the archive (RFC 5064 Archived-At),
    /// computed without archiving it; `None` when the list's policy is
    /// `never`. Raises `InvalidMailError` when `raw` is not a mail.
    fn permalink(
        &self,
        py: Python<'_>,
        list_id: &str,
        list_address: Option<&str>,
        archive_policy: &str,
        raw: &[u8],
    ) -> PyResult<Option<String>> {
        let list = mailing_list(list_id, list_address, archive_policy)?;
        let raw = Bytes::copy_from_slice(raw);
        let archiver = &self.inner;
        py.detach(|| {
            let mail = ArchivedMail::parse(raw, archiver.limits())?;
            Ok(archiver.permalink(&list, &mail))
        })
        .map_err(|error: mq_archiver::MailError| archive_error(error.into()))
    }

    /// The list's archive URL (RFC 2369 List-Archive); `None` when its
    /// policy is `never`.
    fn list_url(
        &self,
        list_id: &str,
        list_address: Option<&str>,
        archive_policy: &str,
    ) -> PyResult<Option<String>> {
        let list = mailing_list(list_id, list_address, archive_policy)?;
        Ok(self.inner.list_url(&list))
    }

    /// The spool's depth, age and counters; `None` without `spool-dir`.
    fn spool_status(&self) -> Option<SpoolStatus> {
        self.inner.spool_status().map(SpoolStatus::from)
    }

    /// Adopts the spool directory `dir` that no live process holds (one a
    /// process left under another name): its envelopes join this
    /// archiver's spool, in order; returns how many. Raises `SpoolError`
    /// when a process holds `dir` or this archiver has no spool.
    fn adopt_spool(&self, py: Python<'_>, dir: PathBuf) -> PyResult<u64> {
        self.detached(py, |archiver| archiver.adopt_spool(&dir))
    }

    /// Waits at most `within_seconds` for the spool to drain, stops it and
    /// closes the backend's client: later calls raise `ClosedError` (or
    /// `SpoolError`). Returns what the spool still holds (published at the
    /// next open of the same `spool-dir`); `None` without a spool.
    fn close(&self, py: Python<'_>, within_seconds: f64) -> PyResult<Option<SpoolStatus>> {
        let within = Duration::try_from_secs_f64(within_seconds).map_err(|e| {
            InvalidArgumentError::new_err(format!("within_seconds {within_seconds}: {e}"))
        })?;
        let archiver = &self.inner;
        py.detach(|| {
            runtime().block_on(async {
                let left = archiver.close(within).await?;
                Ok(left.map(SpoolStatus::from))
            })
        })
        .map_err(backend_error)
    }

    fn __repr__(&self) -> String {
        format!("<mq_archiver.Archiver {}>", self.inner.name())
    }
}
