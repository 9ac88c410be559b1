//! `wire::from_bytes`, the journal's and the hub's envelope decoder: never
//! panics; what it accepts reads back the same from its own encoding, with
//! the body the bytes after the first empty line.
#![no_main]

use archiver_core::wire;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(envelope) = wire::from_bytes(Bytes::copy_from_slice(data)) {
        let end = data.windows(2).position(|w| w == b"\n\n").unwrap();
        assert_eq!(&envelope.body[..], &data[end + 2..]);
        let again = wire::from_bytes(Bytes::from(wire::to_bytes(&envelope))).unwrap();
        assert_eq!(again, envelope);
    }
});
