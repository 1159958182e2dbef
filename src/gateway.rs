//! The request pipeline, in order: load the snapshot once → `normalize` →
//! `extract` → `find` the route → `verify` → `decide` (all in
//! [`Gateway::authorize`]) → rewrite the headers → `forward`, with one error
//! mapping (`error.rs`) and one access-log line and count at the end
//! ([`Gateway::finish`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use http::header::HeaderValue;
use http::{Request, Response};
use http_body_util::Either;

use crate::auth;
use crate::body::RequestBody;
use crate::decide::{self, Auth, Denial};
use crate::error::{Body, GatewayError};
use crate::headers::{self, ClientConn, Peer};
use crate::metrics::{Metrics, ReasonLabels, RequestLabels};
use crate::normalize;
use crate::snapshot::{Shared, Snapshot};
use crate::upstream;

/// The server that writes a response to its client: the lean server takes an
/// HTTP/1.1 upstream's response fields as they were received (no header map
/// is built for them); hyper's server takes a header map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writer {
    Lean,
    Hyper,
}

/// Everything a request needs, shared by all connections.
#[derive(Clone)]
pub struct Gateway {
    shared: Shared,
    metrics: Arc<Metrics>,
}

/// The route label of requests that matched no route.
static NO_ROUTE: LazyLock<Arc<str>> = LazyLock::new(|| Arc::from("(none)"));

/// What the access-log line says about one request.
#[derive(Debug, Default)]
pub(crate) struct RequestCtx {
    /// The access log is on: gather its fields (they cost allocations otherwise avoided).
    log: bool,
    path: Option<String>,
    /// The verified caller (its `sub` and issuer are logged): shared, not copied.
    identity: Option<Arc<crate::auth::Identity>>,
    upstream: Option<Arc<crate::upstream::Upstream>>,
    route: Option<Arc<str>>,
    /// `Host` as matched (lower-case, no port).
    host: Option<String>,
    /// `[defaults] log_claims` of the verified token, as a JSON object.
    claims: Option<String>,
    reason: Option<String>,
    /// The request was forwarded although enforce mode would refuse it.
    reported: bool,
    /// Time spent waiting for the upstream's response head.
    upstream_wait: Duration,
    /// The request is a gRPC call: refusals are gRPC statuses.
    pub grpc: bool,
    /// A decision-API check, in this dialect: decided, never forwarded.
    check: Option<&'static str>,
}

impl RequestCtx {
    pub(crate) fn new() -> RequestCtx {
        RequestCtx { log: tracing::enabled!(target: "rolegate::access", tracing::Level::INFO), ..RequestCtx::default() }
    }

    /// The context of a decision-API check read in `dialect` (its access-log
    /// line says so, and names no upstream: nothing is forwarded).
    pub(crate) fn for_check(dialect: &'static str) -> RequestCtx {
        RequestCtx { check: Some(dialect), ..RequestCtx::new() }
    }
}

/// The parts of a request the stages look at.
pub(crate) struct RequestParts<'r> {
    pub method: &'r http::Method,
    pub uri: &'r http::Uri,
    pub headers: &'r http::HeaderMap,
    /// Read by hyper's server (whose head size the gateway checks itself).
    pub read_by_hyper: bool,
}

/// A request the stages let through: its route, its permit, and its host.
pub(crate) struct Authorized<'s> {
    pub route: &'s crate::routes::Route,
    pub permit: decide::Permit,
    pub host_value: Option<HeaderValue>,
}

/// Whether the peer of `conn` is one of `[server] trusted_proxies`.
fn is_trusted(snap: &Snapshot, conn: &ClientConn) -> bool {
    !snap.server.trusted_proxies.is_empty() && headers::is_trusted(&snap.server.trusted_proxies, conn.addr.ip())
}

impl Gateway {
    pub fn new(shared: Shared) -> Self {
        Self::with_metrics(shared, Arc::new(Metrics::new()))
    }

    pub fn with_metrics(shared: Shared, metrics: Arc<Metrics>) -> Self {
        Gateway { shared, metrics }
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Handles one request from the client at the other end of `conn`; its
    /// response is written by `writer`.
    pub async fn handle(&self, req: Request<RequestBody>, conn: &ClientConn, writer: Writer) -> Response<Body> {
        let started = Instant::now();
        // One snapshot for the whole request, even if a reload swaps it meanwhile.
        let snap = self.shared.load_full();
        let request_id = headers::request_id(req.headers());
        let method = req.method().clone();
        let mut ctx = RequestCtx::new();
        // A gRPC call gets its refusals as gRPC statuses (the lean server
        // takes no request with a body, so no gRPC call).
        ctx.grpc = matches!(req.body(), RequestBody::Hyper(_)) && crate::error::is_grpc(req.headers());
        let peer = Peer { conn, trusted: is_trusted(&snap, conn) };
        let result = self.enforce_and_forward(&snap, &mut ctx, req, peer, &request_id, writer).await;
        self.finish(result, &mut ctx, &method, conn, &request_id, started)
    }

    /// The response for the outcome of a request (the upstream's, or the
    /// gateway's own refusal), counted in the metrics and written to the
    /// access log: the same for every request, proxied or only decided.
    pub(crate) fn finish(
        &self,
        result: Result<Response<Body>, GatewayError>,
        ctx: &mut RequestCtx,
        method: &http::Method,
        conn: &ClientConn,
        request_id: &HeaderValue,
        started: Instant,
    ) -> Response<Body> {
        let (resp, decision) = match result {
            Ok(resp) => (resp, if ctx.reported { "report_only" } else { "allow" }),
            Err(err) => {
                let decision = match &err {
                    GatewayError::BadRequest(_) | GatewayError::HeadTooLarge => "bad_request",
                    GatewayError::NoRoute => "no_route",
                    GatewayError::Denied(Denial::MissingToken | Denial::InvalidToken(_)) => "deny_401",
                    GatewayError::Denied(Denial::Forbidden { .. }) => "deny_403",
                    GatewayError::Denied(Denial::KeysUnavailable) => "keys_unavailable",
                    GatewayError::Upstream(e) => {
                        tracing::warn!(request_id = request_id.to_str().unwrap_or(""), error = %e, "upstream error");
                        self.metrics.upstream_errors.get_or_create(&ReasonLabels { reason: e.kind() }).inc();
                        "upstream_error"
                    }
                };
                if ctx.log {
                    ctx.reason = Some(err.to_string());
                }
                let resp = if ctx.grpc { err.grpc_response(request_id) } else { err.response(request_id) };
                (resp, decision)
            }
        };
        let elapsed = started.elapsed();
        let labels = RequestLabels {
            route: ctx.route.clone().unwrap_or_else(|| Arc::clone(&NO_ROUTE)),
            decision,
            status: resp.status().as_u16(),
        };
        self.metrics.record_request(labels, elapsed, elapsed.saturating_sub(ctx.upstream_wait));
        if ctx.log {
            // One line per request; never the token (only `sub` and `iss` from it).
            crate::logging::access(&crate::logging::Access {
                request_id: request_id.to_str().unwrap_or(""),
                method: method.as_str(),
                host: ctx.host.as_deref(),
                path: ctx.path.as_deref().unwrap_or("-"),
                route: ctx.route.as_deref().unwrap_or("-"),
                decision,
                reason: ctx.reason.as_deref().unwrap_or("-"),
                status: resp.status().as_u16(),
                subject: ctx.identity.as_ref().and_then(|id| id.claims.get("sub")?.as_str()).unwrap_or("-"),
                issuer: ctx.identity.as_ref().map_or("-", |id| id.issuer.name.as_str()),
                claims: ctx.claims.as_deref(),
                client: conn.addr.ip(),
                upstream: if ctx.check.is_some() {
                    "-"
                } else {
                    ctx.upstream.as_ref().map_or("-", |u| u.name.as_str())
                },
                authz: ctx.check,
                response_bytes: hyper::body::Body::size_hint(resp.body()).exact(),
                duration_us: elapsed.as_micros() as u64,
            });
        }
        resp
    }

    /// The stages of a request, up to the verdict: limits, normalize,
    /// extract, find, verify, decide. The same for a proxied request and for a
    /// decision-API check (which hands in the original request's parts).
    pub(crate) async fn authorize<'s>(
        &self,
        snap: &'s Snapshot,
        ctx: &mut RequestCtx,
        request: RequestParts<'_>,
        request_id: &HeaderValue,
    ) -> Result<Authorized<'s>, GatewayError> {
        let RequestParts { method, uri, headers: req_headers, read_by_hyper } = request;
        // The lean server measured its heads already; hyper's server bounds
        // its read buffer only (a head that arrives whole may pass it).
        if read_by_hyper {
            let target = uri.path_and_query().map_or(0, |p| p.as_str().len());
            if crate::h1::head::request_head_size(method, target, req_headers) > snap.server.max_header_bytes {
                return Err(GatewayError::HeadTooLarge);
            }
        }
        if snap.forward.underscores == headers::Underscores::Reject && headers::underscore_name(req_headers).is_some() {
            return Err(normalize::RequestError::UnderscoreHeader.into());
        }
        let target = normalize::normalize_request(method, uri, req_headers)?;
        let token = auth::extract(req_headers)?;
        let host_value = req_headers
            .get(http::header::HOST)
            .cloned()
            .or_else(|| uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        let host = host_value.as_ref().and_then(|h| h.to_str().ok()).map(host_for_matching);
        if ctx.log {
            ctx.path = Some(target.path().to_owned());
            ctx.host = host.as_deref().map(str::to_owned);
        }
        let route = match snap.routes.find(method, host.as_deref(), target.path()) {
            Some(r) => r,
            None => snap.unmatched.as_ref().ok_or(GatewayError::NoRoute)?,
        };
        ctx.route = Some(Arc::clone(&route.name));
        let auth = match (&route.access, token) {
            (crate::routes::Access::Public, _) | (_, None) => Auth::Missing,
            (_, Some(token)) => {
                let verified = auth::verify_or_refetch(
                    token,
                    &snap.issuers,
                    &snap.roles,
                    snap.token_cache.as_ref(),
                    auth::now_secs(),
                )
                .await;
                match verified {
                    Ok(identity) => Auth::Valid(identity),
                    Err(e) => {
                        self.metrics.token_failures.get_or_create(&ReasonLabels { reason: e.code() }).inc();
                        Auth::Invalid(e)
                    }
                }
            }
        };
        if ctx.log {
            if let Auth::Valid(id) = &auth {
                ctx.identity = Some(Arc::clone(id));
                if !snap.log_claims.is_empty() {
                    ctx.claims = Some(auth::claims::record(&id.claims, &snap.log_claims).to_string());
                }
            }
            ctx.upstream = Some(Arc::clone(&route.upstream));
        }
        let permit = decide::decide(route, target, auth)?;
        if let Some(denial) = permit.reported_denial() {
            tracing::warn!(
                request_id = request_id.to_str().unwrap_or(""),
                route = %route.name,
                would_be = %denial,
                "report mode: request allowed that enforce mode would refuse"
            );
            if ctx.log {
                ctx.reason = Some(format!("report-only: {denial}"));
            }
            ctx.reported = true;
        }
        Ok(Authorized { route, permit, host_value })
    }

    async fn enforce_and_forward(
        &self,
        snap: &Snapshot,
        ctx: &mut RequestCtx,
        mut req: Request<RequestBody>,
        peer: Peer<'_>,
        request_id: &HeaderValue,
        writer: Writer,
    ) -> Result<Response<Body>, GatewayError> {
        let parts = RequestParts {
            method: req.method(),
            uri: req.uri(),
            headers: req.headers(),
            read_by_hyper: matches!(req.body(), RequestBody::Hyper(_)),
        };
        let Authorized { route, permit, host_value } = self.authorize(snap, ctx, parts, request_id).await?;
        // An Upgrade (WebSocket…) on an allowed route is passed through: only now,
        // after the verdict, so a denied route never upgrades.
        let upgrade = headers::upgrade_request(req.headers(), &route.upgrades);
        let client_upgrade = upgrade.is_some().then(|| hyper::upgrade::on(&mut req));
        let trailers = headers::upstream_request(
            req.headers_mut(),
            &snap.forward,
            peer,
            host_value.as_ref(),
            request_id,
            permit.caller(),
            permit.target(),
        );
        if let Some(protocol) = &upgrade {
            headers::set_upgrade(req.headers_mut(), protocol);
        }
        if !req.headers().contains_key(http::header::HOST) {
            if let Some(h) = host_value {
                req.headers_mut().insert(http::header::HOST, h);
            }
        }
        let waiting = Instant::now();
        let as_received = (writer == Writer::Lean).then_some(request_id);
        let resp =
            upstream::forward(req, permit.destination(), upgrade.is_some(), trailers, as_received, &self.metrics).await;
        ctx.upstream_wait = waiting.elapsed();
        let mut resp = resp?;
        let mut splice = None;
        if resp.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            // A 101 answers an upgrade that was asked for, to one of the
            // protocols asked for; anything else would hand the connection to
            // a protocol nobody authorized.
            let requested: Vec<Box<str>> = upgrade
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .split(',')
                .map(|p| Box::from(p.trim().split('/').next().unwrap_or_default()))
                .collect();
            let granted = headers::upgrade_request(resp.headers(), &requested);
            let upstream_io = resp.extensions_mut().remove::<upstream::PendingUpgrade>().and_then(|p| p.take());
            match (client_upgrade, granted, upstream_io) {
                (Some(client), Some(protocol), Some(upstream_io)) => splice = Some((client, protocol, upstream_io)),
                _ => {
                    return Err(upstream::UpstreamError::Failed(
                        route.upstream.name.clone(),
                        "a 101 Switching Protocols that no allowed upgrade asked for".into(),
                    )
                    .into())
                }
            }
        }
        let (mut parts, body) = resp.into_parts();
        // Fields kept as received were rewritten as they were read.
        if !body.has_fields() {
            headers::client_response(&mut parts.headers, request_id);
        }
        if let Some((client, protocol, mut upstream_io)) = splice {
            headers::set_upgrade(&mut parts.headers, &protocol);
            // The client's bytes after its upgrade request stay in hyper's
            // buffer until this 101 is written; only then are they relayed.
            tokio::spawn(async move {
                match client.await {
                    Ok(c) => {
                        let mut c = hyper_util::rt::TokioIo::new(c);
                        let _ = tokio::io::copy_bidirectional(&mut c, &mut upstream_io).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "client upgrade failed"),
                }
            });
        }
        Ok(Response::from_parts(parts, Either::Left(body)))
    }
}

/// `Host` for route matching: lower-case, without port (IPv6 brackets kept).
fn host_for_matching(h: &str) -> Cow<'_, str> {
    let without_port = match h.rfind(':') {
        Some(i) if !h[i..].contains(']') => &h[..i],
        _ => h,
    };
    match without_port.bytes().any(|b| b.is_ascii_uppercase()) {
        true => Cow::Owned(without_port.to_ascii_lowercase()),
        false => Cow::Borrowed(without_port),
    }
}

#[cfg(test)]
mod tests {
    use super::host_for_matching;

    #[test]
    fn hosts() {
        assert_eq!(host_for_matching("API.example.com:8080"), "api.example.com");
        assert_eq!(host_for_matching("[::1]:80"), "[::1]");
        assert_eq!(host_for_matching("[::1]"), "[::1]");
        assert_eq!(host_for_matching("a.b"), "a.b");
    }
}
