//! Client connections as the gateway keeps them: pipelined requests, a
//! connection whose requests alternate between the lean server (plain
//! requests) and hyper's (a request with a body, HTTP/1.0), `Connection:
//! close`, and a denied request in the middle of a keep-alive connection.

mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads `count` complete responses (each framed by `content-length` or
/// chunked) from `s`; returns each response's head and body.
async fn read_responses(s: &mut TcpStream, count: usize) -> Vec<(String, Vec<u8>)> {
    read_answers(s, &vec!["GET"; count]).await
}

/// Reads the responses to requests of these methods (a response to HEAD has no body).
async fn read_answers(s: &mut TcpStream, methods: &[&str]) -> Vec<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let count = methods.len();
    let read = async {
        while out.len() < count {
            if let Some((head, body, used)) = one_response(&buf, methods[out.len()] == "HEAD") {
                out.push((head, body));
                buf.drain(..used);
                continue;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "the gateway closed the connection after {} responses", out.len());
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("responses in time");
    out
}

/// The first complete response in `buf`: head, body, and bytes used.
fn one_response(buf: &[u8], to_head: bool) -> Option<(String, Vec<u8>, usize)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let lower = head.to_ascii_lowercase();
    if let Some(len) = lower.lines().find_map(|l| l.strip_prefix("content-length: ")) {
        let len: usize = len.trim().parse().ok()?;
        let body_len = if to_head { 0 } else { len };
        return (buf.len() >= head_end + body_len)
            .then(|| (head, buf[head_end..head_end + body_len].to_vec(), head_end + body_len));
    }
    assert!(lower.contains("transfer-encoding: chunked"), "unframed response: {head}");
    let (mut at, mut body) = (head_end, Vec::new());
    loop {
        let line_end = buf[at..].windows(2).position(|w| w == b"\r\n")? + at;
        let size = usize::from_str_radix(std::str::from_utf8(&buf[at..line_end]).ok()?, 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (buf.len() >= at + 2).then(|| (head, body, at + 2));
        }
        if buf.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&buf[at..at + size]);
        at += size + 2;
    }
}

fn status(head: &str) -> u16 {
    head.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn echoed_path(body: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(body).expect("echo JSON");
    v["path"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    let mut batch = String::new();
    for i in 0..5 {
        batch.push_str(&format!("GET /docs/p{i} HTTP/1.1\r\nHost: gw.test\r\n\r\n"));
    }
    // A denied one in the middle: answered in its place, never forwarded.
    batch.insert_str(0, "GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n\r\n");
    s.write_all(batch.as_bytes()).await.unwrap();
    let responses = read_responses(&mut s, 6).await;
    assert_eq!(status(&responses[0].0), 401, "{}", responses[0].0);
    for (i, (head, body)) in responses[1..].iter().enumerate() {
        assert_eq!(status(head), 200, "{head}");
        assert_eq!(echoed_path(body), format!("/docs/p{i}"));
    }
    let seen: Vec<String> = gw.upstream_saw().into_iter().map(|r| r.path_and_query).collect();
    assert_eq!(seen, (0..5).map(|i| format!("/docs/p{i}")).collect::<Vec<_>>(), "only the allowed ones, in order");
}

#[tokio::test]
async fn one_connection_serves_plain_requests_a_body_and_plain_requests_again() {
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /docs/one HTTP/1.1\r\nHost: gw.test\r\n\r\n").await.unwrap();
    let first = read_responses(&mut s, 1).await;
    assert_eq!((status(&first[0].0), echoed_path(&first[0].1)), (200, "/docs/one".to_owned()));
    // A request with a body (hyper's from here on), then plain ones, pipelined.
    s.write_all(
        b"POST /docs/two HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 5\r\n\r\nhello\
          GET /docs/three HTTP/1.1\r\nHost: gw.test\r\n\r\n\
          HEAD /docs/four HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    )
    .await
    .unwrap();
    let rest = read_answers(&mut s, &["POST", "GET", "HEAD"]).await;
    assert_eq!((status(&rest[0].0), echoed_path(&rest[0].1)), (200, "/docs/two".to_owned()));
    assert_eq!((status(&rest[1].0), echoed_path(&rest[1].1)), (200, "/docs/three".to_owned()));
    assert_eq!((status(&rest[2].0), rest[2].1.len()), (200, 0));
    assert!(rest[2].0.to_ascii_lowercase().contains("\r\ncontent-length: "), "{}", rest[2].0);
    let seen = gw.upstream_saw();
    let post = seen.iter().find(|r| r.path_and_query == "/docs/two").expect("the POST was forwarded");
    assert_eq!((post.method.as_str(), post.body_bytes), ("POST", 5), "its body went with it");
    assert_eq!(seen.len(), 4);
}

#[tokio::test]
async fn connection_close_is_answered_and_honoured() {
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    // The second request must never be read: the first asked to close.
    s.write_all(
        b"GET /docs/a HTTP/1.1\r\nHost: gw.test\r\nConnection: keep-alive, Close\r\n\r\n\
          GET /docs/b HTTP/1.1\r\nHost: gw.test\r\n\r\n",
    )
    .await
    .unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await.expect("closed in time").unwrap();
    let text = String::from_utf8_lossy(&all);
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{text}");
    assert!(text.to_ascii_lowercase().contains("\r\nconnection: close\r\n"), "{text}");
    let seen: Vec<String> = gw.upstream_saw().into_iter().map(|r| r.path_and_query).collect();
    assert_eq!(seen, ["/docs/a"]);
}

#[tokio::test]
async fn http_1_0_requests_get_http_1_0_answers() {
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(b"GET /docs/old HTTP/1.0\r\nHost: gw.test\r\n\r\n").await.unwrap();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut all)).await.expect("closed in time").unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.0 200 OK\r\n"), "{text}");
    assert!(text.contains("/docs/old"), "{text}");
}

#[tokio::test]
async fn a_head_split_across_writes_is_read_whole() {
    let gw = TestGateway::start().await;
    let mut s = TcpStream::connect(gw.addr).await.unwrap();
    for piece in ["GET /docs/sl", "ow HTTP/1.1\r\nHo", "st: gw.test\r\n", "\r\n"] {
        s.write_all(piece.as_bytes()).await.unwrap();
        s.flush().await.unwrap();
        // Let each piece arrive on its own (not a wait for a result: the
        // test is right whichever way the pieces are read).
        tokio::task::yield_now().await;
    }
    let r = read_responses(&mut s, 1).await;
    assert_eq!((status(&r[0].0), echoed_path(&r[0].1)), (200, "/docs/slow".to_owned()));
}
