//! How the gateway reads upstream responses to body-less requests (the lean
//! HTTP/1.1 exchange): every framing of RFC 9112 §6.3 arrives intact, a
//! response that cannot be framed is a 502, and a connection is reused only
//! after an exactly framed response. The upstream here is a raw TCP server
//! that writes scripted bytes, so each case is exactly what is on the wire.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The response bytes for a path; `{n}` becomes the connection's number.
/// The bool: close the connection after writing (without saying so).
fn script(path: &str) -> (String, bool) {
    let ok = |extra: &str, body: &str| {
        format!("HTTP/1.1 200 OK\r\nx-conn: {{n}}\r\n{extra}content-length: {}\r\n\r\n{body}", body.len())
    };
    match path {
        "/docs/plain" => (ok("", "plain"), false),
        "/docs/chunked" => (
            "HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: chunked\r\n\r\n\
             5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: dropped\r\n\r\n"
                .into(),
            false,
        ),
        "/docs/te-and-cl" => (
            "HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into(),
            false,
        ),
        "/docs/until-close" => ("HTTP/1.1 200 OK\r\nx-conn: {n}\r\n\r\nall of it, until the end".into(), true),
        "/docs/continue" => {
            (format!("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\n{}", ok("", "ok")), false)
        }
        "/docs/no-content" => ("HTTP/1.1 204 No Content\r\nx-conn: {n}\r\n\r\n".into(), false),
        "/docs/conn-close" => (ok("connection: close\r\n", "bye"), false),
        "/docs/http10" => ("HTTP/1.0 200 OK\r\nx-conn: {n}\r\ncontent-length: 2\r\n\r\nok".into(), false),
        "/docs/quiet-close" => (ok("", "ok"), true),
        "/docs/conflicting-length" => ("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\nabcd".into(), false),
        "/docs/repeated-length" => ("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ncontent-length: 2, 2\r\n\r\nok".into(), false),
        "/docs/signed-length" => ("HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\nok".into(), false),
        "/docs/bad-chunk" => ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/garbage" => ("NOT HTTP AT ALL\r\n\r\n".into(), false),
        "/docs/huge-head" => (format!("HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 0\r\n\r\n", "a".repeat(70_000)), false),
        // Chunk-size lines read strictly (RFC 9112 §7.1), the same for every request.
        "/docs/chunk-space" => ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5 \r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/chunk-ff" => ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\x0c\r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/chunk-bare-cr" => ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5;a\rb\r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/chunk-17-digits" => ("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n10000000000000005\r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/te-http10" => ("HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".into(), false),
        "/docs/trailers" => (
            "HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: chunked\r\ntrailer: grpc-status\r\n\r\n5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n".into(),
            false,
        ),
        // Hop-by-hop fields amid the others (one named by `Connection`), the
        // upstream's own request id, names in mixed case.
        "/docs/fields" => (
            "HTTP/1.1 200 OK\r\nServer: up\r\nConnection: X-Drop, keep-alive\r\nX-Drop: gone\r\nKeep-Alive: timeout=5\r\nX-Request-Id: upstream-id\r\nContent-Type: text/plain\r\nContent-Length: 2\r\nETag: \"e\"\r\n\r\nok".into(),
            false,
        ),
        // The same with a name given twice, apart.
        "/docs/fields-repeated" => (
            "HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nConnection: keep-alive\r\nServer: up\r\nSet-Cookie: b=2\r\nContent-Length: 2\r\n\r\nok".into(),
            false,
        ),
        "/docs/large" => (ok("", &large_body()), false),
        "/docs/large-chunked" => {
            let mut s = String::from("HTTP/1.1 200 OK\r\nx-conn: {n}\r\ntransfer-encoding: chunked\r\n\r\n");
            for piece in large_body().as_bytes().chunks(7_000) {
                s.push_str(&format!("{:x}\r\n{}\r\n", piece.len(), std::str::from_utf8(piece).unwrap()));
            }
            s.push_str("0\r\n\r\n");
            (s, false)
        }
        _ => ("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into(), false),
    }
}

/// 600 KB: more than one read from the socket.
fn large_body() -> String {
    (0..60_000).map(|i| format!("{:09}\n", i)).collect()
}

/// The scripted upstream: connections accepted and connections it has closed.
struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

async fn scripted_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let closed = Arc::new(AtomicUsize::new(0));
    let (count, done) = (Arc::clone(&accepted), Arc::clone(&closed));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let done = Arc::clone(&done);
            tokio::spawn(async move {
                serve_scripted(stream, n).await;
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    Upstream { addr, accepted, closed }
}

/// Answers request heads on one connection until the client closes or a script says close.
async fn serve_scripted(mut stream: TcpStream, n: usize) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(k) => buf.extend_from_slice(&chunk[..k]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let (response, close) = script(&path);
        if stream.write_all(response.replace("{n}", &n.to_string()).as_bytes()).await.is_err() {
            return;
        }
        if close {
            return; // dropping the stream closes it
        }
    }
}

async fn gateway(up: &Upstream) -> TestGateway {
    TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{}", up.addr))).await
}

#[tokio::test]
async fn every_framing_arrives_intact() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let get = |path: &'static str| gw.send("GET", path, None);

    let r = get("/docs/chunked").await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"hello world"[..]));
    assert_eq!(r.header("x-trailer"), None, "trailers are not turned into headers");
    assert_eq!(r.header("transfer-encoding").unwrap_or("chunked"), "chunked");

    // Transfer-Encoding wins over Content-Length, and the length is not passed on.
    let r = get("/docs/te-and-cl").await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"abc"[..]));
    assert_ne!(r.header("content-length"), Some("100"));

    let r = get("/docs/until-close").await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"all of it, until the end"[..]));

    // Interim 1xx responses are skipped; the final one is forwarded.
    let r = get("/docs/continue").await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));

    let r = get("/docs/no-content").await;
    assert_eq!((r.status.as_u16(), r.body.len()), (204, 0));

    let r = get("/docs/repeated-length").await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"ok"[..]));

    let r = get("/docs/large").await;
    assert_eq!(r.status, 200);
    assert!(r.body == large_body().as_bytes(), "a body longer than one read arrives whole");
    let r = get("/docs/large-chunked").await;
    assert_eq!(r.status, 200);
    assert!(r.body == large_body().as_bytes(), "a chunked body longer than one read arrives whole");

    // HEAD: the Content-Length describes a body that is not sent.
    let r = gw.send("HEAD", "/docs/plain", None).await;
    assert_eq!((r.status.as_u16(), r.body.len()), (200, 0));
    assert_eq!(r.header("content-length"), Some("5"), "HEAD keeps the length of the body it would have");
    let after = get("/docs/plain").await;
    assert_eq!((after.status.as_u16(), &after.body[..]), (200, &b"plain"[..]));
}

#[tokio::test]
async fn responses_that_cannot_be_framed_are_502() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    for path in ["/docs/conflicting-length", "/docs/signed-length", "/docs/garbage", "/docs/huge-head"] {
        let r = gw.send("GET", path, None).await;
        assert_eq!(r.status, 502, "{path}");
        assert_eq!(r.json()["error"], "upstream_unavailable", "{path}");
    }
    // A chunked body that breaks off after its head was read: the client's
    // connection is closed, with no response or a response cut short (no last
    // chunk), never one passed off as complete.
    let (status, text) = raw(gw.addr, &raw_get("/docs/bad-chunk", None)).await;
    assert!(status == 0 || status == 200, "{text:?}");
    assert!(!text.ends_with("0\r\n\r\n"), "the cut body must not end like a complete one: {text:?}");
    assert!(!text.contains("hello"), "{text:?}");
    // The gateway still serves after each of them.
    assert_eq!(gw.send("GET", "/docs/plain", None).await.status, 200);
}

#[tokio::test]
async fn connections_are_reused_only_after_an_exactly_framed_response() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let conn = |r: &Reply| r.header("x-conn").map(str::to_owned);
    let first = gw.send("GET", "/docs/plain", None).await;
    // Each of these ends exactly, on a keep-alive connection: the same one serves the next request.
    for path in
        ["/docs/chunked", "/docs/no-content", "/docs/large", "/docs/large-chunked", "/docs/continue", "/docs/plain"]
    {
        let r = gw.send("GET", path, None).await;
        let expected = if path == "/docs/no-content" { 204 } else { 200 };
        assert_eq!(r.status, expected, "{path}");
        assert_eq!(conn(&r), conn(&first), "{path} should reuse the connection");
    }
    assert_eq!(up.accepted.load(Ordering::SeqCst), 1);

    // After these, the connection is not reused: closed by the upstream (said
    // or not), delimited by its close, or HTTP/1.0.
    for path in ["/docs/conn-close", "/docs/until-close", "/docs/http10", "/docs/quiet-close"] {
        let before = up.accepted.load(Ordering::SeqCst);
        let r = gw.send("GET", path, None).await;
        assert_eq!(r.status, 200, "{path}");
        let next = gw.send("GET", "/docs/plain", None).await;
        assert_eq!(next.status, 200, "after {path}");
        assert_eq!(up.accepted.load(Ordering::SeqCst), before + 1, "{path}: the next request opened one connection");
    }
}

#[tokio::test]
async fn a_pooled_connection_closed_by_the_upstream_is_not_an_error() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    // Each round: the upstream answers and then closes without `Connection:
    // close`, so the gateway pools a connection that is dead once the
    // upstream's close is done (waited for). The next request must not fail:
    // a GET is sent again on a new connection; a body-less POST (not
    // idempotent) is never sent on the dead connection in the first place.
    for (round, method) in [(1, "GET"), (2, "POST")] {
        let r = gw.send("GET", "/docs/quiet-close", None).await;
        assert_eq!(r.status, 200);
        let closed = wait_until(Duration::from_secs(5), || async { up.closed.load(Ordering::SeqCst) >= round }).await;
        assert!(closed, "the upstream closed its connection");
        let r = gw.send(method, "/docs/plain", None).await;
        assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"plain"[..]), "{method}");
    }
}

/// Sends `request` on a fresh connection and reads until the gateway closes it.
async fn exchange_to_end(addr: SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("the gateway closes the connection after `Connection: close`")
        .unwrap();
    String::from_utf8_lossy(&buf).into_owned()
}

/// A response as its head, without the lines that differ from one exchange
/// to the next (`date`, and the scripted upstream's connection number), and
/// its body, de-chunked when chunked (where chunks are cut depends on timing).
fn head_and_body(text: &str) -> (String, String) {
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
    let head: Vec<&str> = head
        .split("\r\n")
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            !l.starts_with("date:") && !l.starts_with("x-conn:")
        })
        .collect();
    if !head.iter().any(|l| l.eq_ignore_ascii_case("transfer-encoding: chunked")) {
        return (head.join("\r\n"), body.to_owned());
    }
    let (mut rest, mut decoded) = (body, String::new());
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size, 16).expect("chunk size");
        if n == 0 {
            decoded.push_str(&format!("[end{after:?}]"));
            break;
        }
        decoded.push_str(&after[..n]);
        rest = after[n..].strip_prefix("\r\n").expect("CRLF after a chunk");
    }
    (head.join("\r\n"), decoded)
}

/// The gateway's own lean server answers plain requests; hyper's server
/// answers what it leaves (here: the same request with `Expect: 100-continue`, which
/// the lean server hands over; `Expect` is the gateway's to meet, so the
/// upstream sees the same request). Both must put the same bytes on the wire, for every framing
/// and status, for GET and HEAD, and for the gateway's own error responses.
#[tokio::test]
async fn the_lean_server_writes_responses_byte_for_byte_as_hyper_does() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let paths = [
        "/docs/plain",
        "/docs/chunked",
        "/docs/te-and-cl",
        "/docs/until-close",
        "/docs/continue",
        "/docs/no-content",
        "/docs/conn-close",
        "/docs/http10",
        "/docs/repeated-length",
        "/docs/fields",
        "/docs/fields-repeated",
        "/docs/large",
        "/docs/large-chunked",
        "/docs/trailers",
        "/docs/missing",
        "/docs/garbage",
        "/v1/users/7",
        "/nowhere",
        "/docs/%2e%2e/%2e%2e/etc",
    ];
    for method in ["GET", "HEAD", "DELETE"] {
        for path in paths {
            let lean = format!(
                "{method} {path} HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: same-id\r\nConnection: close\r\n\r\n"
            );
            let hyper = lean.replace("Connection: close\r\n", "Connection: close\r\nExpect: 100-continue\r\n");
            let (a, b) = (exchange_to_end(gw.addr, &lean).await, exchange_to_end(gw.addr, &hyper).await);
            assert!(a.starts_with("HTTP/1.1 "), "{method} {path}: {a:?}");
            assert!(a.to_ascii_lowercase().contains("\r\ndate: "), "{method} {path}: a date header: {a:?}");
            let ((head_a, body_a), (head_b, body_b)) = (head_and_body(&a), head_and_body(&b));
            assert_eq!(head_a, head_b, "{method} {path}");
            assert!(body_a == body_b, "{method} {path}: bodies differ ({} and {} bytes)", body_a.len(), body_b.len());
        }
    }
}

/// The response fields reach the client in the upstream's order, without
/// the hop-by-hop ones (those `Connection` names too) and with the request's
/// id in place of the upstream's; a name given twice has its values together
/// at its first place (as a header map holds them, which hyper's server writes).
#[tokio::test]
async fn response_fields_keep_their_order_without_the_hop_by_hop_ones() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let lines = |text: &str| -> Vec<String> {
        let (head, body) = head_and_body(text);
        assert_eq!(body, "ok", "{text:?}");
        head.split("\r\n").skip(1).filter(|l| !l.starts_with("date: ")).map(str::to_owned).collect()
    };
    let request = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nX-Request-Id: same-id\r\nConnection: close\r\n\r\n")
    };
    let text = exchange_to_end(gw.addr, &request("/docs/fields")).await;
    let expected = [
        "server: up",
        "x-request-id: same-id",
        "content-type: text/plain",
        "content-length: 2",
        "etag: \"e\"",
        "connection: close",
    ];
    assert_eq!(lines(&text), expected, "{text}");
    let text = exchange_to_end(gw.addr, &request("/docs/fields-repeated")).await;
    let expected = [
        "set-cookie: a=1",
        "set-cookie: b=2",
        "server: up",
        "content-length: 2",
        "x-request-id: same-id",
        "connection: close",
    ];
    assert_eq!(lines(&text), expected, "{text}");
}

/// Every request takes the same exchange, whatever its method or body: the
/// strict chunk-size reading, Transfer-Encoding in HTTP/1.0, and removing a
/// Content-Length next to Transfer-Encoding hold for a POST with a body (once
/// hyper's client path) as for a GET.
#[tokio::test]
async fn one_framing_whatever_the_request() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let post = |path: &str| {
        format!("POST {path} HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody")
    };
    let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    for request in [get as fn(&str) -> String, post] {
        for path in ["/docs/chunk-space", "/docs/chunk-ff", "/docs/chunk-bare-cr", "/docs/chunk-17-digits"] {
            let text = exchange_to_end(gw.addr, &request(path)).await;
            assert!(!text.contains("hello"), "{path}: a refused chunk line let its data through: {text:?}");
            assert!(!text.ends_with("0\r\n\r\n"), "{path}: a cut body looks complete: {text:?}");
        }
        let text = exchange_to_end(gw.addr, &request("/docs/te-http10")).await;
        assert!(text.starts_with("HTTP/1.1 502"), "{text}");
        let text = exchange_to_end(gw.addr, &request("/docs/te-and-cl")).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("content-length: 100"), "a stale Content-Length: {text}");
        let (_, body) = head_and_body(&text);
        assert_eq!(body, "abc[end\"\\r\\n\"]", "{text}");
    }
}

/// Trailers of a chunked upstream response are read and passed on to a
/// client that accepts them (`TE: trailers`), on a chunked response (the
/// fields its `Trailer` names, as hyper's server writes them); a client that
/// did not ask gets none.
#[tokio::test]
async fn chunked_trailers_are_decoded_and_passed_on() {
    let up = scripted_upstream().await;
    let gw = gateway(&up).await;
    let asked = "GET /docs/trailers HTTP/1.1\r\nHost: gw.test\r\nTE: trailers\r\nConnection: close\r\n\r\n";
    let text = exchange_to_end(gw.addr, asked).await;
    assert!(text.to_ascii_lowercase().contains("\r\ntrailer: grpc-status\r\n"), "{text}");
    assert!(text.ends_with("5\r\nhello\r\n0\r\ngrpc-status: 0\r\n\r\n"), "{text:?}");
    let unasked = "GET /docs/trailers HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    let text = exchange_to_end(gw.addr, unasked).await;
    assert!(text.ends_with("5\r\nhello\r\n0\r\n\r\n"), "no trailers unasked: {text:?}");
    let r = gw.send("GET", "/docs/trailers", None).await;
    assert_eq!((r.status.as_u16(), &r.body[..]), (200, &b"hello"[..]));
    // The connection is reused after a response whose trailer section ended exactly.
    let next = gw.send("GET", "/docs/plain", None).await;
    assert_eq!(next.header("x-conn"), r.header("x-conn"));
}
