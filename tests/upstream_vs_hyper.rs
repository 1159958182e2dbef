//! The upstream exchange against hyper's HTTP/1.1 client, on the response
//! side: for every framing case, the same upstream bytes are read by hyper's
//! client directly and through the gateway, and must give the same outcome —
//! the same status and body, or a refusal on both. Where rolegate is stricter
//! than hyper by design (RFC 9112 read strictly; see `src/h1.rs`), the case
//! says so and the test checks that rolegate refuses and hyper accepts, so a
//! change on either side shows.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// How the two readers are expected to compare.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// The same status and body, or both refuse.
    Same,
    /// rolegate refuses what hyper accepts (the reason is the case's note).
    Stricter,
}

struct Case {
    name: &'static str,
    wire: String,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    let case = |name, wire: &str, expect| Case { name, wire: wire.to_owned(), expect };
    let chunked = |body: &str| format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{body}");
    use Expect::*;
    vec![
        case("length", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello", Same),
        case("length 0", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n", Same),
        case("length repeated", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello", Same),
        case("length list", "HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\nhello", Same),
        case("length conflicting", "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!", Same),
        case("length signed", "HTTP/1.1 200 OK\r\ncontent-length: +5\r\n\r\nhello", Same),
        case("length hex", "HTTP/1.1 200 OK\r\ncontent-length: 0x5\r\n\r\nhello", Same),
        case("length short body", "HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nhello", Same),
        case("until close", "HTTP/1.1 200 OK\r\n\r\nall of it", Same),
        case("chunked", &chunked("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), Same),
        case("chunked extensions", &chunked("5;a=b;c=\"d e\"\r\nhello\r\n0;x\r\n\r\n"), Same),
        case("chunked trailers", &chunked("5\r\nhello\r\n0\r\nx-t: 1\r\ngrpc-status: 0\r\n\r\n"), Same),
        case("chunked leading zeros", &chunked("0000000000000000000005\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked upper hex", &chunked("A\r\n0123456789\r\n0\r\n\r\n"), Same),
        case("chunked ws before ext", &chunked("5 ;a\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked size overflow", &chunked("10000000000000005\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked form feed", &chunked("5\x0c\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked bare CR in ext", &chunked("5;a\rb\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked bare LF line", &chunked("5\nhello\r\n0\r\n\r\n"), Same),
        case("chunked no CRLF after data", &chunked("5\r\nhelloXX0\r\n\r\n"), Same),
        case("chunked not hex", &chunked("zz\r\nhello\r\n0\r\n\r\n"), Same),
        case("chunked cut", &chunked("5\r\nhel"), Same),
        // BWS is allowed only before ";" (RFC 9112 §7.1.1); hyper takes it before CRLF too.
        case("chunked trailing ws", &chunked("5 \r\nhello\r\n0\r\n\r\n"), Stricter),
        case("chunked trailer bare LF", &chunked("5\r\nhello\r\n0\r\nx: a\nb: c\r\n\r\n"), Same),
        case("gzip, chunked", "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", Same),
        case(
            "chunked, gzip: until close",
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n3\r\nabc\r\n",
            Same,
        ),
        case(
            "both framings",
            "HTTP/1.1 200 OK\r\ncontent-length: 100\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            Same,
        ),
        case("HTTP/1.0 length", "HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", Same),
        case("HTTP/1.0 chunked", "HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", Same),
        case("interim then final", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", Same),
        case(
            "103 then final",
            "HTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            Same,
        ),
        case("204 with length", "HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", Same),
        case("304", "HTTP/1.1 304 Not Modified\r\netag: \"x\"\r\n\r\n", Same),
        case("no reason phrase", "HTTP/1.1 200 \r\ncontent-length: 2\r\n\r\nok", Same),
        case("custom status", "HTTP/1.1 299 Whatever\r\ncontent-length: 2\r\n\r\nok", Same),
        case("garbage", "NOT HTTP AT ALL\r\n\r\n", Same),
        case("obs-fold", "HTTP/1.1 200 OK\r\nx-a: b\r\n c\r\ncontent-length: 2\r\n\r\nok", Same),
        case("space before colon", "HTTP/1.1 200 OK\r\nx-a : b\r\ncontent-length: 2\r\n\r\nok", Same),
        case("bad status", "HTTP/1.1 2000 OK\r\ncontent-length: 2\r\n\r\nok", Same),
        // A 101 to a request that asked no upgrade: hyper hands over the
        // connection; rolegate answers 502 (SPEC: never relayed).
        case("101 unasked", "HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\n\r\n", Stricter),
        // The response head is bounded (64 KiB); hyper's buffer takes ~400 KiB.
        case(
            "head over 64 KiB",
            &format!("HTTP/1.1 200 OK\r\nx-big: {}\r\ncontent-length: 2\r\n\r\nok", "a".repeat(70_000)),
            Stricter,
        ),
    ]
}

/// Serves case `i` (the request path `/docs/case/i`) and closes the connection.
async fn scripted(cases: &'static [Case]) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 4096];
                    match s.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf);
                let i: usize =
                    head.split(' ').nth(1).and_then(|p| p.rsplit('/').next()).and_then(|n| n.parse().ok()).unwrap_or(0);
                let _ = s.write_all(cases[i].wire.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// What a reader made of a response: `Some((status, body))`, or `None` when it refused it.
type Outcome = Option<(u16, Vec<u8>)>;

/// hyper's client, straight to the upstream.
async fn through_hyper(upstream: SocketAddr, i: usize) -> Outcome {
    let io = TcpStream::connect(upstream).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await.ok()?;
    tokio::spawn(conn);
    let req = http::Request::get(format!("/docs/case/{i}")).header("host", "up").body(Empty::<Bytes>::new()).ok()?;
    let read = async {
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.ok()?.to_bytes().to_vec();
        Some((status, body))
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.ok()?
}

/// The gateway, read raw by the client; a 502 or a body cut short is a refusal.
async fn through_gateway(gw: &TestGateway, i: usize) -> Outcome {
    let mut s = TcpStream::connect(gw.addr).await.ok()?;
    let req = format!("GET /docs/case/{i} HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut wire = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut wire)).await.ok()?.ok()?;
    let end = wire.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = String::from_utf8_lossy(&wire[..end]).to_ascii_lowercase();
    let status: u16 = head.get(9..12)?.parse().ok()?;
    if status == 502 {
        return None;
    }
    let rest = &wire[end..];
    let body = if head.contains("transfer-encoding: chunked") {
        dechunk(rest)?
    } else if let Some(len) = head.lines().find_map(|l| l.strip_prefix("content-length: ")) {
        let len: usize = len.trim().parse().ok()?;
        (rest.len() == len).then(|| rest.to_vec())?
    } else {
        rest.to_vec()
    };
    Some((status, body))
}

/// The gateway's own chunked writing, decoded; `None` when it was cut short.
fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = rest.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).ok()?, 16).ok()?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[tokio::test]
async fn every_response_framing_reads_as_hyper_reads_it_or_stricter_where_said() {
    let cases: &'static [Case] = Box::leak(cases().into_boxed_slice());
    let upstream = scripted(cases).await;
    let gw =
        TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{upstream}"))).await;
    let mut stricter = 0;
    for (i, case) in cases.iter().enumerate() {
        let (ours, theirs) = (through_gateway(&gw, i).await, through_hyper(upstream, i).await);
        match case.expect {
            Expect::Same => assert_eq!(ours, theirs, "{}: rolegate and hyper disagree", case.name),
            Expect::Stricter => {
                stricter += 1;
                assert_eq!(ours, None, "{}: rolegate must refuse", case.name);
                assert!(theirs.is_some(), "{}: hyper accepts this (else the case is Same now)", case.name);
            }
        }
    }
    println!("{} framing cases, {stricter} where rolegate is stricter than hyper", cases.len());
    // The gateway still serves after all of them.
    assert_eq!(gw.send("GET", "/docs/case/0", None).await.status, 200);
}
