//! A 1 GiB body each way moves through bounded gateway memory: the process's
//! peak resident size grows by far less than the body (the gateway, the echo
//! upstream and the client all run in this process and all stream).

mod support;

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Frame, SizeHint};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use support::*;

const GIB: u64 = 1 << 30;
static CHUNK: [u8; 1 << 20] = [7; 1 << 20];

struct Upload(u64);

impl Body for Upload {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.0 == 0 {
            return Poll::Ready(None);
        }
        let n = self.0.min(CHUNK.len() as u64);
        self.0 -= n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&CHUNK[..n as usize])))))
    }
    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0)
    }
}

/// Peak resident set size of this process, in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gib_each_way_in_bounded_memory() {
    let gw = TestGateway::start().await;
    // Warm up (first connections, allocator pools) before taking the baseline.
    assert_eq!(gw.send("GET", "/docs/warm", None).await.status, 200);
    let before = peak_rss();

    let client = Client::builder(TokioExecutor::new()).build_http::<Upload>();
    let req = http::Request::post(gw.url("/docs/upload")).body(Upload(GIB)).unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(body["body_bytes"], GIB, "the upstream received the whole upload");

    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = http::Request::get(gw.url("/docs/download"))
        .header("x-echo-bytes", GIB.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let mut body = client.request(req).await.unwrap().into_body();
    let mut received = 0u64;
    while let Some(frame) = body.frame().await {
        received += frame.unwrap().data_ref().map_or(0, |d| d.len() as u64);
    }
    assert_eq!(received, GIB);

    let grown = peak_rss().saturating_sub(before);
    println!("peak RSS grew by {} KiB for 2 GiB streamed", grown / 1024);
    assert!(grown < 128 << 20, "peak RSS grew by {} MiB: bodies are being buffered", grown >> 20);
}
