//! What the bridge reads from a mail: its list's posting address, and the
//! copy it posts when the mail has no Message-ID.

use mq_archiver::{ArchivedMail, Bytes, MailLimits};

/// The posting address in the mail's first `List-Post` header
/// (`<mailto:dev@lists.example.org>`, RFC 2369), if any.
pub fn list_post_address(raw: &[u8]) -> Option<String> {
    let header = header_value(raw, "list-post")?;
    let start = header.find("mailto:")? + "mailto:".len();
    let rest = &header[start..];
    let end = rest.find(['>', '?', ',', ' ']).unwrap_or(rest.len());
    let address = rest[..end].trim();
    (address.contains('@') && !address.starts_with('@') && !address.ends_with('@'))
        .then(|| address.to_ascii_lowercase())
}

/// The mail to POST: the bytes as published, or, for a mail without a
/// Message-ID, a copy with `Message-ID: <generated>` in front. HyperKitty
/// answers 400 to a mail without one, while the library's permalink for it
/// already uses the generated id (`ArchivedMail`'s `message_id_hash`):
/// posting the copy keeps that permalink working and the mail archived,
/// and the id is a digest of the bytes, so a redelivery posts the same id
/// and HyperKitty de-duplicates it. Returns whether a header was added.
pub fn mail_to_post(raw: &Bytes) -> (Bytes, bool) {
    let Ok(mail) = ArchivedMail::parse(raw.clone(), &MailLimits::default()) else {
        return (raw.clone(), false);
    };
    if !mail.meta().message_id_generated {
        return (raw.clone(), false);
    }
    let eol: &[u8] = if raw.windows(2).any(|w| w == b"\r\n") {
        b"\r\n"
    } else {
        b"\n"
    };
    let mut copy = Vec::with_capacity(raw.len() + 80);
    copy.extend_from_slice(format!("Message-ID: <{}>", mail.meta().message_id).as_bytes());
    copy.extend_from_slice(eol);
    copy.extend_from_slice(raw);
    (Bytes::from(copy), true)
}

/// The unfolded value of the first header `name` (lower case) in the
/// header block.
fn header_value(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .peekable();
    while let Some(line) = lines.next() {
        if line.is_empty() {
            return None;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        if field.trim().eq_ignore_ascii_case(name) {
            let mut value = value.trim().to_owned();
            while let Some(next) = lines.peek() {
                if next.starts_with([' ', '\t']) {
                    value.push(' ');
                    value.push_str(next.trim());
                    lines.next();
                } else {
                    break;
                }
            }
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_list_post() {
        let raw = b"From: a@b\nList-Post:\n <mailto:Dev@Lists.Example.org>\nSubject: x\n\nList-Post: <mailto:no@x.org>\n";
        assert_eq!(
            list_post_address(raw).as_deref(),
            Some("dev@lists.example.org")
        );
        assert_eq!(
            list_post_address(b"From: a@b\n\nList-Post: <mailto:no@x.org>\n"),
            None
        );
        assert_eq!(list_post_address(b"List-Post: NO\n\n"), None);
    }

    #[test]
    fn adds_the_generated_message_id_only_when_missing() {
        let with = Bytes::from_static(b"Message-ID: <a@b>\r\nFrom: a@b\r\n\r\nhi\r\n");
        assert_eq!(mail_to_post(&with), (with.clone(), false));
        let without = Bytes::from_static(b"From: a@b\r\nSubject: s\r\n\r\nhi\r\n");
        let (copy, added) = mail_to_post(&without);
        assert!(added);
        let parsed = ArchivedMail::parse(copy.clone(), &MailLimits::default()).unwrap();
        let original = ArchivedMail::parse(without.clone(), &MailLimits::default()).unwrap();
        assert!(!parsed.meta().message_id_generated);
        assert_eq!(parsed.message_id_hash(), original.message_id_hash());
        assert!(copy.ends_with(&without));
    }
}
