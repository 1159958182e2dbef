//! Test support: a real gateway and a real upstream on 127.0.0.1 port 0,
//! keys made per run, token minting, a small HTTP client, raw-TCP requests,
//! and `wait_until` (poll with a deadline; never a fixed sleep).
#![allow(dead_code, unreachable_pub)]

pub mod authz;
pub mod bin;

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rolegate::echo::{Echo, Seen};
use rolegate::gateway::Gateway;
use rolegate::keygen::PemPair;
use rolegate::mint::{self, Signer};
use rolegate::server::{self, ServeOptions};
use rolegate::snapshot::Shared;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ISS: &str = "https://idp.test";
pub const AUD: &str = "orders-api";
pub const HS_ENV: &str = "ROLEGATE_TEST_HS_SECRET";
pub const HS_SECRET: &str = "test-hmac-secret-0123456789abcdef";

/// Keys generated once per test binary.
pub struct Keys {
    pub rsa: PemPair,
    pub ec: PemPair,
    /// Not configured anywhere: an attacker's key.
    pub rogue_rsa: PemPair,
}

pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        // Read once by the config compiler; set before any gateway starts.
        std::env::set_var(HS_ENV, HS_SECRET);
        Keys {
            rsa: rolegate::keygen::rsa().unwrap(),
            ec: rolegate::keygen::ec_p256().unwrap(),
            rogue_rsa: rolegate::keygen::rsa().unwrap(),
        }
    })
}

/// Standard claims for the main issuer; `extra` is merged in (null removes a claim).
pub fn claims(extra: Value) -> Value {
    let mut base = json!({"iss": ISS, "aud": AUD, "sub": "user-1", "tid": "acme"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base
}

pub fn rs256(claims: &Value) -> String {
    mint::sign(&Signer::Pem(keys().rsa.private_pem.clone().into_bytes()), claims, Some("k1"), Some(600)).unwrap()
}

pub fn rs256_kid(claims: &Value, kid: Option<&str>) -> String {
    mint::sign(&Signer::Pem(keys().rsa.private_pem.clone().into_bytes()), claims, kid, Some(600)).unwrap()
}

pub fn es256(claims: &Value) -> String {
    mint::sign(&Signer::Pem(keys().ec.private_pem.clone().into_bytes()), claims, Some("e1"), Some(600)).unwrap()
}

pub fn rogue(claims: &Value, kid: Option<&str>) -> String {
    mint::sign(&Signer::Pem(keys().rogue_rsa.private_pem.clone().into_bytes()), claims, kid, Some(600)).unwrap()
}

pub fn hs256(claims: &Value, secret: &[u8]) -> String {
    mint::sign(&Signer::Secret(secret.to_vec()), claims, None, Some(600)).unwrap()
}

/// A token with a hand-made header and payload, signed (or not) by the caller.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The standard test table: `{upstream}` and `{dir}` are filled in.
pub const STANDARD_ROUTES: &str = r#"
[server]
listen = "127.0.0.1:0"

[upstreams.default]
url = "http://{upstream}"
connect_timeout_ms = 500
timeout_ms = 5000

[[issuers]]
issuer = "https://idp.test"
audiences = ["orders-api"]
keys = [{ kid = "k1", pem_file = "rsa.pub.pem" }, { kid = "e1", pem_file = "ec.pub.pem" }]
algorithms = ["RS256", "ES256"]
leeway_s = 5
roles_claim = "ts_roles"
permissions_claim = "ts_permissions"
tenant_claim = "tid"

[[issuers]]
issuer = "https://keycloak.test/realms/r"
keys = [{ pem_file = "rsa.pub.pem" }]
algorithms = ["RS256"]
roles_claim = "realm_access.roles"
permissions_claim = "scope"

[[issuers]]
issuer = "https://hs.test"
secret_env = "ROLEGATE_TEST_HS_SECRET"
algorithms = ["HS256"]
roles_claim = "roles"
permissions_claim = "permissions"

[roles.reader]
permissions = ["read:user"]
[roles.manager]
includes = ["reader"]
permissions = ["create:user", "update:user", "delete:user"]
[roles.admin]
includes = ["manager"]

[forward]
authorization = true
headers = { "x-auth-subject" = "sub", "x-auth-tenant" = "$tenant", "x-auth-roles" = "$roles", "x-auth-permissions" = "$permissions" }

[defaults]
unmatched = "deny"

[[routes]]
name = "public docs"
path = "/docs/**"
public = true

[[routes]]
name = "read users"
methods = ["GET", "HEAD"]
path = "/v1/users/**"
all_permissions = ["read:user"]

[[routes]]
name = "delete users"
methods = ["DELETE"]
path = "/v1/users/{id}"
all_permissions = ["delete:user"]

[[routes]]
name = "tenant admin"
path = "/v1/tenants/{tenant}/**"
any_roles = ["admin", "owner"]
claims = { tid = "{tenant}" }

[[routes]]
name = "admin"
path = "/admin/**"
all_roles = ["admin"]

[[routes]]
name = "reports"
path = "/reports/**"
any_of = [{ all_permissions = ["read:reports"] }, { any_roles = ["auditor"] }]

[[routes]]
name = "any user"
path = "/me"
# no requirement: any valid token

[[routes]]
name = "shadow"
path = "/shadow/**"
all_roles = ["admin"]
mode = "report"

[[routes]]
name = "vip host"
host = "vip.example.com"
path = "/vip"
all_roles = ["admin"]
"#;

/// A running gateway in front of a running echo upstream; both stop on drop.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub echo: Echo,
    pub shared: Shared,
    pub metrics: Arc<rolegate::metrics::Metrics>,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Writes the key files a routes table refers to into `dir`.
pub fn write_keys(dir: &Path) {
    let k = keys();
    std::fs::write(dir.join("rsa.pub.pem"), &k.rsa.public_pem).unwrap();
    std::fs::write(dir.join("ec.pub.pem"), &k.ec.public_pem).unwrap();
}

impl TestGateway {
    pub async fn start() -> TestGateway {
        Self::with_routes(STANDARD_ROUTES).await
    }

    /// `routes` may use `{upstream}` (the echo's address) and `{dead}` (a closed port).
    pub async fn with_routes(routes: &str) -> TestGateway {
        Self::with_routes_and_files(routes, &[]).await
    }

    /// [`TestGateway::with_routes`], with more files (name, content) beside routes.toml.
    pub async fn with_routes_and_files(routes: &str, files: &[(&str, &str)]) -> TestGateway {
        let echo = Echo::start(TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        write_keys(dir.path());
        for (name, content) in files {
            std::fs::write(dir.path().join(name), content).unwrap();
        }
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let text = routes.replace("{upstream}", &echo.addr.to_string()).replace("{dead}", &dead.to_string());
        let config = dir.path().join("routes.toml");
        std::fs::write(&config, &text).unwrap();
        let snapshot = rolegate::config::load(&config, None).unwrap_or_else(|e| panic!("test routes invalid:\n{e}"));
        let shared: Shared = Arc::new(ArcSwap::from_pointee(snapshot));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let opts = ServeOptions {
            header_read_timeout: Duration::from_secs(2),
            shutdown_timeout: Duration::from_secs(5),
            ..ServeOptions::from_settings(&shared.load().server)
        };
        let metrics = Arc::new(rolegate::metrics::Metrics::new());
        shared.load().start_remote_keys(&tokio::runtime::Handle::current(), Some(&metrics));
        let gw = Gateway::with_metrics(Arc::clone(&shared), Arc::clone(&metrics));
        let task = tokio::spawn(async move {
            server::serve(listener, gw, opts, async {
                let _ = stopped.await;
            })
            .await
        });
        TestGateway { addr, echo, shared, metrics, dir, config, stop: Some(stop), task: Some(task) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Requests the upstream has received so far.
    pub fn upstream_saw(&self) -> Vec<Seen> {
        self.echo.requests()
    }

    /// Sends a request through the gateway.
    pub async fn send(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        let headers: Vec<(&str, String)> =
            token.map(|t| vec![("authorization", format!("Bearer {t}"))]).unwrap_or_default();
        self.send_with(method, path, &headers).await
    }

    pub async fn send_with(&self, method: &str, path: &str, headers: &[(&str, String)]) -> Reply {
        let mut b = Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(self.url(path));
        for (n, v) in headers {
            b = b.header(*n, v);
        }
        send(b.body(Full::new(Bytes::new())).unwrap()).await
    }
}

/// A response, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|_| panic!("not JSON: {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(req: Request<Full<Bytes>>) -> Reply {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(Duration::from_secs(20), client.request(req))
        .await
        .expect("response in time")
        .expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply { status: parts.status, headers: parts.headers, body }
}

/// Sends raw bytes on a fresh connection and returns the status code of the
/// first response (0 if the connection closed without one) and the raw text.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    // One response is enough: stop at the end of its body (content-length).
                    if let Some(end) = response_end(&buf) {
                        buf.truncate(end);
                        break;
                    }
                }
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), read).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    // Skip interim (1xx) responses such as `100 Continue`.
    let mut rest = text.as_str();
    while rest.starts_with("HTTP/1.1 1") {
        match rest.find("\r\n\r\n") {
            Some(end) => rest = &rest[end + 4..],
            None => break,
        }
    }
    let status = rest.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, text)
}

fn response_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    // Interim responses have no body: look past them.
    while buf[start..].starts_with(b"HTTP/1.1 1") {
        start += buf[start..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    }
    let buf = &buf[start..];
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head.lines().find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().parse().ok()))??;
    (buf.len() >= head_end + len).then_some(start + head_end + len)
}

/// A GET with a bearer token, as raw bytes, for a request target the client
/// library would otherwise normalize.
pub fn raw_get(target: &str, token: Option<&str>) -> Vec<u8> {
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n").into_bytes()
}

/// Polls `probe` until it returns true or the deadline passes.
pub async fn wait_until<F, Fut>(deadline: Duration, mut probe: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = Instant::now() + deadline;
    loop {
        if probe().await {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A test CA and a server certificate for 127.0.0.1 and localhost, signed by it (PEM).
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn test_pki() -> TestPki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    TestPki { ca_pem: ca_cert.pem(), cert_pem: cert.pem(), key_pem: key.serialize_pem() }
}

/// A rustls acceptor for a server certificate in PEM.
pub fn tls_acceptor(cert_pem: &str, key_pem: &str) -> tokio_rustls::TlsAcceptor {
    tls_acceptor_alpn(cert_pem, key_pem, &[])
}

/// [`tls_acceptor`] offering these ALPN protocols.
pub fn tls_acceptor_alpn(cert_pem: &str, key_pem: &str, alpn: &[&[u8]]) -> tokio_rustls::TlsAcceptor {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect::<Result<_, _>>().unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let mut config = config;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsAcceptor::from(Arc::new(config))
}

/// A TLS server for the rest of the test: accepts on `listener`, and hands
/// each connection that completes its handshake with `acceptor` to `serve`,
/// on a task of its own.
pub fn serve_tls<F, Fut>(listener: TcpListener, acceptor: tokio_rustls::TlsAcceptor, serve: F)
where
    F: Fn(tokio_rustls::server::TlsStream<TcpStream>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let (acceptor, serve) = (acceptor.clone(), serve.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    serve(tls).await;
                }
            });
        }
    });
}

/// A small table for tests that run the real binary: one issuer (`ISS`, RS256
/// key `k1` from `rsa.pub.pem`, roles in `ts_roles`) and one route `/admin/**`
/// requiring `admin_role`. `server_extra` goes into `[server]` after `listen`.
pub fn binary_routes(server_extra: &str, upstream: &str, admin_role: &str) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
{server_extra}
[upstreams.default]
url = "http://{upstream}"
[[issuers]]
issuer = "{ISS}"
audiences = ["{AUD}"]
keys = [{{ kid = "k1", pem_file = "rsa.pub.pem" }}]
algorithms = ["RS256"]
roles_claim = "ts_roles"
[[routes]]
name = "admin"
path = "/admin/**"
all_roles = ["{admin_role}"]
"#
    )
}
