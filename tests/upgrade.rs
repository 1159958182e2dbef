//! Upgrade (WebSocket) passthrough: allowed routes get a byte stream to the
//! upstream after its `101`; denied routes are refused before any upgrade.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts every upgrade (101) and echoes the bytes of the new protocol;
/// answers any other request 200, with its HTTP version in `x-version`.
async fn echo_upgrade(mut req: Request<Incoming>) -> Result<Response<Empty<Bytes>>, Infallible> {
    if !req.headers().contains_key("upgrade") {
        let mut resp = Response::new(Empty::<Bytes>::new());
        resp.headers_mut().insert("x-version", format!("{:?}", req.version()).parse().unwrap());
        return Ok(resp);
    }
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        if let Ok(io) = upgrade.await {
            let mut io = TokioIo::new(io);
            let mut buf = [0u8; 1024];
            while let Ok(n) = io.read(&mut buf).await {
                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut resp = Response::new(Empty::<Bytes>::new());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    resp.headers_mut().insert("connection", "upgrade".parse().unwrap());
    Ok(resp)
}

/// A plain HTTP/1.1 upstream serving [`echo_upgrade`].
async fn echo_upgrade_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(echo_upgrade);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends an allowed WebSocket upgrade through the gateway and checks the
/// `101` and the echoed bytes.
async fn upgrade_and_echo(gw: &TestGateway) {
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let req = format!(
        "GET /v1/users/ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {reader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut byte)).await.expect("101 in time").unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");
    // Now a raw byte stream, both ways, through the gateway.
    s.write_all(b"hello through rolegate").await.unwrap();
    let mut buf = [0u8; 22];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf)).await.expect("echo in time").unwrap();
    assert_eq!(&buf, b"hello through rolegate");
}

#[tokio::test]
async fn websocket_upgrade_passes_through_on_an_allowed_route() {
    let up = echo_upgrade_upstream().await;
    let gw = TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{up}"))).await;
    upgrade_and_echo(&gw).await;
}

/// An `https://` upstream is `auto` by default, and one that speaks HTTP/2
/// as well picks h2 when it is offered: the connection of an upgrade (an
/// HTTP/1.1 exchange) must offer only `http/1.1`, or HTTP/1.1 bytes would go
/// to an HTTP/2 server. Before and after an ordinary request (which learns h2).
#[tokio::test]
async fn websocket_upgrade_reaches_an_https_upstream_that_also_speaks_h2() {
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let acceptor = tls_acceptor_alpn(&pki.cert_pem, &pki.key_pem, &[b"h2", b"http/1.1"]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    serve_tls(listener, acceptor, |tls| async move {
        let svc = hyper::service::service_fn(echo_upgrade);
        // The protocol ALPN agreed on, as real servers do (not sniffed from the first bytes).
        if tls.get_ref().1.alpn_protocol() == Some(b"h2") {
            let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        } else {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), svc)
                .with_upgrades()
                .await;
        }
    });
    let table = STANDARD_ROUTES.replace(
        "url = \"http://{upstream}\"",
        &format!("url = \"https://127.0.0.1:{port}\"\nca_file = \"{}\"", ca.display()),
    );
    let gw = TestGateway::with_routes(&table).await;
    upgrade_and_echo(&gw).await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let r = gw.send("GET", "/v1/users/1", Some(&reader)).await;
    assert_eq!((r.status.as_u16(), r.header("x-version")), (200, Some("HTTP/2.0")), "ordinary requests go over h2");
    upgrade_and_echo(&gw).await;
}

#[tokio::test]
async fn upgrade_on_a_denied_route_is_refused_before_any_upgrade() {
    let up = echo_upgrade_upstream().await;
    let gw = TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{up}"))).await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let req = format!(
        "GET /admin/ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {reader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
    );
    let (status, text) = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(status, 403, "{text}");
    let (status, _) = raw(
        gw.addr,
        b"GET /v1/users/ws HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    )
    .await;
    assert_eq!(status, 401);
}
