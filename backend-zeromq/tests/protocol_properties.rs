//! Properties of the hub protocol's decoders, which read frames from any
//! peer that can reach the socket: envelope frames, decimal tags and the
//! hello. Each round-trips what the encoder wrote and refuses, with a
//! reason and without panicking, what it cannot have written. (An envelope
//! frame is `wire::to_bytes`' form, whose decoder's properties on any
//! bytes are in `archiver-core/tests/wire_properties.rs`.)

use archiver_core::conformance::strategies::{envelope, list_id};
use archiver_core::wire::{self, WireError};
use archiver_core::{Kind, Selection, Subscription};
use backend_zeromq::protocol::{self, Hello};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// An envelope frame is the one-byte-string form: what the hub sends
    /// reads back as the envelope, its body the bytes after the fields.
    #[test]
    fn envelope_frames_round_trip(envelope in envelope()) {
        let frame = wire::to_bytes(&envelope);
        prop_assert!(frame.ends_with(&envelope.body));
        prop_assert_eq!(protocol::parse_envelope(frame).unwrap(), envelope);
    }

    /// A frame cut anywhere inside its fields is refused, the envelope not
    /// guessed.
    #[test]
    fn a_frame_cut_in_its_fields_is_refused(envelope in envelope(), at in any::<prop::sample::Index>()) {
        let frame = wire::to_bytes(&envelope);
        let fields = frame.len() - envelope.body.len() - 1;
        let refused = protocol::parse_envelope(frame[..at.index(fields)].to_vec());
        prop_assert!(matches!(refused, Err(WireError::Framing(_))), "{:?}", refused);
    }

    #[test]
    fn tags_round_trip(seq in any::<u64>()) {
        prop_assert_eq!(protocol::number::<u64>(&protocol::tag(seq), "a tag"), Ok(seq));
    }

    /// A tag is decimal digits only; anything else is refused.
    #[test]
    fn a_tag_that_is_not_decimal_is_refused(frame in proptest::collection::vec(any::<u8>(), 0..24)) {
        let digits = frame.strip_prefix(b"+").unwrap_or(&frame);
        let decimal = !digits.is_empty() && digits.iter().all(u8::is_ascii_digit);
        let parsed = protocol::number::<u64>(&frame, "a tag");
        if !decimal {
            prop_assert!(parsed.is_err(), "{:?} parsed as {:?}", frame, parsed);
        }
    }

    /// The hello for a subscription survives JSON and validation intact.
    #[test]
    fn hellos_round_trip(list in list_id(), mails_only in any::<bool>(), prefetch in 1u16.., max_attempts in 1u32..) {
        let selection = Selection::all().list(list.as_str().parse().unwrap());
        let selection = if mails_only { selection.only(Kind::Mail) } else { selection };
        let mut subscription = Subscription::new("web".parse().unwrap()).select(selection);
        subscription.prefetch = prefetch;
        subscription.max_attempts = max_attempts;
        let json = serde_json::to_vec(&Hello::for_subscription(&subscription)).unwrap();
        let valid = serde_json::from_slice::<Hello>(&json).unwrap().validate().unwrap();
        prop_assert_eq!(valid.selection, subscription.selection);
        prop_assert_eq!(valid.name, subscription.name);
        prop_assert_eq!((valid.prefetch, valid.max_attempts), (prefetch, max_attempts));
    }

    /// Arbitrary bytes as a hello are refused or validated, never a panic.
    #[test]
    fn any_hello_bytes_are_refused_or_valid(json in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(hello) = serde_json::from_slice::<Hello>(&json) {
            let _ = hello.validate();
        }
    }
}
