//! Stage 2 of a request: find the bearer token in the headers.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::normalize::RequestError;

/// The token of `Authorization: Bearer <token>`, the scheme matched without
/// regard to case. `Ok(None)`: no Authorization header, or another scheme.
/// Two Authorization headers are ambiguous: 400, never forwarded.
///
/// The token is returned as bytes: a token cache hit needs no more, and
/// [`verify`](super::verify()) checks the text only on a miss (a header value
/// may hold obs-text, which makes a malformed token).
pub fn extract(headers: &HeaderMap) -> Result<Option<&[u8]>, RequestError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(RequestError::DuplicateAuthorization);
    }
    let bytes = value.as_bytes();
    let Some(space) = bytes.iter().position(|&b| b == b' ') else {
        // "Bearer" alone: the scheme with no token is a malformed bearer credential.
        return Ok(bytes.eq_ignore_ascii_case(b"bearer").then_some(b""));
    };
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    let mut token = &bytes[space + 1..];
    while let [b' ', rest @ ..] = token {
        token = rest;
    }
    while let [rest @ .., b' '] = token {
        token = rest;
    }
    Ok(Some(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn h(values: &[&str]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for v in values {
            m.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn schemes() {
        assert_eq!(extract(&h(&[])).unwrap(), None);
        assert_eq!(extract(&h(&["Bearer abc"])).unwrap(), Some(&b"abc"[..]));
        assert_eq!(extract(&h(&["bEaReR   abc "])).unwrap(), Some(&b"abc"[..]));
        assert_eq!(extract(&h(&["Bearer a b"])).unwrap(), Some(&b"a b"[..]));
        assert_eq!(extract(&h(&["Bearer    "])).unwrap(), Some(&b""[..]));
        assert_eq!(extract(&h(&["Basic abc"])).unwrap(), None);
        assert_eq!(extract(&h(&["Bearer"])).unwrap(), Some(&b""[..]));
        assert_eq!(extract(&h(&["Bearerabc"])).unwrap(), None);
        assert!(matches!(extract(&h(&["Bearer a", "Bearer b"])), Err(RequestError::DuplicateAuthorization)));
    }
}
