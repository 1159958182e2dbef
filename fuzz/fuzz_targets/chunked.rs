//! The chunked decoder (`h1::chunked`), fed the input in pieces whose sizes
//! the input chooses: never panics; the data and trailers it yields do not
//! depend on how the input was cut; what it accepts, encoded again by the
//! encoder, decodes to the same data and trailers.
#![no_main]

use bytes::BytesMut;
use http::HeaderMap;
use libfuzzer_sys::fuzz_target;
use rolegate::h1::chunked::{encode_end, encode_size};
use rolegate::h1::{ChunkedDecoder, Decoded};

/// Decodes `wire` fed `step` bytes at a time: (data, trailers, bytes left
/// after the body), or `None` if refused or incomplete.
fn decode(wire: &[u8], step: usize) -> Option<(Vec<u8>, HeaderMap, usize)> {
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut dec = ChunkedDecoder::default();
    let (mut out, mut trailers) = (Vec::new(), HeaderMap::new());
    loop {
        match dec.decode(&mut buf).ok()? {
            Decoded::Data(d) => out.extend_from_slice(&d),
            Decoded::Trailers(t) => trailers = t,
            Decoded::End => return Some((out, trailers, buf.len() + wire.len() - fed)),
            Decoded::NeedMore if fed < wire.len() => {
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            }
            Decoded::NeedMore => return None,
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (step, wire) = data.split_first().unwrap_or((&1, &[]));
    let step = usize::from(*step).max(1);
    let whole = decode(wire, wire.len().max(1));
    let pieces = decode(wire, step);
    assert_eq!(whole, pieces, "the result depends on how the input was cut");
    if let Some((body, trailers, _)) = whole {
        let mut again = Vec::new();
        if !body.is_empty() {
            encode_size(&mut again, body.len());
            again.extend_from_slice(&body);
            again.extend_from_slice(b"\r\n");
        }
        encode_end(&mut again, Some(&trailers));
        let (body2, trailers2, left) = decode(&again, 7).expect("the encoder's output decodes");
        assert_eq!((body2, trailers2, left), (body, trailers, 0));
    }
});
