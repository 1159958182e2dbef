//! HTTP/2 on both sides: h2c clients (`[server] h2c`) and HTTP/2 upstreams
//! (`protocol = "h2c"`), in every combination with HTTP/1.1, bodies streaming
//! both ways with trailers; GOAWAY from the upstream under load; a slow reader
//! on one stream; rapid reset; gRPC refusals. The upstream here is hyper's
//! server (HTTP/1.1 or h2c, by what the connection starts with) answering
//! every POST with its body echoed back and trailers naming what it got.

mod support;

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use support::*;
use tokio::net::{TcpListener, TcpStream};

/// A body of the given frames, in order (data, then maybe trailers).
struct Frames(VecDeque<Frame<Bytes>>);

impl Frames {
    fn new(pieces: &[&'static [u8]], trailers: Option<HeaderMap>) -> Frames {
        let mut f: VecDeque<Frame<Bytes>> = pieces.iter().map(|p| Frame::data(Bytes::from_static(p))).collect();
        if let Some(t) = trailers {
            f.push_back(Frame::trailers(t));
        }
        Frames(f)
    }
}

impl Body for Frames {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Poll::Ready(self.0.pop_front().map(Ok))
    }
    fn is_end_stream(&self) -> bool {
        self.0.is_empty()
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// What the upstream saw and how it answers.
#[derive(Clone, Default)]
struct Upstream {
    requests: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
}

/// The echoing upstream, HTTP/1.1 or h2c by what each connection starts with.
/// `goaway_after`: each connection is shut down gracefully (GOAWAY) after
/// that many requests.
async fn echo_upstream(goaway_after: Option<usize>) -> (SocketAddr, Upstream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = Upstream::default();
    let st = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            st.connections.fetch_add(1, Ordering::SeqCst);
            let st = st.clone();
            tokio::spawn(async move {
                let served = Arc::new(AtomicUsize::new(0));
                let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let (st, served, tx) = (st.clone(), Arc::clone(&served), tx.clone());
                    async move {
                        st.requests.fetch_add(1, Ordering::SeqCst);
                        let n = served.fetch_add(1, Ordering::SeqCst) + 1;
                        let resp = answer(req).await;
                        if goaway_after.is_some_and(|g| n >= g) {
                            let _ = tx.try_send(());
                        }
                        Ok::<_, Infallible>(resp)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), svc);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    Some(()) = rx.recv() => {
                        conn.as_mut().graceful_shutdown();
                        let _ = conn.await;
                    }
                }
            });
        }
    });
    (addr, state)
}

/// POST: the body echoed back, with trailers `x-got-bytes` and `x-got-trailer`
/// (the request's `x-t` trailer) declared in `Trailer`; `x-big: N`: N bytes.
async fn answer(req: Request<Incoming>) -> Response<http_body_util::combinators::BoxBody<Bytes, Infallible>> {
    let version = format!("{:?}", req.version());
    if let Some(n) = req.headers().get("x-big").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<usize>().ok()) {
        let mut r = Response::new(Full::new(Bytes::from(vec![b'x'; n])).boxed());
        r.headers_mut().insert("x-version", HeaderValue::from_str(&version).unwrap());
        return r;
    }
    let te = req.headers().get("te").map(|v| v.to_str().unwrap_or("").to_owned());
    let collected = req.into_body().collect().await.unwrap();
    let got_trailer = collected.trailers().and_then(|t| t.get("x-t")).map(|v| v.to_str().unwrap().to_owned());
    let body = collected.to_bytes();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-got-bytes", HeaderValue::from(body.len()));
    trailers.insert("x-got-trailer", HeaderValue::from_str(got_trailer.as_deref().unwrap_or("none")).unwrap());
    let mut r = Response::new(Frames::new(&[], Some(trailers)).boxed());
    let mut frames: VecDeque<Frame<Bytes>> =
        body.chunks(1000).map(|c| Frame::data(Bytes::copy_from_slice(c))).collect();
    let mut trailers = HeaderMap::new();
    trailers.insert("x-got-bytes", HeaderValue::from(body.len()));
    trailers.insert("x-got-trailer", HeaderValue::from_str(got_trailer.as_deref().unwrap_or("none")).unwrap());
    frames.push_back(Frame::trailers(trailers));
    *r.body_mut() = Frames(frames).boxed();
    r.headers_mut().insert("trailer", HeaderValue::from_static("x-got-bytes, x-got-trailer"));
    r.headers_mut().insert("x-version", HeaderValue::from_str(&version).unwrap());
    r.headers_mut().insert("x-te", HeaderValue::from_str(te.as_deref().unwrap_or("none")).unwrap());
    r
}

fn routes(upstream: SocketAddr, protocol: &str) -> String {
    STANDARD_ROUTES
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nh2c = true", 1)
        .replace("url = \"http://{upstream}\"", &format!("url = \"http://{upstream}\"\nprotocol = \"{protocol}\""))
}

/// The client side of one combination: HTTP/2 (h2c prior knowledge) or HTTP/1.1.
enum Client {
    H2(hyper::client::conn::http2::SendRequest<Frames>),
    H1(hyper::client::conn::http1::SendRequest<Frames>),
}

impl Client {
    async fn connect(addr: SocketAddr, h2: bool) -> Client {
        let io = TokioIo::new(TcpStream::connect(addr).await.unwrap());
        if h2 {
            let (sender, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await.unwrap();
            tokio::spawn(conn);
            Client::H2(sender)
        } else {
            let (sender, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
            tokio::spawn(conn);
            Client::H1(sender)
        }
    }

    async fn send(&mut self, req: Request<Frames>) -> Response<Incoming> {
        let sent = async {
            match self {
                Client::H2(s) => s.send_request(req).await,
                Client::H1(s) => {
                    s.ready().await?;
                    s.send_request(req).await
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(20), sent).await.expect("in time").expect("response")
    }
}

fn post(path: &str, token: &str, h2: bool) -> http::request::Builder {
    let uri = if h2 { format!("http://gw.test{path}") } else { path.to_owned() };
    let b = Request::post(uri).header("authorization", format!("Bearer {token}")).header("te", "trailers");
    if h2 {
        b
    } else {
        b.header("host", "gw.test").header("trailer", "x-t")
    }
}

/// Every combination of HTTP/1.1 and HTTP/2, in front and behind: the request
/// body streams up with its trailer, the response body streams down with
/// its trailers, and the upstream speaks the protocol it was set to.
#[tokio::test]
async fn every_combination_streams_bodies_and_trailers_both_ways() {
    let (up, _) = echo_upstream(None).await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    for protocol in ["http1", "h2c"] {
        let gw = TestGateway::with_routes(&routes(up, protocol)).await;
        for h2_client in [false, true] {
            let mut client = Client::connect(gw.addr, h2_client).await;
            let mut t = HeaderMap::new();
            t.insert("x-t", HeaderValue::from_static("sent-by-client"));
            let pieces: &[&'static [u8]] = &[b"hello ", b"from ", b"the client", &[b'z'; 5000]];
            let req = post("/admin/echo", &admin, h2_client).body(Frames::new(pieces, Some(t))).unwrap();
            let resp = client.send(req).await;
            let what = format!("client h2={h2_client}, upstream {protocol}");
            assert_eq!(resp.status(), 200, "{what}");
            let want_version = if protocol == "h2c" { "HTTP/2.0" } else { "HTTP/1.1" };
            assert_eq!(resp.headers()["x-version"], want_version, "{what}");
            // The client accepts trailers, and so does this hop: the upstream is told
            // (`te: trailers`, the one TE value HTTP/2 allows; over HTTP/1.1 with `Connection: te`).
            assert_eq!(resp.headers()["x-te"], "trailers", "{what}");
            let collected = resp.into_body().collect().await.unwrap();
            let trailers = collected.trailers().cloned().unwrap_or_default();
            let body = collected.to_bytes();
            assert_eq!(body.len(), 5021, "{what}");
            assert!(body.starts_with(b"hello from the client"), "{what}");
            assert_eq!(trailers.get("x-got-bytes").map(|v| v.to_str().unwrap()), Some("5021"), "{what}");
            assert_eq!(trailers.get("x-got-trailer").map(|v| v.to_str().unwrap()), Some("sent-by-client"), "{what}");
        }
    }
}

/// The upstream sends GOAWAY after a few requests on each connection, while
/// many requests are in flight: none that it did not process is lost.
#[tokio::test]
async fn goaway_from_the_upstream_loses_no_request() {
    let (up, state) = echo_upstream(Some(5)).await;
    let gw = Arc::new(TestGateway::with_routes(&routes(up, "h2c")).await);
    let admin = Arc::new(rs256(&claims(json!({"ts_roles": ["admin"]}))));
    let mut tasks = Vec::new();
    for i in 0..60 {
        let (gw, admin) = (Arc::clone(&gw), Arc::clone(&admin));
        tasks.push(tokio::spawn(async move {
            let r = gw
                .send_with(
                    "GET",
                    &format!("/admin/x{i}"),
                    &[("authorization", format!("Bearer {admin}")), ("x-big", "10".into())],
                )
                .await;
            r.status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    assert!(state.connections.load(Ordering::SeqCst) >= 12, "GOAWAY every 5 requests made new connections");
}

/// A client that does not read one large response on a stream does not
/// stall its other streams, on the gateway's HTTP/2 connection to it nor on
/// the gateway's HTTP/2 connection to the upstream.
#[tokio::test]
async fn a_slow_reader_on_one_stream_does_not_stall_the_others() {
    let (up, _) = echo_upstream(None).await;
    let gw = TestGateway::with_routes(&routes(up, "h2c")).await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let big = Request::get("http://gw.test/admin/big")
        .header("authorization", format!("Bearer {admin}"))
        .header("x-big", (64 * 1024 * 1024).to_string())
        .body(Frames::new(&[], None))
        .unwrap();
    let stalled = client.send_request(big).await.unwrap();
    assert_eq!(stalled.status(), 200);
    // Its body is never read. Other streams on the same connection go on.
    for i in 0..20 {
        let req = Request::post(format!("http://gw.test/admin/small{i}"))
            .header("authorization", format!("Bearer {admin}"))
            .body(Frames::new(&[b"ping"], None))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.send_request(req))
            .await
            .expect("not stalled")
            .unwrap();
        let body =
            tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await.expect("not stalled");
        assert_eq!(&body.unwrap().to_bytes()[..], b"ping");
    }
    drop(stalled);
}

/// An HTTP/2 upstream (the h2 crate's server) that refuses the first stream
/// of every connection with `REFUSED_STREAM` (a server that is shedding load
/// does this before reading a request) and echoes the body of the others,
/// with a trailer of the bytes it read. Returns its address and how many
/// streams it saw.
async fn refusing_upstream() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streams = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&streams);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                let mut first = true;
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    seen.fetch_add(1, Ordering::SeqCst);
                    if std::mem::take(&mut first) {
                        respond.send_reset(h2::Reason::REFUSED_STREAM);
                        continue;
                    }
                    tokio::spawn(async move {
                        let mut body = req.into_body();
                        let mut got = Vec::new();
                        while let Some(Ok(chunk)) = body.data().await {
                            let _ = body.flow_control().release_capacity(chunk.len());
                            got.extend_from_slice(&chunk);
                        }
                        let mut send = respond.send_response(Response::new(()), false).unwrap();
                        let _ = send.send_data(Bytes::from(got), true);
                    });
                }
            });
        }
    });
    (addr, streams)
}

/// A request with a body (a gRPC call's shape) that the upstream refused
/// before processing it is sent again whole, from the body's frames kept;
/// past the replay limit it is a 502, never a partial body.
#[tokio::test]
async fn a_refused_stream_with_a_body_is_sent_again_whole() {
    let (up, streams) = refusing_upstream().await;
    let gw = TestGateway::with_routes(&routes(up, "h2c")).await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let req = Request::post("http://gw.test/admin/call")
        .header("authorization", format!("Bearer {admin}"))
        .header("content-type", "application/grpc")
        .body(Frames::new(&[b"first part, ", b"second part"], None))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.send_request(req)).await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"first part, second part", "the whole body, once");
    assert_eq!(streams.load(Ordering::SeqCst), 2, "refused once, then sent again");

    // A body over the replay limit is not sent again.
    static BIG: [u8; 40 * 1024] = [b'x'; 40 * 1024];
    let (up, _) = refusing_upstream().await;
    let gw = TestGateway::with_routes(&routes(up, "h2c")).await;
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let req = Request::post("http://gw.test/admin/call")
        .header("authorization", format!("Bearer {admin}"))
        .body(Frames::new(&[&BIG, &BIG], None))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.send_request(req)).await.unwrap().unwrap();
    assert!(
        resp.status() == 502 || resp.status() == 200,
        "either the first attempt read past the limit (502) or was refused before reading it (200): {}",
        resp.status()
    );
    if resp.status() == 200 {
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), 80 * 1024, "never a partial body");
    }
}

/// Many stalled streams (each its own client connection, so no client-side
/// window is shared) do not stall a fresh client's requests on the gateway's
/// HTTP/2 connections to the upstream: a connection carries no more streams
/// than its window holds stream windows.
#[tokio::test]
async fn many_stalled_streams_do_not_stall_the_upstream_connection() {
    let (up, _) = echo_upstream(None).await;
    let gw = TestGateway::with_routes(&routes(up, "h2c")).await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let mut stalled = Vec::new();
    for i in 0..24 {
        let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
        let big = Request::get(format!("http://gw.test/admin/big{i}"))
            .header("authorization", format!("Bearer {admin}"))
            .header("x-big", (64 * 1024 * 1024).to_string())
            .body(Frames::new(&[], None))
            .unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), client.send_request(big))
            .await
            .expect("stalled stream answered")
            .unwrap();
        assert_eq!(resp.status(), 200);
        stalled.push((client, resp));
    }
    let Client::H2(mut fresh) = Client::connect(gw.addr, true).await else { unreachable!() };
    for i in 0..10 {
        let req = Request::post(format!("http://gw.test/admin/small{i}"))
            .header("authorization", format!("Bearer {admin}"))
            .body(Frames::new(&[b"ping"], None))
            .unwrap();
        let resp =
            tokio::time::timeout(Duration::from_secs(10), fresh.send_request(req)).await.expect("not stalled").unwrap();
        let body =
            tokio::time::timeout(Duration::from_secs(10), resp.into_body().collect()).await.expect("not stalled");
        assert_eq!(&body.unwrap().to_bytes()[..], b"ping");
    }
    drop(stalled);
}

/// Rapid reset (CVE-2023-44487): a client that resets more streams than
/// `h2_max_resets` allows within the window is disconnected.
#[tokio::test]
async fn a_client_resetting_streams_too_fast_is_disconnected() {
    let gw = TestGateway::with_routes(&STANDARD_ROUTES.replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nh2c = true\nh2_max_resets = 5",
        1,
    ))
    .await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let tcp = TcpStream::connect(gw.addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    let conn = tokio::spawn(conn);
    let mut client = client.ready().await.unwrap();
    let mut streams = Vec::new();
    // Each request reaches the gateway (the echo answers after a second), then is reset.
    for i in 0..10 {
        let req = Request::get(format!("http://gw.test/admin/slow{i}"))
            .header("authorization", format!("Bearer {admin}"))
            .header("x-echo-delay-ms", "5000")
            .body(())
            .unwrap();
        let (resp, stream) = client.send_request(req, true).unwrap();
        streams.push((resp, stream));
        client = client.ready().await.unwrap();
    }
    assert!(
        wait_until(Duration::from_secs(10), || async { gw.upstream_saw().len() >= 10 }).await,
        "the requests reached the upstream"
    );
    for (_, mut stream) in streams {
        stream.send_reset(h2::Reason::CANCEL);
    }
    let closed = tokio::time::timeout(Duration::from_secs(10), conn).await;
    assert!(closed.is_ok(), "the connection was closed");
    // A well-behaved client is served.
    let Client::H2(mut ok) = Client::connect(gw.addr, true).await else { unreachable!() };
    let req = Request::get("http://gw.test/docs/x").body(Frames::new(&[], None)).unwrap();
    assert_eq!(ok.send_request(req).await.unwrap().status(), 200);
}

/// A gRPC call the gateway refuses gets a trailers-only gRPC answer: HTTP 200,
/// `grpc-status` by the SPEC's table, `grpc-message` the reason.
#[tokio::test]
async fn grpc_refusals_are_grpc_statuses() {
    let (up, _) = echo_upstream(None).await;
    let gw = TestGateway::with_routes(&routes(up, "h2c")).await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let call = |path: &str, token: Option<&str>| {
        let mut b = Request::post(format!("http://gw.test{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b.body(Frames::new(&[b"\0\0\0\0\0"], None)).unwrap()
    };
    for (path, token, status) in [
        ("/admin/pkg.S/M", None, "16"),
        ("/admin/pkg.S/M", Some("not.a.token"), "16"),
        ("/admin/pkg.S/M", Some(reader.as_str()), "7"),
        ("/nowhere.v1.S/M", Some(reader.as_str()), "12"),
        ("/admin/%2F/x", Some(reader.as_str()), "3"),
    ] {
        let resp = client.send_request(call(path, token)).await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert_eq!(resp.headers()["content-type"], "application/grpc", "{path}");
        assert_eq!(resp.headers()["grpc-status"], status, "{path}");
        assert!(!resp.headers()["grpc-message"].is_empty(), "{path}");
        let body = resp.into_body().collect().await.unwrap();
        assert!(body.to_bytes().is_empty(), "{path}: trailers-only");
    }
    let plain = client
        .send_request(Request::get("http://gw.test/admin/x").body(Frames::new(&[], None)).unwrap())
        .await
        .unwrap();
    assert_eq!(plain.status(), 401, "not gRPC: the HTTP answer");
    let _ = Empty::<Bytes>::new();
}

/// The header list size limit holds on HTTP/2 (`h2_max_header_list_size`,
/// default `max_header_bytes`): an oversized list is refused, never forwarded.
#[tokio::test]
async fn an_oversized_header_list_is_refused() {
    let (up, state) = echo_upstream(None).await;
    let gw = TestGateway::with_routes(&routes(up, "h2c").replacen(
        "h2c = true",
        "h2c = true\nh2_max_header_list_size = 16384",
        1,
    ))
    .await;
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let req = Request::get("http://gw.test/docs/x")
        .header("x-big", "a".repeat(32 * 1024))
        .body(Frames::new(&[], None))
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(10), client.send_request(req)).await.expect("in time") {
        Ok(resp) => assert_eq!(resp.status(), 431),
        Err(e) => assert!(e.to_string().contains("stream") || e.is_closed(), "{e}"),
    }
    assert_eq!(state.requests.load(Ordering::SeqCst), 0, "never forwarded");
    // Within the limit: served.
    let Client::H2(mut client) = Client::connect(gw.addr, true).await else { unreachable!() };
    let req = Request::get("http://gw.test/docs/x").header("x-big", "10").body(Frames::new(&[], None)).unwrap();
    assert_eq!(client.send_request(req).await.unwrap().status(), 200);
}

/// `https://` upstreams: `auto` (the default) takes HTTP/2 when ALPN offers
/// it and HTTP/1.1 otherwise; `h2` refuses an upstream that will not speak it.
#[tokio::test]
async fn https_upstreams_pick_their_protocol_by_alpn() {
    let pki = test_pki();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    for (offered, protocol, want) in [
        (vec![&b"h2"[..], b"http/1.1"], None, Some("HTTP/2.0")),
        (vec![&b"http/1.1"[..]], None, Some("HTTP/1.1")),
        (vec![], None, Some("HTTP/1.1")),
        (vec![&b"h2"[..], b"http/1.1"], Some("http1"), Some("HTTP/1.1")),
        (vec![&b"h2"[..]], Some("h2"), Some("HTTP/2.0")),
        (vec![&b"http/1.1"[..]], Some("h2"), None),
    ] {
        let acceptor = tls_acceptor_alpn(&pki.cert_pem, &pki.key_pem, &offered);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        serve_tls(listener, acceptor, |tls| async move {
            let svc = hyper::service::service_fn(answer_version);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), svc)
                .await;
        });
        let proto = protocol.map(|p| format!("\nprotocol = \"{p}\"")).unwrap_or_default();
        let table = STANDARD_ROUTES.replace(
            "url = \"http://{upstream}\"",
            &format!("url = \"https://127.0.0.1:{port}\"\nca_file = \"{}\"{proto}", ca.display()),
        );
        let gw = TestGateway::with_routes(&table).await;
        for _ in 0..2 {
            let r = gw.send("GET", "/admin/v", Some(&admin)).await;
            match want {
                Some(v) => {
                    assert_eq!((r.status.as_u16(), r.header("x-version")), (200, Some(v)), "{offered:?} {protocol:?}")
                }
                None => assert_eq!(r.status, 502, "{offered:?} {protocol:?}"),
            }
        }
    }
}

async fn answer_version(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
    r.headers_mut().insert("x-version", HeaderValue::from_str(&format!("{:?}", req.version())).unwrap());
    Ok(r)
}
