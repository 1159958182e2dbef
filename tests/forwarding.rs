//! What the upstream receives and what the client gets back: paths, queries,
//! headers both ways, streaming bodies, and upstream failures.

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

fn reader() -> String {
    rs256(&claims(json!({"ts_roles": ["reader"]})))
}

#[tokio::test]
async fn request_headers_are_rewritten() {
    let gw = TestGateway::start().await;
    let token = reader();
    let r = gw
        .send_with(
            "GET",
            "/v1/users/7?a=1&b=%2F",
            &[
                ("authorization", format!("Bearer {token}")),
                ("x-forwarded-for", "6.6.6.6".into()),
                ("x-forwarded-host", "evil.test".into()),
                ("x-forwarded-proto", "https".into()),
                ("forwarded", "for=6.6.6.6".into()),
                ("x-auth-roles", "admin".into()),
                ("x-auth-subject", "root".into()),
                ("connection", "x-custom, keep-alive".into()),
                ("x-custom", "hop".into()),
                ("x-request-id", "client-id-1".into()),
                ("x-app", "kept".into()),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-request-id"), Some("client-id-1"));
    let seen = &gw.upstream_saw()[0];
    assert_eq!(seen.path_and_query, "/v1/users/7?a=1&b=%2F");
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-forwarded-host"), Some(gw.addr.to_string().as_str()));
    assert_eq!(seen.header("forwarded"), None);
    assert_eq!(seen.header("x-auth-roles"), Some("reader"));
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen.header("x-custom"), None);
    assert_eq!(seen.header("x-request-id"), Some("client-id-1"));
    assert_eq!(seen.header("x-app"), Some("kept"));
    assert_eq!(seen.header("authorization"), Some(format!("Bearer {token}").as_str()));
    assert_eq!(seen.headers.iter().filter(|(n, _)| n == "x-auth-roles").count(), 1);
}

/// An identity header whose source is empty (no roles; a claim that is an
/// empty string) is not sent rather than sent empty; a client's copy is still
/// removed.
#[tokio::test]
async fn identity_headers_with_empty_sources_are_not_sent() {
    let gw = TestGateway::start().await;
    // Permissions given directly (a service account): no roles at all.
    let token = rs256(&claims(json!({"ts_permissions": ["read:user"], "tid": ""})));
    let r = gw
        .send_with(
            "GET",
            "/v1/users/7",
            &[("authorization", format!("Bearer {token}")), ("x-auth-roles", "admin".into())],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = &gw.upstream_saw()[0];
    assert_eq!(seen.header("x-auth-roles"), None, "no roles: no header, and never the client's");
    assert_eq!(seen.header("x-auth-tenant"), None, "an empty claim: no header");
    assert_eq!(seen.header("x-auth-permissions"), Some("read:user"));
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
}

#[tokio::test]
async fn connection_header_cannot_strip_identity_headers() {
    let gw = TestGateway::start().await;
    let r = gw
        .send_with(
            "GET",
            "/v1/users/7",
            &[("authorization", format!("Bearer {}", reader())), ("connection", "x-auth-subject, x-auth-roles".into())],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = &gw.upstream_saw()[0];
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen.header("x-auth-roles"), Some("reader"));
}

#[tokio::test]
async fn trusted_proxy_headers_are_appended() {
    let routes = STANDARD_ROUTES
        .replace("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\ntrusted_proxies = [\"127.0.0.0/8\"]");
    let gw = TestGateway::with_routes(&routes).await;
    let r = gw
        .send_with(
            "GET",
            "/docs/x",
            &[
                ("x-forwarded-for", "203.0.113.9".into()),
                ("x-forwarded-proto", "https".into()),
                ("x-forwarded-host", "api.example.com".into()),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = &gw.upstream_saw()[0];
    assert_eq!(seen.header("x-forwarded-for"), Some("203.0.113.9, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("api.example.com"));
}

#[tokio::test]
async fn authorization_can_be_withheld_from_the_upstream() {
    let routes = STANDARD_ROUTES.replace("authorization = true", "authorization = false");
    let gw = TestGateway::with_routes(&routes).await;
    assert_eq!(gw.send("GET", "/v1/users/7", Some(&reader())).await.status, 200);
    let seen = &gw.upstream_saw()[0];
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
}

#[tokio::test]
async fn request_ids_are_generated_when_absent_or_unreasonable() {
    let gw = TestGateway::start().await;
    let a = gw.send("GET", "/docs/a", None).await;
    let b = gw.send_with("GET", "/docs/b", &[("x-request-id", "x".repeat(300))]).await;
    let (ida, idb) = (a.header("x-request-id").unwrap(), b.header("x-request-id").unwrap());
    assert_ne!(ida, idb);
    assert!(idb.len() < 100);
    let seen = gw.upstream_saw();
    assert_eq!(seen[0].header("x-request-id"), Some(ida));
    assert_eq!(seen[1].header("x-request-id"), Some(idb));
}

#[tokio::test]
async fn head_and_methods_pass_through() {
    let gw = TestGateway::start().await;
    let r = gw.send("HEAD", "/v1/users/7", Some(&reader())).await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    assert_eq!(gw.upstream_saw()[0].method, "HEAD");
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let routes = format!(
        "{STANDARD_ROUTES}\n[upstreams.dead]\nurl = \"http://{{dead}}\"\n[upstreams.slow]\nurl = \"http://{{upstream}}\"\ntimeout_ms = 200\n\
         [[routes]]\npath = \"/dead/**\"\npublic = true\nupstream = \"dead\"\n[[routes]]\npath = \"/slow/**\"\npublic = true\nupstream = \"slow\"\n"
    );
    // The extra [upstreams.*] tables must come before [[routes]] entries only in spirit: TOML allows them anywhere.
    let gw = TestGateway::with_routes(&routes).await;
    let r = gw.send("GET", "/dead/x", None).await;
    assert_eq!(r.status, 502);
    assert_eq!(r.json()["error"], "upstream_unavailable");
    let r = gw.send_with("GET", "/slow/x", &[("x-echo-delay-ms", "3000".into())]).await;
    assert_eq!(r.status, 504);
    assert_eq!(r.json()["error"], "upstream_timeout");
    // Fast enough: fine.
    assert_eq!(gw.send_with("GET", "/slow/x", &[("x-echo-delay-ms", "0".into())]).await.status, 200);
}

/// A pooled upstream connection keeps its timer from earlier requests: the
/// timeout of a later request still counts from that request's start.
#[tokio::test]
async fn a_reused_upstream_connection_times_out_from_its_own_request() {
    let routes = format!(
        "{STANDARD_ROUTES}\n[upstreams.slow]\nurl = \"http://{{upstream}}\"\ntimeout_ms = 300\n\
         [[routes]]\npath = \"/slow/**\"\npublic = true\nupstream = \"slow\"\n"
    );
    let gw = TestGateway::with_routes(&routes).await;
    // Fast requests: the connection goes back to the pool with its timer set.
    for _ in 0..3 {
        assert_eq!(gw.send_with("GET", "/slow/x", &[("x-echo-delay-ms", "0".into())]).await.status, 200);
    }
    let started = std::time::Instant::now();
    let r = gw.send_with("GET", "/slow/x", &[("x-echo-delay-ms", "3000".into())]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504);
    // Not at an earlier request's deadline (a timer never fires early), and
    // not at the upstream's 3 s either.
    assert!(took >= Duration::from_millis(300), "timed out after {took:?}");
    assert!(took < Duration::from_millis(2500), "timed out after {took:?}");
    assert_eq!(gw.send_with("GET", "/slow/x", &[("x-echo-delay-ms", "0".into())]).await.status, 200);
}

/// A request body fed from a channel, so the test decides when each chunk is sent.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

const CHUNK: usize = 1 << 20;
const CHUNKS: usize = 32;

fn streaming_routes(upstream: std::net::SocketAddr) -> String {
    STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{upstream}"))
}

#[tokio::test]
async fn upload_streams_without_buffering_the_whole_body() {
    // The upstream reports when the first chunk arrives, then counts the rest.
    let (first_tx, mut first_rx) = mpsc::channel::<()>(1);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |req: Request<Incoming>| {
            let first_tx = first_tx.clone();
            async move {
                let mut body = req.into_body();
                let mut total = 0usize;
                let mut told = false;
                while let Some(Ok(frame)) = body.frame().await {
                    total += frame.data_ref().map_or(0, |d| d.len());
                    if !told && total > 0 {
                        told = true;
                        let _ = first_tx.send(()).await;
                    }
                }
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(total.to_string()))))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });
    let gw = TestGateway::with_routes(&streaming_routes(up_addr)).await;
    let (tx, rx) = mpsc::channel::<Bytes>(2);
    let client = Client::builder(TokioExecutor::new()).build_http::<ChannelBody>();
    let req = Request::post(gw.url("/docs/upload")).body(ChannelBody(rx)).unwrap();
    let pending = tokio::spawn(async move { client.request(req).await });
    tx.send(Bytes::from(vec![7u8; CHUNK])).await.unwrap();
    // Only one chunk of 32 has been sent: the upstream must already see it.
    let arrived = tokio::time::timeout(Duration::from_secs(10), first_rx.recv()).await;
    assert!(arrived.is_ok(), "the first chunk did not reach the upstream before the body ended: the gateway buffers");
    for _ in 1..CHUNKS {
        tx.send(Bytes::from(vec![7u8; CHUNK])).await.unwrap();
    }
    drop(tx);
    let resp = pending.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, (CHUNK * CHUNKS).to_string());
}

#[tokio::test]
async fn download_streams_without_buffering_the_whole_body() {
    // The upstream sends one chunk, then waits until the client has it before sending the rest.
    let (go_tx, go_rx) = mpsc::channel::<()>(1);
    let go_rx = std::sync::Arc::new(tokio::sync::Mutex::new(go_rx));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let up_addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = service_fn(move |_req: Request<Incoming>| {
            let go_rx = std::sync::Arc::clone(&go_rx);
            async move {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                tokio::spawn(async move {
                    tx.send(Bytes::from(vec![1u8; CHUNK])).await.unwrap();
                    let _ = go_rx.lock().await.recv().await;
                    for _ in 1..CHUNKS {
                        if tx.send(Bytes::from(vec![1u8; CHUNK])).await.is_err() {
                            return;
                        }
                    }
                });
                Ok::<_, Infallible>(Response::new(ChannelBody(rx)))
            }
        });
        let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
    });
    let gw = TestGateway::with_routes(&streaming_routes(up_addr)).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = tokio::time::timeout(
        Duration::from_secs(10),
        client.request(Request::get(gw.url("/docs/big")).body(Full::new(Bytes::new())).unwrap()),
    )
    .await
    .expect("response headers arrive before the body is complete")
    .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut total = 0usize;
    let mut released = false;
    while let Some(frame) =
        tokio::time::timeout(Duration::from_secs(10), body.frame()).await.expect("body keeps flowing")
    {
        total += frame.unwrap().data_ref().map_or(0, |d| d.len());
        if !released && total >= CHUNK {
            released = true;
            go_tx.send(()).await.unwrap();
        }
    }
    assert!(released);
    assert_eq!(total, CHUNK * CHUNKS);
}

/// An upstream that numbers its connections: each response says which one
/// (`x-conn`); `x-close: 1` asks it to close after answering; `/docs/big`
/// sends one chunk of a body that never ends.
async fn numbering_upstream() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = std::sync::Arc::new(AtomicUsize::new(0));
    let count = std::sync::Arc::clone(&accepted);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let svc = service_fn(move |req: Request<Incoming>| async move {
                let (tx, rx) = mpsc::channel::<Bytes>(1);
                if req.uri().path() == "/docs/big" {
                    // One chunk, then a body that never ends.
                    tokio::spawn(async move {
                        let _ = tx.send(Bytes::from_static(b"first chunk")).await;
                        std::future::pending::<()>().await;
                        drop(tx);
                    });
                } else {
                    tx.try_send(Bytes::from_static(b"ok")).unwrap();
                }
                let mut resp = Response::new(ChannelBody(rx));
                resp.headers_mut().insert("x-conn", n.into());
                if req.headers().contains_key("x-close") {
                    resp.headers_mut().insert("connection", http::HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(resp)
            });
            tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc));
        }
    });
    (addr, accepted)
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_never_reused_mid_body() {
    let (up, accepted) = numbering_upstream().await;
    let gw = TestGateway::with_routes(&streaming_routes(up)).await;
    let conn_of = |r: &Reply| r.header("x-conn").unwrap().to_owned();
    // Sequential requests share one keep-alive connection.
    let first = gw.send("GET", "/docs/a", None).await;
    assert_eq!(first.status, 200);
    for _ in 0..20 {
        let r = gw.send("GET", "/docs/a", None).await;
        assert_eq!((r.status.as_u16(), conn_of(&r)), (200, conn_of(&first)));
    }
    assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);

    // The upstream closes after this response: the next request gets a new connection.
    let closing = gw.send_with("GET", "/docs/a", &[("x-close", "1".into())]).await;
    assert_eq!(closing.status, 200);
    let after = gw.send("GET", "/docs/a", None).await;
    assert_eq!(after.status, 200);
    assert_ne!(conn_of(&after), conn_of(&closing));

    // A client that stops reading a body mid-way: that connection is not reused.
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = client.request(Request::get(gw.url("/docs/big")).body(Full::new(Bytes::new())).unwrap()).await.unwrap();
    let abandoned = resp.headers()["x-conn"].to_str().unwrap().to_owned();
    drop(resp);
    for _ in 0..5 {
        let r = gw.send("GET", "/docs/a", None).await;
        assert_eq!(r.status, 200);
        assert_ne!(conn_of(&r), abandoned, "a connection with an unread body was handed out again");
    }
}

/// A request body is forwarded whatever the method: a chunked GET body (as
/// Elasticsearch and OpenSearch clients send) reaches the upstream whole,
/// with exactly one framing (hyper's client used to send such a GET with no body).
#[tokio::test]
async fn a_body_is_forwarded_whatever_the_method() {
    let gw = TestGateway::start().await;
    for (method, framing, body) in [
        ("GET", "Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
        ("GET", "Content-Length: 11\r\n", "hello world"),
        ("DELETE", "Transfer-Encoding: chunked\r\n", "b\r\nhello world\r\n0\r\n\r\n"),
        ("OPTIONS", "Content-Length: 11\r\n", "hello world"),
    ] {
        let before = gw.upstream_saw().len();
        let req =
            format!("{method} /docs/search HTTP/1.1\r\nHost: gw.test\r\n{framing}Connection: close\r\n\r\n{body}");
        let (status, text) = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status, 200, "{method} {framing}: {text}");
        let seen = &gw.upstream_saw()[before];
        assert_eq!((seen.method.as_str(), seen.body_bytes), (method, 11), "{method} {framing}");
        let framings = [seen.header("content-length").is_some(), seen.header("transfer-encoding").is_some()];
        assert_eq!(framings.iter().filter(|f| **f).count(), 1, "exactly one framing: {:?}", seen.headers);
    }
}
