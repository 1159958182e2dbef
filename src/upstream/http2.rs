//! The HTTP/2 exchange with an upstream (`protocol = "h2c"`, `"h2"`, or
//! `"auto"` when ALPN picks h2): hyper's HTTP/2 client over connections kept
//! per worker, each carrying many streams at once. hyper's connection task
//! keeps each stream's flow control: a response body is taken from the
//! connection as its client reads it, so a slow reader slows its own stream
//! (its window fills up) and not the connection's others, and what is held
//! for it is bounded by the stream window.
//!
//! A request the upstream did not process — the connection closed before it
//! was sent, `REFUSED_STREAM`, or a `GOAWAY` that left it out — is sent again
//! on another connection. Its body is read from the client only once: the
//! frames sent are kept (up to [`REPLAY_LIMIT`] bytes) so that a refused
//! stream can be sent again whole; a larger body is not sent again (502).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{HeaderValue, HOST, TE};
use http::{Request, Response, Uri, Version};
use hyper::body::{Body as _, Incoming};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::time::Instant;

use super::conn::Io;
use super::{Upstream, UpstreamBody, UpstreamError};
use crate::body::RequestBody;

/// Connections kept per worker and upstream.
const MAX_CONNECTIONS: usize = 4;
/// Streams in flight on one connection before another is opened: no more
/// than its window holds stream windows, so that streams whose readers stall
/// (each holding at most a stream window) cannot use up the window the
/// connection's other streams need (beyond the peer's own
/// `SETTINGS_MAX_CONCURRENT_STREAMS`, hyper queues). Past `MAX_CONNECTIONS`
/// full connections, streams share the least busy one.
const STREAMS_PER_CONNECTION: usize = (CONNECTION_WINDOW / STREAM_WINDOW) as usize;
/// How often a request the upstream did not process is sent again.
const MAX_RESENDS: usize = 3;
/// The body bytes kept for sending a refused request again (a gRPC unary
/// call's message, say); past it, a refused request is answered 502.
const REPLAY_LIMIT: usize = 64 * 1024;
/// Flow-control windows: per stream, and per connection (`STREAMS_PER_CONNECTION`
/// streams' worth). What a connection holds for readers that stall is bounded
/// by the connection window.
const STREAM_WINDOW: u32 = 256 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;

/// One HTTP/2 connection of a worker, with its streams in flight.
#[derive(Clone)]
pub(super) struct H2Conn {
    sender: SendRequest<Replayable>,
    in_flight: Arc<AtomicUsize>,
}

/// The HTTP/2 connections of one upstream, per worker.
pub(super) struct Pools(Box<[Mutex<Vec<H2Conn>>]>);

impl Pools {
    pub(super) fn new(workers: usize) -> Pools {
        Pools((0..workers).map(|_| Mutex::new(Vec::new())).collect())
    }

    /// A connection with room for one more stream, if the worker has one open.
    fn pick(&self, worker: usize) -> Option<H2Conn> {
        let mut conns = self.0[worker].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|c| !c.sender.is_closed());
        let least = conns.iter().min_by_key(|c| c.in_flight.load(Ordering::Relaxed))?;
        let busy = least.in_flight.load(Ordering::Relaxed) >= STREAMS_PER_CONNECTION;
        (!busy || conns.len() >= MAX_CONNECTIONS).then(|| least.clone())
    }

    fn add(&self, worker: usize, conn: H2Conn) {
        let mut conns = self.0[worker].lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        conns.retain(|c| !c.sender.is_closed());
        if conns.len() < MAX_CONNECTIONS {
            conns.push(conn);
        }
    }
}

impl Upstream {
    /// An HTTP/2 connection of this worker with room for a stream, else a new one.
    async fn h2_checkout(&self, worker: usize, deadline: Instant) -> Result<H2Conn, UpstreamError> {
        if let Some(conn) = self.h2.pick(worker) {
            return Ok(conn);
        }
        let connect = tokio::time::timeout_at(deadline, Box::pin(self.connect(false)));
        let io = connect.await.map_err(|_| UpstreamError::Timeout(self.name.clone()))??;
        self.h2_adopt(worker, io).await
    }

    /// Starts HTTP/2 on a new connection (its task runs on this worker) and pools it.
    pub(super) async fn h2_adopt(&self, worker: usize, io: Io) -> Result<H2Conn, UpstreamError> {
        let mut builder = hyper::client::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .initial_stream_window_size(STREAM_WINDOW)
            .initial_connection_window_size(CONNECTION_WINDOW)
            .max_header_list_size(64 * 1024);
        let handshake = tokio::time::timeout(self.connect_timeout, builder.handshake(TokioIo::new(io)));
        let (sender, conn) = handshake
            .await
            .map_err(|_| UpstreamError::Connect(self.name.clone()))?
            .map_err(|e| UpstreamError::Failed(self.name.clone(), format!("HTTP/2 handshake: {e}")))?;
        let name = self.name.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(upstream = %name, error = %e, "upstream HTTP/2 connection ended");
            }
        });
        let conn = H2Conn { sender, in_flight: Arc::new(AtomicUsize::new(0)) };
        self.h2.add(worker, conn.clone());
        Ok(conn)
    }
}

/// Whether an error means the upstream did not process the request: refused
/// stream, or a `GOAWAY` that did not include it.
fn not_processed(e: &hyper::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            return h2.reason() == Some(h2::Reason::REFUSED_STREAM) || h2.is_go_away();
        }
        source = err.source();
    }
    false
}

/// Sends a request over HTTP/2 and waits for the response head before `deadline`.
/// `trailers`: the client accepts trailers (`te: trailers` is passed on, the
/// one `TE` value HTTP/2 allows).
pub(super) async fn exchange(
    call: &super::Call<'_>,
    req: Request<RequestBody>,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let super::Call { up, worker, target, trailers, deadline, .. } = *call;
    let failed = |what: String| UpstreamError::Failed(up.name.clone(), what);
    let (mut parts, body) = req.into_parts();
    // `:authority` from the client's Host (the upstream's own name when it is
    // missing), `:scheme` from the connection; no Host field beside them.
    let authority = parts.headers.remove(HOST).unwrap_or_else(|| {
        HeaderValue::from_str(&up.authority()).unwrap_or_else(|_| HeaderValue::from_static("localhost"))
    });
    let scheme = if up.tls.is_some() { "https" } else { "http" };
    parts.uri = Uri::builder()
        .scheme(scheme)
        .authority(authority.as_bytes())
        .path_and_query(target)
        .build()
        .map_err(|e| failed(format!("the request URI: {e}")))?;
    parts.version = Version::HTTP_2;
    if trailers {
        parts.headers.insert(TE, HeaderValue::from_static("trailers"));
    }
    let kept = (!body.is_end_stream()).then(|| Arc::new(Mutex::new(Kept::new(body))));
    let mut resends = 0;
    loop {
        let mut conn = up.h2_checkout(worker, deadline).await?;
        let req = Request::from_parts(parts.clone(), Replayable::attempt(&kept));
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(Some(Arc::clone(&conn.in_flight)));
        let sent = tokio::time::timeout_at(deadline, async {
            conn.sender.ready().await.map_err(|e| (e, None))?;
            conn.sender.try_send_request(req).await.map_err(|mut e| {
                let unsent = e.take_message();
                (e.into_error(), unsent)
            })
        })
        .await;
        match sent {
            Err(_) => return Err(UpstreamError::Timeout(up.name.clone())),
            Ok(Ok(resp)) => return Ok(resp.map(|b| UpstreamBody::http2(b, guard))),
            Ok(Err((e, unsent))) if resends < MAX_RESENDS => match unsent {
                Some(_) => tracing::debug!(upstream = %up.name, error = %e, "HTTP/2 request not sent; sending again"),
                None if not_processed(&e) && kept.as_deref().is_none_or(|k| lock(k).replayable()) => {
                    tracing::debug!(upstream = %up.name, error = %e, "HTTP/2 request not processed; sending again");
                }
                None => return Err(failed(e.to_string())),
            },
            Ok(Err((e, _))) => return Err(failed(e.to_string())),
        }
        resends += 1;
    }
}

/// A request body as sent to an HTTP/2 upstream: the client's body, read once,
/// its frames kept (up to [`REPLAY_LIMIT`] bytes of data) so that a request
/// the upstream refused can be sent again from its first frame. Each attempt
/// has its own `Replayable`: it reads the kept frames, then the client's body
/// (keeping what it reads); an attempt superseded by a newer one ends at once
/// (its stream was refused), so the body is never read by two at a time.
pub(super) struct Replayable {
    /// `None` for a request without a body: nothing to keep, nothing to lock.
    kept: Option<Arc<Mutex<Kept>>>,
    attempt: usize,
    next: usize,
}

struct Kept {
    body: RequestBody,
    frames: Vec<KeptFrame>,
    bytes: usize,
    /// More data was read than is kept: the body cannot be sent again.
    overflowed: bool,
    /// The attempt that may read on.
    current: usize,
}

enum KeptFrame {
    Data(Bytes),
    Trailers(http::HeaderMap),
}

impl Kept {
    fn new(body: RequestBody) -> Kept {
        Kept { body, frames: Vec::new(), bytes: 0, overflowed: false, current: 0 }
    }

    /// Whether a new attempt can send the whole body again.
    fn replayable(&self) -> bool {
        !self.overflowed
    }
}

fn lock(kept: &Mutex<Kept>) -> std::sync::MutexGuard<'_, Kept> {
    kept.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Replayable {
    /// The body of a new attempt, from the first frame; earlier attempts end.
    fn attempt(kept: &Option<Arc<Mutex<Kept>>>) -> Replayable {
        let Some(kept) = kept else { return Replayable { kept: None, attempt: 0, next: 0 } };
        let mut k = lock(kept);
        k.current += 1;
        Replayable { kept: Some(Arc::clone(kept)), attempt: k.current, next: 0 }
    }
}

impl hyper::body::Body for Replayable {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        use hyper::body::Frame;
        use std::task::Poll;
        let this = self.get_mut();
        let Some(kept) = &this.kept else { return Poll::Ready(None) };
        let mut guard = lock(kept);
        let kept = &mut *guard;
        if kept.current != this.attempt {
            return Poll::Ready(None);
        }
        if let Some(frame) = kept.frames.get(this.next) {
            this.next += 1;
            return Poll::Ready(Some(Ok(match frame {
                KeptFrame::Data(d) => Frame::data(d.clone()),
                KeptFrame::Trailers(t) => Frame::trailers(t.clone()),
            })));
        }
        let polled = std::pin::Pin::new(&mut kept.body).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if !kept.overflowed {
                if let Some(data) = frame.data_ref() {
                    kept.bytes += data.len();
                    if kept.bytes > REPLAY_LIMIT {
                        kept.overflowed = true;
                        kept.frames = Vec::new();
                    } else {
                        kept.frames.push(KeptFrame::Data(data.clone()));
                    }
                } else if let Some(trailers) = frame.trailers_ref() {
                    kept.frames.push(KeptFrame::Trailers(trailers.clone()));
                }
                this.next = kept.frames.len();
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let Some(kept) = &self.kept else { return true };
        let kept = lock(kept);
        kept.current != self.attempt || (self.next >= kept.frames.len() && kept.body.is_end_stream())
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        let Some(kept) = &self.kept else { return hyper::body::SizeHint::with_exact(0) };
        let kept = lock(kept);
        // Exact only before anything was read (what is kept is not counted twice).
        match kept.frames.is_empty() && kept.bytes == 0 {
            true => kept.body.size_hint(),
            false => hyper::body::SizeHint::default(),
        }
    }
}

/// Counts a stream in flight until its response body ends or is dropped.
pub(super) struct InFlight(Option<Arc<AtomicUsize>>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = self.0.take() {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A response body from an HTTP/2 exchange (data and trailers frames as they come).
pub(super) struct Body {
    pub(super) body: Incoming,
    pub(super) _in_flight: InFlight,
}

impl Body {
    pub(super) fn poll_frame(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, hyper::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }
}
