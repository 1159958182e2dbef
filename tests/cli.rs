//! The real binary: `check`, `explain`, `mint`, `run` (with SIGHUP reload and
//! SIGTERM shutdown) and a `demo` smoke test.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::json;
use support::bin::*;
use support::*;

#[test]
fn check_reports_ok_and_errors_with_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), "127.0.0.1:9", "admin");
    let (code, out, _) = rolegate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (1 route, 1 issuer)"), "{out}");
    let text = std::fs::read_to_string(&path).unwrap() + "\n[[routes]]\npath = \"/x\"\nupstream = \"missing\"\n";
    std::fs::write(&path, text).unwrap();
    let (code, _, err) = rolegate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("routes.toml:19:") && err.contains("unknown upstream"), "{err}");
    // ROLEGATE_CONFIG is honoured too.
    let out = Command::new(BIN).arg("check").env("ROLEGATE_CONFIG", &path).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// The committed `routes.schema.json` is exactly what `rolegate schema` prints
/// (regenerate with `cargo run -- schema > routes.schema.json`), and it knows
/// every key the example table uses, and no more than the parser accepts.
#[test]
fn committed_schema_is_what_schema_prints_and_covers_the_example() {
    let (code, printed, err) = rolegate(&["schema"]);
    assert_eq!(code, 0, "{err}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let committed = std::fs::read_to_string(root.join("routes.schema.json")).unwrap();
    assert!(committed == printed, "routes.schema.json is stale: run `cargo run -- schema > routes.schema.json`");

    let schema: serde_json::Value = serde_json::from_str(&printed).unwrap();
    let example: toml::Value = toml::from_str(&std::fs::read_to_string(root.join("routes.toml")).unwrap()).unwrap();
    let mut seen = 0;
    walk_keys(&schema, &schema, &example, "", &mut seen);
    assert!(seen > 40, "the example table exercises the schema ({seen} keys)");
    // The schema refuses what the parser refuses: every table is closed.
    let route = resolve(&schema, &schema["properties"]["routes"]["items"]);
    assert_eq!(route["additionalProperties"], json!(false));
    assert_eq!(route["required"], json!(["path"]));
}

/// Follows `$ref` / single-element `allOf` to the schema they name.
fn resolve<'a>(root: &'a serde_json::Value, mut s: &'a serde_json::Value) -> &'a serde_json::Value {
    loop {
        if let Some(r) = s["$ref"].as_str() {
            s = root.pointer(r.trim_start_matches('#')).unwrap_or_else(|| panic!("dangling {r}"));
        } else if let Some([only]) = s["allOf"].as_array().map(Vec::as_slice) {
            s = only;
        } else {
            return s;
        }
    }
}

/// Every key of `value` is a property of `schema` (or allowed by its
/// `additionalProperties` schema), recursively through tables and arrays.
fn walk_keys(root: &serde_json::Value, schema: &serde_json::Value, value: &toml::Value, at: &str, seen: &mut usize) {
    let schema = resolve(root, schema);
    match value {
        toml::Value::Table(table) => {
            for (key, v) in table {
                let sub = match schema["properties"].get(key) {
                    Some(sub) => sub,
                    None => match &schema["additionalProperties"] {
                        sub @ serde_json::Value::Object(_) => sub,
                        _ => panic!("the schema does not know `{at}{key}`"),
                    },
                };
                *seen += 1;
                walk_keys(root, sub, v, &format!("{at}{key}."), seen);
            }
        }
        toml::Value::Array(items) if schema.get("items").is_some() => {
            for item in items {
                walk_keys(root, &schema["items"], item, at, seen);
            }
        }
        _ => {}
    }
}

#[test]
fn mint_then_explain_agree_with_the_policy() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), "127.0.0.1:9", "admin");
    let key = dir.path().join("rsa.key");
    std::fs::write(&key, &keys().rsa.private_pem).unwrap();
    let claims = json!({"iss": ISS, "aud": AUD, "sub": "u", "ts_roles": ["admin"]}).to_string();
    let (code, token, err) =
        rolegate(&["mint", "--key", key.to_str().unwrap(), "--claims", &claims, "--kid", "k1", "--ttl", "10m"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim();
    assert_eq!(token.split('.').count(), 3);
    let cfg = path.to_str().unwrap();
    let (_, out, _) =
        rolegate(&["explain", "--config", cfg, "--method", "GET", "--path", "/admin/x", "--token", token]);
    assert!(out.contains("route:       \"admin\"") && out.contains("verdict:     allow"), "{out}");
    let (_, out, _) = rolegate(&[
        "explain",
        "--config",
        cfg,
        "--method",
        "GET",
        "--path",
        "/admin/x",
        "--claims",
        r#"{"ts_roles":["user"]}"#,
    ]);
    assert!(out.contains("verdict:     deny 403 insufficient_scope"), "{out}");
    let (_, out, _) = rolegate(&["explain", "--config", cfg, "--method", "GET", "--path", "/nope", "--claims", "{}"]);
    assert!(out.contains("deny 404 no_route"), "{out}");
    let (_, expired, _) =
        rolegate(&["mint", "--key", key.to_str().unwrap(), "--claims", &claims, "--kid", "k1", "--ttl", "-1h"]);
    let (_, out, _) =
        rolegate(&["explain", "--config", cfg, "--method", "GET", "--path", "/admin/x", "--token", expired.trim()]);
    assert!(out.contains("deny 401 invalid_token") && out.contains("expired"), "{out}");
    // HS256 from an environment variable.
    let out = Command::new(BIN)
        .args(["mint", "--secret-env", "MY_SECRET", "--claims", "{\"sub\":\"s\"}"])
        .env("MY_SECRET", "s3cret")
        .output()
        .unwrap();
    let t = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(jsonwebtoken::decode_header(&t).unwrap().alg, jsonwebtoken::Algorithm::HS256);
}

#[tokio::test]
async fn run_serves_reloads_on_sighup_and_stops_on_sigterm() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), &echo.addr.to_string(), "admin");
    let (child, addr, lines) = spawn(&["run", "--config", path.to_str().unwrap()]);
    let admin_addr: SocketAddr = loop {
        let line = lines.recv_timeout(Duration::from_secs(10)).expect("admin listening line");
        if let Some(a) = line.strip_prefix("admin listening on ") {
            break a.parse().unwrap();
        }
    };
    let admin_get = |path: &'static str| async move {
        let req = http::Request::get(format!("http://{admin_addr}{path}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(req).await
    };
    assert_eq!(admin_get("/healthz").await.status, 200);
    assert_eq!(admin_get("/readyz").await.status, 200);
    assert_eq!(admin_get("/config").await.json()["generation"], 1);
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let ops = rs256(&claims(json!({"ts_roles": ["ops"]})));
    assert_eq!(get(addr, "/admin/x", &admin).await, 200);
    assert_eq!(get(addr, "/admin/x", &ops).await, 403);

    // Require "ops" instead, reload by SIGHUP, and poll for the new verdict.
    write_table(dir.path(), &echo.addr.to_string(), "ops");
    child.signal(nix::sys::signal::Signal::SIGHUP);
    let probe = || {
        let ops = ops.clone();
        async move { get(addr, "/admin/x", &ops).await == 200 }
    };
    assert!(wait_until(Duration::from_secs(10), probe).await, "the reload was not applied in time");
    assert_eq!(get(addr, "/admin/x", &admin).await, 403);

    // An invalid file is refused whole: the old table keeps serving.
    std::fs::write(&path, "[[routes]]\npath = \"/admin/**b\"\n").unwrap();
    child.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        match lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
            Ok(line) if line.contains("reload refused") => break line,
            Ok(_) => continue,
            Err(_) => panic!("no 'reload refused' log line in time"),
        }
    };
    assert!(refused.contains("routes.toml:2:"), "the refusal names file:line: {refused}");
    let config = admin_get("/config").await.json();
    // Refused once by SIGHUP, and possibly once more by the file watcher that saw the same write.
    assert!(config["reloads"]["refused"].as_u64().unwrap() >= 1, "{config}");
    assert!(config["reloads"]["last_error"]["message"].as_str().unwrap().contains("routes.toml:2:"), "{config}");
    assert!(config["generation"].as_u64().unwrap() >= 2, "{config}");
    let metrics = String::from_utf8(admin_get("/metrics").await.body.to_vec()).unwrap();
    assert!(metrics.contains(r#"rolegate_requests_total{route="admin",decision="allow",status="200"}"#), "{metrics}");
    assert!(metrics.contains(r#"rolegate_reloads_total{result="refused"}"#), "{metrics}");
    assert_eq!(get(addr, "/admin/x", &ops).await, 200);
    assert_eq!(get(addr, "/admin/x", &admin).await, 403);

    // Graceful stop: a slow request in flight when SIGTERM arrives still completes.
    let slow = tokio::spawn(async move {
        let req = http::Request::get(format!("http://{addr}/admin/slow"))
            .header("authorization", format!("Bearer {}", rs256(&claims(json!({"ts_roles": ["ops"]})))))
            .header("x-echo-delay-ms", "1500")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        send(req).await.status.as_u16()
    });
    assert!(
        wait_until(Duration::from_secs(10), || async {
            echo.requests().iter().any(|r| r.path_and_query == "/admin/slow")
        })
        .await,
        "the slow request reached the upstream"
    );
    child.signal(nix::sys::signal::Signal::SIGTERM);
    // Readiness turns false while draining.
    assert!(wait_until(Duration::from_secs(5), || async { admin_get("/readyz").await.status == 503 }).await);
    assert_eq!(slow.await.unwrap(), 200, "in-flight request finished during shutdown");
    let status = child.exit_status().await;
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn demo_prints_working_curl_lines() {
    let (child, addr, lines) = spawn(&["demo", "--listen", "127.0.0.1:0"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let mut curls = Vec::new();
    while let Ok(line) = lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())) {
        if line.starts_with("Ctrl-C") {
            break;
        }
        if line.starts_with("curl") {
            curls.push(line);
        }
    }
    assert!(curls.len() >= 8, "{curls:?}");
    assert!(curls.iter().all(|c| c.contains(&addr.to_string())));
    let token_of = |line: &str| line.split("Bearer ").nth(1).map(|t| t.split('\'').next().unwrap().to_owned());
    // First line: reader reads a user (200); fifth: expired token (401).
    assert_eq!(get(addr, "/v1/users/7", &token_of(&curls[0]).unwrap()).await, 200);
    assert_eq!(get(addr, "/v1/users/7", &token_of(&curls[4]).unwrap()).await, 401);
    child.signal(nix::sys::signal::Signal::SIGTERM);
    let status = child.exit_status().await;
    assert!(status.success());
}

/// Log lines until `n` access-log lines have arrived: (every line, the access lines parsed).
fn access_lines(lines: &mpsc::Receiver<String>, n: usize) -> (Vec<String>, Vec<serde_json::Value>) {
    let mut access = Vec::new();
    let mut all = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while access.len() < n {
        let line =
            lines.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).expect("access lines");
        all.push(line.clone());
        if line.contains("rolegate::access") {
            access.push(serde_json::from_str::<serde_json::Value>(&line).expect("access log lines are JSON"));
        }
    }
    (all, access)
}

/// `[defaults] log_claims` records exactly the named claims (and `iss`), and the
/// JSON log itself is a replay file for `diff`: real traffic, replayed on an edit.
#[tokio::test]
async fn logged_claims_replay_through_diff() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), &echo.addr.to_string(), "admin");
    let table = std::fs::read_to_string(&path).unwrap() + "[defaults]\nlog_claims = [\"ts_roles\", \"sub\"]\n";
    std::fs::write(&path, &table).unwrap();
    let (child, addr, lines) =
        spawn_logging(&["run", "--log-format", "json", "--config", path.to_str().unwrap()], "info");
    let admin = rs256(&claims(json!({"ts_roles": ["admin"], "sub": "alice", "email": "alice@example.com"})));
    let both = rs256(&claims(json!({"ts_roles": ["admin", "superadmin"], "sub": "bob"})));
    assert_eq!(get(addr, "/admin/a", &admin).await, 200);
    assert_eq!(get(addr, "/admin/b", &both).await, 200);
    assert_eq!(get(addr, "/admin/c", "not-a-token").await, 401);
    let (all, access) = access_lines(&lines, 3);
    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());

    let recorded: serde_json::Value =
        serde_json::from_str(access[0]["claims"].as_str().expect("claims logged")).unwrap();
    assert_eq!(recorded, json!({"iss": ISS, "sub": "alice", "ts_roles": ["admin"]}), "only the named claims");
    assert!(access[2].get("claims").is_none(), "no verified token, no claims: {}", access[2]);
    assert!(all.iter().all(|l| !l.contains("alice@example.com")), "unnamed claims are never logged");

    let log = dir.path().join("access.log");
    std::fs::write(&log, all.join("\n")).unwrap();
    let tightened = dir.path().join("new.toml");
    std::fs::write(&tightened, table.replace("all_roles = [\"admin\"]", "all_roles = [\"superadmin\"]")).unwrap();
    let (code, out, err) =
        rolegate(&["diff", path.to_str().unwrap(), tightened.to_str().unwrap(), "--replay", log.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("GET /admin/a: 200 (admin: allow) -> 403 (admin: missing role superadmin)"), "{out}");
    assert!(!out.contains("/admin/b") && !out.contains("/admin/c"), "unchanged verdicts are not listed: {out}");
    assert!(out.contains("3 requests replayed: 1 verdict changes (1 newly denied, 0 newly allowed)"), "{out}");
    assert!(out.contains("1 of them had no claims"), "{out}");
}

#[tokio::test]
async fn access_log_is_json_and_never_contains_the_token() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), &echo.addr.to_string(), "admin");
    let (child, addr, lines) =
        spawn_logging(&["run", "--log-format", "json", "--config", path.to_str().unwrap()], "info");
    let admin = rs256(&claims(json!({"ts_roles": ["admin"], "sub": "alice"})));
    let expired = rs256(&claims(json!({"ts_roles": ["admin"], "exp": 1000})));
    assert_eq!(get(addr, "/admin/x?q=1", &admin).await, 200);
    assert_eq!(get(addr, "/admin/y", &expired).await, 401);
    let (all, access) = access_lines(&lines, 2);
    for line in &all {
        for token in [&admin, &expired] {
            assert!(!line.contains(token.as_str()), "a log line contains a token: {line}");
            let signature = token.rsplit('.').next().unwrap();
            assert!(!line.contains(signature), "a log line contains a token signature: {line}");
        }
    }
    let ok = &access[0];
    for field in [
        "timestamp",
        "request_id",
        "method",
        "path",
        "route",
        "decision",
        "status",
        "subject",
        "issuer",
        "client",
        "upstream",
        "duration_us",
    ] {
        assert!(ok.get(field).is_some(), "missing {field} in {ok}");
    }
    assert_eq!(ok["path"], "/admin/x");
    assert_eq!(ok["decision"], "allow");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["subject"], "alice");
    assert_eq!(ok["issuer"], ISS);
    let denied = &access[1];
    assert_eq!(denied["decision"], "deny_401");
    assert!(denied["reason"].as_str().unwrap().contains("expired"), "{denied}");
    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());
}

#[test]
fn check_strict_refuses_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_table(dir.path(), "127.0.0.1:9", "admin");
    let text = std::fs::read_to_string(&path).unwrap() + "\n[[routes]]\npath = \"/admin/x\"\nall_roles = [\"b\"]\n";
    std::fs::write(&path, text).unwrap();
    let (code, out, _) = rolegate(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0, "warnings alone pass: {out}");
    assert!(out.contains("warning:") && out.contains("is never reached"), "{out}");
    let (code, _, err) = rolegate(&["check", "--strict", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    let (code, out, _) = rolegate(&["routes", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(out.contains("/admin/**") && out.contains("all_roles [admin]"), "{out}");
}

/// `explain --json` gives the status the running gateway answers, over a table of cases.
#[tokio::test]
async fn explain_agrees_with_the_gateway() {
    let gw = TestGateway::start().await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let admin = rs256(&claims(json!({"ts_roles": ["admin"], "tid": "acme"})));
    let expired = rs256(&claims(json!({"ts_roles": ["admin"], "exp": 1000})));
    let cases: Vec<(&str, &str, &str)> = vec![
        ("GET", "/v1/users/7", &reader),
        ("DELETE", "/v1/users/7", &reader),
        ("DELETE", "/v1/users/7", &admin),
        ("GET", "/admin/x", &reader),
        ("GET", "/admin/x", &admin),
        ("GET", "/admin/x", &expired),
        ("GET", "/admin/x", "garbage"),
        ("GET", "/v1/tenants/acme/x", &admin),
        ("GET", "/v1/tenants/globex/x", &admin),
        ("GET", "/reports/1", &reader),
        ("GET", "/nowhere", &admin),
        ("GET", "/v1/users/%2e%2e/%2e%2e/admin/x", &reader),
        ("GET", "/v1/users/a%2fb", &reader),
        ("GET", "/docs/a", "garbage"),
        ("GET", "/shadow/x", &reader),
    ];
    for (method, path, token) in cases {
        let (code, out, err) = rolegate(&[
            "explain",
            "--json",
            "--config",
            gw.config.to_str().unwrap(),
            "--method",
            method,
            "--path",
            path,
            "--token",
            token,
        ]);
        assert_eq!(code, 0, "{err}");
        let report: serde_json::Value = serde_json::from_str(&out).unwrap();
        let (status, _) = raw(gw.addr, format!("{method} {path} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").as_bytes()).await;
        let explained = match report["verdict"].as_str() {
            Some("allow") => 200,
            _ => report["status"].as_u64().unwrap() as u16,
        };
        assert_eq!(explained, status, "{method} {path}: explain says {report}");
    }
}

/// `diff`: a tightened route shows its newly denied requests; an unchanged route shows none.
#[test]
fn diff_shows_what_an_edit_changes() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_table(dir.path(), "127.0.0.1:9", "admin");
    let base =
        std::fs::read_to_string(&old).unwrap() + "\n[[routes]]\nname = \"docs\"\npath = \"/docs/**\"\npublic = true\n";
    std::fs::write(&old, &base).unwrap();
    let new = dir.path().join("new.toml");
    // Tighten the admin route: "admin" is no longer enough, "superadmin" is needed.
    std::fs::write(&new, base.replace("all_roles = [\"admin\"]", "all_roles = [\"superadmin\"]")).unwrap();
    let replay = dir.path().join("replay.jsonl");
    let lines = [
        json!({"method": "GET", "path": "/admin/a", "claims": {"ts_roles": ["admin"]}}),
        json!({"method": "POST", "path": "/admin/b", "claims": {"ts_roles": ["admin"]}}),
        json!({"method": "GET", "path": "/admin/c", "claims": {"ts_roles": ["superadmin"]}}),
        json!({"method": "GET", "path": "/admin/d"}),
        json!({"method": "GET", "path": "/docs/x"}),
        json!({"method": "GET", "path": "/docs/y", "claims": {"ts_roles": ["admin"]}}),
    ];
    std::fs::write(&replay, lines.iter().map(|l| l.to_string()).collect::<Vec<_>>().join("\n")).unwrap();
    let (code, out, err) =
        rolegate(&["diff", old.to_str().unwrap(), new.to_str().unwrap(), "--replay", replay.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("replay.jsonl:1: GET /admin/a: 200 (admin: allow) -> 403 (admin: missing role superadmin)"),
        "{out}"
    );
    assert!(out.contains("replay.jsonl:2: POST /admin/b: 200"), "{out}");
    assert!(out.contains("replay.jsonl:3: GET /admin/c: 403") && out.contains("-> 200"), "{out}");
    assert!(!out.contains("/admin/d") && !out.contains("/docs/"), "unchanged verdicts are not listed: {out}");
    assert!(out.contains("6 requests replayed: 3 verdicts change (2 newly denied, 1 newly allowed)"), "{out}");
}
