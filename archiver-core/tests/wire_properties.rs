//! Properties of the wire decoders (`wire::from_bytes`, `wire::from_fields`):
//! they give back exactly what the encoder wrote, and refuse, with a typed
//! error, what it cannot have written.

use archiver_core::conformance::strategies::envelope;
use archiver_core::wire::{self, WireError, field};
use bytes::Bytes;
use proptest::prelude::*;

/// The fields the decoder requires, in the order the encoder writes them.
const REQUIRED: [&str; 6] = [
    field::FORMAT_VERSION,
    field::ENVELOPE_ID,
    field::KIND,
    field::LIST_ID,
    field::PUBLISHED_AT,
    field::CONTENT_TYPE,
];

fn decode_fields(
    fields: &[(&'static str, String)],
    body: Bytes,
) -> Result<archiver_core::Envelope, WireError> {
    wire::from_fields(fields.iter().map(|(k, v)| (*k, v.as_str())), body)
}

/// Found by `cargo fuzz run wire_from_bytes`: a `published-at` finer than
/// the millisecond was kept, so the envelope changed when re-encoded (the
/// hub and the journal re-encode what they receive).
#[test]
fn fuzz_regression_sub_millisecond_time_reads_stably() {
    let input = include_bytes!("fuzz-regressions/wire_from_bytes-sub-millisecond");
    let decoded = wire::from_bytes(Bytes::from_static(input)).unwrap();
    let again = wire::from_bytes(Bytes::from(wire::to_bytes(&decoded))).unwrap();
    assert_eq!(again, decoded);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// `published-at` in any RFC 3339 form (sub-millisecond digits, an
    /// offset) decodes to the instant to the millisecond, so the decoded
    /// envelope re-encodes to itself.
    #[test]
    fn any_rfc3339_time_reads_to_the_millisecond(
        envelope in envelope(),
        fraction in "(\\.[0-9]{1,12})?",
        offset in prop_oneof![Just("Z".to_owned()), "[+-](0[0-9]|1[0-3]):[0-5][0-9]"],
    ) {
        let mut fields = wire::to_fields(&envelope);
        let at = envelope.published_at.format("%Y-%m-%dT%H:%M:%S").to_string();
        fields[4].1 = format!("{at}{fraction}{offset}");
        let decoded = decode_fields(&fields, envelope.body.clone()).unwrap();
        let again = decode_fields(&wire::to_fields(&decoded), decoded.body.clone()).unwrap();
        prop_assert_eq!(again, decoded);
    }

    #[test]
    fn bytes_round_trip(envelope in envelope()) {
        let bytes = Bytes::from(wire::to_bytes(&envelope));
        prop_assert_eq!(wire::from_bytes(bytes).unwrap(), envelope);
    }

    #[test]
    fn fields_round_trip(envelope in envelope()) {
        let fields = wire::to_fields(&envelope);
        prop_assert_eq!(decode_fields(&fields, envelope.body.clone()).unwrap(), envelope);
    }

    /// Whatever the bytes, decoding returns (never panics), and what it
    /// accepts it reads again identically from its own encoding, with the
    /// body exactly the bytes after the first empty line.
    #[test]
    fn any_bytes_decode_to_an_error_or_a_stable_envelope(
        bytes in proptest::collection::vec(any::<u8>(), 0..600)
    ) {
        if let Ok(decoded) = wire::from_bytes(Bytes::from(bytes.clone())) {
            let end = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
            prop_assert_eq!(&decoded.body[..], &bytes[end + 2..]);
            let again = wire::from_bytes(Bytes::from(wire::to_bytes(&decoded))).unwrap();
            prop_assert_eq!(again, decoded);
        }
    }

    /// A written envelope with one required field left out is refused,
    /// naming that field.
    #[test]
    fn a_missing_field_is_named(envelope in envelope(), which in 0..REQUIRED.len()) {
        let fields: Vec<_> = wire::to_fields(&envelope)
            .into_iter()
            .filter(|(name, _)| *name != REQUIRED[which])
            .collect();
        let refused = decode_fields(&fields, envelope.body.clone()).unwrap_err();
        if which == 0 {
            prop_assert_eq!(refused, WireError::Missing(field::FORMAT_VERSION));
        } else {
            prop_assert_eq!(refused, WireError::Missing(REQUIRED[which]));
        }
    }

    /// A known field written twice, even with the same value, is refused.
    #[test]
    fn a_doubled_field_is_refused(envelope in envelope(), which in 0..REQUIRED.len()) {
        let mut fields = wire::to_fields(&envelope);
        let copy = fields[which].clone();
        fields.push(copy);
        let refused = decode_fields(&fields, envelope.body.clone()).unwrap_err();
        prop_assert!(
            matches!(&refused, WireError::Invalid { field, .. } if *field == REQUIRED[which]),
            "{:?}", refused
        );
    }

    /// Only a 32-character `A-Z2-7` Message-ID-Hash gets through.
    #[test]
    fn only_a_base32_sha1_hash_is_accepted(envelope in envelope(), hash in "\\PC{0,40}") {
        let mut envelope = envelope;
        envelope.message_id_hash = Some(hash.clone());
        let fields = wire::to_fields(&envelope);
        let decoded = decode_fields(&fields, envelope.body.clone());
        let valid = hash.len() == 32
            && hash.bytes().all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b));
        prop_assert_eq!(decoded.is_ok(), valid, "{:?} gave {:?}", hash, decoded);
        prop_assert_eq!(wire::is_message_id_hash(&hash), valid);
    }

    /// Any version whose major part is not 1 is refused as unsupported.
    #[test]
    fn other_major_versions_are_refused(envelope in envelope(), version in "[0-9a-z.]{0,6}") {
        prop_assume!(version.split('.').next() != Some("1"));
        let mut fields = wire::to_fields(&envelope);
        fields[0].1 = version.clone();
        prop_assert_eq!(
            decode_fields(&fields, envelope.body.clone()),
            Err(WireError::UnsupportedVersion(version))
        );
    }

    /// A field value holding a line break cannot have been written.
    #[test]
    fn line_breaks_in_values_are_refused(
        envelope in envelope(),
        which in 0..REQUIRED.len(),
        at in any::<prop::sample::Index>(),
        brk in prop_oneof![Just("\n"), Just("\r"), Just("\r\n")],
    ) {
        let mut fields = wire::to_fields(&envelope);
        let value = &mut fields[which].1;
        let mut cut = at.index(value.len() + 1);
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.insert_str(cut, brk);
        let decoded = decode_fields(&fields, envelope.body.clone());
        prop_assert!(matches!(decoded, Err(WireError::Invalid { .. })), "{:?}", decoded);
    }

    /// Cut anywhere before its empty line, an encoded envelope is a
    /// framing error, never a shorter envelope.
    #[test]
    fn cut_before_the_body_is_a_framing_error(envelope in envelope(), at in any::<prop::sample::Index>()) {
        let bytes = wire::to_bytes(&envelope);
        let separator = bytes.windows(2).position(|w| w == b"\n\n").unwrap();
        let cut = at.index(separator + 1);
        let decoded = wire::from_bytes(Bytes::copy_from_slice(&bytes[..cut]));
        prop_assert!(matches!(decoded, Err(WireError::Framing(_))), "{:?}", decoded);
    }
}
