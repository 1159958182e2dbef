//! Stage 6 of a request: send it upstream. The only module that talks to
//! upstreams, and it sends a request only to a [`Destination`], which only a
//! `decide::Permit` makes: there is no way to forward a request that was not
//! decided, nor to a path other than the one authorized.
//!
//! Every HTTP/1.x exchange is rolegate's own ([`http1`], over the wire rules
//! of `h1`): plain or TLS, with or without a request body, upgrades included;
//! its connections are kept per worker thread and per upstream ([`pool`]),
//! each taken for one request and put back only when its response ended
//! exactly and nothing arrived after it. HTTP/2 upstreams take hyper's HTTP/2
//! client ([`http2`]), a few multiplexed connections per worker. [`forward`]
//! is the one place that picks the exchange for an upstream, from its
//! `protocol` (and, for `auto`, what ALPN chose).

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use http::uri::Scheme;
use http::{HeaderValue, Request, Response, Uri};
use rustls::pki_types::ServerName;

use crate::body::RequestBody;
use crate::metrics::Metrics;

mod body;
mod conn;
mod http1;
mod http2;
mod pool;

pub use body::{BodyError, UpstreamBody};
pub use conn::{PendingUpgrade, Upgraded};

/// Each worker thread keeps its own idle connections per upstream, so that a
/// pooled connection is always driven by the runtime that uses it.
const MAX_POOLS: usize = 64;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// How rolegate talks to an upstream (`[upstreams.NAME] protocol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (over TLS for `https://`).
    Http1,
    /// Cleartext HTTP/2 with prior knowledge.
    H2c,
    /// HTTP/2 over TLS (ALPN `h2`).
    H2,
    /// TLS, ALPN `h2` then `http/1.1`: whichever the upstream picks.
    Auto,
}

/// What ALPN picked for an `auto` upstream (learned on its first connection).
const ALPN_UNKNOWN: u8 = 0;
const ALPN_HTTP1: u8 = 1;
const ALPN_H2: u8 = 2;

/// Called once by each worker thread (see `server::serve_workers`).
pub fn set_worker_index(index: usize) {
    WORKER.with(|w| w.set(index % MAX_POOLS));
}

/// One `[upstreams.NAME]` with its keep-alive connections (per worker).
/// Shared by snapshots: a reload keeps the same `Upstream` (and its
/// connections) when its settings are unchanged.
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
    pub protocol: Protocol,
    /// For `auto`: what ALPN picked on the first connection ([`ALPN_UNKNOWN`] until then).
    alpn: AtomicU8,
    /// Idle HTTP/1.1 connections, per worker.
    idle: pool::Pools,
    /// HTTP/2 connections, per worker.
    h2: http2::Pools,
    /// TLS of an `https://` upstream: connector and the name to verify.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
    /// For `auto`: a connector offering only `http/1.1`, for the connections
    /// of HTTP/1.1 exchanges (an upgrade, or an upstream ALPN made HTTP/1.1):
    /// such a connection must never be one the upstream took as HTTP/2.
    tls_http1: Option<tokio_rustls::TlsConnector>,
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
    /// plus `ca_file` (PEM), when given. `protocol`: `None` is `http1` for
    /// `http://`, `auto` for `https://`.
    pub fn new(
        name: &str,
        url: &str,
        connect_timeout: Duration,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
        protocol: Option<Protocol>,
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
        let protocol = match (protocol, https) {
            (None, false) => Protocol::Http1,
            (None, true) => Protocol::Auto,
            (Some(Protocol::H2c), true) => {
                return Err(format!(
                    "upstream url {url:?}: protocol \"h2c\" is cleartext HTTP/2; use http:// (or \"h2\")"
                ))
            }
            (Some(p @ (Protocol::H2 | Protocol::Auto)), false) => {
                let name = if p == Protocol::H2 { "h2" } else { "auto" };
                return Err(format!("upstream url {url:?}: protocol {name:?} needs TLS: use https:// (or \"h2c\")"));
            }
            (Some(p), _) => p,
        };
        // Root certificates are loaded only for https:// upstreams.
        let mut tls_http1 = None;
        let tls = match https {
            true => {
                let mut config = crate::tls::client_config(ca_file)?;
                config.alpn_protocols = match protocol {
                    Protocol::H2 => vec![b"h2".to_vec()],
                    Protocol::Auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
                    Protocol::Http1 | Protocol::H2c => vec![b"http/1.1".to_vec()],
                };
                let server_name =
                    ServerName::try_from(bare_host.to_owned()).map_err(|e| format!("upstream url {url:?}: {e}"))?;
                if protocol == Protocol::Auto {
                    let mut http1 = config.clone();
                    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
                    tls_http1 = Some(tokio_rustls::TlsConnector::from(Arc::new(http1)));
                }
                Some((tokio_rustls::TlsConnector::from(Arc::new(config)), server_name))
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
            protocol,
            alpn: AtomicU8::new(ALPN_UNKNOWN),
            idle: pool::Pools::new(MAX_POOLS),
            h2: http2::Pools::new(MAX_POOLS),
            tls,
            tls_http1,
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
        protocol: Option<Protocol>,
    ) -> bool {
        self.url == url
            && self.connect_timeout == connect_timeout
            && self.timeout == timeout
            && self.ca_file.as_deref() == ca_file
            && protocol.unwrap_or(if self.tls.is_some() { Protocol::Auto } else { Protocol::Http1 }) == self.protocol
    }

    /// `host:port` as the URL gives it (`:authority` when a request has no Host).
    fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// A new connection: TCP (no per-connection DNS for IP literals, `TCP_NODELAY`), then TLS for `https://`.
    /// `http1`: for an HTTP/1.1 exchange (ALPN offers only `http/1.1`).
    async fn connect(&self, http1: bool) -> Result<conn::Io, UpstreamError> {
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
        match &self.tls {
            None => Ok(conn::Io::Plain(tcp)),
            Some((connector, name)) => {
                let connector = match (&self.tls_http1, http1) {
                    (Some(http1_only), true) => http1_only,
                    _ => connector,
                };
                let tls = tokio::time::timeout(self.connect_timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| connect_error())?
                    .map_err(|e| UpstreamError::Failed(self.name.clone(), format!("TLS: {e}")))?;
                let io = conn::Io::Tls(Box::new(tls));
                if http1 && io.alpn_h2() {
                    return Err(UpstreamError::Failed(
                        self.name.clone(),
                        "TLS: the upstream chose h2 (ALPN) for HTTP/1.1".into(),
                    ));
                }
                if self.protocol == Protocol::H2 && !io.alpn_h2() {
                    return Err(UpstreamError::Failed(
                        self.name.clone(),
                        "TLS: the upstream did not agree to h2 (ALPN)".into(),
                    ));
                }
                Ok(io)
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

/// Where an authorized request goes: the upstream, and exactly the path and
/// query that were authorized. Made only by `decide::Permit::destination`
/// (`tests/layering.rs` checks that no other module calls [`Destination::new`]).
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    upstream: &'a Arc<Upstream>,
    target: &'a str,
}

impl<'a> Destination<'a> {
    pub fn new(upstream: &'a Arc<Upstream>, target: &'a str) -> Destination<'a> {
        Destination { upstream, target }
    }

    pub fn upstream(&self) -> &'a Arc<Upstream> {
        self.upstream
    }
}

/// Sends `req` (headers already rewritten) to the destination's upstream, at
/// its path, and waits for the response head; bodies stream both ways.
/// A request that asks to `upgrade` (to a protocol the route allows) may get
/// a `101`, whose connection comes with the response as a [`PendingUpgrade`]
/// (HTTP/1.1 upstreams only); to any other request, a `101` is refused.
/// `trailers`: the client accepts trailers (`TE: trailers`), which the
/// upstream is told (over HTTP/1.1 with `Connection: te`, as `TE` is hop-by-hop).
/// `as_received`: the client's writer takes an HTTP/1.1 response's fields as
/// they were received, their `x-request-id` this one (see `UpstreamBody`).
pub async fn forward(
    req: Request<RequestBody>,
    to: Destination<'_>,
    upgrade: bool,
    trailers: bool,
    as_received: Option<&HeaderValue>,
    metrics: &Metrics,
) -> Result<Response<UpstreamBody>, UpstreamError> {
    let up = to.upstream;
    // Origin form: exactly the authorized path (and query), nothing else.
    let target = to.target;
    // Written into the request line as it is: visible ASCII only (which
    // normalization already ensures), so it cannot end or split the line.
    if !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(UpstreamError::Failed(up.name.clone(), "the request target is not visible ASCII".into()));
    }
    let worker = WORKER.with(Cell::get);
    let deadline = tokio::time::Instant::now() + up.timeout;
    let h2 = match up.protocol {
        Protocol::Http1 => false,
        Protocol::H2c | Protocol::H2 => true,
        // An upgrade is an HTTP/1.1 matter.
        Protocol::Auto if upgrade => false,
        Protocol::Auto => match up.alpn.load(Ordering::Relaxed) {
            ALPN_H2 => true,
            ALPN_HTTP1 => false,
            _ => learn_alpn(up, worker, deadline).await?,
        },
    };
    let call = Call { up, worker, target, upgrade, trailers, as_received, deadline };
    match h2 {
        true => http2::exchange(&call, req).await,
        false => http1::exchange(&call, req, metrics).await,
    }
}

/// One request's exchange, as `forward` hands it to an HTTP/1.1 or HTTP/2 exchange.
#[derive(Clone, Copy)]
struct Call<'a> {
    up: &'a Arc<Upstream>,
    worker: usize,
    /// The authorized path and query.
    target: &'a str,
    /// The request asks to upgrade (to a protocol the route allows).
    upgrade: bool,
    /// The client accepts trailers.
    trailers: bool,
    /// The client's writer takes the response's fields as received (HTTP/1.1
    /// only), with this request id in `x-request-id`.
    as_received: Option<&'a HeaderValue>,
    /// The response head must come by then.
    deadline: tokio::time::Instant,
}

/// An `auto` upstream's first connection: ALPN says which protocol it speaks;
/// the connection joins that protocol's pool. Returns whether it is HTTP/2.
async fn learn_alpn(up: &Arc<Upstream>, worker: usize, deadline: tokio::time::Instant) -> Result<bool, UpstreamError> {
    let connect = tokio::time::timeout_at(deadline, Box::pin(up.connect(false)));
    let io = connect.await.map_err(|_| UpstreamError::Timeout(up.name.clone()))??;
    let h2 = io.alpn_h2();
    up.alpn.store(if h2 { ALPN_H2 } else { ALPN_HTTP1 }, Ordering::Relaxed);
    match h2 {
        true => drop(up.h2_adopt(worker, io).await?),
        false => up.http1_adopt(worker, io, deadline),
    }
    Ok(h2)
}
