//! A misbehaving upstream must never make one client's response another's.
//! The upstream here writes scripted bytes on a raw TCP socket: responses
//! that echo the request's `x-request-id`, and, after some of them, bytes no
//! request asked for — a second response, a body after a HEAD, 204 or 304,
//! bytes beyond a response's length — at once or a moment later. After each,
//! requests of other clients, which reuse the same worker's pooled upstream
//! connections, must each get exactly their own response.

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The response to a request for `path` with request id `id`: what is written
/// at once, and what is written later (after the delay, then `late` counts it).
fn script(method: &str, path: &str, id: &str) -> (String, Option<(Duration, String)>) {
    let ok = |body: &str| format!("HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    let stray = "HTTP/1.1 200 OK\r\nx-echo-id: STRAY\r\ncontent-length: 5\r\n\r\nstray";
    let later = Duration::from_millis(100);
    match path {
        // A second, unasked response: in the same write, or a moment later.
        "/docs/extra-now" => (format!("{}{stray}", ok("first")), None),
        "/docs/extra-later" => (ok("first"), Some((later, stray.to_owned()))),
        // A body after a response that has none.
        "/docs/head-body" if method == "HEAD" => {
            (format!("HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\ncontent-length: 5\r\n\r\nBODY!"), None)
        }
        "/docs/head-body-later" if method == "HEAD" => (
            format!("HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\ncontent-length: 5\r\n\r\n"),
            Some((later, "BODY!".to_owned())),
        ),
        "/docs/204-body" => (format!("HTTP/1.1 204 No Content\r\nx-echo-id: {id}\r\n\r\n{stray}"), None),
        "/docs/204-body-later" => {
            (format!("HTTP/1.1 204 No Content\r\nx-echo-id: {id}\r\n\r\n"), Some((later, stray.to_owned())))
        }
        "/docs/304-body" => (format!("HTTP/1.1 304 Not Modified\r\nx-echo-id: {id}\r\n\r\n{stray}"), None),
        "/docs/304-body-later" => {
            (format!("HTTP/1.1 304 Not Modified\r\nx-echo-id: {id}\r\n\r\n"), Some((later, stray.to_owned())))
        }
        // Bytes beyond the framed length (the length says 2).
        "/docs/beyond-length" => {
            (format!("HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\ncontent-length: 2\r\n\r\nok{stray}"), None)
        }
        "/docs/beyond-chunked" => (
            format!(
                "HTTP/1.1 200 OK\r\nx-echo-id: {id}\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n{stray}"
            ),
            None,
        ),
        _ => (ok(&format!("own:{id}")), None),
    }
}

struct Upstream {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Late writes done (each after its script's delay).
    late: Arc<AtomicUsize>,
}

async fn misbehaving_upstream() -> Upstream {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, late) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (count, done) = (Arc::clone(&accepted), Arc::clone(&late));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(stream, Arc::clone(&done)));
        }
    });
    Upstream { addr, accepted, late }
}

async fn serve(stream: TcpStream, late: Arc<AtomicUsize>) {
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut buf = Vec::new();
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0u8; 4096];
            match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let mut words = head.split(' ');
        let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or("/"));
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("x-request-id: ").or_else(|| l.strip_prefix("X-Request-Id: ")))
            .unwrap_or("none")
            .to_owned();
        let (now, later) = script(method, path, &id);
        if wr.lock().await.write_all(now.as_bytes()).await.is_err() {
            return;
        }
        if let Some((delay, bytes)) = later {
            let (wr, late) = (Arc::clone(&wr), Arc::clone(&late));
            tokio::spawn(async move {
                tokio::time::sleep(delay).await; // the upstream's own misbehaviour, not test synchronization
                let _ = wr.lock().await.write_all(bytes.as_bytes()).await;
                late.fetch_add(1, Ordering::SeqCst);
            });
        }
    }
}

/// One request from its own client connection, with its own request id.
async fn request(gw: &TestGateway, method: &str, path: &str, id: &str) -> Reply {
    gw.send_with(method, path, &[("x-request-id", id.to_owned())]).await
}

fn counted(gw: &TestGateway, reason: &str) -> u64 {
    let line = format!("rolegate_upstream_errors_total{{reason=\"{reason}\"}} ");
    gw.metrics.render().lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.parse().unwrap())
}

/// After each misbehaviour, two other clients' requests (on the same worker,
/// so on the same pool) get exactly their own responses.
#[tokio::test]
async fn a_pooled_connection_never_carries_one_response_to_another_request() {
    let up = misbehaving_upstream().await;
    let gw =
        TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{}", up.addr))).await;
    let cases = [
        ("GET", "/docs/extra-now", false),
        ("GET", "/docs/extra-later", true),
        ("HEAD", "/docs/head-body", false),
        ("HEAD", "/docs/head-body-later", true),
        ("GET", "/docs/204-body", false),
        ("GET", "/docs/204-body-later", true),
        ("GET", "/docs/304-body", false),
        ("GET", "/docs/304-body-later", true),
        ("GET", "/docs/beyond-length", false),
        ("GET", "/docs/beyond-chunked", false),
    ];
    let mut n = 0;
    for (method, path, is_late) in cases {
        n += 1;
        let first = request(&gw, method, path, &format!("a-{n}")).await;
        assert_eq!(first.header("x-echo-id"), Some(format!("a-{n}").as_str()), "{method} {path}");
        assert!(first.status.is_success() || first.status == 304, "{method} {path}: {}", first.status);
        if is_late {
            let written = late_count(&up) + 1;
            assert!(
                wait_until(Duration::from_secs(5), || async { late_count(&up) >= written }).await,
                "{path}: the late bytes were written"
            );
            // The bytes are on the idle pooled connection now (loopback); the
            // gateway's runtime sees them at its next poll of the socket events.
        }
        for client in ["b", "c"] {
            let id = format!("{client}-{n}");
            let r = request(&gw, "GET", "/docs/plain", &id).await;
            assert_eq!(r.status, 200, "after {method} {path}");
            assert_eq!(r.header("x-echo-id"), Some(id.as_str()), "after {method} {path}: another response");
            assert_eq!(&r.body[..], format!("own:{id}").as_bytes(), "after {method} {path}");
        }
    }
    let dropped = counted(&gw, "unsolicited_bytes") + counted(&gw, "bytes_after_response");
    assert!(dropped >= cases.len() as u64, "every misbehaviour closed its connection and was counted: {dropped}");
    assert!(counted(&gw, "unsolicited_bytes") >= 1, "late bytes on idle connections are counted apart");
    // Well-behaved responses keep reusing one connection: a fresh table, two plain requests.
    let before = up.accepted.load(Ordering::SeqCst);
    request(&gw, "GET", "/docs/plain", "d-1").await;
    request(&gw, "GET", "/docs/plain", "d-2").await;
    assert!(up.accepted.load(Ordering::SeqCst) <= before + 1, "a clean connection is reused");
}

fn late_count(up: &Upstream) -> usize {
    up.late.load(Ordering::SeqCst)
}

/// Many clients at once, interleaving misbehaving and plain requests: each
/// plain request gets exactly its own response, never a stray one.
#[tokio::test]
async fn concurrent_clients_each_get_their_own_response() {
    let up = misbehaving_upstream().await;
    let gw = Arc::new(
        TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{}", up.addr))).await,
    );
    let mut tasks = Vec::new();
    for i in 0..60 {
        let gw = Arc::clone(&gw);
        tasks.push(tokio::spawn(async move {
            let bad = ["/docs/extra-now", "/docs/204-body", "/docs/beyond-length", "/docs/extra-later"][i % 4];
            let _ = request(&gw, "GET", bad, &format!("bad-{i}")).await;
            let id = format!("good-{i}");
            let r = request(&gw, "GET", "/docs/plain", &id).await;
            (id, r)
        }));
    }
    for t in tasks {
        let (id, r) = t.await.unwrap();
        assert_eq!(r.status, 200, "{id}");
        assert_eq!(r.header("x-echo-id"), Some(id.as_str()));
        assert_eq!(&r.body[..], format!("own:{id}").as_bytes());
    }
}

/// An upstream `101` to a request that asked for no upgrade is a 502 on
/// every path (lean server, hyper's server, with a body), as is a `101` to a
/// protocol that was not asked for.
#[tokio::test]
async fn an_unasked_101_is_a_502_on_every_path() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = [0u8; 8192];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: h2c\r\nconnection: upgrade\r\n\r\n")
                    .await;
                let _ = s.write_all(b"tunnel bytes").await;
            });
        }
    });
    let gw = TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{addr}"))).await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    for extra in [
        "",
        "TE: trailers\r\n",
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n",
        "Upgrade: websocket\r\nConnection: Upgrade\r\n",
    ] {
        let req = format!(
            "GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {reader}\r\n{extra}Connection: close\r\n\r\n"
        );
        let (status, text) = raw(gw.addr, req.as_bytes()).await;
        assert_eq!(status, 502, "{extra:?}: {text}");
        assert!(!text.contains("tunnel bytes"), "{text}");
    }
    let post = "POST /docs/x HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc";
    assert_eq!(raw(gw.addr, post.as_bytes()).await.0, 502);
}

/// No client byte after an upgrade request reaches the upstream before its
/// `101`: bytes sent right behind the request head stay with the gateway; when
/// the upstream refuses the upgrade, they are the next request (authorized on
/// their own), and after a `101` they are relayed as the new protocol's.
#[tokio::test]
async fn no_client_byte_after_an_upgrade_request_is_relayed_before_the_101() {
    for grant in [false, true] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let early = Arc::new(AtomicUsize::new(usize::MAX));
        let seen = Arc::clone(&early);
        tokio::spawn(async move {
            let Ok((mut s, _)) = listener.accept().await else { return };
            let mut buf = Vec::new();
            let end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            };
            // What came beyond the head before any answer.
            seen.store(buf.len() - end, Ordering::SeqCst);
            if grant {
                let _ = s
                    .write_all(b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n")
                    .await;
                let mut chunk = [0u8; 8192];
                while let Ok(n) = s.read(&mut chunk).await {
                    if n == 0 || s.write_all(&chunk[..n]).await.is_err() {
                        break;
                    }
                }
            } else {
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nno").await;
            }
        });
        let gw =
            TestGateway::with_routes(&STANDARD_ROUTES.replace("http://{upstream}", &format!("http://{addr}"))).await;
        let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
        let smuggled = "GET /admin/secret HTTP/1.1\r\nHost: gw.test\r\n\r\n";
        let req = format!(
            "GET /v1/users/ws HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {reader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n{smuggled}"
        );
        let mut s = TcpStream::connect(gw.addr).await.unwrap();
        s.write_all(req.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        let want = if grant { smuggled.len() } else { 0 };
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let mut chunk = [0u8; 8192];
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&chunk[..n]),
                }
                let text = String::from_utf8_lossy(&got);
                if grant && text.ends_with(smuggled) && text.len() >= want {
                    break;
                }
                if !grant && text.matches("HTTP/1.1 ").count() >= 2 && text.contains("\r\n\r\n{") {
                    break;
                }
            }
        })
        .await;
        let text = String::from_utf8_lossy(&got);
        assert_eq!(
            early.load(Ordering::SeqCst),
            0,
            "grant={grant}: client bytes reached the upstream before its answer"
        );
        if grant {
            assert!(text.starts_with("HTTP/1.1 101"), "{text}");
            assert!(text.ends_with(smuggled), "relayed after the 101: {text}");
        } else {
            // The upstream said no: the bytes behind are a request of their own, refused (no token).
            assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
            assert!(text.contains("HTTP/1.1 401"), "the bytes behind were handled as a request: {text}");
        }
    }
}
