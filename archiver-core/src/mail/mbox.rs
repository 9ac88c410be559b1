//! Reading an mboxrd file for import, byte-exact.
//!
//! mail-parser's reader splits on `From ` lines and removes one `>` from
//! `>From `, `>>From `, ... lines (mboxrd un-quoting). It keeps the blank line
//! the mbox writer put after each message; we remove it, so each message comes
//! back exactly as it was before it went into the mbox.

use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::Path;

use bytes::Bytes;
use mail_parser::mailbox::mbox::MessageIterator;

/// Iterator over the raw messages of an mboxrd stream.
pub struct MboxReader<R> {
    messages: MessageIterator<R>,
}

impl<R: BufRead> MboxReader<R> {
    /// Reads messages from any buffered reader.
    pub fn new(reader: R) -> Self {
        Self {
            messages: MessageIterator::new(reader),
        }
    }
}

impl MboxReader<BufReader<File>> {
    /// Opens an mbox file.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self::new(BufReader::with_capacity(
            1 << 16,
            File::open(path)?,
        )))
    }
}

impl<R: BufRead> Iterator for MboxReader<R> {
    type Item = io::Result<Bytes>;

    fn next(&mut self) -> Option<Self::Item> {
        let message = match self.messages.next()? {
            Ok(message) => message,
            Err(e) => return Some(Err(e)),
        };
        let mut contents = message.unwrap_contents();
        strip_separator_line(&mut contents);
        Some(Ok(Bytes::from(contents)))
    }
}

/// Removes the empty line that separates a message from the next `From `
/// line: `\n` in an LF mbox (also after a CRLF message), `\r\n` in a CRLF one.
fn strip_separator_line(contents: &mut Vec<u8>) {
    if contents.ends_with(b"\n\n") {
        contents.pop();
    } else if contents.ends_with(b"\r\n\r\n") {
        contents.truncate(contents.len() - 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(mbox: &[u8]) -> Vec<Vec<u8>> {
        MboxReader::new(mbox).map(|m| m.unwrap().to_vec()).collect()
    }

    #[test]
    fn unquotes_from_lines_and_drops_separator() {
        let mbox = b"From a@b Thu Jan  1 00:00:00 1970\nSubject: one\n\n>From here\n>>From there\n> From not quoted\n\nFrom a@b Thu Jan  1 00:00:00 1970\nSubject: two\n\nlast line\n\n";
        let messages = read(mbox);
        assert_eq!(
            messages,
            vec![
                b"Subject: one\n\nFrom here\n>From there\n> From not quoted\n".to_vec(),
                b"Subject: two\n\nlast line\n".to_vec(),
            ]
        );
    }

    #[test]
    fn keeps_crlf_messages_intact() {
        let mbox = b"From x Thu Jan  1 00:00:00 1970\nSubject: crlf\r\n\r\nbody\r\n\n";
        assert_eq!(read(mbox), vec![b"Subject: crlf\r\n\r\nbody\r\n".to_vec()]);
    }
}
