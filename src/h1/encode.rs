//! Head encoding: the request head written upstream, and the response head
//! written to a client (with its framing decision, as hyper's server makes it).

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::StatusCode;

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

/// How the body of a response written with [`response_head`] goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Written {
    /// No body is written (HEAD, 1xx, 204, 304).
    pub no_body: bool,
    /// The body is written chunked.
    pub chunked: bool,
    /// The body's length as written (`content-length`), when it has one.
    pub length: Option<u64>,
}

/// The status line, the headers and the framing of a response to a client,
/// in `out`, as hyper's server writes them: `content-length` from the body's
/// exact size (`length`; an upstream's own value kept when the size is not
/// known), else `transfer-encoding: chunked`; no body for HEAD, 1xx, 204 and
/// 304, and no length for 1xx, 204 and 304; the first `content-length` only;
/// `date` added when missing; `connection: close` when not `keep_alive`.
/// `Transfer-Encoding` and `Connection` are this writer's.
/// `ended`: the body has no frames left at all. `fields`: the header fields,
/// in order (a header map's, or fields kept as received).
pub fn response_head<'a>(
    out: &mut Vec<u8>,
    status: StatusCode,
    fields: impl Iterator<Item = (&'a HeaderName, &'a [u8])>,
    head_request: bool,
    keep_alive: bool,
    ended: bool,
    length: Option<u64>,
) -> Result<Written, &'static str> {
    // 1xx, 204 and 304 have neither a body nor a length; an answer to HEAD
    // has a length but no body.
    let may_have_length =
        !status.is_informational() && !matches!(status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED);
    let no_body = head_request || !may_have_length;
    status_line(out, status);
    let mut framing = None; // Some(n): content-length n; None: decided below
    let mut wrote_date = false;
    let mut wrote_trailer = false;
    for (name, value) in fields {
        if wrote_trailer && *name != header::TRAILER {
            out.extend_from_slice(b"\r\n");
            wrote_trailer = false;
        }
        match *name {
            header::CONTENT_LENGTH => {
                // The first value only; none for a body that is not there
                // (except in answer to HEAD), as hyper does.
                if framing.is_some() || (ended && !head_request) {
                    continue;
                }
                framing = match length {
                    Some(n) => Some(n),
                    None => Some(super::content_length(value).ok_or("invalid content-length in a response")?),
                };
            }
            // Framing and connection handling are this writer's.
            header::TRANSFER_ENCODING | header::CONNECTION => continue,
            // The trailer fields a chunked body will carry: named only where a
            // body may be chunked, all `Trailer` fields in one line.
            header::TRAILER => {
                if !no_body {
                    out.extend_from_slice(if wrote_trailer { b", " } else { b"trailer: " });
                    out.extend_from_slice(value);
                    wrote_trailer = true;
                }
                continue;
            }
            header::DATE => wrote_date = true,
            _ => {}
        }
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if wrote_trailer {
        out.extend_from_slice(b"\r\n");
    }
    // hyper adds it to the response's headers: after them, before its own framing line.
    if !keep_alive {
        out.extend_from_slice(b"connection: close\r\n");
    }
    let chunked = match (framing, length) {
        (Some(_), _) => false,
        (None, None) if no_body => false,
        (None, None) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            true
        }
        (None, Some(n)) => {
            if may_have_length && (n > 0 || !head_request) {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            framing = Some(n);
            false
        }
    };
    if !wrote_date {
        out.extend_from_slice(b"date: ");
        date(out);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Ok(Written { no_body, chunked, length: framing })
}

fn status_line(out: &mut Vec<u8>, status: StatusCode) {
    if status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        return;
    }
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("<none>").as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The current time as an HTTP date, formatted once a second per thread.
fn date(out: &mut Vec<u8>) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with_borrow_mut(|(at, text)| {
        if *at != secs {
            *at = secs;
            *text = httpdate::fmt_http_date(now);
        }
        out.extend_from_slice(text.as_bytes());
    });
}
