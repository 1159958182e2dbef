//! Remote key sets: an issuer's `jwks_url`, or its OIDC `discovery` document's
//! `jwks_uri`, fetched in the background and refreshed before they go stale.
//!
//! - The last good key set keeps serving when a refresh fails (logged).
//! - A token whose `kid` is unknown triggers one refetch, at most one per
//!   issuer per [`MIN_REFETCH`], shared by all concurrent requests.
//! - A reload keeps the `RemoteKeys` (and its keys) of an unchanged issuer.
//! - `https://` is verified against the webpki and system roots plus the
//!   issuer's `ca_file`; `http://` is accepted for loopback addresses only.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::Uri;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::keys::{self, VerifyKey};

/// The least time between two refetches triggered by unknown `kid`s.
pub const MIN_REFETCH: Duration = Duration::from_secs(30);
/// Refresh interval when the response has no usable `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
const MIN_MAX_AGE: Duration = Duration::from_secs(30);
const MAX_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_DOCUMENT: usize = 1 << 20;

/// Where the keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Jwks(Uri),
    /// The issuer URL; keys come from its discovery document's `jwks_uri`.
    Discovery(Uri),
}

/// Checks a remote key URL: `https://`, or `http://` for loopback hosts only.
pub fn parse_url(url: &str) -> Result<Uri, String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {
            let host = uri.host().unwrap_or("");
            let loopback = host == "localhost"
                || host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if loopback {
                Ok(uri)
            } else {
                Err(format!("{url:?}: http:// is accepted for loopback addresses only; use https://"))
            }
        }
        Some("https") if uri.host().is_some() => Ok(uri),
        _ => Err(format!("{url:?}: the URL needs https:// (or http:// on a loopback address)")),
    }
}

/// One issuer's remote keys.
pub struct RemoteKeys {
    pub issuer: String,
    pub source: Source,
    /// The issuer's `ca_file`, part of its identity for reload carry-over.
    pub ca_file: Option<std::path::PathBuf>,
    tls: Arc<rustls::ClientConfig>,
    keys: ArcSwap<Vec<VerifyKey>>,
    /// Moves on whenever a fetch drops a key the set had (see [`RemoteKeys::generation`]).
    generation: std::sync::atomic::AtomicU64,
    state: Mutex<State>,
    /// Single flight: one fetch at a time per issuer.
    fetching: tokio::sync::Mutex<()>,
    refresher: std::sync::atomic::AtomicBool,
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

#[derive(Debug, Default)]
struct State {
    last_attempt: Option<Instant>,
    /// The last refetch caused by an unknown `kid` (rate-limited separately from refreshes).
    last_kid_refetch: Option<Instant>,
    fetched_once: bool,
    max_age: Option<Duration>,
    last_error: Option<String>,
}

impl std::fmt::Debug for RemoteKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteKeys").field("issuer", &self.issuer).field("source", &self.source).finish()
    }
}

impl RemoteKeys {
    /// `tls` is the client configuration for `https://` (see `tls::client_config`).
    pub fn new(
        issuer: &str,
        source: Source,
        ca_file: Option<std::path::PathBuf>,
        tls: Arc<rustls::ClientConfig>,
    ) -> Arc<RemoteKeys> {
        Arc::new(RemoteKeys {
            issuer: issuer.to_owned(),
            source,
            ca_file,
            tls,
            keys: ArcSwap::from_pointee(Vec::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            state: Mutex::new(State::default()),
            fetching: tokio::sync::Mutex::new(()),
            refresher: std::sync::atomic::AtomicBool::new(false),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// The current key set (empty before the first successful fetch).
    pub fn keys(&self) -> Arc<Vec<VerifyKey>> {
        self.keys.load_full()
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.load().is_empty()
    }

    /// Which key set a cached token was verified against: it moves on when a
    /// fetch drops a key (a rotation that only adds keys keeps it), and a
    /// token cache entry made with an older generation is verified again.
    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Replaces the key set; moves the generation on if a key left it.
    fn store(&self, found: Vec<VerifyKey>) {
        let old = self.keys.load();
        let dropped = old.iter().any(|k| !found.iter().any(|n| n.same_key(k)));
        self.keys.store(Arc::new(found));
        if dropped {
            self.generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }

    /// Fetches now (waiting for a fetch already under way instead of starting another).
    pub async fn fetch(&self) -> Result<usize, String> {
        let started = Instant::now();
        let _guard = self.fetching.lock().await;
        if self.state.lock().map(|s| s.last_attempt.is_some_and(|t| t >= started)).unwrap_or(false) {
            // Someone fetched while we waited for the lock.
            return Ok(self.keys.load().len());
        }
        let result = fetch_keys(&self.issuer, &self.source, &self.tls).await;
        if let Some(m) = self.metrics.get() {
            let result = if result.is_ok() { "ok" } else { "error" };
            m.jwks_fetches.get_or_create(&crate::metrics::FetchLabels { issuer: self.issuer.clone(), result }).inc();
        }
        let mut state = self.state.lock().map_err(|_| "poisoned".to_owned())?;
        state.last_attempt = Some(Instant::now());
        match result {
            Ok((found, max_age)) => {
                let n = found.len();
                self.store(found);
                state.fetched_once = true;
                state.max_age = max_age;
                state.last_error = None;
                tracing::info!(issuer = %self.issuer, keys = n, "fetched remote keys");
                Ok(n)
            }
            Err(e) => {
                tracing::warn!(issuer = %self.issuer, error = %e, "fetching remote keys failed; the last good keys stay in use");
                state.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// For a token whose `kid` is unknown: refetch, unless an unknown-kid
    /// refetch happened within [`MIN_REFETCH`], in which case only wait for a
    /// fetch under way. Concurrent callers share one fetch. Returns whether a
    /// second verification attempt may find the key.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        let allowed = match self.state.lock() {
            Ok(mut s) if s.last_kid_refetch.is_none_or(|t| t.elapsed() >= MIN_REFETCH) => {
                s.last_kid_refetch = Some(Instant::now());
                true
            }
            _ => false,
        };
        if allowed {
            self.fetch().await.is_ok()
        } else {
            // A fetch may be under way (another request's, or a refresh): wait for it.
            drop(self.fetching.lock().await);
            true
        }
    }

    fn refresh_interval(&self) -> Duration {
        self.state.lock().ok().and_then(|s| s.max_age).unwrap_or(DEFAULT_MAX_AGE).clamp(MIN_MAX_AGE, MAX_MAX_AGE)
    }

    /// Starts (once) the background task that fetches now and then refreshes
    /// before the keys go stale; it ends when the `RemoteKeys` is dropped.
    pub fn start_refresher(
        self: &Arc<Self>,
        rt: &tokio::runtime::Handle,
        metrics: Option<&Arc<crate::metrics::Metrics>>,
    ) {
        if let Some(m) = metrics {
            let _ = self.metrics.set(Arc::clone(m));
        }
        if self.refresher.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let weak: Weak<RemoteKeys> = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let Some(me) = weak.upgrade() else { return };
                let _ = me.fetch().await;
                // Retry sooner while there are no keys at all.
                let wait = if me.has_keys() { me.refresh_interval() } else { Duration::from_secs(5) };
                drop(me);
                tokio::time::sleep(wait).await;
            }
        });
    }
}

async fn get(url: &Uri, tls: &Arc<rustls::ClientConfig>) -> Result<(Bytes, Option<Duration>), String> {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config((**tls).clone())
        .https_or_http()
        .enable_http1()
        .build();
    let client = Client::builder(TokioExecutor::new()).build::<_, Empty<Bytes>>(connector);
    let req = http::Request::get(url.clone())
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::new())
        .map_err(|e| e.to_string())?;
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("{url}: no answer within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: HTTP {}", resp.status()));
    }
    let max_age = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("max-age=")?.parse::<u64>().ok()))
        .map(Duration::from_secs);
    let body = tokio::time::timeout(FETCH_TIMEOUT, Limited::new(resp.into_body(), MAX_DOCUMENT).collect())
        .await
        .map_err(|_| format!("{url}: body not received within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("{url}: {e}"))?
        .to_bytes();
    Ok((body, max_age))
}

async fn fetch_keys(
    issuer: &str,
    source: &Source,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<(Vec<VerifyKey>, Option<Duration>), String> {
    let jwks_url = match source {
        Source::Jwks(u) => u.clone(),
        Source::Discovery(base) => {
            let url: Uri = format!("{}/.well-known/openid-configuration", base.to_string().trim_end_matches('/'))
                .parse()
                .map_err(|e| format!("discovery URL: {e}"))?;
            let (body, _) = get(&url, tls).await?;
            let doc: serde_json::Value = serde_json::from_slice(&body).map_err(|e| format!("{url}: not JSON: {e}"))?;
            let found = doc.get("issuer").and_then(|v| v.as_str()).unwrap_or("");
            if found != issuer {
                return Err(format!("{url}: the discovery document names issuer {found:?}, not {issuer:?}; refused"));
            }
            let jwks = doc.get("jwks_uri").and_then(|v| v.as_str()).ok_or_else(|| format!("{url}: no jwks_uri"))?;
            parse_url(jwks)?
        }
    };
    let (body, max_age) = get(&jwks_url, tls).await?;
    let text = std::str::from_utf8(&body).map_err(|_| format!("{jwks_url}: not UTF-8"))?;
    let (keys, notes) = keys::from_jwks(text)?;
    for n in notes {
        tracing::info!(issuer, "{n}");
    }
    Ok((keys, max_age))
}

/// An error and its sources, as one line (for logs).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        cur = inner.source();
    }
    s
}
