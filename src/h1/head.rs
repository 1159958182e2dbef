//! Header fields of a parsed head: where their values lie in the bytes read
//! (so that a header map can take them without a copy once the head is split
//! off the read buffer), and the value rules shared by both directions.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::HeaderMap;

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
/// a slice of `head` (no copy), in order, but for the fields named `leave_out`;
/// room is left for `extra` more headers. `fields` is emptied.
pub fn header_map(
    head: &Bytes,
    fields: &mut Vec<Field>,
    extra: usize,
    leave_out: Option<&HeaderName>,
) -> Result<HeaderMap, http::header::InvalidHeaderValue> {
    let mut headers = HeaderMap::with_capacity(fields.len() + extra);
    for (name, value) in fields.drain(..) {
        if leave_out.is_some_and(|n| *n == name) {
            continue;
        }
        headers.append(name, HeaderValue::from_maybe_shared(head.slice(value))?);
    }
    Ok(headers)
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
