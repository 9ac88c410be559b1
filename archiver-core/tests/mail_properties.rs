//! Properties of mail parsing, the decoder of what list servers hand over:
//! it never panics, keeps the bytes exactly, and always yields an id and a
//! Message-ID-Hash an archive can use.

use archiver_core::mail::message_id::{archive_message_id, message_id_hash};
use archiver_core::wire;
use archiver_core::{ArchivedMail, MailError, MailLimits};
use bytes::Bytes;
use proptest::prelude::*;

/// Header-like lines: names, colons, folding and stray bytes, so the parser
/// is pushed through its header paths rather than given noise only.
fn header_block() -> impl Strategy<Value = Vec<u8>> {
    let line = prop_oneof![
        "(Message-ID|Message-Id|From|Subject|Date|References|In-Reply-To|List-Id|X-No-Archive|X-Archive): [^\r\n]{0,60}",
        "[ \t][^\r\n]{0,40}",
        "[A-Za-z-]{1,12}:[^\r\n]{0,40}",
        "[^\r\n]{0,20}",
    ];
    (
        proptest::collection::vec((line, prop_oneof![Just("\n"), Just("\r\n")]), 0..12),
        proptest::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(lines, tail)| {
            let mut raw = Vec::new();
            for (line, end) in lines {
                raw.extend_from_slice(line.as_bytes());
                raw.extend_from_slice(end.as_bytes());
            }
            raw.extend_from_slice(b"\n");
            raw.extend(tail);
            raw
        })
}

fn check(raw: Vec<u8>) -> Result<(), TestCaseError> {
    match ArchivedMail::parse(Bytes::from(raw.clone()), &MailLimits::default()) {
        Ok(mail) => {
            prop_assert_eq!(&mail.raw()[..], &raw[..]);
            let meta = mail.meta();
            prop_assert!(!meta.message_id.is_empty());
            prop_assert!(!meta.message_id.chars().any(char::is_whitespace));
            prop_assert!(meta.message_id.chars().count() <= 254);
            prop_assert!(wire::is_message_id_hash(mail.message_id_hash()));
            if meta.message_id_generated {
                prop_assert!(meta.message_id.ends_with("@archiver.invalid"));
            }
        }
        Err(MailError::Empty) => prop_assert!(raw.is_empty()),
        Err(MailError::NoHeaders) => prop_assert!(!raw.is_empty()),
        Err(other) => prop_assert!(false, "unexpected {:?}", other),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_bytes_parse_or_are_refused_with_a_reason(
        raw in proptest::collection::vec(any::<u8>(), 0..400)
    ) {
        check(raw)?;
    }

    #[test]
    fn header_like_bytes_keep_their_bytes_and_get_an_id(raw in header_block()) {
        check(raw)?;
    }

    /// The Message-ID read from a mail is HyperKitty's id of the header as
    /// written, folding included, and its hash is the hash of that value.
    #[test]
    fn the_header_id_is_hyperkittys(
        id in "[!-~]{1,300}",
        fold in prop_oneof![Just(" "), Just("\r\n "), Just("\n\t"), Just("\r\n  ")],
        body in proptest::collection::vec(any::<u8>(), 0..100),
    ) {
        let value = format!("{fold}<{id}>");
        let mut raw = format!("Subject: s\r\nMessage-ID:{value}\r\n\r\n").into_bytes();
        raw.extend(body);
        let mail = ArchivedMail::parse(Bytes::from(raw), &MailLimits::default()).unwrap();
        let expected = archive_message_id(&value);
        prop_assume!(!expected.is_empty());
        prop_assert_eq!(&mail.meta().message_id, &expected);
        prop_assert!(!mail.meta().message_id_generated);
        prop_assert_eq!(mail.message_id_hash(), message_id_hash(&value));
    }

    /// Any header value gives an id with no whitespace, of at most 254
    /// characters, and a hash the wire accepts.
    #[test]
    fn any_header_value_gives_a_usable_id(value in "\\PC{0,300}|[\\s<>\"\\\\a-z]{0,20}") {
        let id = archive_message_id(&value);
        prop_assert!(!id.chars().any(char::is_whitespace));
        prop_assert!(id.chars().count() <= 254);
        prop_assert!(wire::is_message_id_hash(&message_id_hash(&value)));
    }
}
