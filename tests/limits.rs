//! Resource limits: oversized or too many headers get 431, a slow client is
//! cut off after the header timeout, and the connection limit holds.

mod support;

use std::time::{Duration, Instant};

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn with_server_settings(extra: &str) -> String {
    STANDARD_ROUTES.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:0\"\n{extra}"))
}

#[tokio::test]
async fn oversized_and_too_many_headers_get_431() {
    let gw = TestGateway::with_routes(&with_server_settings("max_header_bytes = 8192\nmax_headers = 20")).await;
    let big =
        format!("GET /docs/x HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\nConnection: close\r\n\r\n", "a".repeat(20_000));
    assert_eq!(raw(gw.addr, big.as_bytes()).await.0, 431);
    let many: String = (0..50).map(|i| format!("X-H{i}: v\r\n")).collect();
    let req = format!("GET /docs/x HTTP/1.1\r\nHost: gw.test\r\n{many}Connection: close\r\n\r\n");
    assert_eq!(raw(gw.addr, req.as_bytes()).await.0, 431);
    // Within the limits: fine.
    let ok = "GET /docs/x HTTP/1.1\r\nHost: gw.test\r\nX-Small: 1\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(gw.addr, ok.as_bytes()).await.0, 200);
    assert_eq!(gw.upstream_saw().len(), 1);
}

/// Reads until the gateway closes `s`, which must happen about the test
/// gateway's header timeout (2 s) after now; returns what was read.
async fn cut_off_after_the_header_timeout(s: &mut TcpStream) -> Vec<u8> {
    let started = Instant::now();
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the connection was not closed");
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(1500) && waited < Duration::from_secs(8), "closed after {waited:?}");
    buf
}

#[tokio::test]
async fn a_slow_client_is_cut_off_after_the_header_timeout() {
    // The test gateway's header timeout is 2 s.
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\nX-Slow: ").await.unwrap();
    // The gateway closes the connection (it may first answer 408).
    let buf = cut_off_after_the_header_timeout(&mut s).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn the_connection_limit_holds() {
    let gw = TestGateway::with_routes(&with_server_settings("max_connections = 2")).await;
    let req = b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    // Two keep-alive connections, each served once and left open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req).await.unwrap();
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        held.push(s);
    }
    // A third is closed without an answer.
    let (status, _) = raw(gw.addr, b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").await;
    assert_eq!(status, 0, "the third connection must be refused");
    // Closing one frees a place.
    drop(held.pop());
    let ok = wait_until(Duration::from_secs(10), || async {
        raw(gw.addr, b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n").await.0 == 200
    })
    .await;
    assert!(ok, "a freed place was not reused");
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let gw = TestGateway::with_routes(&with_server_settings("idle_timeout_ms = 300")).await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle now: the gateway closes the connection (EOF) within a bounded time.
    let started = Instant::now();
    let eof = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    })
    .await;
    assert!(eof.is_ok(), "the idle connection was not closed");
    assert!(started.elapsed() >= Duration::from_millis(250), "closed too early: {:?}", started.elapsed());
}

#[tokio::test]
async fn between_requests_the_idle_timeout_applies_and_a_stalled_head_gets_the_header_timeout() {
    // Header timeout 2 s (the test gateway's), idle timeout the default 60 s.
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let req = b"GET /docs/x HTTP/1.1\r\nHost: gw.test\r\n\r\n";
    s.write_all(req).await.unwrap();
    let mut buf = [0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle for longer than the header timeout: the connection stays open.
    let quiet = tokio::time::timeout(Duration::from_millis(3000), s.read(&mut buf)).await;
    assert!(quiet.is_err(), "an idle keep-alive connection was closed before its idle timeout: {quiet:?}");
    s.write_all(req).await.unwrap();
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"), "served again after idling");
    // A head that starts and stalls is cut off after the header timeout.
    s.write_all(b"GET /docs/x HTTP/1.1\r\nHost: gw").await.unwrap();
    cut_off_after_the_header_timeout(&mut s).await;
    assert_eq!(gw.upstream_saw().len(), 2);
}

/// One limit, `max_header_bytes`, whichever server reads the head: a head of
/// 64–128 KiB (over the default 64 KiB) gets 431 as a connection's first
/// request (the lean server) and as a later one on a connection hyper's
/// server took over (after a request with a body), and never reaches the
/// upstream; one just under the limit passes on both.
#[tokio::test]
async fn one_head_size_limit_on_every_path() {
    let gw = TestGateway::start().await;
    let head = |size: usize| {
        let filler = size - "GET /docs/x HTTP/1.1\r\nhost: gw.test\r\nx-big: \r\n\r\n".len();
        format!("GET /docs/x HTTP/1.1\r\nhost: gw.test\r\nx-big: {}\r\n\r\n", "a".repeat(filler))
    };
    let upload = "POST /docs/up HTTP/1.1\r\nhost: gw.test\r\ncontent-length: 2\r\n\r\nok";
    for size in [65 * 1024, 100 * 1024, 127 * 1024] {
        for after_body in [false, true] {
            let before = gw.upstream_saw().len();
            let mut s = TcpStream::connect(gw.addr).await.unwrap();
            if after_body {
                s.write_all(upload.as_bytes()).await.unwrap();
                let first = read_response(&mut s).await;
                assert!(first.starts_with("HTTP/1.1 200"), "{first}");
            }
            s.write_all(head(size).as_bytes()).await.unwrap();
            let answer = read_response(&mut s).await;
            assert!(answer.starts_with("HTTP/1.1 431"), "{size} bytes, after a body: {after_body}: {answer:.80}");
            assert_eq!(gw.upstream_saw().len(), before + usize::from(after_body), "{size}: never forwarded");
        }
    }
    for after_body in [false, true] {
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        if after_body {
            s.write_all(upload.as_bytes()).await.unwrap();
            read_response(&mut s).await;
        }
        s.write_all(head(64 * 1024 - 64).as_bytes()).await.unwrap();
        let answer = read_response(&mut s).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "under the limit, after a body: {after_body}: {answer:.80}");
    }
}

/// Reads one response head (and a body of `content-length`), or up to the close.
async fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        let mut chunk = [0u8; 16384];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
    })
    .await;
    String::from_utf8_lossy(&buf).into_owned()
}
