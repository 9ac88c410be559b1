//! What the archiver's calls answer, as immutable Python objects of plain
//! attributes (strings, numbers, `None`), so a caller can log them or keep
//! them without holding anything of the Rust side.

use mq_archiver::{EventReceipt as RustEventReceipt, Outcome, SpoolStatus as RustSpoolStatus};
use pyo3::prelude::*;
use pyo3::types::PyString;

/// The outcome's name and, when skipped, why: the names the wire format
/// uses for skip reasons (`x_no_archive`, `x_archive_no`,
/// `list_not_archived`), taken from their serde form so they cannot drift.
fn outcome_names(outcome: Outcome) -> (String, Option<String>) {
    match outcome {
        Outcome::Published => ("published".into(), None),
        Outcome::Spooled => ("spooled".into(), None),
        Outcome::Skipped(reason) => {
            let name = serde_json::to_value(reason)
                .ok()
                .and_then(|value| value.as_str().map(str::to_owned));
            ("skipped".into(), name)
        }
    }
}

/// Python's `repr` of an optional string (`'published'`, `None`), for the
/// classes' `__repr__`.
fn repr(py: Python<'_>, value: Option<&str>) -> PyResult<String> {
    match value {
        None => Ok("None".into()),
        Some(value) => Ok(PyString::new(py, value).repr()?.to_string()),
    }
}

/// What `Archiver.archive_message` did with a mail.
#[pyclass(frozen, get_all, module = "mq_archiver")]
pub struct Receipt {
    /// `"published"` (the backend holds it durably), `"spooled"` (kept in
    /// the local spool, published as soon as the broker answers) or
    /// `"skipped"` (deliberately not archived, see `skip_reason`).
    outcome: String,
    /// Why a skipped mail was skipped: `"x_no_archive"`, `"x_archive_no"`
    /// or `"list_not_archived"`; `None` otherwise.
    skip_reason: Option<String>,
    /// HyperKitty's Message-ID-Hash of the mail (also when skipped).
    message_id_hash: String,
    /// The UUIDv7 of the envelope that carries it; `None` when skipped.
    envelope_id: Option<String>,
    /// Where the mail will be readable (RFC 5064 Archived-At); `None` when
    /// skipped.
    permalink: Option<String>,
}

impl From<mq_archiver::Receipt> for Receipt {
    fn from(receipt: mq_archiver::Receipt) -> Self {
        let (outcome, skip_reason) = outcome_names(receipt.outcome);
        Self {
            outcome,
            skip_reason,
            message_id_hash: receipt.message_id_hash,
            envelope_id: receipt.envelope_id.map(|id| id.to_string()),
            permalink: receipt.permalink,
        }
    }
}

#[pymethods]
impl Receipt {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Receipt(outcome={}, skip_reason={}, message_id_hash={}, envelope_id={}, permalink={})",
            repr(py, Some(&self.outcome))?,
            repr(py, self.skip_reason.as_deref())?,
            repr(py, Some(&self.message_id_hash))?,
            repr(py, self.envelope_id.as_deref())?,
            repr(py, self.permalink.as_deref())?,
        ))
    }
}

/// What `Archiver.archive_event` did with a list event.
#[pyclass(frozen, get_all, module = "mq_archiver")]
pub struct EventReceipt {
    /// `"published"`, `"spooled"` or `"skipped"` (the list's archive
    /// policy is `never`).
    outcome: String,
    /// `"list_not_archived"` when skipped; `None` otherwise.
    skip_reason: Option<String>,
    /// The UUIDv7 of the envelope that carries it; `None` when skipped.
    envelope_id: Option<String>,
}

impl From<RustEventReceipt> for EventReceipt {
    fn from(receipt: RustEventReceipt) -> Self {
        let (outcome, skip_reason) = outcome_names(receipt.outcome);
        Self {
            outcome,
            skip_reason,
            envelope_id: receipt.envelope_id.map(|id| id.to_string()),
        }
    }
}

#[pymethods]
impl EventReceipt {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "EventReceipt(outcome={}, skip_reason={}, envelope_id={})",
            repr(py, Some(&self.outcome))?,
            repr(py, self.skip_reason.as_deref())?,
            repr(py, self.envelope_id.as_deref())?,
        ))
    }
}

/// What the archiver's local spool holds and has done since it was
/// opened: an operator's health figures.
#[pyclass(frozen, get_all, module = "mq_archiver")]
pub struct SpoolStatus {
    /// Envelopes waiting to be published.
    depth: u64,
    /// Seconds the oldest waiting envelope has waited; `None` when empty.
    oldest_age: Option<f64>,
    /// Envelopes spooled since the spool was opened.
    spooled: u64,
    /// Envelopes the drain published since the spool was opened.
    drained: u64,
    /// Envelopes the broker refused for good, kept as files in the spool
    /// directory's `rejected/` for an operator.
    rejected: u64,
    /// The journal sequence of the record the drain cannot get past, when
    /// it is stuck; nothing behind it moves.
    stuck_seq: Option<u64>,
    /// The last error of that record.
    stuck_error: Option<String>,
}

impl From<RustSpoolStatus> for SpoolStatus {
    fn from(status: RustSpoolStatus) -> Self {
        let (stuck_seq, stuck_error) = match status.stuck_at {
            Some(stuck) => (Some(stuck.seq), Some(stuck.error)),
            None => (None, None),
        };
        Self {
            depth: status.depth,
            oldest_age: status.oldest_age.map(|age| age.as_secs_f64()),
            spooled: status.spooled,
            drained: status.drained,
            rejected: status.rejected,
            stuck_seq,
            stuck_error,
        }
    }
}

#[pymethods]
impl SpoolStatus {
    fn __repr__(&self) -> String {
        let or_none = |value: Option<String>| value.unwrap_or_else(|| "None".into());
        format!(
            "SpoolStatus(depth={}, oldest_age={}, spooled={}, drained={}, rejected={}, stuck_seq={})",
            self.depth,
            or_none(self.oldest_age.map(|age| age.to_string())),
            self.spooled,
            self.drained,
            self.rejected,
            or_none(self.stuck_seq.map(|seq| seq.to_string())),
        )
    }
}
