//! Criterion benchmark of the whole request handler (`Gateway::handle`):
//! normalize, extract, route lookup, cached or uncached verification, decide,
//! the upstream request head, the lean exchange with a pooled keep-alive
//! connection, and the response body read to its end.
//!
//! The upstream is a minimal HTTP/1.1 server in this process, on 127.0.0.1,
//! driven by the same single-threaded runtime as the handler. It is loopback
//! rather than an in-memory pipe because the lean exchange drives a
//! `TcpStream` itself (no stream abstraction on the request path), and a
//! different transport would benchmark a different code path. So that the two
//! loopback trips are not counted as the gateway's cost, the same run measures
//! `upstream/direct`: the same request written by hand on a keep-alive
//! connection to the same upstream and its response read. The gateway's own
//! cost per request is the difference between `handler/*_200` and it.
//!
//! Refusals (403, 401) never reach the upstream: they are the handler alone.
//!
//! `cargo bench --bench handler`

mod common;

// The allocator the binary uses.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use criterion::{criterion_group, criterion_main, Criterion};
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::BodyExt as _;
use rolegate::body::RequestBody;
use rolegate::gateway::{Gateway, Writer};
use rolegate::headers::ClientConn;
use rolegate::mint::{self, Signer};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// The upstream's answer to every request (the headers the harness's nginx upstream sends).
const BODY: &str = r#"{"id":"123","ok":true}"#;

fn response() -> Vec<u8> {
    format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 23 Nov 2026 03:01:18 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{BODY}",
        BODY.len()
    )
    .into_bytes()
}

/// Answers every request head (requests here have no body) with [`response`].
async fn upstream(listener: TcpListener) {
    let response: &'static [u8] = response().leak();
    loop {
        let Ok((mut io, _)) = listener.accept().await else { return };
        let _ = io.set_nodelay(true);
        tokio::spawn(async move {
            let mut buf = Vec::with_capacity(4096);
            let mut chunk = [0u8; 4096];
            loop {
                let Ok(n) = io.read(&mut chunk).await else { return };
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    buf.drain(..end + 4);
                    if io.write_all(response).await.is_err() {
                        return;
                    }
                }
            }
        });
    }
}

/// A request as the lean server hands it over: its headers in a map sized
/// for them, values sharing one buffer.
fn request(token: Option<&str>, method: Method) -> Request<RequestBody> {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut fields = vec![("host", "api.bench"), ("user-agent", "wrk"), ("accept", "*/*")];
    if let Some(a) = &auth {
        fields.push(("authorization", a));
    }
    let mut headers = HeaderMap::with_capacity(fields.len() + 4);
    for (name, value) in fields {
        headers.append(HeaderName::from_static(name), HeaderValue::from_str(value).unwrap());
    }
    let mut req = Request::new(RequestBody::Empty);
    *req.method_mut() = method;
    *req.uri_mut() = Uri::from_static("/v1/users/123");
    *req.headers_mut() = headers;
    req
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(upstream(listener));

    let fx = common::fixture(10);
    let toml = common::routes_toml(10).replace("http://127.0.0.1:9", &format!("http://{addr}"));
    let gateway_for = |toml: String| {
        std::fs::write(&fx.config, toml).unwrap();
        let snap = rolegate::config::load(&fx.config, None).unwrap();
        Gateway::new(Arc::new(ArcSwap::from_pointee(snap)))
    };
    let gateway = gateway_for(toml.clone());
    // The same table with the token cache off: every request verifies its signature.
    let uncached = gateway_for(format!("[defaults]\ntoken_cache = 0\n{toml}"));
    // The same table forwarding identity headers, as the example routes.toml does.
    let identity = gateway_for(format!(
        "[forward]\nheaders = {{ \"x-auth-subject\" = \"sub\", \"x-auth-roles\" = \"$roles\", \"x-auth-permissions\" = \"$permissions\" }}\n{toml}"
    ));
    let client = ClientConn::new(SocketAddr::from(([127, 0, 0, 1], 40000)), false);

    let sign = |pem: &str, kid: &str, perms: serde_json::Value| {
        let claims =
            json!({"iss": common::ISS, "aud": "bench", "sub": "u", "ts_roles": ["reader"], "ts_permissions": perms});
        mint::sign(&Signer::Pem(pem.as_bytes().to_vec()), &claims, Some(kid), Some(3600)).unwrap()
    };
    let rs = sign(&fx.rsa.private_pem, "rsa", json!(["a:1", "b:2", "users:read"]));
    let es = sign(&fx.ec.private_pem, "ec", json!(["a:1", "b:2", "users:read"]));
    // Valid, but without `users:read` (neither its own nor through the role `reader`): 403.
    let claims = json!({"iss": common::ISS, "aud": "bench", "sub": "u", "ts_permissions": ["a:1"]});
    let forbidden =
        mint::sign(&Signer::Pem(fx.rsa.private_pem.as_bytes().to_vec()), &claims, Some("rsa"), Some(3600)).unwrap();

    let client = Arc::new(client);
    // A sample's requests run one after another in one task, as a keep-alive
    // connection's requests do in the server (a task's yield puts it behind
    // the ready tasks; `block_on`'s own future would poll the I/O driver).
    let run = |gateway: &Gateway, token: Option<&str>, expect: StatusCode, iters: u64| {
        let (gateway, client, token) = (gateway.clone(), Arc::clone(&client), token.map(str::to_owned));
        rt.block_on(rt.spawn(async move {
            let started = Instant::now();
            for _ in 0..iters {
                let resp = gateway.handle(request(token.as_deref(), Method::GET), &client, Writer::Lean).await;
                assert_eq!(resp.status(), expect);
                black_box(resp.into_body().collect().await.unwrap().to_bytes());
            }
            started.elapsed()
        }))
        .unwrap()
    };
    // Warm: the first requests open the pooled connection and fill the token cache.
    for token in [&rs, &es] {
        run(&gateway, Some(token), StatusCode::OK, 2);
        run(&uncached, Some(token), StatusCode::OK, 2);
        run(&identity, Some(token), StatusCode::OK, 2);
    }

    // The baseline: the same request head written by hand on a keep-alive
    // connection to the same upstream, and the response read.
    let direct = rt.block_on(TcpStream::connect(addr)).unwrap();
    direct.set_nodelay(true).unwrap();
    let head = format!(
        "GET /v1/users/123 HTTP/1.1\r\nhost: api.bench\r\nuser-agent: wrk\r\naccept: */*\r\nauthorization: Bearer {rs}\r\n\r\n"
    );
    let mut direct = Some(direct);
    let mut run_direct = |iters: u64| {
        let mut io = direct.take().unwrap();
        let head = head.clone();
        let (io, took) = rt
            .block_on(rt.spawn(async move {
                let response_len = response().len();
                let mut buf = vec![0u8; 4096];
                let started = Instant::now();
                for _ in 0..iters {
                    io.write_all(head.as_bytes()).await.unwrap();
                    let mut got = 0;
                    while got < response_len {
                        let n = io.read(&mut buf[got..]).await.unwrap();
                        assert!(n > 0, "the upstream closed");
                        got += n;
                    }
                    assert_eq!(&buf[got - BODY.len()..got], BODY.as_bytes());
                }
                (io, started.elapsed())
            }))
            .unwrap();
        direct = Some(io);
        took
    };

    c.bench_function("upstream/direct", |b| b.iter_custom(&mut run_direct));
    let cases = [
        ("handler/rs256_cached_200", &gateway, Some(&rs), StatusCode::OK),
        ("handler/es256_cached_200", &gateway, Some(&es), StatusCode::OK),
        ("handler/rs256_cached_200_identity_headers", &identity, Some(&rs), StatusCode::OK),
        ("handler/rs256_uncached_200", &uncached, Some(&rs), StatusCode::OK),
        ("handler/es256_uncached_200", &uncached, Some(&es), StatusCode::OK),
        ("handler/rs256_cached_403", &gateway, Some(&forbidden), StatusCode::FORBIDDEN),
        ("handler/no_token_401", &gateway, None, StatusCode::UNAUTHORIZED),
    ];
    for (name, gateway, token, expect) in cases {
        c.bench_function(name, |b| b.iter_custom(|iters| run(gateway, token.map(String::as_str), expect, iters)));
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
