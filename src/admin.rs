//! The admin listener (`[server] admin_listen`), never proxied:
//! `/healthz` (the process is alive), `/readyz` (a snapshot is serving and the
//! gateway is not shutting down), `/config` (what is serving and how the last
//! reloads went, as JSON), `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::reload::Reloader;

/// Shared state of the admin endpoints.
#[derive(Debug)]
pub struct Admin {
    reloader: Arc<Reloader>,
    metrics: Arc<Metrics>,
    stopping: AtomicBool,
}

impl Admin {
    pub fn new(reloader: Arc<Reloader>, metrics: Arc<Metrics>) -> Arc<Admin> {
        Arc::new(Admin { reloader, metrics, stopping: AtomicBool::new(false) })
    }

    /// Readiness turns false (first step of a graceful shutdown).
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// The response to one admin request.
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if method != Method::GET && method != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n".into());
        }
        match path {
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
            "/readyz" if self.stopping.load(Ordering::SeqCst) => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "shutting down\n".into())
            }
            "/readyz" if !self.reloader.shared().load().remote_keys_ready() => {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "waiting for remote keys\n".into())
            }
            "/readyz" => reply(StatusCode::OK, "text/plain", "ready\n".into()),
            "/config" => reply(StatusCode::OK, "application/json", self.config_json().to_string()),
            "/metrics" => reply(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                self.metrics.render(),
            ),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    fn config_json(&self) -> serde_json::Value {
        let snap = self.reloader.shared().load();
        let status = self.reloader.status();
        let secs = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        json!({
            "generation": snap.generation,
            "loaded_at": secs(snap.loaded_at),
            "source": snap.source.display().to_string(),
            "fingerprint": format!("{:016x}", snap.fingerprint),
            "routes": snap.routes.len(),
            "issuers": snap.issuers.len(),
            "upstreams": snap.upstreams.keys().collect::<Vec<_>>(),
            "token_cache_entries": snap.token_cache.as_ref().map_or(0, |c| c.len()),
            "reloads": {
                "applied": status.applied,
                "unchanged": status.unchanged,
                "refused": status.refused,
                "last_applied_at": status.last_applied_at.map(secs),
                "last_error": status.last_error.as_ref().map(|(at, msg)| json!({"at": secs(*at), "message": msg})),
            },
        })
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// Serves the admin endpoints on `listener`, forever.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let admin = Arc::clone(&admin);
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<Incoming>| {
                let resp = admin.respond(req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}
