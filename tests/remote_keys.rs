//! Remote keys over HTTP (loopback): `jwks_url` and `discovery`, rotation
//! followed after one refetch, a burst of unknown kids costing at most one
//! fetch, the last good keys kept while the identity provider is down, and a
//! discovery document naming another issuer refused.

mod support;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use rolegate::keygen::PemPair;
use rolegate::mint::{self, Signer};
use serde_json::json;
use support::*;

/// A tiny identity provider: serves a JWKS and a discovery document.
#[derive(Clone)]
struct Idp {
    addr: SocketAddr,
    jwks: Arc<Mutex<serde_json::Value>>,
    issuer_in_discovery: Arc<Mutex<String>>,
    jwks_fetches: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

impl Idp {
    async fn start(keys: &[(&PemPair, &str)]) -> Idp {
        Self::start_tls(keys, None).await
    }

    /// With `tls`, the IdP speaks HTTPS with that acceptor.
    async fn start_tls(keys: &[(&PemPair, &str)], tls: Option<tokio_rustls::TlsAcceptor>) -> Idp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let idp = Idp {
            addr: listener.local_addr().unwrap(),
            jwks: Arc::new(Mutex::new(json!({"keys": []}))),
            issuer_in_discovery: Arc::new(Mutex::new(ISS.to_owned())),
            jwks_fetches: Arc::new(AtomicUsize::new(0)),
            down: Arc::new(AtomicBool::new(false)),
        };
        idp.set_keys(keys);
        let me = idp.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let me = me.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let me = me.clone();
                        async move { Ok::<_, Infallible>(me.answer(req.uri().path())) }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        idp
    }

    fn answer(&self, path: &str) -> Response<Full<Bytes>> {
        let (status, body) = if self.down.load(Ordering::SeqCst) {
            (503, "down".to_owned())
        } else {
            match path {
                "/jwks.json" => {
                    self.jwks_fetches.fetch_add(1, Ordering::SeqCst);
                    (200, self.jwks.lock().unwrap().to_string())
                }
                "/.well-known/openid-configuration" => (
                    200,
                    json!({"issuer": *self.issuer_in_discovery.lock().unwrap(),
                           "jwks_uri": format!("http://{}/jwks.json", self.addr)})
                    .to_string(),
                ),
                _ => (404, "no".to_owned()),
            }
        };
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        r
    }

    fn set_keys(&self, keys: &[(&PemPair, &str)]) {
        let list: Vec<_> = keys
            .iter()
            .map(|(pair, kid)| {
                let mut jwk = pair.public_jwk.clone();
                jwk["kid"] = json!(kid);
                jwk
            })
            .collect();
        *self.jwks.lock().unwrap() = json!({ "keys": list });
    }
}

fn routes(key_source: &str) -> String {
    STANDARD_ROUTES.replacen(
        "keys = [{ kid = \"k1\", pem_file = \"rsa.pub.pem\" }, { kid = \"e1\", pem_file = \"ec.pub.pem\" }]",
        key_source,
        1,
    )
}

fn token(pair: &PemPair, kid: &str) -> String {
    let c = claims(json!({"ts_roles": ["admin"]}));
    mint::sign(&Signer::Pem(pair.private_pem.clone().into_bytes()), &c, Some(kid), Some(600)).unwrap()
}

async fn ready(gw: &TestGateway) {
    assert!(
        wait_until(Duration::from_secs(10), || async { gw.shared.load().remote_keys_ready() }).await,
        "no keys fetched"
    );
}

#[tokio::test]
async fn jwks_url_keys_are_fetched_and_rotation_is_followed() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    let gw = TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await;
    ready(&gw).await;
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);
    let fetches = idp.jwks_fetches.load(Ordering::SeqCst);

    // The IdP rotates: a new key, and tokens signed with it.
    let k2 = rolegate::keygen::rsa().unwrap();
    idp.set_keys(&[(&k1, "k1"), (&k2, "k2")]);
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k2, "k2"))).await.status, 200);
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), fetches + 1, "exactly one refetch");
    let metrics = gw.metrics.render();
    let ok_line = format!("rolegate_jwks_fetches_total{{issuer=\"{ISS}\",result=\"ok\"}} {}", fetches + 1);
    assert!(metrics.contains(&ok_line), "{metrics}");
    // The old key still works while it is published.
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);

    // A reload keeps the fetched key set of the unchanged issuer (no refetch, no gap).
    let before = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    let reloader = rolegate::reload::Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    assert!(matches!(reloader.reload(true), rolegate::reload::Outcome::Applied(_)));
    let after = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    assert!(Arc::ptr_eq(&before, &after));
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k2, "k2"))).await.status, 200);
}

#[tokio::test]
async fn a_burst_of_unknown_kids_causes_at_most_one_fetch() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    let gw =
        Arc::new(TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await);
    ready(&gw).await;
    let before = idp.jwks_fetches.load(Ordering::SeqCst);
    let unknown = token(&k1, "nope");
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (gw, t) = (Arc::clone(&gw), unknown.clone());
        tasks.push(tokio::spawn(async move { gw.send("GET", "/admin/x", Some(&t)).await.status.as_u16() }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let after = idp.jwks_fetches.load(Ordering::SeqCst);
    assert!(after - before <= 1, "{} fetches for one burst", after - before);
    // And it is rate-limited afterwards too.
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "still-unknown"))).await.status, 401);
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), after);
}

#[tokio::test]
async fn idp_down_keeps_the_last_good_keys() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    let gw = TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await;
    ready(&gw).await;
    idp.down.store(true, Ordering::SeqCst);
    let remote = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    assert!(remote.fetch().await.is_err(), "the refresh fails while the IdP is down");
    assert!(gw.metrics.render().contains("result=\"error\"} 1"), "the failure is counted");
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);
}

#[tokio::test]
async fn discovery_finds_the_jwks_and_checks_the_issuer() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    let gw = TestGateway::with_routes(&routes(&format!("discovery = \"http://{}\"", idp.addr))).await;
    ready(&gw).await;
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);

    // A discovery document that names another issuer is refused: no keys, so
    // 503 keys_unavailable (the caller's token is not at fault), never 401 or allow.
    let idp2 = Idp::start(&[(&k1, "k1")]).await;
    *idp2.issuer_in_discovery.lock().unwrap() = "https://evil.test".to_owned();
    let gw2 = TestGateway::with_routes(&routes(&format!("discovery = \"http://{}\"", idp2.addr))).await;
    let remote = gw2.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    let err = remote.fetch().await.unwrap_err();
    assert!(err.contains("names issuer \"https://evil.test\""), "{err}");
    assert!(!gw2.shared.load().remote_keys_ready());
    let r = gw2.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await;
    assert_eq!((r.status.as_u16(), r.json()["error"].as_str()), (503, Some("keys_unavailable")));
    assert_eq!(r.header("retry-after"), Some("5"));
}

#[test]
fn non_loopback_http_and_other_schemes_are_config_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (url, want) in [
        ("http://idp.example.com/jwks.json", "loopback addresses only"),
        ("ftp://idp.example.com/jwks.json", "needs https://"),
    ] {
        let text = format!(
            "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"x\"\njwks_url = \"{url}\"\n"
        );
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, text).unwrap();
        let e = rolegate::config::load(&path, None).unwrap_err().to_string();
        assert!(e.contains(want) && e.contains("routes.toml:5:"), "{e}");
    }
}

#[tokio::test]
async fn https_jwks_trusted_through_ca_file() {
    let pki = test_pki();
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start_tls(&[(&k1, "k1")], Some(tls_acceptor(&pki.cert_pem, &pki.key_pem))).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("idp-ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let source =
        format!("jwks_url = \"https://127.0.0.1:{}/jwks.json\"\nca_file = \"{}\"", idp.addr.port(), ca.display());
    let gw = TestGateway::with_routes(&routes(&source)).await;
    ready(&gw).await;
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);
}

#[tokio::test]
async fn https_jwks_with_an_untrusted_certificate_is_refused() {
    let pki = test_pki();
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start_tls(&[(&k1, "k1")], Some(tls_acceptor(&pki.cert_pem, &pki.key_pem))).await;
    // No ca_file: the test CA is not trusted.
    let source = format!("jwks_url = \"https://127.0.0.1:{}/jwks.json\"", idp.addr.port());
    let gw = TestGateway::with_routes(&routes(&source)).await;
    let remote = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    let err = remote.fetch().await.unwrap_err();
    assert!(err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"), "{err}");
    assert!(!gw.shared.load().remote_keys_ready());
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 503);
    assert_eq!(idp.jwks_fetches.load(Ordering::SeqCst), 0, "no JWKS was served over an untrusted connection");
}

/// A key that leaves the issuer's JWKS stops working at once: a token it
/// verified is no longer taken from the token cache (which, without the key
/// generation check, kept accepting it until the token expired).
#[tokio::test]
async fn a_key_removed_from_the_jwks_stops_working_at_once_even_from_the_token_cache() {
    let (k1, k2) = (rolegate::keygen::rsa().unwrap(), rolegate::keygen::rsa().unwrap());
    let idp = Idp::start(&[(&k1, "k1"), (&k2, "k2")]).await;
    let gw = TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await;
    ready(&gw).await;
    let (old, new) = (token(&k1, "k1"), token(&k2, "k2"));
    for _ in 0..2 {
        assert_eq!(gw.send("GET", "/admin/x", Some(&old)).await.status, 200);
        assert_eq!(gw.send("GET", "/admin/x", Some(&new)).await.status, 200);
    }
    let cache = gw.shared.load_full();
    assert_eq!(cache.token_cache.as_ref().unwrap().len(), 2, "both tokens are cached");
    // The IdP drops k1 (compromised); the gateway's next refresh sees it.
    idp.set_keys(&[(&k2, "k2")]);
    let remote = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    remote.fetch().await.unwrap();
    let r = gw.send("GET", "/admin/x", Some(&old)).await;
    assert_eq!(r.status, 401, "a token of a removed key must not come from the cache");
    assert!(r.header("www-authenticate").unwrap().contains("kid names no known key"));
    assert_eq!(gw.send("GET", "/admin/x", Some(&new)).await.status, 200, "the remaining key still works");
    // A rotation that only adds a key does not invalidate the cache.
    let generation = remote.generation();
    let k3 = rolegate::keygen::rsa().unwrap();
    idp.set_keys(&[(&k2, "k2"), (&k3, "k3")]);
    remote.fetch().await.unwrap();
    assert_eq!(remote.generation(), generation);
}

/// One JWK rolegate cannot use (an unknown `alg`, `kty` or curve, a bad
/// component) is skipped with a note; the issuer's other keys serve.
#[tokio::test]
async fn an_unusable_jwk_is_skipped_and_the_others_are_used() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    {
        let mut jwks = idp.jwks.lock().unwrap();
        let good = jwks["keys"][0].clone();
        let mut weird_alg = good.clone();
        weird_alg["kid"] = json!("future");
        weird_alg["alg"] = json!("RS999");
        let mut bad_n = good.clone();
        bad_n["kid"] = json!("broken");
        bad_n["n"] = json!("!!!");
        let list = vec![
            json!({"kty": "OKP", "crv": "Ed448", "x": "AAAA", "kid": "ed448"}),
            json!({"kty": "PQC", "kid": "pq"}),
            json!({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA", "kid": "p521"}),
            weird_alg,
            bad_n,
            good,
        ];
        *jwks = json!({ "keys": list });
    }
    let gw = TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await;
    ready(&gw).await;
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);
    let remote = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    assert_eq!(remote.keys().len(), 1, "only the usable key");
}

/// An issuer that has no keys at all (its IdP was down at start) answers 503
/// `keys_unavailable` with `Retry-After`, never 401 and never allow (report
/// mode included); once keys are there, an unknown kid is 401 again.
#[tokio::test]
async fn an_issuer_without_keys_answers_503_until_it_has_some() {
    let k1 = rolegate::keygen::rsa().unwrap();
    let idp = Idp::start(&[(&k1, "k1")]).await;
    idp.down.store(true, Ordering::SeqCst);
    let gw = TestGateway::with_routes(&routes(&format!("jwks_url = \"http://{}/jwks.json\"", idp.addr))).await;
    for path in ["/admin/x", "/shadow/x"] {
        let r = gw.send("GET", path, Some(&token(&k1, "k1"))).await;
        assert_eq!(r.status, 503, "{path}");
        assert_eq!(r.json()["error"], "keys_unavailable", "{path}");
        assert_eq!(r.header("retry-after"), Some("5"));
        assert_eq!(r.header("www-authenticate"), None);
    }
    assert!(gw.upstream_saw().is_empty(), "never allowed, not even on a report-mode route");
    // A public route does not look at tokens at all.
    assert_eq!(gw.send("GET", "/docs/x", Some(&token(&k1, "k1"))).await.status, 200);
    idp.down.store(false, Ordering::SeqCst);
    let remote = gw.shared.load().issuers.get(ISS).unwrap().remote.clone().unwrap();
    remote.fetch().await.unwrap();
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "k1"))).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&token(&k1, "other"))).await.status, 401);
}
