//! gRPC end to end with real peers: a grpcio server (tests/grpc/server.py)
//! behind the gateway (h2c in front, `protocol = "h2c"` behind), called by a
//! grpcio client (tests/grpc/client.py): unary, server-streaming,
//! client-streaming and bidirectional calls, identity metadata arriving at
//! the server (and a client's forged copy not), deadlines, 4 MiB messages,
//! an upstream gRPC error passed through untouched, and every gateway refusal
//! as the client library reports it.
//!
//! Needs python3 with `grpcio` (`bash .ci/run` installs it). Without it the
//! test says so and passes, except under CI (`CI` set), where it fails.

mod support;

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncBufReadExt, BufReader};

fn grpcio_available() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import grpc"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Kills the server process when the test ends, however it ends.
struct Killed(tokio::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_through_the_gateway_as_a_real_client_sees_them() {
    if !grpcio_available() {
        assert!(std::env::var_os("CI").is_none(), "CI: python3 with grpcio is missing (.ci/run installs it)");
        println!("SKIPPED: python3 grpcio not installed (bash .ci/run installs it)");
        return;
    }
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/grpc");
    let mut server = tokio::process::Command::new("python3")
        .arg(format!("{dir}/server.py"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 runs");
    let stdout = server.stdout.take().unwrap();
    let server = Killed(server);
    let mut lines = BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the gRPC server starts")
        .unwrap()
        .expect("its port");
    let routes = STANDARD_ROUTES
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nh2c = true", 1)
        .replace("url = \"http://{upstream}\"", &format!("url = \"http://127.0.0.1:{port}\"\nprotocol = \"h2c\""))
        + "\n[[routes]]\nname = \"orders gRPC\"\npath = \"/orders.v1.Orders/*\"\nany_roles = [\"manager\"]\n";
    let gw = TestGateway::with_routes(&routes).await;
    let manager = rs256(&claims(json!({"sub": "alice", "ts_roles": ["manager"]})));
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new("python3")
            .arg(format!("{dir}/client.py"))
            .arg(gw.addr.to_string())
            .env("MANAGER", &manager)
            .env("READER", &reader)
            .output(),
    )
    .await
    .expect("the client finishes")
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "client failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let cases: BTreeMap<String, Value> = stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["case"].as_str().unwrap().to_owned(), v))
        .collect();
    let case = |name: &str| cases.get(name).unwrap_or_else(|| panic!("no case {name}: {stdout}"));
    let ok = |name: &str| {
        let c = case(name);
        assert_eq!(c["code"], "OK", "{name}: {c}");
        c
    };

    let unary = ok("unary");
    assert_eq!(unary["response"], "echo:42");
    // Identity headers arrive as metadata.
    assert_eq!(unary["trailing"]["x-echo-subject"], "alice", "{unary}");
    assert_eq!(unary["trailing"]["x-echo-roles"], "manager,reader", "{unary}");
    let forged = ok("forged");
    assert_eq!(forged["trailing"]["x-echo-subject"], "alice", "a client's x-auth-subject never arrives: {forged}");
    assert_eq!(forged["trailing"]["x-echo-roles"], "manager,reader", "{forged}");
    assert_eq!(ok("server_streaming")["response"], json!(["order-0", "order-1", "order-2", "order-3", "order-4"]));
    assert_eq!(ok("client_streaming")["response"], "got:6000");
    assert_eq!(ok("bidi")["response"], json!(["pong:one", "pong:two", "pong:three"]));
    assert_eq!(case("deadline")["code"], "DEADLINE_EXCEEDED", "{}", case("deadline"));
    assert_eq!(ok("big_response")["response"], 4 * 1024 * 1024);
    assert_eq!(ok("big_request")["response"], format!("got:{}", 4 * 1024 * 1024));
    // The upstream's own error passes through untouched.
    let failed = case("upstream_error");
    assert_eq!((failed["code"].as_str(), failed["details"].as_str()), (Some("NOT_FOUND"), Some("no such order")));
    // The gateway's refusals, as the client library reports them.
    for (name, code, says) in [
        ("no_token", "UNAUTHENTICATED", "no bearer token"),
        ("bad_token", "UNAUTHENTICATED", "malformed"),
        ("forbidden", "PERMISSION_DENIED", "does not meet"),
        ("no_route", "UNIMPLEMENTED", "no route"),
    ] {
        let c = case(name);
        assert_eq!(c["code"], code, "{name}: {c}");
        assert!(c["details"].as_str().unwrap().contains(says), "{name}: {c}");
    }
    // Each call was counted and logged as any request: the refusals by their decision.
    let metrics = gw.metrics.render();
    for line in [
        "route=\"orders gRPC\",decision=\"allow\",status=\"200\"",
        "route=\"orders gRPC\",decision=\"deny_401\",status=\"200\"",
        "route=\"orders gRPC\",decision=\"deny_403\",status=\"200\"",
        "route=\"(none)\",decision=\"no_route\",status=\"200\"",
    ] {
        assert!(metrics.contains(line), "{line} in\n{metrics}");
    }
    drop(server);
}
