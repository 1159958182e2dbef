//! Header fields of a parsed head: where their values lie in the bytes read
//! (so that a header map can take them without a copy once the head is split
//! off the read buffer), and the value rules shared by both directions.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, StatusCode};

use super::framing::{self, Framing, FramingHeaders};

/// The largest response head accepted (status line and headers).
pub const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// The most response header lines accepted.
pub const MAX_RESPONSE_HEADERS: usize = 100;

/// A header of a parsed head: its name, and where its value lies in the head
/// (see [`place`]).
pub type Field = (HeaderName, std::ops::Range<usize>);

/// Where `part`, a slice of `buf` (as `httparse` returns them), lies in it:
/// so that it can be taken, without a copy, from the head once that is split
/// off the read buffer.
pub fn place(buf: &[u8], part: &[u8]) -> std::ops::Range<usize> {
    let start = part.as_ptr() as usize - buf.as_ptr() as usize;
    start..start + part.len()
}

/// The header map of a head split off its read buffer: each field's value is
/// a slice of `head` (no copy), in order, but for the fields `leave_out`
/// names; room is left for `extra` more headers. `fields` is emptied.
pub fn header_map(
    head: &Bytes,
    fields: &mut Vec<Field>,
    extra: usize,
    leave_out: impl Fn(&HeaderName) -> bool,
) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let mut headers = HeaderMap::with_capacity(fields.len() + extra);
    for (name, value) in fields.drain(..) {
        if leave_out(&name) {
            continue;
        }
        headers.append(name, HeaderValue::from_maybe_shared(head.slice(value))?);
    }
    Ok(headers)
}

/// Whether `value` is a valid [`HeaderValue`] (visible ASCII, spaces, tabs
/// and obs-text): what [`header_map`] checks. Every value the parsers here
/// take is one (fields kept without a map rely on it: asserted in debug
/// builds, by property tests and by the `response_head` fuzz target).
pub fn valid_value(value: &[u8]) -> bool {
    value.iter().all(|&b| (b >= 32 && b != 127) || b == b'\t')
}

/// A head's fields as they were received, without a header map: the head's
/// bytes and each field's name and value place in them, in order.
#[derive(Debug)]
pub struct Fields {
    head: Bytes,
    list: Vec<Field>,
}

impl Fields {
    pub fn new(head: Bytes, list: Vec<Field>) -> Fields {
        Fields { head, list }
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &[u8])> + Clone {
        self.list.iter().map(|(name, value)| (name, &self.head[value.clone()]))
    }
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces inside;
/// spaces around are allowed).
pub fn content_length(value: &[u8]) -> Option<u64> {
    let s = value.trim_ascii();
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse().ok()
}

/// Whether a comma-separated header value lists `token` (case-insensitively).
pub fn lists_token(value: &[u8], token: &[u8]) -> bool {
    value.split(|b| *b == b',').any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// The size of a request head as it is forwarded: the request line and each
/// header line, with one space after each colon (what `max_header_bytes`
/// bounds, the same whichever server read the request).
pub fn request_head_size(method: &http::Method, target_len: usize, headers: &HeaderMap) -> usize {
    let lines: usize = headers.iter().map(|(n, v)| n.as_str().len() + 2 + v.len() + 2).sum();
    method.as_str().len() + 1 + target_len + b" HTTP/1.1\r\n".len() + lines + 2
}

/// Header slots kept on the stack while a request head is parsed; more take the heap.
const STACK_HEADERS: usize = 256;

/// A request head as parsed, but for the header values: those are in the
/// parse's `fields` (see [`header_map`]).
#[derive(Debug)]
pub struct RequestHead {
    /// The head's length in the buffer.
    pub len: usize,
    pub method: http::Method,
    /// Where the request target lies in the buffer.
    pub target: std::ops::Range<usize>,
    /// HTTP/1.1 (else 1.0).
    pub http11: bool,
    /// [`request_head_size`] of this head: what `max_header_bytes` bounds.
    pub size: usize,
}

/// What one parse of a request buffer found.
#[derive(Debug)]
pub enum RequestParse {
    Complete(RequestHead),
    /// Not a whole head yet.
    Partial,
    /// Not a head this parser takes (malformed, too many fields, a name `http` refuses).
    Invalid,
}

/// One request head from the start of `buf` (httparse, as hyper's server
/// parses them), with at most `max_headers` fields; their names and value
/// places go to `fields`.
pub fn parse_request(buf: &[u8], max_headers: usize, fields: &mut Vec<Field>) -> RequestParse {
    fields.clear();
    // Header slots on the stack, not initialized (httparse fills them).
    let mut stack = [const { std::mem::MaybeUninit::<httparse::Header<'_>>::uninit() }; STACK_HEADERS];
    let mut heap = Vec::new();
    let slots = if max_headers <= STACK_HEADERS {
        &mut stack[..max_headers]
    } else {
        heap.resize_with(max_headers, std::mem::MaybeUninit::uninit);
        &mut heap[..]
    };
    let mut parsed = httparse::Request::new(&mut []);
    let len = match parsed.parse_with_uninit_headers(buf, slots) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return RequestParse::Partial,
        Err(_) => return RequestParse::Invalid,
    };
    let (Some(method), Some(target), Some(version)) = (parsed.method, parsed.path, parsed.version) else {
        return RequestParse::Invalid;
    };
    let Ok(method) = http::Method::from_bytes(method.as_bytes()) else {
        return RequestParse::Invalid;
    };
    let mut size = method.as_str().len() + 1 + target.len() + b" HTTP/1.1\r\n".len() + 2;
    for h in parsed.headers.iter() {
        let Ok(name) = HeaderName::from_bytes(h.name.as_bytes()) else {
            return RequestParse::Invalid;
        };
        size += h.name.len() + 2 + h.value.len() + 2;
        fields.push((name, place(buf, h.value)));
    }
    RequestParse::Complete(RequestHead {
        len,
        method,
        target: place(buf, target.as_bytes()),
        http11: version == 1,
        size,
    })
}

/// A final response head as parsed, but for the header values: those are in
/// the parse's `fields`, to be taken from the head's bytes by [`header_map`].
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    /// The connection may serve another request after this response's body.
    pub keep_alive: bool,
    pub framing: Framing,
    /// `Content-Length` is not passed on (`Transfer-Encoding` overrides it).
    pub drop_length: bool,
    /// `Content-Length` came as a list or in several fields (`5, 5`): it is
    /// passed on as this one value, the only form a sender may use (RFC 9110 §8.6).
    pub single_length: Option<u64>,
}

/// What one parse of a buffer found: `None` when the head is incomplete;
/// else its length and the final head, or `None` for an interim (1xx) response.
pub type Parsed = Option<(usize, Option<ResponseHead>)>;

/// One response head from the start of `buf` (httparse, as hyper parses
/// them); its headers' names and value places go to `fields`. `upgrade`: the
/// request asked to upgrade, so a `101` is its final answer; to any other
/// request a `101` is refused. Errors say why the response is refused.
pub fn parse_response(
    buf: &[u8],
    head_request: bool,
    upgrade: bool,
    fields: &mut Vec<Field>,
) -> Result<Parsed, &'static str> {
    fields.clear();
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_RESPONSE_HEAD => return Err("the response head is too large"),
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err("the response has too many headers"),
        Err(_) => return Err("the response head is not valid HTTP/1.1"),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| "the response status is not valid")?;
    if status == StatusCode::SWITCHING_PROTOCOLS && !upgrade {
        return Err("a 101 Switching Protocols to a request that asked no upgrade");
    }
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some((len, None)));
    }
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut found = FramingHeaders::default();
    let mut length_fields = 0;
    let mut length_plain = true;
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| "a response header name is not valid")?;
        if name == CONTENT_LENGTH {
            found.content_length(h.value)?;
            length_fields += 1;
            length_plain &= h.value.iter().all(u8::is_ascii_digit);
        } else if name == TRANSFER_ENCODING {
            found.transfer_encoding(h.value);
        } else if name == CONNECTION && lists_token(h.value, b"close") {
            keep_alive = false;
        }
        fields.push((name, place(buf, h.value)));
    }
    let (framing, drop_length) = framing::response(status, http11, head_request, found)?;
    // Until-close framing ends the connection; both framings (RFC 9112 §6.3
    // item 3) or a 101 (another protocol follows) end its HTTP/1.1 use.
    if framing == Framing::UntilClose || drop_length || status == StatusCode::SWITCHING_PROTOCOLS {
        keep_alive = false;
    }
    let single_length = found.length.filter(|_| !drop_length && (length_fields > 1 || !length_plain));
    Ok(Some((len, Some(ResponseHead { status, keep_alive, framing, drop_length, single_length }))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_length_values() {
        assert_eq!(content_length(b"12"), Some(12));
        assert_eq!(content_length(b" 12 "), Some(12));
        for bad in [&b""[..], b"+2", b"-2", b"1 2", b"0x10", b"12345678901234567890"] {
            assert_eq!(content_length(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn valid_values_are_those_of_header_value() {
        for b in 0..=255u8 {
            assert_eq!(valid_value(&[b'a', b]), HeaderValue::from_bytes(&[b'a', b]).is_ok(), "byte {b}");
        }
    }

    #[test]
    fn token_lists() {
        assert!(lists_token(b"keep-alive, Close", b"close"));
        assert!(lists_token(b"close", b"close"));
        assert!(!lists_token(b"closed, x-close", b"close"));
        assert!(!lists_token(b"", b"close"));
    }

    #[test]
    fn head_size_counts_the_request_line_and_header_lines() {
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        h.append("x-y", HeaderValue::from_static("12"));
        let wire = "GET /p HTTP/1.1\r\nhost: a\r\nx-y: 12\r\n\r\n";
        assert_eq!(request_head_size(&http::Method::GET, 2, &h), wire.len());
    }
}
