//! Stage 2 of a request: find the bearer token in the headers.

use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::normalize::RequestError;

/// The token of `Authorization: Bearer <token>`, the scheme matched without
/// regard to case. `Ok(None)`: no Authorization header, or another scheme.
/// Two Authorization headers are ambiguous: 400, never forwarded.
pub fn extract(headers: &HeaderMap) -> Result<Option<&str>, RequestError> {
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
        return Ok(bytes.eq_ignore_ascii_case(b"bearer").then_some(""));
    };
    if !bytes[..space].eq_ignore_ascii_case(b"bearer") {
        return Ok(None);
    }
    // Header values are visible ASCII here unless they hold obs-text; such a
    // token is malformed anyway, so it becomes an empty (invalid) token.
    let rest = std::str::from_utf8(&bytes[space + 1..]).unwrap_or("\u{0}");
    Ok(Some(rest.trim_matches(' ')))
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
        assert_eq!(extract(&h(&["Bearer abc"])).unwrap(), Some("abc"));
        assert_eq!(extract(&h(&["bEaReR   abc "])).unwrap(), Some("abc"));
        assert_eq!(extract(&h(&["Basic abc"])).unwrap(), None);
        assert_eq!(extract(&h(&["Bearer"])).unwrap(), Some(""));
        assert_eq!(extract(&h(&["Bearerabc"])).unwrap(), None);
        assert!(matches!(extract(&h(&["Bearer a", "Bearer b"])), Err(RequestError::DuplicateAuthorization)));
    }
}
