//! Mail parsing, on whatever a list server hands over: never panics, keeps
//! the bytes exactly, and gives an id and a hash an archive can use.
#![no_main]

use archiver_core::{ArchivedMail, MailError, MailLimits, wire};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match ArchivedMail::parse(Bytes::copy_from_slice(data), &MailLimits::default()) {
        Ok(mail) => {
            assert_eq!(&mail.raw()[..], data);
            let id = &mail.meta().message_id;
            assert!(!id.is_empty() && !id.chars().any(char::is_whitespace));
            assert!(id.chars().count() <= 254);
            assert!(wire::is_message_id_hash(mail.message_id_hash()));
        }
        Err(MailError::Empty) => assert!(data.is_empty()),
        Err(MailError::NoHeaders) => assert!(!data.is_empty()),
        Err(other) => panic!("unexpected {other:?}"),
    }
});
