//! The mails every run sends: the real list mbox, cycled, each copy after
//! the first with its own Message-ID so that no two mails in a run are the
//! same mail (an archive would de-duplicate them).

use std::path::Path;

use anyhow::{Context, ensure};
use bytes::Bytes;
use mq_archiver::{
    ArchivedMail, Envelope, EnvelopeId, ListId, MailLimits, MailingList, MboxReader,
    message_id_hash,
};

/// The corpus, parsed once; [`Corpus::envelope`] makes the `i`-th mail of a
/// run from it without parsing again.
pub struct Corpus {
    templates: Vec<Template>,
}

/// One corpus mail and where its Message-ID header sits.
struct Template {
    envelope: Envelope,
    /// The bare Message-ID (without angle brackets).
    message_id: String,
    /// The byte range of the whole header line(s) holding the Message-ID,
    /// if the mail has one; a copy replaces it.
    header: Option<std::ops::Range<usize>>,
    /// `\r\n` or `\n`, as the mail's own header lines end.
    newline: &'static str,
}

impl Corpus {
    /// Parses the mbox at `path`; every mail in it must parse.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let fallback = ListId::new("bench.lists.example.org").expect("a valid list id");
        let mut templates = Vec::new();
        for raw in MboxReader::open(path).with_context(|| format!("opening {}", path.display()))? {
            let mail = ArchivedMail::parse(raw?, &MailLimits::default())?;
            let list = mail
                .meta()
                .list_id
                .clone()
                .unwrap_or_else(|| fallback.clone());
            let envelope = Envelope::mail(&mail, &MailingList::public(list));
            templates.push(Template::new(envelope, mail.meta().message_id.clone()));
        }
        ensure!(!templates.is_empty(), "{} holds no mail", path.display());
        let corpus = Self { templates };
        corpus.check_copies()?;
        Ok(corpus)
    }

    /// How many distinct corpus mails there are.
    pub fn len(&self) -> usize {
        self.templates.len()
    }

    /// Mean body size in bytes.
    pub fn mean_bytes(&self) -> f64 {
        let total: usize = self.templates.iter().map(|t| t.envelope.body.len()).sum();
        total as f64 / self.templates.len() as f64
    }

    /// The `i`-th mail of a run: corpus mail `i % len`, with a fresh
    /// envelope id and, from the second pass on, a Message-ID of its own.
    pub fn envelope(&self, i: u64) -> Envelope {
        let template = &self.templates[(i % self.templates.len() as u64) as usize];
        let pass = i / self.templates.len() as u64;
        let mut envelope = template.envelope.clone();
        envelope.id = EnvelopeId::new();
        if pass > 0 {
            let id = format!("bench{pass}.{}", template.message_id);
            envelope.body = template.with_message_id(&id);
            envelope.message_id_hash = Some(message_id_hash(&id));
        }
        envelope
    }

    /// A copy must parse to the Message-ID-Hash [`Corpus::envelope`] gives it.
    fn check_copies(&self) -> anyhow::Result<()> {
        let len = self.templates.len() as u64;
        for i in len..2 * len {
            let copy = self.envelope(i);
            let parsed = ArchivedMail::parse(copy.body.clone(), &MailLimits::default())?;
            ensure!(
                Some(parsed.message_id_hash()) == copy.message_id_hash.as_deref(),
                "the copy of corpus mail {} does not carry its new Message-ID",
                i - len
            );
        }
        Ok(())
    }
}

impl Template {
    fn new(envelope: Envelope, message_id: String) -> Self {
        let raw = &envelope.body[..];
        // The header block ends at the first empty line, in either style.
        let head_end = [find(raw, b"\n\n"), find(raw, b"\r\n\r\n")]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(raw.len());
        let newline = if find(&raw[..head_end], b"\r\n").is_some() {
            "\r\n"
        } else {
            "\n"
        };
        let header = message_id_header(&raw[..head_end]);
        Self {
            envelope,
            message_id,
            header,
            newline,
        }
    }

    /// The mail's bytes with its Message-ID header set to `<id>`.
    fn with_message_id(&self, id: &str) -> Bytes {
        let raw = &self.envelope.body[..];
        let line = format!("Message-ID: <{id}>{}", self.newline);
        let (before, after) = match &self.header {
            Some(range) => (&raw[..range.start], &raw[range.end..]),
            None => (&raw[..0], raw),
        };
        let mut out = Vec::with_capacity(raw.len() + line.len());
        out.extend_from_slice(before);
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(after);
        Bytes::from(out)
    }
}

/// The range of the `Message-ID:` header line and its folded continuation
/// lines, within a mail's header block.
fn message_id_header(head: &[u8]) -> Option<std::ops::Range<usize>> {
    let mut start = 0;
    while start < head.len() {
        let end = line_end(head, start);
        if head[start..end]
            .get(..11)
            .is_some_and(|name| name.eq_ignore_ascii_case(b"message-id:"))
        {
            let mut stop = end;
            while stop < head.len() && matches!(head[stop], b' ' | b'\t') {
                stop = line_end(head, stop);
            }
            return Some(start..stop);
        }
        start = end;
    }
    None
}

/// Index just past the line that starts at `start` (past its `\n`).
fn line_end(text: &[u8], start: usize) -> usize {
    text[start..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(text.len(), |i| start + i + 1)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
