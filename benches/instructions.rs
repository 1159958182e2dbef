//! Instructions per request on the whole proxy path, counted with callgrind
//! (deterministic, unlike timings): the real server (`server::serve`, so the
//! lean server, the gateway and the lean exchange) on 127.0.0.1 in front of a
//! minimal in-process upstream, and a keep-alive client sending the same
//! cached-RS256 request again and again, all on one single-threaded runtime.
//!
//! Not a criterion bench: `bench/instructions.sh` runs this binary under
//! `valgrind --tool=callgrind` for two request counts and two modes and
//! prints `(I(2N) - I(N)) / N` for each, so start-up (key generation, table
//! compile) cancels out:
//!
//! - `proxy`: client → rolegate → upstream;
//! - `direct`: client → upstream (the same request), the baseline to subtract.
//!
//! `ROLEGATE_INSN_REQUESTS` (default 2000) and `ROLEGATE_INSN_MODE` (`proxy`
//! or `direct`) select the run; `ROLEGATE_INSN_HEADERS=1` forwards the example
//! table's identity headers. For the scale of the table:
//! `ROLEGATE_INSN_ROUTES` (routes in the table, default 10; the matching one
//! is last), `ROLEGATE_INSN_TOKEN_ROLES` (roles in the token, default 1) and
//! `ROLEGATE_INSN_DEEP=1` (1,000 roles in chains of 10 `includes`; the token
//! holds a chain's top). `ROLEGATE_INSN_CHURN=1`: a new connection per
//! request (`Connection: close`).

mod common;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rolegate::gateway::Gateway;
use rolegate::mint::{self, Signer};
use rolegate::server::{self, ServeOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const BODY: &str = r#"{"id":"123","ok":true}"#;

fn response() -> &'static [u8] {
    let text = format!(
        "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Mon, 23 Nov 2026 03:01:18 GMT\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: keep-alive\r\n\r\n{BODY}",
        BODY.len()
    );
    text.into_bytes().leak()
}

/// Answers every request head with [`response`].
async fn upstream(listener: TcpListener) {
    let response = response();
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

/// Sends `head` `n` times on one keep-alive connection, reading each response
/// whole; with `churn`, on a new connection each time (the head asks to close).
async fn client(addr: SocketAddr, head: Vec<u8>, n: usize, churn: bool) {
    let mut io = TcpStream::connect(addr).await.expect("connect");
    io.set_nodelay(true).expect("nodelay");
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = [0u8; 8192];
    for i in 0..n {
        if churn && i > 0 {
            // The response was read whole: close, and connect anew.
            io = TcpStream::connect(addr).await.expect("connect");
            io.set_nodelay(true).expect("nodelay");
        }
        io.write_all(&head).await.expect("write");
        buf.clear();
        loop {
            let k = io.read(&mut chunk).await.expect("read");
            assert!(k > 0, "closed");
            buf.extend_from_slice(&chunk[..k]);
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = std::str::from_utf8(&buf[..end]).expect("head");
                assert!(head.starts_with("HTTP/1.1 200"), "{head}");
                let len: usize = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse().ok())
                    .expect("content-length");
                if buf.len() >= end + 4 + len {
                    break;
                }
            }
        }
    }
}

fn main() {
    let n: usize = std::env::var("ROLEGATE_INSN_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    let mode = std::env::var("ROLEGATE_INSN_MODE").unwrap_or_else(|_| "proxy".into());
    let identity_headers = std::env::var("ROLEGATE_INSN_HEADERS").is_ok_and(|v| v == "1");
    // The access log as `run` writes it (JSON, to stderr): `ROLEGATE_INSN_LOG=1`.
    let _log =
        std::env::var("ROLEGATE_INSN_LOG").is_ok_and(|v| v == "1").then(|| rolegate::logging::init(Some("json")));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async move {
        let up = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let up_addr = up.local_addr().expect("addr");
        tokio::spawn(upstream(up));

        // Keys from files (bench/instructions.sh makes them once): key generation
        // takes a random number of instructions, which would not cancel out.
        let keys = std::path::PathBuf::from(std::env::var("ROLEGATE_INSN_KEYS").expect("ROLEGATE_INSN_KEYS"));
        let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default);
        let routes = var("ROLEGATE_INSN_ROUTES", 10);
        let token_roles = var("ROLEGATE_INSN_TOKEN_ROLES", 1);
        let deep = var("ROLEGATE_INSN_DEEP", 0) == 1;
        let fx = common::fixture_with_keys(routes, &keys);
        let mut toml = common::routes_toml(routes).replace("http://127.0.0.1:9", &format!("http://{up_addr}"));
        if deep {
            // 100 chains of 10: c{k}_0 includes c{k}_1 ... includes c{k}_9, which grants users:read.
            for k in 0..100 {
                for d in 0..10 {
                    let grant = if d < 9 { format!("includes = [\"c{k}_{}\"]", d + 1) } else { format!("permissions = [\"users:read\", \"p:{k}\"]") };
                    toml.push_str(&format!("\n[roles.c{k}_{d}]\n{grant}\n"));
                }
            }
        }
        if identity_headers {
            toml = format!("[forward]\nheaders = {{ \"x-auth-subject\" = \"sub\", \"x-auth-roles\" = \"$roles\", \"x-auth-permissions\" = \"$permissions\" }}\n{toml}");
        }
        std::fs::write(&fx.config, toml).expect("write");
        let snap = rolegate::config::load(&fx.config, None).expect("table");
        let opts = ServeOptions::from_settings(&snap.server);
        let shared = Arc::new(ArcSwap::from_pointee(snap));
        let gw_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let gw_addr = gw_listener.local_addr().expect("addr");
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server::serve(gw_listener, Gateway::new(shared), opts, async {
            let _ = stopped.await;
        }));

        let mut roles: Vec<String> = vec![if deep { "c7_0".into() } else { "reader".into() }];
        roles.extend((1..token_roles).map(|i| format!("team-{i}")));
        let claims = json!({"iss": common::ISS, "aud": "bench", "sub": "u", "ts_roles": roles, "ts_permissions": ["a:1", "b:2", "users:read"]});
        let token = mint::sign(&Signer::Pem(fx.rsa.private_pem.as_bytes().to_vec()), &claims, Some("rsa"), Some(3600))
            .expect("token");
        let churn = var("ROLEGATE_INSN_CHURN", 0) == 1;
        let close = if churn { "Connection: close\r\n" } else { "" };
        let head = format!(
            "GET /v1/users/123 HTTP/1.1\r\nHost: api.bench\r\nUser-Agent: wrk\r\nAccept: */*\r\n{close}Authorization: Bearer {token}\r\n\r\n"
        )
        .into_bytes();
        let target = if mode == "direct" { up_addr } else { gw_addr };
        client(target, head, n, churn).await;
        // Let the last response's connection bookkeeping finish inside the measured run.
        tokio::time::sleep(Duration::from_millis(10)).await;
    });
}
