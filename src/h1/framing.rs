//! How a message body is delimited (RFC 9112 §6), for responses read from an
//! upstream and for requests written to one.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderValue, StatusCode};

/// How a body is delimited on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the connection closes.
    UntilClose,
}

/// What a response head's framing headers say, gathered while parsing it.
#[derive(Debug, Default, Clone, Copy)]
pub struct FramingHeaders {
    /// The `Content-Length` value (every value and repeat agreeing).
    pub length: Option<u64>,
    /// `Transfer-Encoding` was present; whether its last coding is `chunked`.
    pub chunked: Option<bool>,
}

impl FramingHeaders {
    /// Takes in one `Content-Length` field value (a comma list of equal numbers).
    pub fn content_length(&mut self, value: &[u8]) -> Result<(), &'static str> {
        for part in value.split(|b| *b == b',') {
            let n = super::content_length(part).ok_or("the Content-Length is not valid")?;
            if self.length.is_some_and(|l| l != n) {
                return Err("conflicting Content-Length values");
            }
            self.length = Some(n);
        }
        Ok(())
    }

    /// Takes in one `Transfer-Encoding` field value: the last coding of the
    /// last field decides.
    pub fn transfer_encoding(&mut self, value: &[u8]) {
        let last = value.rsplit(|b| *b == b',').next().unwrap_or_default();
        self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
    }
}

/// The framing of a response (RFC 9112 §6.3), and whether its
/// `Content-Length` must be removed before it is passed on (item 3: the
/// coding overrides it), which also means the connection is not reused.
pub fn response(
    status: StatusCode,
    http11: bool,
    head_request: bool,
    found: FramingHeaders,
) -> Result<(Framing, bool), &'static str> {
    // Item 1: HEAD, 1xx, 204 and 304 have no body, whatever the headers say.
    if head_request
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
    {
        return Ok((Framing::Empty, false));
    }
    match found.chunked {
        // §6.1: Transfer-Encoding in an HTTP/1.0 message is faulty framing.
        Some(_) if !http11 => Err("Transfer-Encoding in an HTTP/1.0 response"),
        // Item 4: chunked last is decoded; any other coding reads until close.
        Some(true) => Ok((Framing::Chunked, found.length.is_some())),
        Some(false) => Ok((Framing::UntilClose, found.length.is_some())),
        None => Ok((
            match found.length {
                Some(0) => Framing::Empty,
                Some(n) => Framing::Length(n),
                None => Framing::UntilClose,
            },
            false,
        )),
    }
}

/// Sets the framing headers of a request about to be written upstream, for a
/// body of `size` bytes (`None`: not known, sent chunked), so that the
/// request has exactly one framing: a body is forwarded whatever the method,
/// never silently dropped. Returns the framing to write the body with.
pub fn request(headers: &mut HeaderMap, ended: bool, size: Option<u64>) -> Framing {
    headers.remove(TRANSFER_ENCODING);
    match (ended, size) {
        (true, _) | (false, Some(0)) => {
            // A client's `Content-Length: 0` stays as sent; nothing else is added.
            if headers.get(CONTENT_LENGTH).is_some_and(|v| v.as_bytes() != b"0") {
                headers.remove(CONTENT_LENGTH);
            }
            Framing::Empty
        }
        (false, Some(n)) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
            Framing::Length(n)
        }
        (false, None) => {
            headers.remove(CONTENT_LENGTH);
            headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
            Framing::Chunked
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(cl: Option<&str>, te: Option<&str>) -> FramingHeaders {
        let mut f = FramingHeaders::default();
        if let Some(cl) = cl {
            f.content_length(cl.as_bytes()).unwrap();
        }
        if let Some(te) = te {
            f.transfer_encoding(te.as_bytes());
        }
        f
    }

    #[test]
    fn response_framing() {
        let ok = StatusCode::OK;
        assert_eq!(response(ok, true, false, found(Some("5"), None)), Ok((Framing::Length(5), false)));
        assert_eq!(response(ok, true, false, found(Some("0"), None)), Ok((Framing::Empty, false)));
        assert_eq!(response(ok, true, true, found(Some("5"), None)), Ok((Framing::Empty, false)), "HEAD");
        assert_eq!(response(ok, true, false, found(None, None)), Ok((Framing::UntilClose, false)));
        assert_eq!(response(ok, true, false, found(None, Some("chunked"))), Ok((Framing::Chunked, false)));
        assert_eq!(response(ok, true, false, found(None, Some("gzip, Chunked"))), Ok((Framing::Chunked, false)));
        assert_eq!(response(ok, true, false, found(None, Some("chunked, gzip"))), Ok((Framing::UntilClose, false)));
        assert_eq!(response(ok, true, false, found(Some("9"), Some("chunked"))), Ok((Framing::Chunked, true)));
        assert!(response(ok, false, false, found(None, Some("chunked"))).is_err(), "TE in HTTP/1.0");
        assert_eq!(response(StatusCode::NO_CONTENT, true, false, found(Some("7"), None)), Ok((Framing::Empty, false)));
        assert_eq!(
            response(StatusCode::NOT_MODIFIED, true, false, found(None, Some("chunked"))),
            Ok((Framing::Empty, false))
        );
        let mut f = FramingHeaders::default();
        assert!(f.content_length(b"5, 5").is_ok() && f.content_length(b"5").is_ok());
        assert!(f.content_length(b"6").is_err());
        for bad in ["-5", "0x5", "5 5", "", "99999999999999999999"] {
            assert!(FramingHeaders::default().content_length(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn request_framing_gives_exactly_one() {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("30"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        assert_eq!(request(&mut h, false, None), Framing::Chunked);
        assert_eq!((h.get(CONTENT_LENGTH), h.get(TRANSFER_ENCODING).unwrap().to_str().unwrap()), (None, "chunked"));
        assert_eq!(request(&mut h, false, Some(3)), Framing::Length(3));
        assert_eq!((h.get(CONTENT_LENGTH).unwrap().to_str().unwrap(), h.get(TRANSFER_ENCODING)), ("3", None));
        assert_eq!(request(&mut h, true, Some(0)), Framing::Empty);
        assert_eq!(h.get(CONTENT_LENGTH), None);
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        assert_eq!(request(&mut h, true, Some(0)), Framing::Empty);
        assert_eq!(h.get(CONTENT_LENGTH).unwrap(), "0", "a client's zero length stays");
    }
}
