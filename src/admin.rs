//! The admin listener (`[server] admin_listen`), never proxied:
//! `/healthz` (the process is alive), `/readyz` (a snapshot is serving and the
//! gateway is not shutting down), `/config` (what is serving and how the last
//! reloads went, as JSON), `/metrics` (Prometheus text format).

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

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

    /// The response to one admin request (`accept`: its `Accept` header, which
    /// picks the format of `/metrics`).
    pub fn respond(&self, method: &Method, path: &str, accept: Option<&str>) -> Response<Full<Bytes>> {
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
            "/metrics" => {
                let (content_type, body) = self.metrics.render_for(accept);
                reply(StatusCode::OK, content_type, body)
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
        }
    }

    fn config_json(&self) -> serde_json::Value {
        let snap = self.reloader.shared().load();
        let status = self.reloader.status();
        json!({
            "generation": snap.generation,
            "loaded_at": rfc3339(snap.loaded_at),
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
                "last_applied_at": status.last_applied_at.map(rfc3339),
                "last_attempt": status.last_attempt.map(|(at, result)| json!({"at": rfc3339(at), "result": result})),
                // The last refusal stays here after later reloads; whether the table serving
                // now was loaded after it tells a fixed mistake from one still on disk.
                "last_error": status.last_error.as_ref().map(|(at, msg)| json!({
                    "at": rfc3339(*at),
                    "message": msg,
                    "serving_table_is_newer": snap.loaded_at > *at,
                })),
            },
        })
    }
}

/// `2026-12-01T16:57:03.123Z`: RFC 3339, UTC, to the millisecond.
fn rfc3339(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rest) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60,
        since.subsec_millis()
    )
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
                let accept = req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
                let resp = admin.respond(req.method(), req.uri().path(), accept);
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::rfc3339;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339() {
        let at =
            |secs: u64, millis: u64| rfc3339(UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(millis));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_735_689_599, 999), "2024-12-31T23:59:59.999Z");
        // Against httpdate's calendar, over a day in each of ~3,000 months.
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
        for i in 0..3_000u64 {
            let secs = i * 2_629_743 + i * 7_919 % 86_400;
            let t = UNIX_EPOCH + Duration::from_secs(secs);
            // "Sun, 06 Nov 1994 08:49:37 GMT"
            let http = httpdate::fmt_http_date(t);
            let p: Vec<&str> = http.split([' ', ':']).collect();
            let month = months.iter().position(|m| *m == p[2]).unwrap() + 1;
            let expected = format!("{}-{month:02}-{}T{}:{}:{}.000Z", p[3], p[1], p[4], p[5], p[6]);
            assert_eq!(rfc3339(t), expected, "{http}");
        }
    }
}
