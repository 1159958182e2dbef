//! Stage 1 of a request: the request target becomes the one path that is both
//! matched and forwarded. Pure; no allocation beyond the result.
//!
//! Rules, in order:
//! - origin-form `/p?q`; absolute-form `http://host/p?q` (its host must agree with
//!   the `Host` header); asterisk-form `*` is refused;
//! - the query is split off at the first `?` and forwarded unchanged;
//! - refused (400): a raw `\`, a control character or NUL, a raw non-ASCII byte,
//!   `%2F`/`%5C` (encoded slash or backslash), an encoded control character or NUL,
//!   a malformed `%` escape, percent-escapes that do not decode to valid UTF-8
//!   (overlong forms included), a dot segment carrying `;` parameters (`..;x`,
//!   also encoded: `..%3B`, `%2e%2e%3b`),
//!   and `..` that would climb above the root;
//! - a double-encoded dot, slash or backslash (`%252e`, `%252f`, `%255c`, any
//!   case, however the `%25` and the rest were written): an upstream that
//!   decodes twice would see `.`, `/` or `\`;
//! - percent-escapes of unreserved characters (`A-Z a-z 0-9 - . _ ~`) are decoded;
//!   every other escape is kept, with upper-case hex digits;
//! - `.` segments are removed and `..` removes the previous segment (RFC 3986 §5.2.4),
//!   after decoding, so `%2e%2E` is a dot segment too; repeated `/` are merged.
//!
//! A `#` fragment never reaches this stage: hyper's URI parser drops it.

use std::fmt;

use http::{HeaderMap, Method, Uri};

/// A normalized request target: the path that is matched and forwarded, and the query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `path` or `path?query`.
    buf: String,
    path_len: usize,
}

impl Target {
    /// The normalized path (always starts with `/`).
    pub fn path(&self) -> &str {
        &self.buf[..self.path_len]
    }
    /// The query string as the client sent it, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.buf.get(self.path_len + 1..)
    }
    /// Path and query, as forwarded.
    pub fn path_and_query(&self) -> &str {
        &self.buf
    }
}

/// A request that is refused before routing (400, never forwarded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    EncodedSlash,
    EncodedBackslash,
    Backslash,
    ControlChar,
    NonAscii,
    BadPercentEncoding,
    InvalidUtf8,
    DotSegmentParams,
    AboveRoot,
    AsteriskForm,
    BadTarget,
    HostMismatch,
    DuplicateHost,
    DuplicateAuthorization,
    DoubleEncoded,
    UnderscoreHeader,
    ConnectMethod,
    /// A decision-API check from a peer outside `[authz] trusted_peers`.
    UntrustedPeer,
    /// A decision-API check without the original method or URI.
    MissingOriginal,
    /// A decision-API check whose headers name two different original
    /// methods, URIs or hosts (a client's copy of another proxy's header).
    ConflictingOriginal,
    /// A decision-API check whose original method, URI or host is malformed.
    BadOriginal,
}

impl RequestError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::EncodedSlash => "encoded_slash",
            RequestError::EncodedBackslash => "encoded_backslash",
            RequestError::Backslash => "backslash",
            RequestError::ControlChar => "control_char",
            RequestError::NonAscii => "non_ascii",
            RequestError::BadPercentEncoding => "bad_percent_encoding",
            RequestError::InvalidUtf8 => "invalid_utf8",
            RequestError::DotSegmentParams => "dot_segment_params",
            RequestError::AboveRoot => "above_root",
            RequestError::AsteriskForm => "asterisk_form",
            RequestError::BadTarget => "bad_target",
            RequestError::HostMismatch => "host_mismatch",
            RequestError::DuplicateHost => "duplicate_host",
            RequestError::DuplicateAuthorization => "duplicate_authorization",
            RequestError::DoubleEncoded => "double_encoded",
            RequestError::UnderscoreHeader => "underscore_header",
            RequestError::ConnectMethod => "connect_method",
            RequestError::UntrustedPeer => "untrusted_peer",
            RequestError::MissingOriginal => "missing_original",
            RequestError::ConflictingOriginal => "conflicting_original",
            RequestError::BadOriginal => "bad_original",
        }
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RequestError::EncodedSlash => "the path contains an encoded slash (%2F)",
            RequestError::EncodedBackslash => "the path contains an encoded backslash (%5C)",
            RequestError::Backslash => "the path contains a backslash",
            RequestError::ControlChar => "the path contains a control character or NUL",
            RequestError::NonAscii => "the path contains a raw non-ASCII byte",
            RequestError::BadPercentEncoding => "the path contains a malformed percent-escape",
            RequestError::InvalidUtf8 => "the path's percent-escapes are not valid UTF-8",
            RequestError::DotSegmentParams => "the path has a dot segment with parameters (;)",
            RequestError::AboveRoot => "the path climbs above the root (..)",
            RequestError::AsteriskForm => "asterisk-form requests (OPTIONS *) are not proxied",
            RequestError::BadTarget => "the request target is not a path",
            RequestError::HostMismatch => "the absolute-form target names another host than the Host header",
            RequestError::DuplicateHost => "the request has more than one Host header",
            RequestError::DuplicateAuthorization => "the request has more than one Authorization header",
            RequestError::DoubleEncoded => {
                "the path contains a double-encoded dot, slash or backslash (%252e, %252f, %255c)"
            }
            RequestError::UnderscoreHeader => "a header name contains an underscore",
            RequestError::ConnectMethod => "CONNECT requests are not proxied",
            RequestError::UntrustedPeer => "the check does not come from a trusted peer ([authz] trusted_peers)",
            RequestError::MissingOriginal => "the check does not name the original method and URI",
            RequestError::ConflictingOriginal => {
                "the check's headers name two different original methods, URIs or hosts"
            }
            RequestError::BadOriginal => "the check's original method, URI or host is malformed",
        })
    }
}

impl std::error::Error for RequestError {}

/// Normalizes a request's target (see the module docs for the rules).
pub fn normalize_request(method: &Method, uri: &Uri, headers: &HeaderMap) -> Result<Target, RequestError> {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(RequestError::DuplicateHost);
    }
    if let Some(authority) = uri.authority() {
        // Absolute-form (HTTP/1) or :authority (HTTP/2): must agree with Host when both are given.
        if let Some(h) = host {
            if !h.as_bytes().eq_ignore_ascii_case(authority.as_str().as_bytes()) {
                return Err(RequestError::HostMismatch);
            }
        }
    }
    if uri.path() == "*" {
        return Err(RequestError::AsteriskForm);
    }
    // CONNECT asks for a tunnel to an address: nothing a reverse proxy in
    // front of an API forwards (and a 2xx to it would open one).
    if method == Method::CONNECT {
        return Err(RequestError::ConnectMethod);
    }
    normalize(uri.path(), uri.query())
}

/// Normalizes a raw path (and carries the query along unchanged).
pub fn normalize(raw_path: &str, query: Option<&str>) -> Result<Target, RequestError> {
    if !is_normal(raw_path) {
        return normalize_segments(raw_path, query);
    }
    // Already in normal form (the usual request): the result is the path as it is.
    let mut buf = String::with_capacity(raw_path.len() + query.map_or(0, |q| q.len() + 1));
    buf.push_str(raw_path);
    let path_len = buf.len();
    if let Some(q) = query {
        buf.push('?');
        buf.push_str(q);
    }
    Ok(Target { buf, path_len })
}

/// Whether `raw` is a path that normalizing leaves as it is: it starts with
/// `/` and has no empty segment (but a trailing one), no segment starting
/// with `.`, no `%` escape, and only visible ASCII characters. (Conservative:
/// some paths that normalize to themselves take the segment-wise way anyway.)
fn is_normal(raw: &str) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut prev = b'/';
    for &b in &bytes[1..] {
        match b {
            b'/' | b'.' if prev == b'/' => return false,
            b'%' | b'\\' | 0..=0x20 | 0x7f.. => return false,
            _ => prev = b,
        }
    }
    true
}

/// Normalizes segment by segment (decoding, dot segments, merged slashes).
fn normalize_segments(raw_path: &str, query: Option<&str>) -> Result<Target, RequestError> {
    let raw = if raw_path.is_empty() { "/" } else { raw_path };
    if !raw.starts_with('/') {
        return Err(RequestError::BadTarget);
    }
    let mut out = String::with_capacity(raw.len() + query.map_or(0, |q| q.len() + 1));
    // Start offsets (in `out`) of the segments kept so far, for `..`.
    let mut starts: Vec<usize> = Vec::new();
    let mut seg = String::new();
    let mut raw_segments = raw[1..].split('/').peekable();
    let mut trailing_slash = false;
    while let Some(raw_seg) = raw_segments.next() {
        let is_last = raw_segments.peek().is_none();
        seg.clear();
        decode_segment(raw_seg, &mut seg)?;
        match seg.as_str() {
            "" => {
                trailing_slash = is_last && !starts.is_empty();
                continue;
            }
            "." => {
                trailing_slash = !starts.is_empty();
                continue;
            }
            ".." => {
                let start = starts.pop().ok_or(RequestError::AboveRoot)?;
                out.truncate(start);
                trailing_slash = !starts.is_empty();
                continue;
            }
            // `..;x`, `.;x`, and their encoded forms (`..%3B`): servers that strip
            // matrix parameters (Tomcat, Jetty) would resolve these as dot segments.
            s if is_dot_with_params(s) => return Err(RequestError::DotSegmentParams),
            _ => {}
        }
        trailing_slash = false;
        starts.push(out.len());
        out.push('/');
        out.push_str(&seg);
    }
    if out.is_empty() || trailing_slash {
        out.push('/');
    }
    // Checked on the result, where every escape is in one form (`%25` stays
    // `%25`, an escaped `2` or `e` after it has been decoded): `%25%32%65` is
    // caught like `%252e`.
    if double_encoded(&out) {
        return Err(RequestError::DoubleEncoded);
    }
    let path_len = out.len();
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(Target { buf: out, path_len })
}

/// A segment (already decoded to rolegate's form, hex upper-case) that is `.`
/// or `..` followed by parameters, raw (`;`) or encoded (`%3B`).
fn is_dot_with_params(seg: &str) -> bool {
    let rest = seg.trim_start_matches('.');
    matches!(seg.len() - rest.len(), 1 | 2) && (rest.starts_with(';') || rest.starts_with("%3B"))
}

/// Whether a normalized path holds `%25` followed by `2E`, `2F` or `5C` (any case).
fn double_encoded(path: &str) -> bool {
    path.match_indices("%25").any(|(i, _)| {
        let after = path.as_bytes().get(i + 3..i + 5).unwrap_or_default();
        matches!(after, [b'2', b'e' | b'E' | b'f' | b'F'] | [b'5', b'c' | b'C'])
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(b >> 4)] as char);
    out.push(HEX[usize::from(b & 15)] as char);
}

/// Decodes one raw segment into `out` (see the module rules).
fn decode_segment(raw: &str, out: &mut String) -> Result<(), RequestError> {
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                let v = escaped_byte(bytes, i)?;
                if v >= 0x80 {
                    // A run of escaped high bytes must be valid UTF-8 on its own.
                    let mut run = Vec::with_capacity(4);
                    let mut j = i;
                    while j < bytes.len() && bytes[j] == b'%' {
                        let v = escaped_byte(bytes, j)?;
                        if v < 0x80 {
                            break;
                        }
                        run.push(v);
                        j += 3;
                    }
                    if std::str::from_utf8(&run).is_err() {
                        return Err(RequestError::InvalidUtf8);
                    }
                    for v in run {
                        push_escaped(out, v);
                    }
                    i = j;
                    continue;
                }
                match v {
                    b'/' => return Err(RequestError::EncodedSlash),
                    b'\\' => return Err(RequestError::EncodedBackslash),
                    0..=0x1f | 0x7f => return Err(RequestError::ControlChar),
                    v if is_unreserved(v) => out.push(v as char),
                    v => push_escaped(out, v),
                }
                i += 3;
            }
            b'\\' => return Err(RequestError::Backslash),
            0..=0x1f | 0x7f => return Err(RequestError::ControlChar),
            0x80.. => return Err(RequestError::NonAscii),
            b => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(())
}

fn escaped_byte(bytes: &[u8], i: usize) -> Result<u8, RequestError> {
    match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
        (Some(h), Some(l)) => Ok(h << 4 | l),
        _ => Err(RequestError::BadPercentEncoding),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(p: &str) -> Result<String, RequestError> {
        normalize(p, None).map(|t| t.path().to_owned())
    }

    #[test]
    fn accepted_forms() {
        let cases = [
            ("/", "/"),
            ("", "/"),
            ("/a/b", "/a/b"),
            ("/a//b", "/a/b"),
            ("//a///b//", "/a/b/"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/../c", "/a/c"),
            ("/a/%2e%2E/c", "/c"),
            ("/a/.%2e/c", "/c"),
            ("/%61dmin", "/admin"),
            ("/a%7eb", "/a~b"),
            ("/a%3bb", "/a%3Bb"),
            ("/a%20b", "/a%20b"),
            ("/caf%C3%A9", "/caf%C3%A9"),
            ("/a;b", "/a;b"),
            ("/a/.", "/a/"),
            ("/..a/b", "/..a/b"),
            ("/a%2541", "/a%2541"),
            ("/a%25", "/a%25"),
            ("/a%252", "/a%252"),
            ("/a%2525", "/a%2525"),
        ];
        for (input, want) in cases {
            assert_eq!(n(input).as_deref(), Ok(want), "{input}");
        }
    }

    #[test]
    fn refused_forms() {
        let cases = [
            ("/a%2Fb", RequestError::EncodedSlash),
            ("/a%2fb", RequestError::EncodedSlash),
            ("/a%5cb", RequestError::EncodedBackslash),
            ("/a\\b", RequestError::Backslash),
            ("/a%00", RequestError::ControlChar),
            ("/a%0a", RequestError::ControlChar),
            ("/a%zz", RequestError::BadPercentEncoding),
            ("/a%4", RequestError::BadPercentEncoding),
            ("/a%C0%AE", RequestError::InvalidUtf8),
            ("/a%ff", RequestError::InvalidUtf8),
            ("/a/..;/b", RequestError::DotSegmentParams),
            ("/a/.;x/b", RequestError::DotSegmentParams),
            ("/a/..%3b/b", RequestError::DotSegmentParams),
            ("/a/%2e%2e%3B/b", RequestError::DotSegmentParams),
            ("/a/.%3bx/b", RequestError::DotSegmentParams),
            ("/..", RequestError::AboveRoot),
            ("/a/../..", RequestError::AboveRoot),
            ("/%2e%2e/x", RequestError::AboveRoot),
            ("a/b", RequestError::BadTarget),
            ("/a/%252e%252e/b", RequestError::DoubleEncoded),
            ("/a/%252E", RequestError::DoubleEncoded),
            ("/a%252fb", RequestError::DoubleEncoded),
            ("/a%252Fb", RequestError::DoubleEncoded),
            ("/a%255cb", RequestError::DoubleEncoded),
            ("/a%255Cb", RequestError::DoubleEncoded),
            ("/a%25%32%65", RequestError::DoubleEncoded),
            ("/a%25%32%46", RequestError::DoubleEncoded),
            ("/a%25%35%63", RequestError::DoubleEncoded),
            ("/a%252%65", RequestError::DoubleEncoded),
        ];
        for (input, want) in cases {
            assert_eq!(n(input), Err(want), "{input}");
        }
    }

    #[test]
    fn query_is_kept_verbatim() {
        let t = normalize("/a/../b", Some("x=%2F&y=..")).unwrap();
        assert_eq!(t.path(), "/b");
        assert_eq!(t.query(), Some("x=%2F&y=.."));
        assert_eq!(t.path_and_query(), "/b?x=%2F&y=..");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, ..Default::default() })]

        /// The shortcut for paths already in normal form gives what the
        /// segment-wise normalization gives, on paths made of the characters
        /// that matter to it.
        #[test]
        fn the_shortcut_agrees_with_segment_wise_normalization(
            path in "/?[/.a%2eEF;~ \\\\\\x00\\x7fé]{0,12}",
            query in proptest::option::of("[a=/.%]{0,4}"),
        ) {
            let q = query.as_deref();
            if is_normal(&path) {
                proptest::prop_assert_eq!(normalize(&path, q), normalize_segments(&path, q));
                proptest::prop_assert_eq!(normalize(&path, q).map(|t| t.path().to_owned()), Ok(path.clone()));
            }
        }
    }

    #[test]
    fn the_shortcut_takes_plain_paths_only() {
        for p in ["/", "/v1/users/123", "/a/", "/a;b/c~d", "/a..b/c."] {
            assert!(is_normal(p), "{p}");
        }
        for p in ["", "a", "//", "/a//b", "/.", "/a/..", "/a/.b", "/%61", "/a\\b", "/a b", "/caf\u{e9}"] {
            assert!(!is_normal(p), "{p}");
        }
    }

    #[test]
    fn idempotent_on_samples() {
        for p in ["/a/%2e/b/", "//x/../y", "/%7Efoo/%3b", "/a/b/c/../../d"] {
            let once = n(p).unwrap();
            assert_eq!(n(&once).unwrap(), once);
        }
    }
}
