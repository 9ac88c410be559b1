//! Archived mail: the raw RFC 5322 bytes, untouched, plus the metadata an
//! archive needs, read once with mail-parser.

pub mod mbox;
pub mod message_id;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use mail_parser::{HeaderName, Message, MessageParser};
use serde::{Deserialize, Serialize};

use crate::list::ListId;
use message_id::{archive_message_id, generated_message_id, message_id_hash_of_id};

/// Default largest mail accepted: 32 MiB, above the 25 MiB most mail
/// systems accept, below every backend's message limit.
pub const DEFAULT_MAX_MAIL_BYTES: usize = 32 * 1024 * 1024;

/// Limits applied before a mail is parsed or published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailLimits {
    /// Largest raw mail, in bytes, that is archived; above it
    /// [`MailError::TooLarge`] is returned and nothing is published.
    pub max_bytes: usize,
}

impl Default for MailLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_MAIL_BYTES,
        }
    }
}

impl MailLimits {
    /// Sets [`max_bytes`](Self::max_bytes): the largest raw mail archived.
    pub fn max_bytes(mut self, bytes: usize) -> Self {
        self.max_bytes = bytes;
        self
    }
}

/// Why a mail cannot be archived. Nothing was published when one is
/// returned, so the caller still holds the mail and decides what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Zero bytes were handed over.
    #[error("the mail is empty")]
    Empty,
    /// The mail is larger than [`MailLimits::max_bytes`].
    #[error("the mail is {size} bytes, above the limit of {limit} bytes")]
    TooLarge {
        /// Size of the refused mail.
        size: usize,
        /// The limit in force.
        limit: usize,
    },
    /// No RFC 5322 header could be read: the bytes are not a mail.
    #[error("no header could be read: not an RFC 5322 message")]
    NoHeaders,
}

/// Why a mail was not archived although nothing is wrong with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// The sender asked with an `X-No-Archive` header (any value, as Mailman).
    XNoArchive,
    /// The sender asked with `X-Archive: no`.
    XArchiveNo,
    /// The list's archive policy is `never`.
    ListNotArchived,
}

/// Metadata read from a mail's headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MailMeta {
    /// Message-ID as HyperKitty stores it (whitespace removed, unquoted,
    /// at most 254 characters: [`message_id::archive_message_id`]);
    /// generated when the mail had none.
    pub message_id: String,
    /// True when [`message_id`](Self::message_id) was generated from the
    /// mail's bytes because the mail carried no Message-ID.
    pub message_id_generated: bool,
    /// HyperKitty's Message-ID-Hash of [`message_id`](Self::message_id).
    pub message_id_hash: String,
    /// RFC 2919 List-Id header, when present and valid.
    pub list_id: Option<ListId>,
    /// First address of the From header.
    pub from_address: Option<String>,
    /// Display name of the first From address.
    pub from_name: Option<String>,
    /// Subject, RFC 2047 decoded.
    pub subject: Option<String>,
    /// Date header, when it parses to a real date.
    pub date: Option<DateTime<Utc>>,
    /// Message-ID this mail replies to (In-Reply-To), without brackets.
    pub in_reply_to: Option<String>,
    /// Message-IDs of the References header, oldest first, without brackets.
    pub references: Vec<String>,
    /// Why the sender asked not to archive it, if they did.
    pub opt_out: Option<SkipReason>,
}

/// A mail to archive: the bytes exactly as received, and their metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedMail {
    raw: Bytes,
    meta: MailMeta,
}

impl ArchivedMail {
    /// Checks `raw` against `limits` and reads its headers. The bytes are
    /// kept as they are; nothing is normalised.
    pub fn parse(raw: Bytes, limits: &MailLimits) -> Result<Self, MailError> {
        if raw.is_empty() {
            return Err(MailError::Empty);
        }
        if raw.len() > limits.max_bytes {
            return Err(MailError::TooLarge {
                size: raw.len(),
                limit: limits.max_bytes,
            });
        }
        let parsed = MessageParser::new()
            .parse_headers(&raw[..])
            .filter(|m| !m.headers().is_empty())
            .ok_or(MailError::NoHeaders)?;
        let meta = read_meta(&parsed, &raw);
        Ok(Self { raw, meta })
    }

    /// The mail exactly as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// What was read from the headers.
    pub fn meta(&self) -> &MailMeta {
        &self.meta
    }

    /// HyperKitty's Message-ID-Hash, the archive's key for this mail.
    pub fn message_id_hash(&self) -> &str {
        &self.meta.message_id_hash
    }
}

fn read_meta(parsed: &Message<'_>, raw: &[u8]) -> MailMeta {
    let archived_id = raw_header(parsed, raw, HeaderName::MessageId)
        .map(|value| archive_message_id(&value))
        .filter(|id| !id.is_empty());
    let (message_id, message_id_generated) = match archived_id {
        Some(id) => (id, false),
        None => (generated_message_id(raw), true),
    };
    let message_id_hash = message_id_hash_of_id(&message_id);
    let from = parsed.from().and_then(|a| a.first());
    MailMeta {
        list_id: raw_header(parsed, raw, HeaderName::ListId)
            .and_then(|v| ListId::from_header(&unfold(&v)).ok()),
        from_address: from.and_then(|a| a.address()).map(str::to_owned),
        from_name: from.and_then(|a| a.name()).map(str::to_owned),
        subject: parsed.subject().map(str::to_owned),
        date: parsed
            .date()
            .filter(|d| d.is_valid())
            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
        in_reply_to: parsed
            .in_reply_to()
            .as_text_list()
            .and_then(|ids| ids.first())
            .map(|id| id.to_string()),
        references: parsed
            .references()
            .as_text_list()
            .map(|ids| ids.iter().map(|id| id.to_string()).collect())
            .unwrap_or_default(),
        opt_out: opt_out(parsed, raw),
        message_id,
        message_id_generated,
        message_id_hash,
    }
}

/// Mailman's `to_archive` rule: any `X-No-Archive` header opts out, and so
/// does `X-Archive: no`.
fn opt_out(parsed: &Message<'_>, raw: &[u8]) -> Option<SkipReason> {
    if raw_header(parsed, raw, HeaderName::Other("X-No-Archive".into())).is_some() {
        return Some(SkipReason::XNoArchive);
    }
    raw_header(parsed, raw, HeaderName::Other("X-Archive".into()))
        .filter(|v| v.trim().eq_ignore_ascii_case("no"))
        .map(|_| SkipReason::XArchiveNo)
}

/// The first header of that name as written in the mail (undecoded),
/// invalid UTF-8 replaced rather than the header lost.
fn raw_header(parsed: &Message<'_>, raw: &[u8], name: HeaderName<'_>) -> Option<String> {
    parsed
        .headers()
        .iter()
        .find(|h| h.name == name)
        .and_then(|h| raw.get(h.offset_start as usize..h.offset_end as usize))
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
}

/// Joins folded header lines (RFC 5322 section 2.2.3).
fn unfold(value: &str) -> String {
    value.replace("\r\n", "").replace('\n', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &'static [u8]) -> Result<ArchivedMail, MailError> {
        ArchivedMail::parse(Bytes::from_static(raw), &MailLimits::default())
    }

    #[test]
    fn reads_metadata_and_keeps_bytes() {
        let raw: &[u8] = b"From: \"Ann Example\" <ann@example.org>\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nList-Id: Dev list <dev.lists.example.org>\r\nMessage-ID: <abc@example.org>\r\nIn-Reply-To: <parent@example.org>\r\nReferences: <root@example.org>\r\n <parent@example.org>\r\nDate: Tue, 24 Nov 2026 10:00:00 +0100\r\n\r\nbody\r\n";
        let mail = parse(raw).unwrap();
        assert_eq!(&mail.raw()[..], raw);
        let meta = mail.meta();
        assert_eq!(meta.message_id, "abc@example.org");
        assert!(!meta.message_id_generated);
        assert_eq!(
            meta.message_id_hash,
            crate::message_id_hash("<abc@example.org>")
        );
        assert_eq!(
            meta.list_id.as_ref().unwrap().as_str(),
            "dev.lists.example.org"
        );
        assert_eq!(meta.from_address.as_deref(), Some("ann@example.org"));
        assert_eq!(meta.from_name.as_deref(), Some("Ann Example"));
        assert_eq!(meta.subject.as_deref(), Some("café"));
        assert_eq!(meta.date.unwrap().to_rfc3339(), "2026-11-24T09:00:00+00:00");
        assert_eq!(meta.in_reply_to.as_deref(), Some("parent@example.org"));
        assert_eq!(meta.references, ["root@example.org", "parent@example.org"]);
        assert_eq!(meta.opt_out, None);
    }

    #[test]
    fn header_ids_hash_like_hyperkitty() {
        let long = format!("Message-ID: <{}>\r\n\r\nbody\r\n", "x".repeat(298));
        let cases: [(&[u8], &str, &str); 4] = [
            (
                b"Message-ID:\n <12345>\nSubject: x\n\nbody\n",
                "12345",
                "RSZCG7IGPHFIRW3EMTVMMDNJMNCVCOLE",
            ),
            (
                b"Message-ID:\r\n <folded.1@example.org>\r\nSubject: x\r\n\r\nbody\r\n",
                "folded.1@example.org",
                "CNXW62EJB2MIZ3RCW4RP4JKFIBC6GO5I",
            ),
            (
                b"Message-ID: <a b\tc@example.org>\n\nbody\n",
                "abc@example.org",
                "GZLPKEL44H7JOP7YXWIPYND25DN4RJAO",
            ),
            (
                long.as_bytes(),
                &long[13..13 + 254],
                "52E674H55BL46OHMYHS4PHROXQ6IIIAN",
            ),
        ];
        for (raw, id, hash) in cases {
            let mail =
                ArchivedMail::parse(Bytes::copy_from_slice(raw), &MailLimits::default()).unwrap();
            assert_eq!(mail.meta().message_id, id);
            assert_eq!(mail.message_id_hash(), hash, "for {id:?}");
        }
    }

    #[test]
    fn missing_message_id_is_generated_and_marked() {
        let mail = parse(b"Subject: no id\n\nbody\n").unwrap();
        assert!(mail.meta().message_id_generated);
        assert!(mail.meta().message_id.ends_with("@archiver.invalid"));
        let again = parse(b"Subject: no id\n\nbody\n").unwrap();
        assert_eq!(mail.message_id_hash(), again.message_id_hash());
    }

    #[test]
    fn honours_opt_out_headers() {
        let no_archive = parse(b"Message-ID: <a@b>\nX-No-Archive: yes\n\nx\n").unwrap();
        assert_eq!(no_archive.meta().opt_out, Some(SkipReason::XNoArchive));
        let archive_no = parse(b"Message-ID: <a@b>\nX-Archive: No \n\nx\n").unwrap();
        assert_eq!(archive_no.meta().opt_out, Some(SkipReason::XArchiveNo));
        let archive_yes = parse(b"Message-ID: <a@b>\nX-Archive: yes\n\nx\n").unwrap();
        assert_eq!(archive_yes.meta().opt_out, None);
    }

    #[test]
    fn refuses_empty_oversize_and_headerless_input() {
        assert_eq!(parse(b""), Err(MailError::Empty));
        let limits = MailLimits { max_bytes: 10 };
        assert_eq!(
            ArchivedMail::parse(Bytes::from_static(b"Subject: eleven\n\n"), &limits),
            Err(MailError::TooLarge {
                size: 17,
                limit: 10
            })
        );
        assert_eq!(parse(b"\n\njust a body\n"), Err(MailError::NoHeaders));
    }
}
