//! Properties of the hub protocol's decoders, which read frames from any
//! peer that can reach the socket: envelope frames, decimal tags and the
//! hello. Each round-trips what the encoder wrote and refuses, with a
//! reason and without panicking, what it cannot have written.

use archiver_core::conformance::strategies::{envelope, list_id};
use archiver_core::wire::WireError;
use archiver_core::{Kind, Selection, Subscription};
use backend_zeromq::protocol::{self, Hello};
use proptest::prelude::*;

fn frames() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let frame = prop_oneof![
        Just(b"format-version".to_vec()),
        Just(b"1".to_vec()),
        Just(b"envelope-id".to_vec()),
        Just(b"kind".to_vec()),
        Just(b"mail".to_vec()),
        Just(b"message-id-hash".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(frame, 0..20)
}

/// Found by `cargo fuzz run hub_frames`: a `published-at` finer than the
/// millisecond was kept, so the envelope changed when the hub re-encoded it.
#[test]
fn fuzz_regression_sub_millisecond_time_reads_stably() {
    let input = include_bytes!("fuzz-regressions/hub_frames-sub-millisecond");
    let frames: Vec<Vec<u8>> = split_frames(input);
    let decoded = protocol::parse_envelope(frames).unwrap();
    let again = protocol::parse_envelope(protocol::envelope_frames(&decoded)).unwrap();
    assert_eq!(again, decoded);
}

/// The fuzz target's framing: frames separated by `0xff 0x00`.
fn split_frames(mut data: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    while let Some(at) = data.windows(2).position(|w| w == [0xff, 0x00]) {
        frames.push(data[..at].to_vec());
        data = &data[at + 2..];
    }
    frames.push(data.to_vec());
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn envelope_frames_round_trip(envelope in envelope()) {
        let frames = protocol::envelope_frames(&envelope);
        prop_assert_eq!(frames.last().unwrap(), &envelope.body.to_vec());
        prop_assert_eq!(protocol::parse_envelope(frames).unwrap(), envelope);
    }

    /// Any frames decode to an error or to an envelope whose body is the
    /// last frame untouched and which reads back the same from its own
    /// frames.
    #[test]
    fn any_frames_decode_to_an_error_or_a_stable_envelope(frames in frames()) {
        let body = frames.last().cloned();
        if let Ok(decoded) = protocol::parse_envelope(frames) {
            prop_assert_eq!(Some(decoded.body.to_vec()), body);
            let again = protocol::parse_envelope(protocol::envelope_frames(&decoded)).unwrap();
            prop_assert_eq!(again, decoded);
        }
    }

    /// A field frame without its partner is a framing error, wherever the
    /// frame went missing.
    #[test]
    fn an_unpaired_field_frame_is_refused(envelope in envelope(), at in any::<prop::sample::Index>()) {
        let mut frames = protocol::envelope_frames(&envelope);
        frames.remove(at.index(frames.len() - 1));
        let refused = protocol::parse_envelope(frames);
        prop_assert!(matches!(refused, Err(WireError::Framing(_))), "{:?}", refused);
    }

    /// A field frame that is not UTF-8 is refused, the envelope not guessed.
    #[test]
    fn a_field_frame_that_is_not_utf8_is_refused(
        envelope in envelope(),
        at in any::<prop::sample::Index>(),
        junk in 0x80u8..=0xff,
    ) {
        let mut frames = protocol::envelope_frames(&envelope);
        let fields = frames.len() - 1;
        frames[at.index(fields)].insert(0, junk);
        prop_assume!(std::str::from_utf8(&frames[at.index(fields)]).is_err());
        prop_assert!(protocol::parse_envelope(frames).is_err());
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
