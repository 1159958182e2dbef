//! TLS termination (`[server] tls`) with the real binary: HTTPS requests are
//! enforced and forwarded with `x-forwarded-proto: https`, and a renewed
//! certificate is served to new connections without a restart.

mod support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

fn client_config(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    client_config_versions(ca_pem, alpn, rustls::DEFAULT_VERSIONS)
}

fn client_config_versions(
    ca_pem: &str,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// One HTTP/2 GET over TLS (ALPN h2): the negotiated protocol and the status.
async fn h2_get(addr: SocketAddr, ca_pem: &str, path: &str, token: &str) -> (Option<Vec<u8>>, u16) {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, &[b"h2"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
    let alpn = tls.get_ref().1.alpn_protocol().map(|p| p.to_vec());
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://127.0.0.1{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    (alpn, resp.status().as_u16())
}

/// One HTTPS GET trusting only `ca_pem`; the status code, or the TLS error.
async fn https_get(addr: SocketAddr, ca_pem: &str, path: &str, token: &str) -> Result<u16, String> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca_pem, &[b"http/1.1"])));
    let tcp = tokio::net::TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
    let req =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    text.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| format!("no HTTP response: {text}"))
}

#[tokio::test]
async fn https_is_served_and_certificates_rotate_without_restart() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let first = test_pki();
    std::fs::write(dir.path().join("server.pem"), &first.cert_pem).unwrap();
    std::fs::write(dir.path().join("server.key"), &first.key_pem).unwrap();
    let routes =
        binary_routes("tls = { cert = \"server.pem\", key = \"server.key\" }", &echo.addr.to_string(), "admin");
    let config = dir.path().join("routes.toml");
    std::fs::write(&config, routes).unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let addr: SocketAddr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|l| l.strip_prefix("listening on ").map(str::to_owned))
    })
    .await
    .unwrap()
    .expect("listening line")
    .parse()
    .unwrap();

    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let user = rs256(&claims(json!({"ts_roles": ["user"]})));
    // A client that comes back resumes its session (TLS 1.3 tickets, and TLS 1.2).
    for versions in [&[&rustls::version::TLS13][..], &[&rustls::version::TLS12]] {
        let connector =
            tokio_rustls::TlsConnector::from(Arc::new(client_config_versions(&first.ca_pem, &[b"http/1.1"], versions)));
        let mut kinds = Vec::new();
        for _ in 0..3 {
            let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
            let mut tls = connector.connect(ServerName::try_from("127.0.0.1").unwrap(), tcp).await.unwrap();
            tls.write_all(b"GET /docs/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut out = Vec::new();
            let _ = tls.read_to_end(&mut out).await;
            kinds.push(tls.get_ref().1.handshake_kind());
        }
        assert_eq!(kinds[0], Some(rustls::HandshakeKind::Full), "{versions:?}");
        assert!(kinds[1..].iter().all(|k| *k == Some(rustls::HandshakeKind::Resumed)), "{versions:?}: {kinds:?}");
    }
    assert_eq!(https_get(addr, &first.ca_pem, "/admin/x", &admin).await, Ok(200));
    assert_eq!(https_get(addr, &first.ca_pem, "/admin/x", &user).await, Ok(403));
    let seen = echo.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("x-forwarded-proto"), Some("https"));

    // HTTP/2 by ALPN: enforced the same, forwarded as HTTP/1.1 with a Host header.
    assert_eq!(h2_get(addr, &first.ca_pem, "/admin/h2", &admin).await, (Some(b"h2".to_vec()), 200));
    assert_eq!(h2_get(addr, &first.ca_pem, "/admin/h2", &user).await.1, 403);
    let seen = echo.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].path_and_query, "/admin/h2");
    assert_eq!(seen[1].header("host"), Some("127.0.0.1"));
    assert_eq!(seen[1].header("x-forwarded-proto"), Some("https"));

    // Renew: a certificate from another CA. New connections get it; no restart.
    let second = test_pki();
    std::fs::write(dir.path().join("server.key.new"), &second.key_pem).unwrap();
    std::fs::write(dir.path().join("server.pem.new"), &second.cert_pem).unwrap();
    std::fs::rename(dir.path().join("server.key.new"), dir.path().join("server.key")).unwrap();
    std::fs::rename(dir.path().join("server.pem.new"), dir.path().join("server.pem")).unwrap();
    let rotated = wait_until(Duration::from_secs(10), || async {
        https_get(addr, &second.ca_pem, "/admin/x", &admin).await == Ok(200)
    })
    .await;
    assert!(rotated, "the renewed certificate was not served");
    assert!(https_get(addr, &first.ca_pem, "/admin/x", &admin).await.is_err(), "the old certificate is gone");

    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM);
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap();
    assert!(status.success());
}

#[tokio::test]
async fn https_upstreams_are_verified_with_ca_file() {
    use std::convert::Infallible;
    // An HTTPS upstream whose certificate comes from a test CA.
    let pki = test_pki();
    let acceptor = tls_acceptor(&pki.cert_pem, &pki.key_pem);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up = listener.local_addr().unwrap();
    serve_tls(listener, acceptor, |tls| async move {
        let svc = hyper::service::service_fn(|req: http::Request<hyper::body::Incoming>| async move {
            Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(bytes::Bytes::from(format!(
                "secure {}",
                req.uri().path()
            )))))
        });
        let _ =
            hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(tls), svc).await;
    });
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("up-ca.pem"), &pki.ca_pem).unwrap();
    let ca = dir.path().join("up-ca.pem");
    let routes = format!(
        "{STANDARD_ROUTES}\n[upstreams.secure]\nurl = \"https://127.0.0.1:{port}\"\nca_file = \"{ca}\"\n\
         [upstreams.untrusted]\nurl = \"https://127.0.0.1:{port}\"\n\
         [[routes]]\npath = \"/secure/**\"\npublic = true\nupstream = \"secure\"\n\
         [[routes]]\npath = \"/untrusted/**\"\npublic = true\nupstream = \"untrusted\"\n",
        port = up.port(),
        ca = ca.display()
    );
    let gw = TestGateway::with_routes(&routes).await;
    let r = gw.send("GET", "/secure/x", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "secure /secure/x");
    // Without the CA, the upstream's certificate is not trusted: 502.
    assert_eq!(gw.send("GET", "/untrusted/x", None).await.status, 502);
}
