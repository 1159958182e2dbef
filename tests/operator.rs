//! What a newcomer and an operator meet, on the real binary: the commands that
//! need no key material, one error prefix everywhere, `run --listen` and
//! `--upstream`, `mint` given a public key, `explain` without a token and with
//! remote keys, `check` warnings about names `[roles]` does not know, `diff`
//! bad lines and exit codes, help texts, `/config` and `/metrics`, the admin
//! endpoints at start-up, start-up and shutdown logs, and `health`.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use support::bin::*;
use support::*;

fn example_table(dir: &Path) -> PathBuf {
    let path = dir.join("routes.toml");
    std::fs::copy(Path::new(env!("CARGO_MANIFEST_DIR")).join("routes.toml"), &path).unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Every line is an error line with the one prefix, a hint, or a hint's command.
fn assert_error_lines(stderr: &str) {
    assert!(!stderr.trim().is_empty(), "an error is printed");
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("rolegate: ") || line.starts_with("hint: ") || line.starts_with("  "),
            "unprefixed error line {line:?} in:\n{stderr}"
        );
    }
}

/// A fresh clone: `check` says how to make the missing key and offers
/// `--skip-keys`; `routes`, `explain --claims` (and without a token) and
/// `diff` work without any key material.
#[test]
fn a_fresh_clone_inspects_the_example_table_without_keys() {
    let dir = tempfile::tempdir().unwrap();
    let table = example_table(dir.path());
    let cfg = s(&table);
    let (code, _, err) = rolegate(&["check", "--config", cfg]);
    assert_eq!(code, 1, "{err}");
    assert_error_lines(&err);
    assert!(err.contains("routes.toml:25:9: cannot read key file") && err.contains("idp.pub.pem"), "{err}");
    let private = dir.path().join("keys/idp.key");
    let public = dir.path().join("keys/idp.pub.pem");
    assert!(err.contains(&format!("openssl genpkey -algorithm RSA -out {}", private.display())), "{err}");
    assert!(
        err.contains(&format!("openssl pkey -in {} -pubout -out {}", private.display(), public.display())),
        "{err}"
    );
    assert!(err.contains("rolegate check --skip-keys"), "{err}");

    let (code, out, err) = rolegate(&["check", "--skip-keys", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("ok (8 routes, 1 issuer; key material not checked (--skip-keys))"), "{out}");
    assert!(!out.contains("warning:"), "the example table has no warnings: {out}");

    // Another error under --skip-keys: that error alone, no key hints (the keys were not asked for).
    let broken = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(&table).unwrap();
    std::fs::write(
        &broken,
        format!("{text}\n[[routes]]\nname = \"broken\"\npath = \"/b\"\nupstream = \"nowhere\"\npublic = true\n"),
    )
    .unwrap();
    let (code, _, err) = rolegate(&["check", "--skip-keys", "--config", s(&broken)]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nowhere"), "{err}");
    assert!(!err.contains("hint:") && !err.contains("openssl"), "no key hints under --skip-keys: {err}");

    let (code, out, err) = rolegate(&["routes", "--config", cfg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("tenant admin"), "{out}");
    let explain = |extra: &[&str]| {
        let mut args = vec!["explain", "--config", cfg, "--path", "/v1/users/7"];
        args.extend_from_slice(extra);
        rolegate(&args)
    };
    let (code, out, err) = explain(&["--claims", r#"{"ts_roles":["reader"]}"#]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("verdict:     allow"), "{out}");
    // No token: the default, and --no-token says it explicitly.
    for extra in [&[][..], &["--no-token"][..]] {
        let (code, out, err) = explain(extra);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("token:       none") && out.contains("verdict:     deny 401 missing_token"), "{out}");
    }
    let (_, out, _) = rolegate(&["explain", "--config", cfg, "--path", "/docs/a", "--no-token", "--json"]);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((report["verdict"].as_str(), report["token"].as_str()), (Some("allow"), Some("none")), "{report}");
    let (code, _, err) = explain(&["--no-token", "--claims", "{}"]);
    assert_eq!(code, 2, "--no-token with --claims is a usage error: {err}");

    let replay = dir.path().join("replay.jsonl");
    std::fs::write(&replay, json!({"method": "GET", "path": "/v1/users/7"}).to_string()).unwrap();
    let (code, out, err) = rolegate(&["diff", cfg, cfg, "--replay", s(&replay)]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1 request replayed: 0 verdicts change"), "{out}");
}

/// Every subcommand's errors start with `rolegate: ` (a table's errors then name file:line:col).
#[test]
fn every_subcommand_prefixes_its_errors_alike() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "127.0.0.1:9", "admin");
    let text = std::fs::read_to_string(&table).unwrap() + "[[routes]]\npath = \"/x\"\nupstream = \"defualt\"\n";
    std::fs::write(&table, text).unwrap();
    let cfg = s(&table);
    let replay = dir.path().join("none.jsonl");
    let runs: Vec<Vec<&str>> = vec![
        vec!["check", "--config", cfg],
        vec!["routes", "--config", cfg],
        vec!["explain", "--config", cfg, "--path", "/x"],
        vec!["diff", cfg, cfg, "--replay", s(&replay)],
        vec!["run", "--config", cfg],
        vec!["mint", "--key", "/nonexistent.key", "--claims", "{}"],
    ];
    for args in runs {
        let (code, _, err) = rolegate(&args);
        assert_ne!(code, 0, "{args:?}");
        assert_error_lines(&err);
        if args.contains(&cfg) {
            assert!(err.contains(&format!("rolegate: {cfg}:18:12: ")), "{args:?}: {err}");
            // An unknown upstream name gets a suggestion.
            assert!(err.contains(r#"unknown upstream "defualt" (did you mean "default"?)"#), "{args:?}: {err}");
        }
    }
}

/// `run --listen` and `--upstream` replace `[server] listen` (here an address
/// that cannot be bound) and the default upstream (here nothing listens), for
/// the first load and for every reload.
#[tokio::test]
async fn run_takes_listen_and_upstream_from_the_command_line() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "127.0.0.1:9", "admin");
    let unbindable = |t: String| t.replacen("listen = \"127.0.0.1:0\"", "listen = \"192.0.2.1:8080\"", 1);
    std::fs::write(&table, unbindable(std::fs::read_to_string(&table).unwrap())).unwrap();
    let upstream = format!("http://{}", echo.addr);
    let (child, addr, lines) = spawn_logging(
        &["run", "--config", s(&table), "--listen", "127.0.0.1:0", "--upstream", &upstream, "--log-format", "json"],
        "info",
    );
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let ops = rs256(&claims(json!({"ts_roles": ["ops"]})));
    assert_eq!(get(addr, "/admin/x", &admin).await, 200);
    assert_eq!(echo.requests().len(), 1, "forwarded to --upstream");
    // A reload keeps both overrides: same listener, same upstream, no "[server] changed".
    write_table(dir.path(), "127.0.0.1:9", "ops");
    std::fs::write(&table, unbindable(std::fs::read_to_string(&table).unwrap())).unwrap();
    child.signal(nix::sys::signal::Signal::SIGHUP);
    let (_, before) = wait_for_line(&lines, |l| l.contains("route table reloaded"));
    assert!(before.iter().all(|l| !l.contains("restart")), "{before:#?}");
    assert_eq!(get(addr, "/admin/x", &ops).await, 200);
    assert_eq!(echo.requests().len(), 2);
    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());
}

#[test]
fn mint_given_a_public_key_asks_for_the_private_one() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let public = dir.path().join("rsa.pub.pem");
    let (code, out, err) = rolegate(&["mint", "--key", s(&public), "--claims", "{}"]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert_error_lines(&err);
    assert!(err.contains("this is a public key (RSA)") && err.contains("needs the private key"), "{err}");
    assert!(!err.contains("UnexpectedError"), "{err}");
}

/// A table whose issuer takes its keys from `jwks_url` only.
fn remote_table(dir: &Path, jwks: SocketAddr, server_extra: &str) -> PathBuf {
    let text = binary_routes(server_extra, "127.0.0.1:9", "admin").replace(
        "keys = [{ kid = \"k1\", pem_file = \"rsa.pub.pem\" }]",
        &format!("jwks_url = \"http://{jwks}/jwks.json\""),
    );
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn jwks_body() -> String {
    let mut jwk = keys().rsa.public_jwk.clone();
    jwk["kid"] = json!("k1");
    json!({ "keys": [jwk] }).to_string()
}

/// `explain --token` fetches the keys of an issuer with `jwks_url` (so it
/// agrees with the gateway), and says so when it cannot.
#[test]
fn explain_fetches_remote_keys_as_the_gateway_does() {
    let idp = FixedServer::start(Some(jwks_body()));
    let dir = tempfile::tempdir().unwrap();
    let table = remote_table(dir.path(), idp.addr, "");
    let token = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let explain = |cfg: &Path| rolegate(&["explain", "--config", s(cfg), "--path", "/admin/x", "--token", &token]);
    let (code, out, err) = explain(&table);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("keys:        1 key fetched from jwks_url http://{}/jwks.json", idp.addr)), "{out}");
    assert!(out.contains("verdict:     allow"), "{out}");

    // The identity provider is down: said, and the verdict is the gateway's
    // for an issuer without keys (503 keys_unavailable, never allow).
    *idp.body.lock().unwrap() = None;
    let (code, out, err) = explain(&table);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cannot fetch the keys of jwks_url") && out.contains("HTTP 503"), "{out}");
    assert!(out.contains("verdict:     deny 503 keys_unavailable"), "{out}");

    // It accepts but never answers: given up after 3 s.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let table = remote_table(dir.path(), silent.local_addr().unwrap(), "");
    let started = std::time::Instant::now();
    let (code, out, err) = explain(&table);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("within 3 s"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

/// Role names no `[roles]` entry defines, and permissions none grants, are
/// warned about with "did you mean"; `--strict` refuses them.
#[test]
fn check_warns_about_names_the_roles_do_not_know() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "127.0.0.1:9", "admn");
    let text = std::fs::read_to_string(&table).unwrap()
        + "[[routes]]\nname = \"users\"\npath = \"/users/**\"\nany_of = [{ all_permissions = [\"read:usr\"] }, { any_roles = [\"admn\"] }]\n\
           [[routes]]\nname = \"m2m\"\npath = \"/sync\"\nall_permissions = [\"sync:all\"]\n\
           [roles.admin]\npermissions = [\"read:user\"]\n[roles.reader]\npermissions = [\"read:user\"]\n";
    std::fs::write(&table, &text).unwrap();
    let (code, out, err) = rolegate(&["check", "--config", s(&table)]);
    assert_eq!(code, 0, "warnings alone pass: {err}");
    let warnings: Vec<&str> = out.lines().filter(|l| l.starts_with("warning: ")).collect();
    assert_eq!(warnings.len(), 3, "one warning per name: {out}");
    assert!(warnings[0].ends_with(
        r#"routes.toml:12: route "admin": role "admn" is not defined in [roles] (did you mean "admin"?); also used by 1 other route"#
    ), "{out}");
    assert!(warnings[1].ends_with(
        r#"routes.toml:16: route "users": permission "read:usr" is not granted by any [roles] entry; tokens must carry it directly (did you mean "read:user"?)"#
    ), "{out}");
    assert!(
        warnings[2]
            .contains(r#"permission "sync:all" is not granted by any [roles] entry; tokens must carry it directly"#),
        "{out}"
    );
    let (code, _, err) = rolegate(&["check", "--strict", "--config", s(&table)]);
    assert_eq!(code, 1);
    assert!(err.contains("rolegate: ") && err.contains("3 warnings, refused by --strict"), "{err}");
    // Without a [roles] section, names come from tokens alone: nothing to warn about.
    let write_table_only = write_table(dir.path(), "127.0.0.1:9", "admn");
    let (code, out, _) = rolegate(&["check", "--strict", "--config", s(&write_table_only)]);
    assert_eq!(code, 0, "{out}");
}

/// `diff`: a bad line is named (FILE:LINE: reason), skipped and counted, never
/// the end of the run; `--fail-on` gives CI an exit code; plurals are right.
#[test]
fn diff_skips_bad_lines_and_gates_ci() {
    let dir = tempfile::tempdir().unwrap();
    let old = write_table(dir.path(), "127.0.0.1:9", "admin");
    let base = std::fs::read_to_string(&old).unwrap();
    let new = dir.path().join("new.toml");
    // The edit: "admin" no longer enough on /admin, and "ops" now let in.
    std::fs::write(&new, base.replace("all_roles = [\"admin\"]", "any_roles = [\"ops\"]")).unwrap();
    let replay = dir.path().join("replay.jsonl");
    let lines = [
        json!({"method": "GET", "path": "/admin/a", "claims": {"ts_roles": ["admin"]}}).to_string(),
        "plain text from kubectl logs".to_owned(),
        json!({"method": "GET"}).to_string(),
        json!({"method": "GET", "path": "/admin/c", "claims": "not json"}).to_string(),
        json!({"method": "GET", "path": "/admin/d", "claims": {"ts_roles": ["ops"]}}).to_string(),
    ];
    std::fs::write(&replay, lines.join("\n")).unwrap();
    let diff = |extra: &[&str]| {
        let mut args = vec!["diff", s(&old), s(&new), "--replay", s(&replay)];
        args.extend_from_slice(extra);
        rolegate(&args)
    };
    let (code, out, err) = diff(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("replay.jsonl:2: skipped: not a JSON line"), "{err}");
    assert!(err.contains("replay.jsonl:3: skipped: a request needs \"path\""), "{err}");
    assert!(err.contains("replay.jsonl:4: skipped: \"claims\" is text but not a JSON object"), "{err}");
    assert!(
        out.contains("replay.jsonl:1: GET /admin/a: 200") && out.contains("replay.jsonl:5: GET /admin/d: 403"),
        "{out}"
    );
    assert!(out.contains("2 requests replayed: 2 verdicts change (1 newly denied, 1 newly allowed)"), "{out}");
    assert!(out.contains("1 line was not JSON and skipped"), "{out}");
    assert!(out.contains("2 lines were not a request that can be replayed and skipped"), "{out}");

    let (code, _, err) = diff(&["--fail-on"]);
    assert_eq!(code, 1, "a newly allowed request fails a bare --fail-on");
    assert!(err.contains("rolegate: --fail-on=newly-allowed: 1 request newly allowed"), "{err}");
    assert_eq!(diff(&["--fail-on=any-change"]).0, 1);
    // Only a newly denied request: newly-allowed passes, any-change fails.
    std::fs::write(&replay, &lines[0]).unwrap();
    let (code, out, _) = diff(&["--fail-on"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 request replayed: 1 verdict changes (1 newly denied, 0 newly allowed)"), "{out}");
    assert_eq!(diff(&["--fail-on=newly-allowed"]).0, 0);
    let (code, _, err) = diff(&["--fail-on=any-change"]);
    assert_eq!(code, 1);
    assert!(err.contains("--fail-on=any-change: 1 verdict changed"), "{err}");
    // A table that cannot be read: 2, like diff(1)'s trouble.
    let (code, _, err) = rolegate(&["diff", "/nonexistent.toml", s(&new), "--replay", s(&replay)]);
    assert_eq!(code, 2, "{err}");
    assert_error_lines(&err);
}

/// Every flag says what it is for; `--config` is described for what it is in
/// every subcommand, and the commands that read no table refuse it.
#[test]
fn help_texts_and_config_are_right_for_every_subcommand() {
    for sub in ["run", "check", "routes", "schema", "diff", "explain", "demo", "mint", "health"] {
        let (code, out, err) = rolegate(&[sub, "--help"]);
        assert_eq!(code, 0, "{sub}: {err}");
        assert!(!out.contains("for `run`"), "{sub}: {out}");
        assert!(out.contains("The route table that `run`, `check`, `routes` and `explain` read"), "{sub}: {out}");
    }
    // Whitespace collapsed: short and long help lay a flag and its text out differently.
    let help = |sub: &str| rolegate(&[sub, "--help"]).1.split_whitespace().collect::<Vec<_>>().join(" ");
    let explain = help("explain");
    for flag in [
        "--method <METHOD> The request's method",
        "--path <PATH> The request target",
        "--host <HOST> The request's Host header",
        "--no-token Explain a request that carries no token",
    ] {
        assert!(explain.contains(flag), "{flag}: {explain}");
    }
    assert!(help("mint").contains("--kid <KID> The `kid` header"), "{}", help("mint"));
    let diff = help("diff");
    assert!(diff.contains("<OLD> The table as it is") && diff.contains("<NEW> The edited table"), "{diff}");
    let run = help("run");
    assert!(run.contains("--listen <ADDR>") && run.contains("--upstream <URL>"), "{run}");
    for args in
        [&["demo", "--config", "x.toml"][..], &["--config", "x.toml", "demo"], &["health", "--config", "x.toml"]]
    {
        let (code, out, err) = rolegate(args);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}");
        assert!(err.starts_with("rolegate: `") && err.contains("--config is refused"), "{err}");
    }
    assert!(rolegate(&["demo", "--config", "x.toml"]).2.contains("rolegate run --config FILE"));
}

/// The admin endpoints answer as soon as `admin listening on` is printed, while
/// the remote keys are still missing: `/healthz` 200, `/readyz` 503 (and
/// `health` exit 1) until the identity provider answers, then 200 (exit 0).
#[tokio::test]
async fn admin_answers_at_once_and_readiness_follows_the_remote_keys() {
    let idp = FixedServer::start(None);
    let dir = tempfile::tempdir().unwrap();
    let table = remote_table(dir.path(), idp.addr, "admin_listen = \"127.0.0.1:0\"");
    let (child, _addr, lines) = spawn(&["run", "--config", s(&table)]);
    let admin = admin_address(&lines);
    let healthz = get_within_2s(admin, "/healthz", None).await.expect("/healthz answers at once");
    assert_eq!(healthz.status, 200);
    let readyz = get_within_2s(admin, "/readyz", None).await.expect("/readyz answers at once");
    assert_eq!((readyz.status.as_u16(), &readyz.body[..]), (503, &b"waiting for remote keys\n"[..]));
    let url = format!("http://{admin}/readyz");
    let (code, _, err) = rolegate(&["health", "--url", &url]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("rolegate: {url}: 503 waiting for remote keys")), "{err}");

    *idp.body.lock().unwrap() = Some(jwks_body());
    let ready = || async move { get_within_2s(admin, "/readyz", None).await.is_some_and(|r| r.status == 200) };
    assert!(wait_until(Duration::from_secs(20), ready).await, "/readyz turns 200 once the keys are fetched");
    let (code, out, err) = rolegate(&["health", "--url", &url]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("{url}: 200 ready"));
    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());
    // Nothing listening: exit 1.
    let (code, _, err) = rolegate(&["health", "--url", &url, "--timeout-ms", "500"]);
    assert_eq!(code, 1);
    assert_error_lines(&err);
}

/// `/config` keeps the last refused reload, with its RFC 3339 time and whether
/// the table serving is newer; `/metrics` speaks 0.0.4 text unless the scraper
/// asks for OpenMetrics, with durations by route.
#[tokio::test]
async fn config_and_metrics_say_what_an_operator_needs() {
    let echo = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), &echo.addr.to_string(), "admin");
    let text = std::fs::read_to_string(&table).unwrap();
    let (child, addr, lines) = spawn(&["run", "--config", s(&table)]);
    let admin = admin_address(&lines);
    let config = || async move { get_within_2s(admin, "/config", None).await.expect("/config").json() };
    let rfc3339 = |v: &serde_json::Value| {
        let t = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
        let b = t.as_bytes();
        assert!(t.len() == 24 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && t.ends_with('Z'), "{t}");
    };
    rfc3339(&config().await["loaded_at"]);
    assert_eq!(get(addr, "/admin/x", &rs256(&claims(json!({"ts_roles": ["admin"]})))).await, 200);

    std::fs::write(&table, "[[routes]]\npath = \"/admin/**b\"\n").unwrap();
    child.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || async { config().await["reloads"]["refused"] != 0 }).await);
    let c = config().await;
    rfc3339(&c["reloads"]["last_error"]["at"]);
    assert_eq!(c["reloads"]["last_error"]["serving_table_is_newer"], false, "{c}");
    assert_eq!(c["reloads"]["last_attempt"]["result"], "refused", "{c}");

    std::fs::write(&table, &text).unwrap();
    child.signal(nix::sys::signal::Signal::SIGHUP);
    assert!(wait_until(Duration::from_secs(10), || async { config().await["generation"] != 1 }).await);
    let c = config().await;
    assert!(c["reloads"]["last_error"]["message"].as_str().unwrap().contains("routes.toml:2:"), "kept: {c}");
    assert_eq!(c["reloads"]["last_error"]["serving_table_is_newer"], true, "{c}");
    rfc3339(&c["reloads"]["last_applied_at"]);
    let attempt = &c["reloads"]["last_attempt"]["result"];
    assert!(attempt == "applied" || attempt == "unchanged", "{c}");

    let plain = get_within_2s(admin, "/metrics", None).await.unwrap();
    assert_eq!(plain.header("content-type"), Some("text/plain; version=0.0.4; charset=utf-8"));
    let body = String::from_utf8(plain.body.to_vec()).unwrap();
    assert!(!body.contains("# EOF") && body.contains("# TYPE rolegate_requests_total counter\n"), "{body}");
    assert!(body.contains("rolegate_request_duration_seconds_count{route=\"admin\"} 1\n"), "{body}");
    assert!(body.contains("rolegate_request_duration_seconds_bucket{le=\"0.005\",route=\"admin\"}"), "{body}");
    let accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5";
    let open = get_within_2s(admin, "/metrics", Some(accept)).await.unwrap();
    assert_eq!(open.header("content-type"), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    assert!(open.body.ends_with(b"# EOF\n"));
    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());
}

/// The start-up log names the table, each listener, each upstream and each
/// issuer with its key source and count; the shutdown is logged once for the
/// listener, not once per worker.
#[tokio::test]
async fn start_up_and_shutdown_logs_name_what_they_concern() {
    let dir = tempfile::tempdir().unwrap();
    let table = write_table(dir.path(), "127.0.0.1:9", "admin");
    let text = std::fs::read_to_string(&table).unwrap().replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nworkers = 2",
        1,
    ) + "[upstreams.billing]\nurl = \"http://127.0.0.1:10\"\n";
    std::fs::write(&table, text).unwrap();
    let (child, addr, lines, mut logged) =
        spawn_keeping_lines(&["run", "--log-format", "json", "--config", s(&table)], "info");
    // Stdout and stderr are read apart: wait for both the admin line and the last start-up log line.
    let seen = |logged: &[String]| {
        logged.iter().any(|l| l.starts_with("admin listening on "))
            && logged.iter().any(|l| l.contains(r#""message":"admin listening"#))
    };
    while !seen(&logged) {
        logged.push(lines.recv_timeout(Duration::from_secs(10)).expect("start-up lines"));
    }
    let admin = logged.iter().find_map(|l| l.strip_prefix("admin listening on ")).unwrap().to_owned();
    let json_lines = |lines: &[String]| -> Vec<serde_json::Value> {
        lines.iter().filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()).collect()
    };
    let start = json_lines(&logged);
    let find = |msg: &str| start.iter().filter(|l| l["message"] == msg).cloned().collect::<Vec<_>>();
    assert_eq!(find("route table loaded")[0]["config"], s(&table), "{start:#?}");
    assert_eq!(find("gateway listening")[0]["listener"], addr.to_string(), "{start:#?}");
    assert_eq!(find("gateway listening")[0]["workers"], 2, "{start:#?}");
    let admin_log = start.iter().find(|l| l["message"].as_str().unwrap_or("").starts_with("admin listening"));
    assert_eq!(admin_log.map(|l| l["listener"].clone()), Some(json!(admin)), "{start:#?}");
    let upstreams: Vec<(String, String)> = find("upstream")
        .iter()
        .map(|l| (l["name"].as_str().unwrap().to_owned(), l["url"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(
        upstreams,
        [
            ("billing".to_owned(), "http://127.0.0.1:10".to_owned()),
            ("default".to_owned(), "http://127.0.0.1:9".to_owned())
        ]
    );
    let issuer = &find("issuer")[0];
    assert_eq!(
        (issuer["issuer"].as_str(), issuer["source"].as_str(), issuer["keys"].as_u64()),
        (Some(ISS), Some("keys rsa.pub.pem"), Some(1))
    );

    child.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(child.exit_status().await.success());
    logged = lines.iter().collect();
    let stop = json_lines(&logged);
    let named =
        |msg: &str| stop.iter().filter(|l| l["message"].as_str().unwrap_or("").starts_with(msg)).collect::<Vec<_>>();
    let shutting = named("shutting down");
    assert_eq!(shutting.len(), 1, "once, not once per worker: {stop:#?}");
    assert_eq!(shutting[0]["listener"], addr.to_string());
    let closed = named("all connections closed");
    assert_eq!(closed.len(), 1, "{stop:#?}");
    assert_eq!(closed[0]["listener"], addr.to_string());
}
