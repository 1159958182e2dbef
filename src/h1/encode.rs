//! Head encoding: the request line and header lines written upstream.

/// `METHOD target HTTP/1.1`, then every header, then the empty line, in
/// `out` (emptied first). `target` is the origin-form path and query (visible
/// ASCII: it cannot end or split the line); the caller has set `Host` and the
/// framing headers.
pub fn request_head(out: &mut Vec<u8>, target: &str, parts: &http::request::Parts) {
    let size = super::head::request_head_size(&parts.method, target.len(), &parts.headers);
    out.clear();
    out.reserve(size);
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len(), size);
}
