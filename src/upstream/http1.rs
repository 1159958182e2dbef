//! The HTTP/1.1 exchange with an upstream, for every request: the request's
//! own task writes the request head (and streams its body) and reads the
//! response head on a pooled connection (no connection task, no channel
//! between the two); the response body is read from the connection by
//! whoever polls it. The wire rules are `h1`'s.
//!
//! A connection is reused only after a complete, exactly framed HTTP/1.1
//! response without `Connection: close`, to a request that was sent whole,
//! with no byte after the response; when it is taken from the pool again,
//! anything that arrived on it meanwhile closes it (see `pool.rs`). Bytes an
//! upstream sends that no request asked for are counted in
//! `rolegate_upstream_errors_total` (`unsolicited_bytes` on an idle
//! connection, `bytes_after_response` right after a response), and never
//! reach a client.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use http::header::CONTENT_LENGTH;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::body::{Body as _, Frame, SizeHint};
use prometheus_client::metrics::counter::Counter;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::conn::{Idle, Io, PendingUpgrade, Upgraded};
use super::{BodyError, Upstream, UpstreamBody, UpstreamError};
use crate::body::RequestBody;
use crate::h1::framing;
use crate::h1::head::{Fields, Parsed, ResponseHead};
use crate::h1::hop::HopByHop;
use crate::h1::{self as wire, ChunkedDecoder, Decoded, Field, Framing};
use crate::metrics::Metrics;

use crate::h1::head::MAX_RESPONSE_HEAD as MAX_HEAD;
/// A request head buffer larger than this is not kept with its connection.
const MAX_KEPT_HEAD: usize = 16 * 1024;
/// How often a request is tried again on another connection when the one it
/// was given closed before the request was written (an upstream closing an
/// idle keep-alive connection races with its reuse). Never after writing.
const MAX_RESENDS: usize = 3;

/// One keep-alive connection to an upstream.
pub(super) struct Conn {
    io: Io,
    /// Bytes read but not consumed yet (empty between exchanges).
    buf: BytesMut,
    /// Scratch list of a response head's headers while it is parsed.
    fields: Vec<Field>,
    /// The request head being written (kept for the next one; see [`MAX_KEPT_HEAD`]).
    head: Vec<u8>,
    /// Whether it served an exchange before (only then may a failure before
    /// the first response byte be the upstream closing an idle connection).
    reused: bool,
    /// Bounds each exchange (the upstream's `timeout`). Registered once and
    /// moved on lazily: it stays at an earlier exchange's deadline, and when it
    /// fires before the current one, it is set to that one (see [`within`]).
    /// So an exchange costs no timer registration of its own. Like the
    /// socket, it belongs to the runtime of the worker whose pool holds it.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Conn {
    fn new(io: Io, deadline: Instant) -> Conn {
        Conn {
            io,
            buf: BytesMut::new(),
            fields: Vec::new(),
            head: Vec::new(),
            reused: false,
            timer: Some(Box::pin(tokio::time::sleep_until(deadline))),
        }
    }

    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.io.poll_fill(cx, &mut self.buf)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }
}

impl Upstream {
    /// A connection for one exchange: an idle one of this worker that has
    /// received nothing since its last response, else a new one.
    async fn checkout(&self, worker: usize, deadline: Instant, metrics: &Metrics) -> Result<Conn, UpstreamError> {
        while let Some(mut conn) = self.idle.pop(worker) {
            match conn.io.idle_state() {
                Idle::Nothing => return Ok(conn),
                Idle::Closed => {}
                Idle::Bytes => {
                    tracing::debug!(upstream = %self.name, "bytes on an idle upstream connection; closed");
                    metrics.unsolicited_bytes.inc();
                }
            }
        }
        // Boxed: connecting (TCP, TLS) is rare and its future is large;
        // inline, it would be copied with every request's future.
        let connect = tokio::time::timeout_at(deadline, Box::pin(self.connect(true)));
        let io = connect.await.map_err(|_| UpstreamError::Timeout(self.name.clone()))??;
        Ok(Conn::new(io, deadline))
    }

    /// A new connection (an `auto` upstream's first, which ALPN made HTTP/1.1) into the pool.
    pub(super) fn http1_adopt(&self, worker: usize, io: Io, deadline: Instant) {
        self.idle.park(worker, Conn::new(io, deadline));
    }

    fn give_back(&self, worker: usize, mut conn: Conn) {
        conn.reused = true;
        self.idle.park(worker, conn);
    }
}

/// Methods a request may be sent again for when a reused connection turned
/// out closed before any byte of the response (RFC 9110 §9.2.2).
fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE)
}

/// Sends a request (head, then its body if any) and reads the response head,
/// all before `deadline` (else [`UpstreamError::Timeout`]).
pub(super) async fn exchange(
    call: &super::Call<'_>,
    req: Request<RequestBody>,
    metrics: &Metrics,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let super::Call { up, worker, target, upgrade, trailers, as_received, deadline } = *call;
    let failed = |what: &str| UpstreamError::Failed(up.name.clone(), what.to_owned());
    let timed_out = || UpstreamError::Timeout(up.name.clone());
    let (mut parts, body) = req.into_parts();
    if trailers {
        // This hop accepts trailers too (and passes them on).
        parts.headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
        parts.headers.append(http::header::CONNECTION, http::HeaderValue::from_static("te"));
    }
    let body_framing = framing::request(&mut parts.headers, body.is_end_stream(), body.size_hint().exact());
    let mut body = (body_framing != Framing::Empty).then_some(body);
    let head_request = parts.method == Method::HEAD;
    // A request with a body is never sent twice: its body is read once.
    let may_resend = body.is_none() && idempotent(&parts.method);
    let mut resends = 0;
    behind_ready_tasks().await;
    loop {
        let mut conn = up.checkout(worker, deadline, metrics).await?;
        // Only a connection that served before can fail because the upstream
        // closed it while idle: then the request may go out again (after a
        // response byte was awaited, only an idempotent one).
        let retry = conn.reused && resends < MAX_RESENDS && body.is_none();
        let mut timer = conn.timer.take().unwrap_or_else(|| Box::pin(tokio::time::sleep_until(deadline)));
        wire::encode::request_head(&mut conn.head, target, &parts);
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
        // The body, while watching for an early answer (the upstream may
        // refuse before reading it all); the request is whole only if it all went.
        let mut sent_whole = true;
        if let Some(body) = body.take() {
            // Boxed: rare on the hot path, and a large future every request would carry.
            let send = Box::pin(send_body(&mut conn, body, body_framing, head_request));
            match within(timer.as_mut(), deadline, send).await {
                None => return Err(timed_out()),
                Some(Ok(Sent::Whole)) => {}
                Some(Ok(Sent::Answered)) => sent_whole = false,
                Some(Err(SendError::Client(e))) => return Err(failed(&format!("reading the request body: {e}"))),
                Some(Err(SendError::Upstream(e))) if conn.buf.is_empty() => {
                    return Err(failed(&format!("writing the request body: {e}")))
                }
                // The upstream stopped reading, having answered: its answer is read below.
                Some(Err(SendError::Upstream(_))) => sent_whole = false,
            }
        }
        let read = within(timer.as_mut(), deadline, read_head(&mut conn, head_request, upgrade, as_received)).await;
        conn.timer = Some(timer);
        let Some(read) = read else { return Err(timed_out()) };
        match read {
            Ok((mut head, framing)) => {
                head.keep_alive &= sent_whole;
                let resp = into_response(head, framing, conn, up, worker, metrics);
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

/// How sending a request body ended.
enum Sent {
    Whole,
    /// The upstream answered (a final response head is in the buffer, or it
    /// closed) before the body was sent: the rest is not sent.
    Answered,
}

enum SendError {
    /// The client's body broke off.
    Client(String),
    /// Writing to the upstream failed.
    Upstream(io::Error),
}

/// Streams the request body in `framing`, watching the connection: when a
/// final response head (or the upstream's close) arrives first, sending stops.
async fn send_body(
    conn: &mut Conn,
    body: RequestBody,
    framing: Framing,
    head_request: bool,
) -> Result<Sent, SendError> {
    let mut body = pin!(body);
    let mut left = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    let mut out = Vec::new();
    loop {
        // The next piece of the body, or an answer.
        let next = std::future::poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                return Poll::Ready(Ok(Some(frame)));
            }
            watch(conn, cx, head_request).map(|r| r.map(|()| None))
        })
        .await
        .map_err(SendError::Upstream)?;
        let Some(frame) = next else { return Ok(Sent::Answered) };
        out.clear();
        let mut done = false;
        match frame {
            None => {
                done = true;
                if left.is_some_and(|n| n > 0) {
                    return Err(SendError::Client("the body is shorter than its Content-Length".into()));
                }
                if framing == Framing::Chunked {
                    wire::chunked::encode_end(&mut out, None);
                }
            }
            Some(Err(e)) => return Err(SendError::Client(e.to_string())),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) if data.is_empty() => continue,
                Ok(data) => {
                    if let Some(n) = &mut left {
                        if data.len() as u64 > *n {
                            return Err(SendError::Client("the body is longer than its Content-Length".into()));
                        }
                        *n -= data.len() as u64;
                    }
                    if framing == Framing::Chunked {
                        wire::chunked::encode_size(&mut out, data.len());
                        out.extend_from_slice(&data);
                        out.extend_from_slice(b"\r\n");
                    } else {
                        out.extend_from_slice(&data);
                        done = left == Some(0);
                    }
                }
                Err(frame) => {
                    // Trailers: sent with the last chunk (a length-framed body has nowhere to put them).
                    if let (Ok(trailers), Framing::Chunked) = (frame.into_trailers(), framing) {
                        wire::chunked::encode_end(&mut out, Some(&trailers));
                        write_watching(conn, &out, head_request).await?;
                        return Ok(Sent::Whole);
                    }
                    continue;
                }
            },
        }
        if let Sent::Answered = write_watching(conn, &out, head_request).await? {
            return Ok(Sent::Answered);
        }
        if done {
            return Ok(Sent::Whole);
        }
    }
}

/// Writes `data` whole, unless the upstream answers first.
async fn write_watching(conn: &mut Conn, data: &[u8], head_request: bool) -> Result<Sent, SendError> {
    let mut written = 0;
    std::future::poll_fn(|cx| {
        while written < data.len() {
            match Pin::new(&mut conn.io).poll_write(cx, &data[written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(SendError::Upstream(io::ErrorKind::WriteZero.into()))),
                Poll::Ready(Ok(n)) => written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(SendError::Upstream(e))),
                Poll::Pending => {
                    return match watch(conn, cx, head_request) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(Sent::Answered)),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(SendError::Upstream(e))),
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        Poll::Ready(Ok(Sent::Whole))
    })
    .await
}

/// While a request body is being sent: `Ready(Ok)` once the upstream has
/// answered with a final response head (or closed); interim responses are
/// skipped. Pending while it says nothing.
fn watch(conn: &mut Conn, cx: &mut Context<'_>, head_request: bool) -> Poll<io::Result<()>> {
    loop {
        match parse_head(&conn.buf, head_request, false, &mut conn.fields) {
            Ok(Some((len, None))) => conn.buf.advance(len),
            Ok(Some((_, Some(_)))) | Err(_) => return Poll::Ready(Ok(())),
            Ok(None) => {
                if ready!(conn.poll_fill(cx))? == 0 {
                    return Poll::Ready(Ok(()));
                }
            }
        }
    }
}

/// Lets the tasks that are ready now run before this one goes on (it is
/// rescheduled at once, at the back of the run queue; unlike
/// `tokio::task::yield_now`, not after the next poll of the I/O driver).
///
/// Used before a request is written upstream, so that each worker does its
/// requests' work in phases: every ready request is checked, then written
/// upstream. Measured with the upstream on the same core (the benchmark
/// layout, and a sidecar's): writing each request the moment it was checked
/// woke the upstream once per request (0.53 context switches per request
/// against 0.36, 12% fewer requests per second), as context switches and
/// kernel time ate the saving of the lean exchange; with the write deferred,
/// the upstream takes several requests per wake-up. A response is handed to
/// its client at once: deferring it as well (as an earlier exchange did) cost
/// 2–4% of keep-alive throughput in three same-run A/B runs. With a single
/// request in flight, the run queue is empty and this returns at the next
/// poll.
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
    let mut work = pin!(work);
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

enum HeadError {
    /// End of stream before any byte of a response.
    Closed,
    Io(io::Error),
    Invalid(&'static str),
}

/// A response's header fields as received, hop-by-hop ones left out, and the
/// request's `x-request-id`, which replaces the upstream's (carried by its
/// `UpstreamBody` for the lean server).
pub(super) struct Received {
    pub(super) fields: Fields,
    pub(super) request_id: HeaderValue,
}

/// The parsed response head: status, headers, and whether the connection may
/// be reused once the body has been read.
struct Head {
    status: StatusCode,
    /// Empty when the fields are kept as `received`.
    headers: HeaderMap,
    received: Option<Box<Received>>,
    keep_alive: bool,
}

/// Reads until a final (non-1xx) response head is complete; leaves the bytes
/// after it in `conn.buf`. A `101` is a final head only for a request that
/// asked to upgrade. Hop-by-hop fields are left out of all but a `101` (whose
/// `Upgrade` the gateway checks); with a `request_id`, the fields are kept as
/// received where a map would give the same (see [`received`]).
async fn read_head(
    conn: &mut Conn,
    head_request: bool,
    upgrade: bool,
    request_id: Option<&HeaderValue>,
) -> Result<(Head, Framing), HeadError> {
    let mut seen_any = false;
    loop {
        if !conn.buf.is_empty() {
            seen_any = true;
            match parse_head(&conn.buf, head_request, upgrade, &mut conn.fields)? {
                Some((len, Some(found))) => {
                    // The head is taken off the buffer; the header values are
                    // slices of those bytes (no copy).
                    let head = conn.buf.split_to(len).freeze();
                    let ResponseHead { status, keep_alive, framing, drop_length, single_length } = found;
                    let hop = (status != StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| HopByHop::of(conn.fields.iter().map(|(name, value)| (name, &head[value.clone()]))));
                    let length_replaced = drop_length || single_length.is_some();
                    let leave_out = |name: &HeaderName| {
                        (length_replaced && *name == CONTENT_LENGTH) || hop.as_ref().is_some_and(|h| h.drops(name))
                    };
                    if let (Some(id), Some(_), false) = (request_id, &hop, length_replaced) {
                        if let Some(fields) = received(&head, &mut conn.fields, leave_out) {
                            let received = Some(Box::new(Received { fields, request_id: id.clone() }));
                            return Ok((Head { status, headers: HeaderMap::new(), received, keep_alive }, framing));
                        }
                    }
                    let mut headers = header_map(&head, &mut conn.fields, leave_out)?;
                    if let Some(n) = single_length {
                        headers.insert(CONTENT_LENGTH, n.into());
                    }
                    return Ok((Head { status, headers, received: None, keep_alive }, framing));
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

/// The header map of a final head, its values sliced from `head`.
fn header_map(
    head: &Bytes,
    fields: &mut Vec<Field>,
    leave_out: impl Fn(&HeaderName) -> bool,
) -> Result<HeaderMap, HeadError> {
    // Room for the header the gateway adds (`x-request-id`) without growing.
    wire::header_map(head, fields, 1, leave_out).map_err(|_| HeadError::Invalid("a response header value is not valid"))
}

/// The fields of a final head but those `leave_out` names, kept as received
/// (no header map; `fields` is emptied), when a map would hold the same in
/// the same order: no name twice (a map groups a name's values at its first
/// place). Else `None`, and `fields` is left as it was. The values are valid
/// for a map: the parser takes no other bytes in them.
fn received(head: &Bytes, fields: &mut Vec<Field>, leave_out: impl Fn(&HeaderName) -> bool) -> Option<Fields> {
    let mut list: Vec<Field> = Vec::with_capacity(fields.len());
    for (name, value) in fields.iter() {
        if leave_out(name) {
            continue;
        }
        if list.iter().any(|(n, _)| n == name) {
            return None;
        }
        debug_assert!(wire::head::valid_value(&head[value.clone()]));
        list.push((name.clone(), value.clone()));
    }
    fields.clear();
    Some(Fields::new(head.clone(), list))
}

/// [`wire::head::parse_response`], its refusals as [`HeadError::Invalid`].
fn parse_head(buf: &[u8], head_request: bool, upgrade: bool, fields: &mut Vec<Field>) -> Result<Parsed, HeadError> {
    wire::head::parse_response(buf, head_request, upgrade, fields).map_err(HeadError::Invalid)
}

/// The response for the client, with a body that owns the connection until
/// the body has been read; a body that is already complete in the buffer
/// returns the connection to the pool at once. A `101` hands the connection
/// over with the response ([`PendingUpgrade`]).
fn into_response(
    head: Head,
    framing: Framing,
    mut conn: Conn,
    up: &Arc<Upstream>,
    worker: usize,
    metrics: &Metrics,
) -> Response<UpstreamBody> {
    let mut upgraded = None;
    let body = if head.status == StatusCode::SWITCHING_PROTOCOLS {
        upgraded = Some(PendingUpgrade::new(Upgraded::new(conn.buf.split().freeze(), conn.io)));
        Body::Full(None)
    } else {
        match framing {
            Framing::Empty => {
                release(up, worker, conn, head.keep_alive, &metrics.bytes_after_response);
                Body::Full(None)
            }
            Framing::Length(n) if conn.buf.len() as u64 >= n => {
                let bytes = conn.buf.split_to(n as usize).freeze();
                release(up, worker, conn, head.keep_alive, &metrics.bytes_after_response);
                Body::Full(Some(bytes))
            }
            framing => Body::Stream(Box::new(Streaming {
                conn: Some(conn),
                state: match framing {
                    Framing::Length(n) => State::Length(n),
                    Framing::Chunked => State::Chunked(ChunkedDecoder::default()),
                    _ => State::UntilClose,
                },
                keep_alive: head.keep_alive,
                give_back: Some((Arc::clone(up), worker, metrics.bytes_after_response.clone())),
            })),
        }
    };
    let mut resp = Response::new(UpstreamBody::http1(body, head.received));
    *resp.status_mut() = head.status;
    *resp.version_mut() = Version::HTTP_11;
    *resp.headers_mut() = head.headers;
    if let Some(upgraded) = upgraded {
        resp.extensions_mut().insert(upgraded);
    }
    resp
}

/// After a response read to its exact end: the connection goes back to the
/// pool if the response allows reuse and nothing unasked follows it; else it
/// is closed (dropped), and bytes after the response are counted.
fn release(up: &Upstream, worker: usize, conn: Conn, keep_alive: bool, bytes_after: &Counter) {
    if !conn.buf.is_empty() {
        tracing::debug!(upstream = %up.name, bytes = conn.buf.len(), "bytes after an upstream response; connection closed");
        bytes_after.inc();
        return;
    }
    if keep_alive {
        up.give_back(worker, conn);
    }
}

/// A response body from an HTTP/1.1 exchange.
pub(super) enum Body {
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
pub(super) struct Streaming {
    /// `None` once the body has ended and the connection went back or closed.
    conn: Option<Conn>,
    state: State,
    keep_alive: bool,
    /// Where the connection goes back once the body has been read whole.
    give_back: Option<(Arc<Upstream>, usize, Counter)>,
}

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    UntilClose,
    Done,
}

impl Streaming {
    fn poll_frame(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) => {
                    if conn.buf.is_empty() {
                        if ready!(self.fill(cx))? == 0 {
                            return self.fail("the connection closed inside the body");
                        }
                        continue;
                    }
                    let take = (*left).min(conn.buf.len() as u64);
                    let data = conn.buf.split_to(take as usize).freeze();
                    *left -= take;
                    if *left == 0 {
                        self.finish();
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
                State::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => return Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
                    Ok(Decoded::End) => {
                        self.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::NeedMore) => {
                        if ready!(self.fill(cx))? == 0 {
                            return self.fail("the connection closed inside a chunked body");
                        }
                    }
                    Err(e) => return self.fail(e.0),
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
        if let (Some((up, worker, bytes_after)), Some(conn)) = (self.give_back.take(), self.conn.take()) {
            release(&up, worker, conn, self.keep_alive, &bytes_after);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framing(head: &str, head_request: bool) -> Result<(Framing, bool), &'static str> {
        match parse_head(head.as_bytes(), head_request, false, &mut Vec::new()) {
            Ok(Some((_, Some(found)))) => Ok((found.framing, found.keep_alive)),
            Ok(Some((_, None))) => Err("interim"),
            Ok(None) => Err("partial"),
            Err(HeadError::Invalid(what)) => Err(what),
            Err(_) => Err("io"),
        }
    }

    #[test]
    fn response_framing_and_reuse() {
        let ok = |extra: &str| format!("HTTP/1.1 200 OK\r\n{extra}\r\n");
        assert_eq!(framing(&ok("content-length: 5\r\n"), false), Ok((Framing::Length(5), true)));
        assert_eq!(framing(&ok("content-length: 0\r\n"), false), Ok((Framing::Empty, true)));
        assert_eq!(framing(&ok("content-length: 5\r\n"), true), Ok((Framing::Empty, true)), "HEAD");
        assert_eq!(framing(&ok(""), false), Ok((Framing::UntilClose, false)));
        assert_eq!(framing(&ok("transfer-encoding: chunked\r\n"), false), Ok((Framing::Chunked, true)));
        assert_eq!(framing(&ok("transfer-encoding: chunked, gzip\r\n"), false), Ok((Framing::UntilClose, false)));
        assert_eq!(
            framing(&ok("content-length: 9\r\ntransfer-encoding: chunked\r\n"), false),
            Ok((Framing::Chunked, false)),
            "Transfer-Encoding wins, and the connection is not reused"
        );
        assert_eq!(framing(&ok("content-length: 5\r\nconnection: Close\r\n"), false), Ok((Framing::Length(5), false)));
        assert!(framing(&ok("content-length: 5\r\ncontent-length: 6\r\n"), false).is_err());
        assert_eq!(framing("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n", false), Ok((Framing::Length(2), false)));
        assert!(framing("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n", false).is_err());
        assert_eq!(framing("HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", false), Ok((Framing::Empty, true)));
        assert_eq!(framing("HTTP/1.1 100 Continue\r\n\r\n", false), Err("interim"));
        assert!(framing("HTTP/1.1 101 Switching Protocols\r\n\r\n", false).is_err(), "101 to no upgrade");
        let upgraded =
            parse_head(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n\r\n", false, true, &mut Vec::new());
        assert!(matches!(upgraded, Ok(Some((_, Some(ResponseHead { keep_alive: false, .. }))))));
        assert_eq!(framing("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n", false), Err("partial"));
    }

    proptest! {
        /// Arbitrary bytes never panic the head parser; the values of a head
        /// it takes are valid header values (fields kept as received are
        /// never checked again), so its map always builds.
        #[test]
        fn arbitrary_heads_do_not_panic(wire in proptest::collection::vec(any::<u8>(), 0..600)) {
            for (head_request, upgrade) in [(false, false), (true, false), (false, true)] {
                let mut fields = Vec::new();
                if let Ok(Some((len, Some(_)))) = parse_head(&wire, head_request, upgrade, &mut fields) {
                    for (_, value) in &fields {
                        prop_assert!(wire::head::valid_value(&wire[value.clone()]));
                    }
                    prop_assert!(header_map(&Bytes::copy_from_slice(&wire[..len]), &mut fields, |_| false).is_ok());
                }
            }
        }

        /// Heads of header-value bytes, control bytes among them: what the
        /// parser takes as a value is valid (arbitrary bytes seldom make a head).
        #[test]
        fn accepted_values_are_valid(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 1..4)) {
            let mut wire = b"HTTP/1.1 200 OK\r\n".to_vec();
            for value in &values {
                wire.extend_from_slice(b"x-v: ");
                wire.extend_from_slice(value);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"content-length: 0\r\n\r\n");
            let mut fields = Vec::new();
            if let Ok(Some((_, Some(_)))) = parse_head(&wire, false, false, &mut fields) {
                for (_, value) in &fields {
                    prop_assert!(wire::head::valid_value(&wire[value.clone()]), "{:?}", String::from_utf8_lossy(&wire));
                }
            }
        }
    }
}
