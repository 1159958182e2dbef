//! Chunked transfer coding (RFC 9112 §7.1), both ways: an incremental decoder
//! over a read buffer that yields data and then the trailers, and the
//! encoder's pieces. The decoder is strict (see the module docs of `h1`).

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

/// The longest chunk-size line (size and extensions) accepted.
pub const MAX_CHUNK_LINE: usize = 4096;
/// The most trailer bytes accepted.
pub const MAX_TRAILERS: usize = 16 * 1024;
/// The most trailer fields accepted.
pub const MAX_TRAILER_FIELDS: usize = 100;

/// Where a decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: the trailer section, up to its empty line.
    Trailers,
    /// The body has ended (the trailer section has been read).
    Done,
}

/// An incremental decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct ChunkedDecoder {
    state: State,
}

impl Default for ChunkedDecoder {
    fn default() -> Self {
        ChunkedDecoder { state: State::Size }
    }
}

/// What one step of decoding found.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A piece of chunk data.
    Data(Bytes),
    /// The trailer fields (only when there are some), just before the end.
    Trailers(HeaderMap),
    /// `buf` holds no complete next element: read more.
    NeedMore,
    /// The body has ended; the bytes after it are left in `buf`.
    End,
}

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkError(pub &'static str);

impl std::fmt::Display for ChunkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for ChunkError {}

impl ChunkedDecoder {
    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Decodes the next element from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        loop {
            match self.state {
                State::Size => {
                    let Some(eol) = buf.iter().take(MAX_CHUNK_LINE + 2).position(|b| *b == b'\n') else {
                        return match buf.len() > MAX_CHUNK_LINE {
                            true => Err(ChunkError("a chunk-size line is too long")),
                            false => Ok(Decoded::NeedMore),
                        };
                    };
                    let line =
                        buf[..eol].strip_suffix(b"\r").ok_or(ChunkError("a chunk-size line does not end with CRLF"))?;
                    let size = chunk_size_line(line)?;
                    buf.advance(eol + 1);
                    self.state = if size == 0 { State::Trailers } else { State::Data(size) };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::NeedMore);
                    }
                    let take = left.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    self.state = if left == take { State::DataEnd } else { State::Data(left - take) };
                    return Ok(Decoded::Data(data));
                }
                State::DataEnd => match buf.get(..2) {
                    None if buf.first().is_none_or(|b| *b == b'\r') => return Ok(Decoded::NeedMore),
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = State::Size;
                    }
                    _ => return Err(ChunkError("a chunk does not end with CRLF")),
                },
                State::Trailers => return self.trailers(buf),
                State::Done => return Ok(Decoded::End),
            }
        }
    }

    /// The trailer section: field lines, each ending in CRLF, then CRLF.
    fn trailers(&mut self, buf: &mut BytesMut) -> Result<Decoded, ChunkError> {
        if buf.starts_with(b"\r\n") {
            buf.advance(2);
            self.state = State::Done;
            return Ok(Decoded::End);
        }
        let mut slots = [httparse::EMPTY_HEADER; MAX_TRAILER_FIELDS];
        let (len, fields) = match httparse::parse_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(found)) => found,
            Ok(httparse::Status::Partial) if buf.len() > MAX_TRAILERS => {
                return Err(ChunkError("the trailers are too long"))
            }
            Ok(httparse::Status::Partial) => return Ok(Decoded::NeedMore),
            Err(httparse::Error::TooManyHeaders) => return Err(ChunkError("too many trailer fields")),
            Err(_) => return Err(ChunkError("a trailer line is not a valid header field")),
        };
        if len > MAX_TRAILERS {
            return Err(ChunkError("the trailers are too long"));
        }
        // httparse takes a bare LF as a line end; RFC 9112 §2.2 lets a recipient, and we do not.
        if buf[..len].iter().enumerate().any(|(i, b)| *b == b'\n' && (i == 0 || buf[i - 1] != b'\r')) {
            return Err(ChunkError("a trailer line does not end with CRLF"));
        }
        let mut trailers = HeaderMap::with_capacity(fields.len());
        for f in fields.iter() {
            let name =
                HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| ChunkError("a trailer name is not valid"))?;
            let value = HeaderValue::from_bytes(f.value).map_err(|_| ChunkError("a trailer value is not valid"))?;
            trailers.append(name, value);
        }
        buf.advance(len);
        self.state = State::Done;
        Ok(if trailers.is_empty() { Decoded::End } else { Decoded::Trailers(trailers) })
    }
}

fn hex(b: u8) -> Option<u64> {
    (b as char).to_digit(16).map(u64::from)
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn skip_bws(line: &[u8], mut i: usize) -> usize {
    while matches!(line.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// A token from `i`: the index after it, if there is at least one tchar.
fn token(line: &[u8], i: usize) -> Option<usize> {
    let end = i + line[i..].iter().take_while(|b| is_tchar(**b)).count();
    (end > i).then_some(end)
}

/// A quoted-string from `i` (which holds the opening quote): the index after it.
fn quoted(line: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    loop {
        match *line.get(i)? {
            b'"' => return Some(i + 1),
            b'\\' => match *line.get(i + 1)? {
                b'\t' | b' ' | 0x21..=0x7e | 0x80..=0xff => i += 2,
                _ => return None,
            },
            b'\t' | b' ' | 0x21 | 0x23..=0x5b | 0x5d..=0x7e | 0x80..=0xff => i += 1,
            _ => return None,
        }
    }
}

/// The size of a chunk-size line (without its CRLF), strictly:
/// `1*HEXDIG *( BWS ";" BWS token [ BWS "=" BWS ( token / quoted-string ) ] )`.
pub fn chunk_size_line(line: &[u8]) -> Result<u64, ChunkError> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return Err(ChunkError("a chunk size is not valid"));
    }
    let mut size: u64 = 0;
    for &d in &line[..digits] {
        size = size
            .checked_mul(16)
            .and_then(|s| s.checked_add(hex(d).unwrap_or(0)))
            .ok_or(ChunkError("a chunk size does not fit in 64 bits"))?;
    }
    let bad = ChunkError("a chunk extension is not valid");
    let mut i = digits;
    while i < line.len() {
        let at = skip_bws(line, i);
        if line.get(at) != Some(&b';') {
            return Err(if at == line.len() { ChunkError("whitespace after a chunk size") } else { bad });
        }
        i = token(line, skip_bws(line, at + 1)).ok_or(bad)?;
        let eq = skip_bws(line, i);
        if line.get(eq) == Some(&b'=') {
            let v = skip_bws(line, eq + 1);
            i = match line.get(v) {
                Some(b'"') => quoted(line, v).ok_or(bad)?,
                Some(_) => token(line, v).ok_or(bad)?,
                None => return Err(bad),
            };
        }
    }
    Ok(size)
}

/// Appends the chunk-size line of a chunk of `len` bytes.
pub fn encode_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut n = len;
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[n & 15];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
    out.extend_from_slice(b"\r\n");
}

/// Appends the last chunk and the trailer section (empty when `trailers` is).
pub fn encode_end(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes a whole chunked body held in `wire`, fed `step` bytes at a time:
    /// the data, the trailers, and how many bytes after the body are left;
    /// `None` if it is refused or incomplete.
    pub(crate) fn decode_all(wire: &[u8], step: usize) -> Option<(Vec<u8>, HeaderMap, usize)> {
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

    fn chunked(body: &[u8], sizes: &[usize], trailers: &str) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:X};ext=\"v\"\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        wire.extend_from_slice(format!("0\r\n{trailers}\r\n").as_bytes());
        wire
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any chunking of any body, read in any piece size, decodes to the
        /// body and its trailers, and nothing after the body is consumed.
        #[test]
        fn chunked_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            step in 1usize..64,
            with_trailers in any::<bool>(),
        ) {
            let trailers = if with_trailers { "grpc-status: 0\r\nx-t: a b\r\n" } else { "" };
            let mut wire = chunked(&body, &sizes, trailers);
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let (decoded, got, left) = decode_all(&wire, step).expect("valid chunked body");
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(got.len(), if with_trailers { 2 } else { 0 });
            prop_assert_eq!(left, b"HTTP/1.1 200 OK\r\n".len());
        }

        /// What the encoder writes, the decoder reads back.
        #[test]
        fn encoder_and_decoder_agree(pieces in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..300), 0..6)) {
            let mut wire = Vec::new();
            for p in &pieces {
                encode_size(&mut wire, p.len());
                wire.extend_from_slice(p);
                wire.extend_from_slice(b"\r\n");
            }
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            encode_end(&mut wire, Some(&t));
            let (decoded, trailers, left) = decode_all(&wire, 7).expect("valid");
            prop_assert_eq!(decoded, pieces.concat());
            prop_assert_eq!(trailers, t);
            prop_assert_eq!(left, 0);
        }

        /// Arbitrary bytes never panic the decoder.
        #[test]
        fn arbitrary_bytes_do_not_panic(wire in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..32) {
            let _ = decode_all(&wire, step);
        }
    }

    #[test]
    fn size_lines() {
        for (line, size) in [
            ("5", 5),
            ("0", 0),
            ("000000000000000000000A", 10),
            ("ffffffffffffffff", u64::MAX),
            ("5;name", 5),
            ("5;name=value", 5),
            ("5 ; name = value", 5),
            ("5;a=\"q \\\" t\";b;c=d", 5),
            ("5\t;x", 5),
        ] {
            assert_eq!(chunk_size_line(line.as_bytes()), Ok(size), "{line:?}");
        }
        for line in [
            "",
            "x",
            "5 ",
            "5\t",
            "5\x0c",
            "5;",
            "5;=v",
            "5;a=",
            "5;a=\"open",
            "5;a b",
            "5\rx",
            "5;a\rb",
            "-5",
            "+5",
            "0x5",
            "10000000000000000",
            "5;a=\x01",
            "5;\u{e9}",
        ] {
            assert!(chunk_size_line(line.as_bytes()).is_err(), "{line:?}");
        }
    }

    #[test]
    fn invalid_bodies() {
        for wire in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhelloXX0\r\n\r\n",
            b"\r\n",
            b"5\r\nhello\r\n0\r\nx: a\nb: c\r\n\r\n",
            b"5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5 \r\nhello\r\n0\r\n\r\n",
            b"5\x0c\r\nhello\r\n0\r\n\r\n",
            b"5;a\rb\r\nhello\r\n0\r\n\r\n",
        ] {
            assert_eq!(decode_all(wire, 3), None, "{:?}", String::from_utf8_lossy(wire));
        }
        let long = format!("1{}\r\n", "0".repeat(20));
        assert_eq!(decode_all(long.as_bytes(), 7), None, "a size beyond 64 bits");
    }
}
