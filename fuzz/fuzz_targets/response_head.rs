//! The upstream response-head parser and framing decision (`h1::head`):
//! never panics; a head it accepts is at most the bytes given and within the
//! size bound; its framing agrees with its headers (no body for HEAD, 1xx,
//! 204, 304; a connection delimited by its close is never reused; a
//! `Content-Length` that `Transfer-Encoding` overrides is dropped and the
//! connection not reused); every value it found is a valid header value (the
//! gateway passes fields as received without checking them again), and the
//! header map builds from them.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rolegate::h1::head::{parse_response, MAX_RESPONSE_HEAD};
use rolegate::h1::Framing;

fuzz_target!(|data: &[u8]| {
    let (flags, wire) = data.split_first().unwrap_or((&0, &[]));
    let (head_request, upgrade) = (flags & 1 == 1, flags & 2 == 2);
    let mut fields = Vec::new();
    let Ok(Some((len, found))) = parse_response(wire, head_request, upgrade, &mut fields) else { return };
    assert!(len <= wire.len() && len <= MAX_RESPONSE_HEAD);
    let Some(head) = found else { return }; // an interim response
    if head_request || matches!(head.status.as_u16(), 204 | 304) {
        assert_eq!(head.framing, Framing::Empty);
    }
    if head.status.as_u16() == 101 {
        assert!(upgrade && !head.keep_alive);
    }
    if head.framing == Framing::UntilClose || head.drop_length {
        assert!(!head.keep_alive);
    }
    for (_, value) in &fields {
        assert!(rolegate::h1::head::valid_value(&wire[value.clone()]));
    }
    let mut fields = fields;
    let head_bytes = Bytes::copy_from_slice(&wire[..len]);
    assert!(rolegate::h1::header_map(&head_bytes, &mut fields, 1, |_| false).is_ok());
});
