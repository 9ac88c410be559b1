//! Cross-backend chaos tests against real brokers and real processes (see
//! `tests/chaos.rs`), and what their child processes share: the test mail.
//!
//! The children are `chaos-list-server` (archives N corpus mails through a
//! spooling [`QueueArchiver`](mq_archiver::QueueArchiver)) and
//! `chaos-archive-server` (a durable subscriber storing a Maildir); the
//! test kills them with `kill -9`, stops the broker, and counts.

use mq_archiver::Bytes;
use mq_archiver::conformance::corpus_mbox;
use mq_archiver::{ArchivedMail, ListId, MailLimits, MailingList, MboxReader};

/// The corpus mails, or None (with a SKIPPED line, or a failure when
/// `ARCHIVER_REQUIRE_CORPUS` is set) when the corpus is absent.
pub fn corpus(test: &str) -> Option<Vec<Bytes>> {
    let mbox = corpus_mbox(test)?;
    Some(
        MboxReader::open(mbox)
            .expect("corpus opens")
            .map(|raw| raw.expect("corpus reads"))
            .collect(),
    )
}

/// Mail number `i` of a chaos run: corpus mail `i mod len` with its own
/// Message-ID `<chaos-i@archiver.test>` (the original header renamed to
/// `X-Original-Message-ID`), so that every mail of the run is distinct.
pub fn chaos_mail(corpus: &[Bytes], i: usize) -> Bytes {
    let raw = &corpus[i % corpus.len()];
    let header_end = find(raw, b"\r\n\r\n")
        .or_else(|| find(raw, b"\n\n"))
        .unwrap_or(raw.len());
    let crlf = raw[..header_end].contains(&b'\r');
    let mut out = Vec::with_capacity(raw.len() + 64);
    out.extend_from_slice(format!("Message-ID: <chaos-{i}@archiver.test>").as_bytes());
    out.extend_from_slice(if crlf { b"\r\n" } else { b"\n" });
    let mut at_line_start = true;
    let mut k = 0;
    while k < raw.len() {
        if k < header_end
            && at_line_start
            && raw.len() - k >= 11
            && raw[k..k + 11].eq_ignore_ascii_case(b"message-id:")
        {
            out.extend_from_slice(b"X-Original-Message-ID:");
            k += 11;
            at_line_start = false;
            continue;
        }
        at_line_start = raw[k] == b'\n';
        out.push(raw[k]);
        k += 1;
    }
    out.into()
}

/// The list a chaos mail is archived on: its own List-Id, else a fallback.
pub fn chaos_list(mail: &ArchivedMail) -> MailingList {
    MailingList::public(
        mail.meta()
            .list_id
            .clone()
            .unwrap_or_else(|| ListId::new("chaos.lists.example.org").expect("valid list id")),
    )
}

/// Parses a chaos mail as the list server does.
pub fn parse(raw: Bytes) -> ArchivedMail {
    ArchivedMail::parse(raw, &MailLimits::default()).expect("corpus mails parse")
}

/// Record number `n` of the journal crash test: its number, then filler,
/// 100 bytes to 8 KB.
pub fn appender_record(n: u64) -> Vec<u8> {
    let mut record = format!("record {n}:").into_bytes();
    record.resize(100 + (n as usize * 7919) % 8_000, b'a' + (n % 26) as u8);
    record
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_chaos_mail_has_its_own_message_id_and_keeps_the_rest() {
        let corpus = vec![Bytes::from_static(
            b"From: a@x\r\nMessage-Id: <orig@x>\r\nSubject: s\r\n\r\nMessage-ID: in body\r\n",
        )];
        let mail = chaos_mail(&corpus, 7);
        assert_eq!(
            &mail[..],
            b"Message-ID: <chaos-7@archiver.test>\r\nFrom: a@x\r\nX-Original-Message-ID: <orig@x>\r\nSubject: s\r\n\r\nMessage-ID: in body\r\n"
        );
        assert_eq!(parse(mail).meta().message_id, "chaos-7@archiver.test");
    }
}
