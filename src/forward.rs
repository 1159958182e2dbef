//! Stage 6 of a request: send it upstream. The only module that talks to
//! upstreams, and it takes a [`Permit`]: there is no way to forward a request
//! that was not decided, nor to a path other than the one authorized.
//!
//! Two ways out, both over per-worker keep-alive connections: the lean
//! exchange (`forward/lean.rs`) for a request without a body to a plain-HTTP
//! upstream, the common case; hyper's client connection for everything else
//! (request bodies, upgrades, CONNECT, `https://` upstreams).

use std::cell::Cell;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::uri::{PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;

use crate::decide::Permit;
use crate::server::RequestBody;

mod lean;

/// Each worker thread keeps its own idle connections per upstream, so that a
/// pooled connection is always driven by the runtime that uses it.
const MAX_POOLS: usize = 64;

/// Idle keep-alive connections kept per upstream and worker; more are closed.
const MAX_IDLE: usize = 1024;

/// How often a request is tried again on another connection when the one it
/// was given closed before the request was written (an upstream closing an
/// idle keep-alive connection races with its reuse). Never after writing.
const MAX_RESENDS: usize = 3;

/// How long an idle connection that is not ready yet may keep a request waiting.
const READY_WAIT: Duration = Duration::from_millis(200);

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Called once by each worker thread (see `server::serve_workers`).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index % MAX_POOLS));
}

/// One `[upstreams.NAME]` with its keep-alive connections (per worker).
/// Shared by snapshots: a reload keeps the same `Upstream` (and its
/// connections) when its settings are unchanged.
///
/// The pools are ours rather than hyper-util's legacy client: per worker, a
/// list of `hyper::client::conn::http1` senders and a list of lean-exchange
/// sockets, each connection taken for one request and put back when its
/// response has been read to the end. Measured against the legacy pool (which
/// locks a shared map keyed by scheme and authority, with SipHash, and spawns
/// a task to return busy connections): see README "Performance".
pub struct Upstream {
    pub name: String,
    pub url: String,
    /// `host:port` as written (for DNS when `addr` is not an IP literal).
    host: String,
    port: u16,
    /// The address, when the URL names an IP: no resolution per connection.
    addr: Option<SocketAddr>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
    idle: Box<[Mutex<Vec<SendRequest<RequestBody>>>]>,
    /// Idle connections of the lean exchange (plain-HTTP upstreams only).
    lean_idle: Box<[Mutex<Vec<lean::Conn>>]>,
    /// TLS of an `https://` upstream: connector and the name to verify.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    ca_file: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").field("name", &self.name).field("url", &self.url).finish()
    }
}

impl Upstream {
    /// `url` is `http://host:port` (an optional trailing `/`, nothing else after it).
    /// `https://` upstreams are verified against the webpki and system roots
    /// plus `ca_file` (PEM), when given.
    pub fn new(
        name: &str,
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Upstream, String> {
        let uri: Uri = url.parse().map_err(|e| format!("upstream url {url:?}: {e}"))?;
        let scheme = uri.scheme().cloned().ok_or_else(|| format!("upstream url {url:?} needs a scheme (http://)"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!("upstream url {url:?}: the scheme must be http:// or https://"));
        }
        let authority = uri.authority().cloned().ok_or_else(|| format!("upstream url {url:?} needs a host"))?;
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "upstream url {url:?} has a path; the path forwarded is exactly the request's, so give scheme://host:port only"
            ));
        }
        let https = scheme == Scheme::HTTPS;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host().to_owned();
        let bare_host = host.trim_start_matches('[').trim_end_matches(']');
        let addr = bare_host.parse::<std::net::IpAddr>().ok().map(|ip| SocketAddr::new(ip, port));
        // Root certificates are loaded only for https:// upstreams.
        let tls = match https {
            true => {
                let config = Arc::new(crate::tls::client_config(ca_file)?);
                let server_name =
                    ServerName::try_from(bare_host.to_owned()).map_err(|e| format!("upstream url {url:?}: {e}"))?;
                Some((tokio_rustls::TlsConnector::from(config), server_name))
            }
            false => None,
        };
        Ok(Upstream {
            name: name.to_owned(),
            url: url.to_owned(),
            host,
            port,
            addr,
            connect_timeout,
            timeout,
            idle: (0..MAX_POOLS).map(|_| Mutex::new(Vec::new())).collect(),
            lean_idle: (0..MAX_POOLS).map(|_| Mutex::new(Vec::new())).collect(),
            tls,
            ca_file: ca_file.map(std::path::Path::to_path_buf),
        })
    }

    /// Whether a reload may keep this upstream (and its connection pool).
    pub fn same_settings(
        &self,
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> bool {
        self.url == url
            && self.connect_timeout == connect_timeout
            && self.timeout == timeout
            && self.ca_file.as_deref() == ca_file
    }

    /// A connection for one request: an idle one of this worker, else a new one.
    async fn checkout(&self, worker: usize) -> Result<SendRequest<RequestBody>, UpstreamError> {
        loop {
            let Some(mut sender) = lock(&self.idle[worker]).pop() else {
                // Boxed: connecting (TCP, TLS) is rare and its future is large;
                // inline, it would be copied with every request's future.
                return Box::pin(self.connect()).await;
            };
            // Put back when its last response body ended; its connection task
            // may not have noticed yet, so wait for it (briefly: a connection
            // that stays busy is dropped rather than delaying the request).
            if !sender.is_ready() {
                match tokio::time::timeout(READY_WAIT, sender.ready()).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) | Err(_) => continue,
                }
            }
            if !sender.is_closed() {
                return Ok(sender);
            }
        }
    }

    fn give_back(&self, worker: usize, sender: SendRequest<RequestBody>) {
        if sender.is_closed() {
            return;
        }
        park(&self.idle[worker], sender);
    }

    /// A connection for one lean exchange: an idle one of this worker, else a
    /// new one. An idle connection the upstream has closed is skipped here
    /// unless the request may simply be sent again (`may_resend`): checking
    /// costs a syscall when the socket was last seen readable.
    async fn lean_checkout(
        &self,
        worker: usize,
        may_resend: bool,
        deadline: tokio::time::Instant,
    ) -> Result<lean::Conn, UpstreamError> {
        loop {
            let popped = lock(&self.lean_idle[worker]).pop();
            match popped {
                Some(conn) if may_resend || !conn.is_stale() => return Ok(conn),
                Some(_) => continue,
                None => {
                    let connect = tokio::time::timeout_at(deadline, Box::pin(self.connect_tcp()));
                    let tcp = connect.await.map_err(|_| UpstreamError::Timeout(self.name.clone()))??;
                    return Ok(lean::Conn::new(tcp, deadline));
                }
            }
        }
    }

    fn lean_give_back(&self, worker: usize, mut conn: lean::Conn) {
        conn.reused = true;
        park(&self.lean_idle[worker], conn);
    }

    /// Opens a connection (TCP, TLS for https://) and starts its task on this runtime.
    async fn connect(&self) -> Result<SendRequest<RequestBody>, UpstreamError> {
        let connect_error = || UpstreamError::Connect(self.name.clone());
        let tcp = self.connect_tcp().await?;
        let sender = match &self.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| connect_error())?
                    .map_err(|e| UpstreamError::Failed(self.name.clone(), format!("TLS: {e}")))?;
                handshake(tls).await
            }
        };
        sender.map_err(|e| UpstreamError::Failed(self.name.clone(), error_chain(&e)))
    }

    /// A TCP connection to the upstream (no per-connection DNS for IP literals), with `TCP_NODELAY`.
    async fn connect_tcp(&self) -> Result<tokio::net::TcpStream, UpstreamError> {
        let connect_error = || UpstreamError::Connect(self.name.clone());
        let tcp = tokio::time::timeout(self.connect_timeout, async {
            match self.addr {
                Some(addr) => tokio::net::TcpStream::connect(addr).await,
                None => tokio::net::TcpStream::connect((self.host.as_str(), self.port)).await,
            }
        })
        .await
        .map_err(|_| connect_error())?
        .map_err(|e| {
            tracing::debug!(upstream = %self.name, error = %e, "connect failed");
            connect_error()
        })?;
        let _ = tcp.set_nodelay(true);
        Ok(tcp)
    }
}

/// A pool list; a panic while holding the lock leaves a plain Vec: still usable.
fn lock<T>(list: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    list.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps an idle connection for reuse, unless the list already holds [`MAX_IDLE`].
fn park<T>(list: &Mutex<Vec<T>>, conn: T) {
    let mut idle = lock(list);
    if idle.len() < MAX_IDLE {
        idle.push(conn);
    }
}

/// HTTP/1.1 over `io`; the connection runs in its own task (with upgrades, for WebSocket).
async fn handshake<T>(io: T) -> hyper::Result<SendRequest<RequestBody>>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended");
        }
    });
    Ok(sender)
}

/// An upstream response body, streamed to the client. Its connection goes
/// back to the pool when the body has been read to its end (a body dropped
/// before its end closes the connection instead).
pub struct UpstreamBody(BodyKind);

enum BodyKind {
    /// From the lean exchange (see `forward/lean.rs`).
    Lean(lean::Body),
    /// From hyper's client connection (request bodies, upgrades, TLS upstreams).
    Hyper(HyperBody),
}

struct HyperBody {
    body: Incoming,
    done: bool,
    give_back: Option<(SendRequest<RequestBody>, Arc<Upstream>, usize)>,
}

/// Why an upstream response body broke off.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error(transparent)]
    Lean(#[from] lean::BodyError),
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.get_mut().0 {
            BodyKind::Lean(body) => body.poll_frame(cx).map(|f| f.map(|r| r.map_err(BodyError::from))),
            BodyKind::Hyper(h) => {
                let frame = Pin::new(&mut h.body).poll_frame(cx);
                match &frame {
                    Poll::Ready(None) => h.done = true,
                    Poll::Ready(Some(Err(_))) => h.give_back = None,
                    _ => {}
                }
                frame.map(|f| f.map(|r| r.map_err(BodyError::from)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            BodyKind::Lean(body) => body.is_end_stream(),
            BodyKind::Hyper(h) => h.body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            BodyKind::Lean(body) => body.size_hint(),
            BodyKind::Hyper(h) => h.body.size_hint(),
        }
    }
}

impl Drop for HyperBody {
    fn drop(&mut self) {
        if self.done || self.body.is_end_stream() {
            if let Some((sender, upstream, worker)) = self.give_back.take() {
                upstream.give_back(worker, sender);
            }
        }
    }
}

/// Why the upstream did not answer.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Connection refused, unreachable, or connect timeout: 502.
    #[error("upstream {0} unreachable")]
    Connect(String),
    /// No response headers within `timeout_ms`: 504.
    #[error("upstream {0} did not answer in time")]
    Timeout(String),
    /// The connection failed mid-request: 502.
    #[error("upstream {0} failed: {1}")]
    Failed(String, String),
}

impl UpstreamError {
    /// Stable label: connect, timeout, failed.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Failed(..) => "failed",
        }
    }
}

/// Sends `req` (headers already rewritten) to the permit's upstream, at the
/// permit's path, and waits for the response headers; bodies stream.
pub async fn forward(mut req: Request<RequestBody>, permit: &Permit) -> Result<Response<UpstreamBody>, UpstreamError> {
    let up = permit.upstream();
    // Origin form: exactly the authorized path (and query), nothing else.
    let target = permit.target().path_and_query();
    let worker = WORKER.with(Cell::get);
    if up.tls.is_none() && lean::eligible(&req) {
        // Written into the request line as it is: visible ASCII only (which
        // normalization already ensures), so it cannot end or split the line.
        if !target.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(UpstreamError::Failed(up.name.clone(), "the request target is not visible ASCII".into()));
        }
        let deadline = tokio::time::Instant::now() + up.timeout;
        let resp = lean::exchange(up, worker, target, req, deadline).await?;
        return Ok(resp.map(|body| UpstreamBody(BodyKind::Lean(body))));
    }
    let pq = PathAndQuery::try_from(target).map_err(|e| UpstreamError::Failed(up.name.clone(), e.to_string()))?;
    *req.uri_mut() = Uri::from(pq);
    // The upstream speaks HTTP/1.1 whatever the client spoke.
    *req.version_mut() = http::Version::HTTP_11;
    let exchange = async {
        let mut req = req;
        let mut resends = 0;
        loop {
            let mut sender = up.checkout(worker).await?;
            match sender.try_send_request(req).await {
                Ok(resp) => return Ok((resp, sender)),
                Err(mut e) => match e.take_message() {
                    Some(unsent) if resends < MAX_RESENDS => {
                        resends += 1;
                        req = unsent;
                    }
                    _ => return Err(UpstreamError::Failed(up.name.clone(), error_chain(e.error()))),
                },
            }
        }
    };
    match tokio::time::timeout(up.timeout, exchange).await {
        Err(_) => Err(UpstreamError::Timeout(up.name.clone())),
        Ok(Err(e)) => Err(e),
        Ok(Ok((resp, sender))) => {
            // A 101 hands the connection over to the upgraded protocol.
            let reusable = resp.status() != http::StatusCode::SWITCHING_PROTOCOLS;
            Ok(resp.map(|body| {
                UpstreamBody(BodyKind::Hyper(HyperBody {
                    body,
                    done: false,
                    give_back: reusable.then(|| (sender, Arc::clone(up), worker)),
                }))
            }))
        }
    }
}

/// An error and its sources, as one line (for logs).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
