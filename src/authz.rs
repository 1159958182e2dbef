//! The decision API (`[authz] listen`): a proxy in front — nginx
//! `auth_request`, Caddy `forward_auth`, Traefik `ForwardAuth`, Envoy
//! `ext_authz` (HTTP service) — asks whether a request may pass, and rolegate
//! answers from the same stages as a proxied request, without forwarding
//! anything.
//!
//! One check, in order ([`Authz::check`]):
//! 1. the peer must be one of `[authz] trusted_peers`, else 400 (counted in
//!    `rolegate_authz_refused_total{reason="untrusted_peer"}`);
//! 2. the original method, URI and host are read in the calling proxy's
//!    dialect (`authz/dialect.rs`); none, or two different ones, is a 400
//!    (counted by reason too);
//! 3. [`Gateway::authorize`] runs the stages on them: limits, normalize (the
//!    original URI goes through the same normalizer as a proxied target),
//!    the token of the check's `Authorization` header (the original's, copied
//!    by the proxy), verify with the token cache, find the route, decide;
//! 4. allow (report mode included) → 200 with the `[forward]` identity
//!    headers, made as for the upstream ([`headers::identity_headers`]), and
//!    `x-rolegate-path`: the normalized path decided on; a refusal → the
//!    proxy's own answer (400, 401, 403, 404, 431, 503), body and
//!    `WWW-Authenticate` included, from `error.rs`;
//! 5. [`Gateway::finish`] counts it in `rolegate_requests_total` with the
//!    same labels and writes the access-log line (with `authz` = the dialect).
//!
//! The listener is served like the proxy's: worker threads with an event
//! loop each, hyper's HTTP/1.1 server, the `[server]` head limits and
//! timeouts, and a graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::error::{Body, GatewayError};
use crate::gateway::{Authorized, Gateway, RequestCtx, RequestParts};
use crate::headers::{self, ClientConn};
use crate::metrics::ReasonLabels;
use crate::normalize::RequestError;
use crate::server::ServeOptions;
use crate::snapshot::{AuthzSettings, Dialect};

mod dialect;

/// The header of an allow that names the normalized path decided on (a proxy
/// may forward exactly that path: see the README's snippets).
pub static X_ROLEGATE_PATH: HeaderName = HeaderName::from_static("x-rolegate-path");
/// Envoy's `ext_authz` removes the request headers an allow names here: the
/// identity headers with no value for this caller, so that a client's copy
/// never reaches the upstream in their place.
static X_ENVOY_AUTH_HEADERS_TO_REMOVE: HeaderName = HeaderName::from_static("x-envoy-auth-headers-to-remove");
/// The header of a refusal that repeats its JSON body, for nginx, whose
/// `auth_request` passes a check's status and headers on but never its body.
pub static X_ROLEGATE_ERROR: HeaderName = HeaderName::from_static("x-rolegate-error");

/// The decision endpoint: the gateway's stages and the `[authz]` settings it
/// was started with (read at start, like `[server]`).
#[derive(Clone)]
pub struct Authz {
    gateway: Gateway,
    settings: Arc<AuthzSettings>,
}

impl Authz {
    pub fn new(gateway: Gateway, settings: AuthzSettings) -> Authz {
        Authz { gateway, settings: Arc::new(settings) }
    }

    /// Answers one check from the peer at the other end of `conn`. The
    /// check's body, if any, is not read.
    pub async fn check<B>(&self, req: Request<B>, conn: &ClientConn) -> Response<Body> {
        let started = Instant::now();
        // One snapshot for the whole check, as for a proxied request.
        let snap = self.gateway.shared().load_full();
        let request_id = headers::request_id(req.headers());
        let (parts, _body) = req.into_parts();
        let original = if headers::is_trusted(&self.settings.trusted_peers, conn.addr.ip()) {
            dialect::read(&parts.method, &parts.uri, &parts.headers, &self.settings)
        } else {
            Err(RequestError::UntrustedPeer)
        };
        let original = match original {
            Ok(o) => o,
            Err(e) => {
                self.gateway.metrics().authz_refused.get_or_create(&ReasonLabels { reason: e.code() }).inc();
                let mut ctx = RequestCtx::for_check("-");
                let resp = self.gateway.finish(
                    Err(GatewayError::BadRequest(e)),
                    &mut ctx,
                    &parts.method,
                    conn,
                    &request_id,
                    started,
                );
                return with_error_header(resp).await;
            }
        };
        // The original request's headers are the check's (the proxy copies
        // them), with the original host as `Host`.
        let mut req_headers = parts.headers;
        if let Some(host) = original.host {
            req_headers.insert(HOST, host);
        }
        let mut ctx = RequestCtx::for_check(original.dialect.name());
        let request = RequestParts {
            method: &original.method,
            uri: &original.uri,
            headers: &req_headers,
            // Served by hyper's server: the gateway measures the head itself.
            read_by_hyper: true,
        };
        let result = match self.gateway.authorize(&snap, &mut ctx, request, &request_id).await {
            Ok(authorized) => Ok(allow(&snap.forward, &authorized, &request_id, original.dialect)),
            Err(e) => Err(e),
        };
        let resp = self.gateway.finish(result, &mut ctx, &original.method, conn, &request_id, started);
        match original.dialect {
            // Caddy, Traefik and Envoy hand a refusal's body to the client themselves.
            Dialect::Forwarded | Dialect::Envoy => resp,
            Dialect::Auto | Dialect::Nginx => with_error_header(resp).await,
        }
    }
}

/// A refusal with its JSON body repeated in `x-rolegate-error` (an allow as it is).
async fn with_error_header(resp: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt as _;
    if resp.status() == StatusCode::OK {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    // The gateway's own answer: its body is whole already.
    let Ok(collected) = body.collect().await else {
        return Response::from_parts(parts, Either::Right(Full::new(Bytes::new())));
    };
    let bytes = collected.to_bytes();
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes.clone()) {
        parts.headers.insert(X_ROLEGATE_ERROR.clone(), v);
    }
    Response::from_parts(parts, Either::Right(Full::new(bytes)))
}

/// 200, with the identity headers of `[forward]` for the proxy to copy and
/// the normalized path decided on. No body.
fn allow(
    plan: &headers::ForwardPlan,
    authorized: &Authorized<'_>,
    request_id: &HeaderValue,
    dialect: Dialect,
) -> Response<Body> {
    let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    if let Some(caller) = authorized.permit.caller() {
        headers::identity_headers(plan, caller, h);
    }
    if dialect == Dialect::Envoy {
        let unset: Vec<&str> =
            plan.identity.iter().map(|(name, _)| name.as_str()).filter(|name| !h.contains_key(*name)).collect();
        if let Ok(v) = HeaderValue::from_str(&unset.join(",")) {
            if !unset.is_empty() {
                h.insert(X_ENVOY_AUTH_HEADERS_TO_REMOVE.clone(), v);
            }
        }
    }
    // A normalized path is visible ASCII: always a valid header value.
    if let Ok(path) = HeaderValue::from_str(authorized.permit.target().path()) {
        h.insert(X_ROLEGATE_PATH.clone(), path);
    }
    h.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
    resp
}

/// Serves checks on `listener` until `shutdown` completes; then stops
/// accepting and lets the checks in flight finish for at most
/// `shutdown_timeout`. Returns whether every connection finished in time.
pub async fn serve(
    listener: TcpListener,
    authz: Authz,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let authz = Arc::new(authz);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes)
        .max_headers(opts.max_headers);
    let builder = Arc::new(builder);
    // Each connection's task watches `stop` and holds a `drain` sender; when
    // every sender is gone, every connection has finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "authz: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = Arc::clone(&opts.connections).try_acquire_owned() else {
            tracing::warn!(%peer, "authz: connection limit reached; connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (authz, builder) = (Arc::clone(&authz), Arc::clone(&builder));
        let (mut stop, drain) = (stop_rx.clone(), drain_tx.clone());
        tokio::spawn(async move {
            let client = Arc::new(ClientConn::new(peer, false));
            let service = service_fn(move |req: Request<Incoming>| {
                let (authz, client) = (Arc::clone(&authz), Arc::clone(&client));
                async move { Ok::<_, Infallible>(authz.check(req, &client).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                () = crate::server::stopped(&mut stop) => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "authz: connection ended with an error");
            }
            drop((permit, drain));
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    drop(drain_tx);
    tokio::time::timeout(opts.shutdown_timeout, drain_rx.recv()).await.is_ok()
}

/// Serves one listening socket with `workers` threads, each with its own
/// single-threaded runtime accepting from the shared socket (as the proxy
/// listener is served). Returns once `shutdown` turns true and every worker
/// has drained (or the shutdown deadline passed).
pub fn serve_workers(
    listener: std::net::TcpListener,
    authz: Authz,
    opts: ServeOptions,
    workers: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let pool = crate::server::Pool { thread: "rolegate-authz", prefix: "authz: ", work: "checks" };
    let timeout = opts.shutdown_timeout;
    crate::server::run_workers(listener, workers, pool, timeout, shutdown, move |_, socket, stop| async move {
        Ok(serve(TcpListener::from_std(socket)?, authz, opts, stop).await)
    })
}
