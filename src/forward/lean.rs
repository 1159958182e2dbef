//! The lean HTTP/1.1 exchange with a plain-HTTP upstream, for the common
//! request: no body, no upgrade. The request's own task writes the request
//! head and reads the response head from a pooled connection (no connection
//! task, no channel between the two), and the response body is read from the
//! socket by whoever polls it. Everything else (request bodies, upgrades,
//! `https://` upstreams) takes hyper's client connection in `forward.rs`.
//!
//! Response framing follows RFC 9112 §6.3: no body for HEAD, 1xx, 204 and
//! 304; `Transfer-Encoding` whose last coding is `chunked` is decoded (and
//! wins over `Content-Length`); any other `Transfer-Encoding`, or neither
//! header, reads until the upstream closes; a `Content-Length` must be one
//! decimal number (repeats of the same value allowed), else the response is
//! refused (502). A connection is reused only after a complete, exactly framed
//! HTTP/1.1 response without `Connection: close`.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{HeaderName, CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use hyper::body::{Frame, SizeHint};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

use super::{Upstream, UpstreamError};
use crate::headers;
use crate::server::RequestBody;

/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 16 * 1024;
/// The largest response head accepted (status line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// A request head buffer larger than this is not kept with its connection.
const MAX_KEPT_HEAD: usize = 16 * 1024;
/// The most response header lines accepted.
const MAX_HEADERS: usize = 100;
/// The longest chunk-size line (size, extensions) accepted in a chunked body.
const MAX_CHUNK_LINE: usize = 4096;
/// The most trailer bytes accepted (trailers are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// One keep-alive connection to a plain-HTTP upstream.
pub(super) struct Conn {
    io: TcpStream,
    /// Bytes read but not consumed yet (empty between exchanges).
    buf: BytesMut,
    /// Scratch list of a response head's headers while it is parsed.
    fields: Vec<headers::Field>,
    /// The request head being written (kept for the next one; see [`MAX_KEPT_HEAD`]).
    head: Vec<u8>,
    /// Whether it served an exchange before (only then may a failure before
    /// the first response byte be the upstream closing an idle connection).
    pub(super) reused: bool,
    /// Bounds each exchange (the upstream's `timeout`). Registered once and
    /// moved on lazily: it stays at an earlier exchange's deadline, and when it
    /// fires before the current one, it is set to that one (see [`within`]).
    /// So an exchange costs no timer registration of its own. Like the
    /// socket, it belongs to the runtime of the worker whose pool holds it.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    pub(super) fn new(io: TcpStream, deadline: Instant) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            fields: Vec::new(),
            head: Vec::new(),
            reused: false,
            timer: Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    /// Reads more bytes into `buf`; `Ok(0)` at end of stream.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.io.poll_read_ready(cx))?;
            self.buf.reserve(READ_CHUNK);
            match crate::sock::read_drained(&self.io, &mut self.buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return Poll::Ready(r),
            }
        }
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// An idle connection the upstream has closed (or written to unasked)
    /// since it was pooled: a non-blocking peek (one syscall), which sees a
    /// close the runtime has not been told of yet.
    pub(super) fn is_stale(&self) -> bool {
        let mut probe = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        !matches!(socket2::SockRef::from(&self.io).peek(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

/// Whether a request can take the lean exchange: no body, no upgrade, and
/// not CONNECT (whose 2xx turns the connection into a tunnel).
pub(super) fn eligible(req: &Request<RequestBody>) -> bool {
    hyper::body::Body::is_end_stream(req.body())
        && !req.headers().contains_key(http::header::UPGRADE)
        && req.method() != Method::CONNECT
}

/// Methods a request may be sent again for when a reused connection turned
/// out closed before any byte of the response (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// Sends a body-less request and reads the response head, all before
/// `deadline` (else [`UpstreamError::Timeout`]).
pub(super) async fn exchange(
    up: &Arc<Upstream>,
    worker: usize,
    target: &str,
    req: Request<RequestBody>,
    deadline: Instant,
) -> Result<Response<Body>, UpstreamError> {
    let failed = |what: &str| UpstreamError::Failed(up.name.clone(), what.to_owned());
    let timed_out = || UpstreamError::Timeout(up.name.clone());
    let (parts, _) = req.into_parts();
    let may_resend = idempotent(&parts.method);
    let mut resends = 0;
    behind_ready_tasks().await;
    loop {
        let mut conn = up.lean_checkout(worker, may_resend, deadline).await?;
        // Only a connection that served before can fail because the upstream
        // closed it while idle: then the request may go out again (after a
        // response byte was awaited, only an idempotent one).
        let retry = conn.reused && resends < super::MAX_RESENDS;
        let mut timer = conn.timer.take().unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
        encode_head(&mut conn.head, target, &parts);
        let written = within(timer.as_mut(), deadline, conn.io.write_all(&conn.head)).await;
        if conn.head.capacity() > MAX_KEPT_HEAD {
            conn.head = Vec::new();
        }
        match written {
            None => return Err(timed_out()),
            Some(Ok(())) => {}
            Some(Err(_)) if retry => {
                resends += 1;
                continue;
            }
            Some(Err(e)) => return Err(failed(&format!("writing the request: {e}"))),
        }
        let read = within(timer.as_mut(), deadline, read_head(&mut conn, parts.method == Method::HEAD)).await;
        conn.timer = Some(timer);
        let Some(read) = read else { return Err(timed_out()) };
        match read {
            Ok((resp, framing)) => {
                let resp = into_response(resp, framing, conn, up, worker);
                behind_ready_tasks().await;
                return Ok(resp);
            }
            // Nothing came back on a reused connection: the upstream closed it
            // while idle, before reading this request.
            Err(HeadError::Closed) if retry && may_resend => resends += 1,
            Err(HeadError::Closed) => return Err(failed("the connection closed before a response")),
            Err(HeadError::Io(e)) if retry && may_resend && conn.buf.is_empty() => {
                tracing::debug!(error = %e, "reused upstream connection failed; sending again");
                resends += 1;
            }
            Err(HeadError::Io(e)) => return Err(failed(&format!("reading the response: {e}"))),
            Err(HeadError::Invalid(what)) => return Err(failed(what)),
        }
    }
}

/// Lets the tasks that are ready now run before this one goes on (it is
/// rescheduled at once, at the back of the run queue; unlike
/// `tokio::task::yield_now`, not after the next poll of the I/O driver).
///
/// Used twice per exchange, so that each worker does its requests' work in
/// phases: every ready request is checked and written upstream, then every
/// arrived response is handed to its client. Measured with the upstream on the
/// same core (the benchmark layout, and a sidecar's): writing each request the
/// moment it was checked woke the upstream once per request (context switches
/// and kernel time ate the whole saving of the lean exchange); with the write
/// deferred, the upstream takes several requests per wake-up, and deferring
/// the response as well brought the upstream's CPU per request below what it
/// spends behind nginx. With a single request in flight, the run queue is
/// empty and this returns at the next poll.
async fn behind_ready_tasks() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await;
}

/// `work`, unless `deadline` comes first (`None`). `timer` may be set to an
/// earlier deadline: when it fires before `deadline`, it is moved there.
async fn within<T>(mut timer: Pin<&mut Sleep>, deadline: Instant, work: impl Future<Output = T>) -> Option<T> {
    if timer.deadline() > deadline {
        timer.as_mut().reset(deadline);
    }
    let mut work = std::pin::pin!(work);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = work.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        while timer.as_mut().poll(cx).is_ready() {
            if timer.deadline() >= deadline {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(deadline);
        }
        Poll::Pending
    })
    .await
}

/// `METHOD target HTTP/1.1`, then every header, then the empty line, in
/// `out` (emptied first). `target` is the origin-form path and query; the
/// caller has set `Host`.
fn encode_head(out: &mut Vec<u8>, target: &str, parts: &http::request::Parts) {
    let lines: usize = parts.headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 4).sum();
    let size = parts.method.as_str().len() + 1 + target.len() + b" HTTP/1.1\r\n".len() + lines + 2;
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

enum HeadError {
    /// End of stream before any byte of a response.
    Closed,
    Io(io::Error),
    Invalid(&'static str),
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(u64),
    Chunked,
    UntilClose,
}

/// The parsed response head: status, headers, and whether the connection may
/// be reused once the body has been read.
struct Head {
    status: StatusCode,
    headers: HeaderMap,
    keep_alive: bool,
}

/// Reads until a final (non-1xx) response head is complete; leaves the bytes
/// after it in `conn.buf`.
async fn read_head(conn: &mut Conn, head_request: bool) -> Result<(Head, Framing), HeadError> {
    let mut seen_any = false;
    loop {
        if !conn.buf.is_empty() {
            seen_any = true;
            match parse_head(&conn.buf, head_request, &mut conn.fields)? {
                Some((len, Some(found))) => {
                    // The head is taken off the buffer; the header values are
                    // slices of those bytes (no copy).
                    let head = conn.buf.split_to(len).freeze();
                    let headers = header_map(&head, &mut conn.fields, found.drop_length)?;
                    let Found { status, keep_alive, framing, .. } = found;
                    return Ok((Head { status, headers, keep_alive }, framing));
                }
                // An interim 1xx response: the final one follows (maybe already read).
                Some((len, None)) => {
                    conn.buf.advance(len);
                    continue;
                }
                None if conn.buf.len() > MAX_HEAD => return Err(HeadError::Invalid("the response head is too large")),
                None => {}
            }
        }
        match conn.fill().await {
            Ok(0) if seen_any => return Err(HeadError::Invalid("the connection closed inside the response head")),
            Ok(0) => return Err(HeadError::Closed),
            Ok(_) => {}
            Err(e) => return Err(HeadError::Io(e)),
        }
    }
}

/// A final response head as parsed, but for the header values: those are in
/// the parse's `fields`, to be taken from the head's bytes by [`header_map`].
struct Found {
    status: StatusCode,
    keep_alive: bool,
    framing: Framing,
    /// `Content-Length` is not passed on (`Transfer-Encoding` overrides it).
    drop_length: bool,
}

/// What one parse of the buffer found: `None` when the head is incomplete;
/// else its length and the final head, or `None` for an interim (1xx) response.
type Parsed = Option<(usize, Option<Found>)>;

/// The header map of a final head, its values sliced from `head`.
fn header_map(head: &Bytes, fields: &mut Vec<headers::Field>, drop_length: bool) -> Result<HeaderMap, HeadError> {
    // Room for the header the gateway adds (`x-request-id`) without growing.
    headers::header_map(head, fields, 1, drop_length.then_some(&CONTENT_LENGTH))
        .map_err(|_| HeadError::Invalid("a response header value is not valid"))
}

/// One response head from the start of `buf`; its headers' names and value
/// places go to `fields`.
fn parse_head(buf: &[u8], head_request: bool, fields: &mut Vec<headers::Field>) -> Result<Parsed, HeadError> {
    fields.clear();
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) if len > MAX_HEAD => {
            return Err(HeadError::Invalid("the response head is too large"))
        }
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::Invalid("the response has too many headers")),
        Err(_) => return Err(HeadError::Invalid("the response head is not valid HTTP/1.1")),
    };
    let code = resp.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| HeadError::Invalid("the response status is not valid"))?;
    if status.is_informational() {
        // 101 is never asked for here (upgrades take hyper's connection).
        return match status {
            StatusCode::SWITCHING_PROTOCOLS => Err(HeadError::Invalid("unexpected 101 Switching Protocols")),
            _ => Ok(Some((len, None))),
        };
    }
    let http11 = resp.version == Some(1);
    let mut keep_alive = http11;
    let mut length: Option<u64> = None;
    let mut chunked = None;
    for h in resp.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| HeadError::Invalid("a response header name is not valid"))?;
        if name == CONTENT_LENGTH {
            for part in h.value.split(|b| *b == b',') {
                let n = headers::content_length(part)
                    .ok_or(HeadError::Invalid("the response Content-Length is not valid"))?;
                if length.is_some_and(|l| l != n) {
                    return Err(HeadError::Invalid("the response has conflicting Content-Length values"));
                }
                length = Some(n);
            }
        } else if name == TRANSFER_ENCODING {
            // The last coding decides: chunked is decoded, anything else reads until close.
            let last = h.value.rsplit(|b| *b == b',').next().unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name == http::header::CONNECTION && headers::lists_token(h.value, b"close") {
            keep_alive = false;
        }
        fields.push((name, headers::place(buf, h.value)));
    }
    let no_body = head_request
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational();
    let framing = if no_body {
        Framing::Empty
    } else if let Some(chunked) = chunked {
        // Transfer-Encoding overrides Content-Length (RFC 9112 §6.3 item 3);
        // the length is not passed on (`drop_length`), the client gets the
        // body re-framed.
        if chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else {
        match length {
            Some(0) => Framing::Empty,
            Some(n) => Framing::Length(n),
            None => Framing::UntilClose,
        }
    };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    let drop_length = !no_body && chunked.is_some();
    Ok(Some((len, Some(Found { status, keep_alive, framing, drop_length }))))
}

/// The response for the client, with a body that owns the connection until
/// the body has been read; a body that is already complete in the buffer
/// returns the connection to the pool at once.
fn into_response(head: Head, framing: Framing, mut conn: Conn, up: &Arc<Upstream>, worker: usize) -> Response<Body> {
    let body = match framing {
        Framing::Empty => {
            release(up, worker, conn, head.keep_alive);
            Body::Full(None)
        }
        Framing::Length(n) if conn.buf.len() as u64 >= n => {
            let bytes = conn.buf.split_to(n as usize).freeze();
            release(up, worker, conn, head.keep_alive);
            Body::Full(Some(bytes))
        }
        framing => Body::Stream(Box::new(Streaming {
            conn: Some(conn),
            state: match framing {
                Framing::Length(n) => State::Length(n),
                Framing::Chunked => State::Chunked(Chunk::Size),
                _ => State::UntilClose,
            },
            keep_alive: head.keep_alive,
            give_back: Some((Arc::clone(up), worker)),
        })),
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = head.status;
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = head.headers;
    resp
}

/// After a response read to its exact end: the connection goes back to the
/// pool if the response allows reuse and nothing unasked follows it; else it
/// is closed (dropped).
fn release(up: &Upstream, worker: usize, conn: Conn, keep_alive: bool) {
    if keep_alive && conn.buf.is_empty() {
        up.lean_give_back(worker, conn);
    }
}

/// A response body from the lean exchange.
pub enum Body {
    /// Complete (or empty) when the head was read.
    Full(Option<Bytes>),
    /// Still arriving on the connection.
    Stream(Box<Streaming>),
}

impl Body {
    pub(super) fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self {
            Body::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Body::Stream(s) => s.poll_frame(cx),
        }
    }

    pub(super) fn is_end_stream(&self) -> bool {
        match self {
            Body::Full(data) => data.is_none(),
            Body::Stream(s) => matches!(s.state, State::Done),
        }
    }

    pub(super) fn size_hint(&self) -> SizeHint {
        match self {
            Body::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Body::Stream(s) => match s.state {
                State::Length(left) => SizeHint::with_exact(left),
                State::Done => SizeHint::with_exact(0),
                State::Chunked(_) | State::UntilClose => SizeHint::default(),
            },
        }
    }
}

/// A response body being read from its connection.
pub struct Streaming {
    /// `None` once the body has ended and the connection went back or closed.
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    /// Where the connection goes back once the body has been read whole.
    give_back: Option<(Arc<Upstream>, usize)>,
}

enum State {
    Length(u64),
    Chunked(Chunk),
    UntilClose,
    Done,
}

/// Where a chunked decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after a chunk's data.
    DataEnd,
    /// After the last chunk: trailer lines until an empty one.
    Trailers(usize),
}

/// A response body that broke off: the client's response is cut short.
#[derive(Debug)]
pub struct BodyError(pub &'static str);

impl std::fmt::Display for BodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "upstream response body: {}", self.0)
    }
}

impl std::error::Error for BodyError {}

impl Streaming {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if conn.buf.is_empty() {
                        if ready!(self.fill(cx))? == 0 {
                            return self.fail("the connection closed inside the body");
                        }
                        continue;
                    }
                    let take = left.min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(take as usize).freeze();
                    let left = left - take;
                    if left == 0 {
                        self.finish();
                    } else {
                        self.state = State::Length(left);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::UntilClose => {
                    if conn.buf.is_empty() {
                        if ready!(self.fill(cx))? == 0 {
                            self.state = State::Done;
                            self.conn = None;
                            return Poll::Ready(None);
                        }
                        continue;
                    }
                    let data = conn.buf.split().freeze();
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Chunked(chunk) => match decode_chunk(&mut conn.buf, chunk) {
                    Ok((next, data)) => {
                        self.state = State::Chunked(next);
                        if let Some(data) = data {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                        if next == Chunk::Trailers(usize::MAX) {
                            self.finish();
                            return Poll::Ready(None);
                        }
                        if next == chunk && ready!(self.fill(cx))? == 0 {
                            return self.fail("the connection closed inside a chunked body");
                        }
                    }
                    Err(what) => return self.fail(what),
                },
            }
        }
    }

    fn fill(&mut self, cx: &mut Context<'_>) -> Poll<Result<usize, BodyError>> {
        let Some(conn) = self.conn.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        match ready!(conn.poll_fill(cx)) {
            Ok(n) => Poll::Ready(Ok(n)),
            Err(_) => {
                self.abandon();
                Poll::Ready(Err(BodyError("reading from the upstream failed")))
            }
        }
    }

    fn fail<T>(&mut self, what: &'static str) -> Poll<Option<Result<T, BodyError>>> {
        self.abandon();
        Poll::Ready(Some(Err(BodyError(what))))
    }

    /// The body broke off: the connection is closed, never reused.
    fn abandon(&mut self) {
        self.give_back = None;
        self.conn = None;
        self.state = State::Done;
    }

    /// The body ended exactly: the connection may serve another request.
    fn finish(&mut self) {
        self.state = State::Done;
        if let (Some((up, worker)), Some(conn)) = (self.give_back.take(), self.conn.take()) {
            release(&up, worker, conn, self.keep_alive);
        }
    }
}

/// One step of chunked decoding over `buf`: the next state and, when a piece
/// of chunk data was available, that data. Returns the same state and no data
/// when `buf` needs more bytes; `Trailers(usize::MAX)` marks the end.
fn decode_chunk(buf: &mut BytesMut, state: Chunk) -> Result<(Chunk, Option<Bytes>), &'static str> {
    match state {
        Chunk::Size => {
            let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
                return match buf.len() > MAX_CHUNK_LINE {
                    true => Err("a chunk-size line is too long"),
                    false => Ok((state, None)),
                };
            };
            let line = &buf[..eol];
            let line = line.strip_suffix(b"\r").ok_or("a chunk-size line does not end with CRLF")?;
            let digits = line.split(|b| *b == b';').next().unwrap_or_default().trim_ascii_end();
            if digits.is_empty() || digits.len() > 15 || !digits.iter().all(u8::is_ascii_hexdigit) {
                return Err("a chunk size is not valid");
            }
            let size = digits.iter().fold(0u64, |n, d| n * 16 + u64::from((*d as char).to_digit(16).unwrap_or(0)));
            buf.advance(eol + 1);
            Ok((if size == 0 { Chunk::Trailers(0) } else { Chunk::Data(size) }, None))
        }
        Chunk::Data(left) => {
            if buf.is_empty() {
                return Ok((state, None));
            }
            let take = left.min(buf.len() as u64);
            let data = buf.split_to(take as usize).freeze();
            let left = left - take;
            Ok((if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) }, Some(data)))
        }
        Chunk::DataEnd => match buf.len() {
            0 | 1 => Ok((state, None)),
            _ if &buf[..2] == b"\r\n" => {
                buf.advance(2);
                Ok((Chunk::Size, None))
            }
            _ => Err("a chunk does not end with CRLF"),
        },
        Chunk::Trailers(seen) => {
            let Some(eol) = buf.iter().position(|b| *b == b'\n') else {
                return match seen + buf.len() > MAX_TRAILERS {
                    true => Err("the trailers are too long"),
                    false => Ok((state, None)),
                };
            };
            let line = buf[..eol].strip_suffix(b"\r").ok_or("a trailer line does not end with CRLF")?;
            let empty = line.is_empty();
            buf.advance(eol + 1);
            match empty {
                true => Ok((Chunk::Trailers(usize::MAX), None)),
                false if seen + eol + 1 > MAX_TRAILERS => Err("the trailers are too long"),
                false => Ok((Chunk::Trailers(seen + eol + 1), None)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes a whole chunked body held in `wire`, as the body would while
    /// reading it in pieces of `step` bytes; `None` if it is invalid or incomplete.
    fn decode_all(wire: &[u8], step: usize) -> Option<(Vec<u8>, usize)> {
        let mut buf = BytesMut::new();
        let mut fed = 0;
        let mut state = Chunk::Size;
        let mut out = Vec::new();
        loop {
            let (next, data) = decode_chunk(&mut buf, state).ok()?;
            if let Some(d) = data {
                out.extend_from_slice(&d);
            }
            if next == Chunk::Trailers(usize::MAX) {
                return Some((out, buf.len() + wire.len() - fed));
            }
            if next == state && fed < wire.len() {
                let end = (fed + step).min(wire.len());
                buf.extend_from_slice(&wire[fed..end]);
                fed = end;
            } else if next == state {
                return None;
            }
            state = next;
        }
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
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
        wire.extend_from_slice(b"0\r\nx-trailer: t\r\n\r\n");
        wire
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any chunking of any body, read in any piece size, decodes to the body,
        /// and nothing after the last chunk is consumed.
        #[test]
        fn chunked_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..3000),
            sizes in proptest::collection::vec(1usize..700, 1..8),
            step in 1usize..64,
        ) {
            let mut wire = chunked(&body, &sizes);
            wire.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
            let (decoded, left) = decode_all(&wire, step).expect("valid chunked body");
            prop_assert_eq!(decoded, body);
            prop_assert_eq!(left, b"HTTP/1.1 200 OK\r\n".len());
        }

        /// Arbitrary bytes never panic the head parser or the chunk decoder.
        #[test]
        fn arbitrary_bytes_do_not_panic(wire in proptest::collection::vec(any::<u8>(), 0..600), step in 1usize..32) {
            for head_request in [false, true] {
                let mut fields = Vec::new();
                if let Ok(Some((len, Some(found)))) = parse_head(&wire, head_request, &mut fields) {
                    let _ = header_map(&Bytes::copy_from_slice(&wire[..len]), &mut fields, found.drop_length);
                }
            }
            let _ = decode_all(&wire, step);
        }
    }

    fn framing(head: &str, head_request: bool) -> Result<(Framing, bool), &'static str> {
        match parse_head(head.as_bytes(), head_request, &mut Vec::new()) {
            Ok(Some((_, Some(found)))) => Ok((found.framing, found.keep_alive)),
            Ok(Some((_, None))) => Err("interim"),
            Ok(None) => Err("partial"),
            Err(HeadError::Invalid(what)) => Err(what),
            Err(_) => Err("io"),
        }
    }

    #[test]
    fn response_framing() {
        let ok = |extra: &str| format!("HTTP/1.1 200 OK\r\n{extra}\r\n");
        assert_eq!(framing(&ok("content-length: 5\r\n"), false), Ok((Framing::Length(5), true)));
        assert_eq!(framing(&ok("content-length: 0\r\n"), false), Ok((Framing::Empty, true)));
        assert_eq!(framing(&ok("content-length: 5\r\n"), true), Ok((Framing::Empty, true)), "HEAD");
        assert_eq!(framing(&ok(""), false), Ok((Framing::UntilClose, false)));
        assert_eq!(framing(&ok("transfer-encoding: chunked\r\n"), false), Ok((Framing::Chunked, true)));
        assert_eq!(framing(&ok("transfer-encoding: gzip, chunked\r\n"), false), Ok((Framing::Chunked, true)));
        assert_eq!(framing(&ok("transfer-encoding: chunked, gzip\r\n"), false), Ok((Framing::UntilClose, false)));
        assert_eq!(
            framing(&ok("content-length: 9\r\ntransfer-encoding: chunked\r\n"), false),
            Ok((Framing::Chunked, true)),
            "Transfer-Encoding wins"
        );
        assert_eq!(framing(&ok("content-length: 5\r\nconnection: Close\r\n"), false), Ok((Framing::Length(5), false)));
        assert_eq!(framing(&ok("content-length: 5, 5\r\n"), false), Ok((Framing::Length(5), true)));
        assert!(framing(&ok("content-length: 5, 6\r\n"), false).is_err());
        assert!(framing(&ok("content-length: 5\r\ncontent-length: 6\r\n"), false).is_err());
        assert!(framing(&ok("content-length: -5\r\n"), false).is_err());
        assert!(framing(&ok("content-length: 0x5\r\n"), false).is_err());
        assert!(framing(&ok("content-length: 99999999999999999999\r\n"), false).is_err());
        assert_eq!(
            framing("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", false),
            Ok((Framing::Length(2), false)),
            "HTTP/1.0: not reused"
        );
        assert_eq!(framing("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", false), Ok((Framing::Empty, true)));
        assert_eq!(framing("HTTP/1.1 304 Not Modified\r\n\r\n", false), Ok((Framing::Empty, true)));
        assert_eq!(framing("HTTP/1.1 100 Continue\r\n\r\n", false), Err("interim"));
        assert!(framing("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err());
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n", false), Err("partial"));
    }

    #[test]
    fn invalid_chunks() {
        for wire in [&b"zz\r\nhello\r\n0\r\n\r\n"[..], b"5\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n", b"\r\n"] {
            assert_eq!(decode_all(wire, 3), None, "{:?}", String::from_utf8_lossy(wire));
        }
        let long = format!("1{}\r\n", "0".repeat(20));
        assert_eq!(decode_all(long.as_bytes(), 7), None, "a size beyond 15 hex digits");
    }
}
