//! The hub protocol's decoders on frames from any peer: an envelope frame
//! (the last), decimal tags and the hello (the first). The input is split into frames at each
//! `0xff 0x00` pair (bytes an encoder never writes in a field), so the
//! fuzzer controls the frame count and contents.
#![no_main]

use archiver_core::wire;
use backend_zeromq::protocol::{self, Hello};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frames = Vec::new();
    let mut rest = data;
    while let Some(at) = rest.windows(2).position(|w| w == [0xff, 0x00]) {
        frames.push(rest[..at].to_vec());
        rest = &rest[at + 2..];
    }
    frames.push(rest.to_vec());

    if let Some(first) = frames.first() {
        if let Ok(seq) = protocol::number::<u64>(first, "a tag") {
            assert_eq!(
                protocol::number::<u64>(&protocol::tag(seq), "a tag"),
                Ok(seq)
            );
        }
        if let Ok(hello) = serde_json::from_slice::<Hello>(first) {
            let _ = hello.validate();
        }
    }
    // An envelope frame (DELIVER's last, the tail's second).
    let last = frames.pop().unwrap_or_default();
    if let Ok(envelope) = protocol::parse_envelope(last.clone()) {
        assert!(last.ends_with(&envelope.body));
        let again = protocol::parse_envelope(wire::to_bytes(&envelope)).unwrap();
        assert_eq!(again, envelope);
    }
});
