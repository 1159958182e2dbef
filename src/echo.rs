//! A small echo upstream for `rolegate demo` and the tests: it answers every
//! request with JSON describing what it received (method, path and query,
//! headers, body size), and records the same in memory.
//!
//! Request headers that steer it: `x-echo-delay-ms: N` waits before answering;
//! `x-echo-bytes: N` answers with an N-byte streamed body instead of JSON.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

/// What the echo server saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path_and_query: String,
    pub headers: Vec<(String, String)>,
    pub body_bytes: u64,
}

impl Seen {
    /// The first value of a header (name in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// A running echo server; it stops when dropped.
#[derive(Debug)]
pub struct Echo {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    /// Serves on an already bound listener.
    pub fn start(listener: TcpListener) -> std::io::Result<Echo> {
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let log = Arc::clone(&log);
                tokio::spawn(async move {
                    let svc = service_fn(move |req| handle(req, Arc::clone(&log)));
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
        Ok(Echo { addr, seen, task })
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

type EchoBody = Either<Full<Bytes>, Zeros>;

async fn handle(req: Request<Incoming>, log: Arc<Mutex<Vec<Seen>>>) -> Result<Response<EchoBody>, Infallible> {
    let (parts, mut body) = req.into_parts();
    // Count the body without keeping it: uploads of any size use bounded memory.
    let mut body_bytes = 0u64;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_bytes += f.data_ref().map_or(0, |d| d.len() as u64),
            Err(_) => break,
        }
    }
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let seen = Seen {
        method: parts.method.to_string(),
        path_and_query: parts.uri.path_and_query().map_or_else(|| parts.uri.path().to_owned(), |p| p.to_string()),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body_bytes,
    };
    if let Ok(mut l) = log.lock() {
        l.push(seen.clone());
    }
    if let Some(ms) = header("x-echo-delay-ms") {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if let Some(n) = header("x-echo-bytes") {
        return Ok(Response::new(Either::Right(Zeros { remaining: n })));
    }
    let json = serde_json::json!({
        "method": seen.method,
        "path": seen.path_and_query,
        "headers": seen.headers.iter().map(|(n, v)| (n.clone(), serde_json::Value::from(v.clone()))).collect::<serde_json::Map<_, _>>(),
        "body_bytes": body_bytes,
    });
    let mut resp = Response::new(Either::Left(Full::new(Bytes::from(json.to_string() + "\n"))));
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    Ok(resp)
}

/// A body of `remaining` zero bytes, produced 64 KiB at a time.
#[derive(Debug)]
pub struct Zeros {
    remaining: u64,
}

static CHUNK: [u8; 65536] = [0; 65536];

impl Body for Zeros {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let n = self.remaining.min(CHUNK.len() as u64);
        self.remaining -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n as usize])))))
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining)
    }
}
