//! The decision API, asked directly: an Envoy `ext_authz` HTTP check in its
//! documented shape, the nginx and forwarded dialects, who may ask, checks
//! naming two requests or none, the same stages, metrics and identity
//! headers as a proxied request, settings read at start, config errors, and
//! the real binary serving it. Nothing is ever forwarded.

mod support;

use serde_json::json;
use support::authz::{authz_routes, metric, AuthzServer};
use support::*;

/// An issuer whose keys are never there (its key URL is a closed port).
const REMOTE_ISSUER: &str = "[[issuers]]\nissuer = \"https://remote.test\"\njwks_url = \"http://{dead}/jwks.json\"\n";

async fn start(extra: &str) -> (TestGateway, AuthzServer) {
    let gw = TestGateway::with_routes(&authz_routes(extra)).await;
    let authz = AuthzServer::start(&gw).await;
    (gw, authz)
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn reader() -> String {
    rs256(&claims(json!({"ts_roles": ["reader"]})))
}

/// Envoy's HTTP `ext_authz` check: the original method on the check's
/// request line, the original path after `path_prefix`, the original
/// `Host` (`:authority`) and `Authorization`, `Content-Length: 0`, and the
/// headers Envoy adds itself.
#[tokio::test]
async fn envoy_ext_authz_http_check_in_its_documented_shape() {
    let (gw, authz) = start("").await;
    let token = bearer(&reader());
    let envoy = |auth: &str| -> Vec<(&str, String)> {
        vec![
            ("host", "api.test".into()),
            ("authorization", auth.to_owned()),
            ("content-length", "0".into()),
            ("x-envoy-expected-rq-timeout-ms", "500".into()),
            ("x-forwarded-proto", "http".into()),
            ("x-request-id", "6c7b2b52-envoy".into()),
        ]
    };
    let send = |method: &'static str, path: &'static str, headers: Vec<(&'static str, String)>| {
        let authz = &authz;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            authz.check(method, path, &h).await
        }
    };
    let ok = send("GET", "/ext_authz/v1/users/7?page=2", envoy(&token)).await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(ok.header("x-auth-subject"), Some("user-1"));
    assert_eq!(ok.header("x-auth-tenant"), Some("acme"));
    assert_eq!(ok.header("x-auth-roles"), Some("reader"));
    assert_eq!(ok.header("x-auth-permissions"), Some("read:user"));
    assert_eq!(ok.header("x-rolegate-path"), Some("/v1/users/7"));
    assert_eq!(ok.header("x-request-id"), Some("6c7b2b52-envoy"), "Envoy's request id is kept");
    assert_eq!(ok.header("x-envoy-auth-headers-to-remove"), None, "every identity header has a value");
    assert!(ok.body.is_empty());
    // An identity without roles: Envoy is told to remove a client's copies of the unset headers.
    let bare = bearer(&rs256(&claims(json!({}))));
    let me = send("GET", "/ext_authz/me", envoy(&bare)).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.header("x-envoy-auth-headers-to-remove"), Some("x-auth-permissions,x-auth-roles"));
    assert_eq!(me.header("x-auth-roles"), None);
    // Refusals: status, WWW-Authenticate and JSON body, as the proxy answers them.
    let denied = send("DELETE", "/ext_authz/v1/users/7", envoy(&token)).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.header("www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"delete:user\""));
    assert_eq!(denied.json()["error"], "insufficient_scope");
    assert_eq!(denied.header("x-rolegate-error"), None, "Envoy hands the body to the client itself");
    let anonymous = send("GET", "/ext_authz/admin/x", envoy("")).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer realm=\"rolegate\""));
    assert_eq!(send("POST", "/ext_authz/v1/users/7", envoy(&token)).await.status, 404);
    let head = send("HEAD", "/ext_authz/docs/guide", envoy("")).await;
    assert_eq!((head.status.as_u16(), head.header("x-rolegate-path")), (200, Some("/docs/guide")));
    // Host-bound routes see the original host.
    let admin = bearer(&rs256(&claims(json!({"ts_roles": ["admin"]}))));
    let mut vip = envoy(&admin);
    vip[0].1 = "VIP.example.com:443".into();
    assert_eq!(send("GET", "/ext_authz/vip", vip).await.status, 200);
    assert_eq!(send("GET", "/ext_authz/vip", envoy(&admin)).await.status, 404);
    // The prefix must be followed by the original path.
    assert_eq!(send("GET", "/ext_authzadmin", envoy(&admin)).await.status, 400);
    assert!(gw.upstream_saw().is_empty(), "a check forwards nothing");
}

/// nginx's and the forwarded dialect's headers, and the host each reads.
#[tokio::test]
async fn nginx_and_forwarded_checks_are_decided_on_the_original_request() {
    let (gw, authz) = start("").await;
    let token = bearer(&reader());
    let admin = bearer(&rs256(&claims(json!({"ts_roles": ["admin"]}))));
    let nginx = authz
        .check(
            "GET",
            "/_rolegate_check",
            &[
                ("x-original-method", "GET"),
                ("x-original-uri", "/v1/users/%37?a=b"),
                ("x-forwarded-host", "api.test"),
                ("authorization", &token),
            ],
        )
        .await;
    assert_eq!((nginx.status.as_u16(), nginx.header("x-rolegate-path")), (200, Some("/v1/users/7")));
    assert_eq!(nginx.header("x-auth-roles"), Some("reader"));
    // ingress-nginx: the full URL names the host.
    let ingress =
        [("x-original-method", "GET"), ("x-original-url", "https://vip.example.com/vip"), ("authorization", &admin)];
    assert_eq!(authz.check("GET", "/check", &ingress).await.status, 200);
    let ingress = [("x-original-method", "GET"), ("x-original-url", "https://api.test/vip"), ("authorization", &admin)];
    assert_eq!(authz.check("GET", "/check", &ingress).await.status, 404);
    // Caddy / Traefik.
    let forwarded = [
        ("x-forwarded-method", "DELETE"),
        ("x-forwarded-uri", "/v1/users/7"),
        ("x-forwarded-host", "api.test"),
        ("x-forwarded-proto", "https"),
        ("authorization", &token),
    ];
    let refused = authz.check("GET", "/check", &forwarded).await;
    assert_eq!(refused.status, 403);
    // nginx's auth_request passes no body: the refusal repeats it in a header (only for nginx).
    assert_eq!(refused.header("x-rolegate-error"), None);
    let nginx_refused = authz
        .check(
            "GET",
            "/check",
            &[("x-original-method", "DELETE"), ("x-original-uri", "/v1/users/7"), ("authorization", &token)],
        )
        .await;
    assert_eq!(nginx_refused.status, 403);
    assert_eq!(nginx_refused.header("x-rolegate-error").map(str::as_bytes), Some(&nginx_refused.body[..]));
    let vip = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/vip"),
        ("x-forwarded-host", "vip.example.com"),
        ("authorization", &admin),
    ];
    assert_eq!(authz.check("GET", "/", &vip).await.status, 200);
    // Without X-Forwarded-Host, the check's own Host (Caddy keeps the original's).
    let by_host = [
        ("x-forwarded-method", "GET"),
        ("x-forwarded-uri", "/vip"),
        ("host", "vip.example.com"),
        ("authorization", &admin),
    ];
    assert_eq!(authz.check("GET", "/", &by_host).await.status, 200);
    assert!(gw.upstream_saw().is_empty());
}

/// The original URI goes through the proxy's normalizer: what is ambiguous
/// is refused, dot segments and escapes are resolved before matching, and
/// the answer names the path decided on.
#[tokio::test]
async fn the_original_uri_is_normalized_as_a_proxied_target() {
    let (gw, authz) = start("").await;
    let token = bearer(&reader());
    let ask = |uri: &'static str| {
        let (authz, token) = (&authz, token.clone());
        async move {
            authz
                .check(
                    "GET",
                    "/",
                    &[("x-forwarded-method", "GET"), ("x-forwarded-uri", uri), ("authorization", &token)],
                )
                .await
        }
    };
    for refused in [
        "/docs/..%2Fadmin/x",
        "/docs/%252e%252e/admin/x",
        "/docs/..;/admin/x",
        "/docs/%2e%2e%3b/admin",
        "/../admin/x",
        "/a%00b",
    ] {
        let r = ask(refused).await;
        assert_eq!(r.status, 400, "{refused}");
        assert_eq!(r.json()["error"], "bad_request");
    }
    for denied in [
        "/docs/../admin/x",
        "/docs/%2e%2e/admin/x",
        "/docs/%2E%2e/admin/x",
        "//admin/x",
        "/docs//..//admin/x",
        "/%61dmin/x",
    ] {
        assert_eq!(ask(denied).await.status, 403, "{denied} is /admin/x");
    }
    let allowed = ask("/admin/../v1/users/%2e/7?q=%2F").await;
    assert_eq!((allowed.status.as_u16(), allowed.header("x-rolegate-path")), (200, Some("/v1/users/7")));
    assert!(gw.upstream_saw().is_empty());
}

/// A check from a peer outside `trusted_peers` is refused, whatever it names,
/// and counted.
#[tokio::test]
async fn a_forged_original_uri_from_an_untrusted_peer_is_refused_and_counted() {
    let (gw, authz) = start("trusted_peers = [\"10.0.0.0/8\"]").await;
    let forged = [("x-original-method", "GET"), ("x-original-uri", "/docs/a")];
    let r = authz.check("GET", "/check", &forged).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"], "bad_request");
    assert!(r.json()["message"].as_str().unwrap().contains("trusted peer"), "{:?}", r.json());
    assert_eq!(authz.check("GET", "/ext_authz/docs/a", &[]).await.status, 400);
    assert_eq!(metric(&gw, r#"rolegate_authz_refused_total{reason="untrusted_peer"}"#), 2.0);
    assert_eq!(metric(&gw, r#"rolegate_requests_total{route="(none)",decision="bad_request",status="400"}"#), 2.0);
    assert!(gw.upstream_saw().is_empty());
}

/// A check whose headers name two different URIs, methods or hosts — a
/// client's copy of another dialect passed through — is a 400 whichever
/// dialect is configured; so is one naming no original request.
#[tokio::test]
async fn conflicting_or_missing_originals_are_refused_whichever_dialect_is_configured() {
    // How many of the five checks below each dialect finds conflicting (the
    // rest name no original request it reads).
    for (dialect, conflicts) in [("auto", 4.0), ("nginx", 3.0), ("forwarded", 3.0), ("envoy", 2.0)] {
        let (gw, authz) = start(&format!("dialect = \"{dialect}\"")).await;
        let both = [
            ("x-original-method", "GET"),
            ("x-original-uri", "/docs/a"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-uri", "/admin/x"),
        ];
        let methods = [
            ("x-original-method", "GET"),
            ("x-original-uri", "/docs/a"),
            ("x-forwarded-method", "DELETE"),
            ("x-forwarded-uri", "/docs/a"),
        ];
        for (target, headers) in [("/", &both[..]), ("/ext_authz/docs/a", &both[..]), ("/", &methods[..])] {
            let r = authz.check("GET", target, headers).await;
            assert_eq!(r.status, 400, "{dialect}: {target} {headers:?}");
        }
        let envoy_and_copy = authz.check("GET", "/ext_authz/admin/x", &[("x-original-uri", "/docs/a")]).await;
        assert_eq!(envoy_and_copy.status, 400, "{dialect}");
        assert_eq!(authz.check("GET", "/check", &[("host", "api.test")]).await.status, 400, "{dialect}");
        let conflicting = metric(&gw, r#"rolegate_authz_refused_total{reason="conflicting_original"}"#);
        let missing = metric(&gw, r#"rolegate_authz_refused_total{reason="missing_original"}"#);
        assert_eq!((conflicting, missing), (conflicts, 5.0 - conflicts), "{dialect}");
        assert!(gw.upstream_saw().is_empty());
    }
}

/// A fixed dialect reads only its own headers; `auto` reads any.
#[tokio::test]
async fn a_fixed_dialect_reads_only_its_own_headers() {
    let nginx = [("x-original-method", "GET"), ("x-original-uri", "/docs/a")];
    let forwarded = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/docs/a")];
    let cases: [(&str, [u16; 3]); 4] = [
        ("auto", [200, 200, 200]),
        ("nginx", [200, 400, 400]),
        ("forwarded", [400, 200, 400]),
        ("envoy", [400, 400, 200]),
    ];
    for (dialect, want) in cases {
        let (gw, authz) = start(&format!("dialect = \"{dialect}\"")).await;
        let got = [
            authz.check("GET", "/check", &nginx).await.status.as_u16(),
            authz.check("GET", "/check", &forwarded).await.status.as_u16(),
            authz.check("GET", "/ext_authz/docs/a", &[]).await.status.as_u16(),
        ];
        assert_eq!(got, want, "{dialect}");
        let refused = want.iter().filter(|s| **s == 400).count() as f64;
        assert_eq!(metric(&gw, r#"rolegate_authz_refused_total{reason="missing_original"}"#), refused, "{dialect}");
    }
}

#[tokio::test]
async fn malformed_originals_are_refused() {
    let (gw, authz) = start("").await;
    for headers in [
        &[("x-original-method", "G(T"), ("x-original-uri", "/docs/a")][..],
        &[("x-original-method", "GET"), ("x-original-uri", "docs/a")],
        &[("x-original-method", "GET"), ("x-original-url", "ftp://h/docs/a")],
        &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/docs/a"), ("x-forwarded-host", "a.test, b.test")],
    ] {
        assert_eq!(authz.check("GET", "/", headers).await.status, 400, "{headers:?}");
    }
    assert_eq!(metric(&gw, r#"rolegate_authz_refused_total{reason="bad_original"}"#), 4.0);
    // CONNECT is refused by the normalizer, as on the proxy listener.
    let connect = authz.check("GET", "/", &[("x-original-method", "CONNECT"), ("x-original-uri", "/docs/a")]).await;
    assert_eq!(connect.status, 400);
}

/// The identity headers of an allow are exactly those the proxy sends the
/// upstream for the same token (made by the same code, once per identity).
#[tokio::test]
async fn an_allow_carries_the_identity_headers_the_proxy_would_forward() {
    let (gw, authz) = start("").await;
    let tokens = [
        reader(),
        rs256(&claims(json!({"ts_roles": ["admin", "reader"], "sub": "ädmin ünïcode"}))),
        rs256(&claims(json!({"tid": null, "ts_roles": ["reader"]}))),
        rs256(&claims(json!({"ts_permissions": ["read:user", "x:y"]}))),
    ];
    for token in &tokens {
        let proxied = gw.send("GET", "/v1/users/7", Some(token)).await;
        assert_eq!(proxied.status, 200);
        let seen = gw.upstream_saw().pop().unwrap();
        let auth = bearer(token);
        let check = authz
            .check(
                "GET",
                "/",
                &[("x-original-method", "GET"), ("x-original-uri", "/v1/users/7"), ("authorization", &auth)],
            )
            .await;
        assert_eq!(check.status, 200);
        for name in ["x-auth-subject", "x-auth-tenant", "x-auth-roles", "x-auth-permissions"] {
            let answered = check.headers.get(name).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            assert_eq!(answered.as_deref(), seen.header(name), "{name}");
        }
    }
    assert_eq!(gw.upstream_saw().len(), tokens.len(), "only the proxied requests reached the upstream");
}

/// A check is counted like a proxied request (same labels), its token is
/// verified once and then served from the token cache, and report-mode
/// routes answer allow while recording the would-be denial.
#[tokio::test]
async fn checks_are_counted_cached_and_reported_like_proxied_requests() {
    let (gw, authz) = start("").await;
    let token = bearer(&reader());
    let expired = bearer(&rs256(&claims(json!({"exp": 1000, "ts_roles": ["reader"]}))));
    let ask = |method: &'static str, uri: &'static str, auth: String| {
        let authz = &authz;
        async move {
            authz
                .check("GET", "/", &[("x-original-method", method), ("x-original-uri", uri), ("authorization", &auth)])
                .await
        }
    };
    for _ in 0..3 {
        assert_eq!(ask("GET", "/v1/users/1", token.clone()).await.status, 200);
    }
    assert_eq!(gw.shared.load().token_cache.as_ref().unwrap().len(), 1, "verified once, then from the cache");
    assert_eq!(ask("DELETE", "/v1/users/1", token.clone()).await.status, 403);
    assert_eq!(ask("GET", "/v1/users/1", expired).await.status, 401);
    assert_eq!(ask("GET", "/nope", token.clone()).await.status, 404);
    let shadow = ask("GET", "/shadow/x", token.clone()).await;
    assert_eq!(shadow.status, 200, "report mode answers allow");
    assert_eq!(shadow.header("x-auth-roles"), Some("reader"));
    let series = |route: &str, decision: &str, status: u16| {
        metric(
            &gw,
            &format!("rolegate_requests_total{{route=\"{route}\",decision=\"{decision}\",status=\"{status}\"}}"),
        )
    };
    assert_eq!(series("read users", "allow", 200), 3.0);
    assert_eq!(series("delete users", "deny_403", 403), 1.0);
    assert_eq!(series("read users", "deny_401", 401), 1.0);
    assert_eq!(series("(none)", "no_route", 404), 1.0);
    assert_eq!(series("shadow", "report_only", 200), 1.0);
    assert_eq!(metric(&gw, r#"rolegate_token_failures_total{reason="expired"}"#), 1.0);
    assert_eq!(metric(&gw, r#"rolegate_request_duration_seconds_count{route="read users"}"#), 4.0);
    assert!(gw.upstream_saw().is_empty());
}

/// The issuer has no keys yet: 503 with `Retry-After`, as the proxy answers
/// (never 401, never allow); a check head over `max_header_bytes`: 431.
#[tokio::test]
async fn keys_unavailable_and_oversized_heads_get_the_proxys_answers() {
    let gw = TestGateway::with_routes(&format!(
        "{}{REMOTE_ISSUER}",
        authz_routes("").replace(
            "listen = \"127.0.0.1:0\"\n\n[upstreams",
            "listen = \"127.0.0.1:0\"\nmax_header_bytes = 8192\n\n[upstreams"
        )
    ))
    .await;
    assert_eq!(gw.shared.load().server.max_header_bytes, 8192);
    let authz = AuthzServer::start(&gw).await;
    let token = bearer(&rs256(&claims(json!({"iss": "https://remote.test", "ts_roles": ["admin"]}))));
    let shadow = [("x-original-method", "GET"), ("x-original-uri", "/shadow/x"), ("authorization", token.as_str())];
    let r = authz.check("GET", "/", &shadow).await;
    assert_eq!(r.status, 503, "report mode too");
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["error"], "keys_unavailable");
    let big = "a".repeat(7000);
    let r = authz
        .check(
            "GET",
            "/",
            &[("x-original-method", "GET"), ("x-original-uri", "/docs/a"), ("x-pad", &big), ("x-pad2", &big)],
        )
        .await;
    assert_eq!(r.status, 431);
    assert!(gw.upstream_saw().is_empty());
}

/// `[authz]` is read at start: a reload that changes it does not change the
/// decision API's settings (it warns that a restart is needed).
#[tokio::test]
async fn authz_settings_are_read_at_start() {
    let (gw, authz) = start("").await;
    let nginx = [("x-original-method", "GET"), ("x-original-uri", "/docs/a")];
    assert_eq!(authz.check("GET", "/", &nginx).await.status, 200);
    let text = std::fs::read_to_string(&gw.config).unwrap().replace(
        "[authz]\nlisten = \"127.0.0.1:0\"\n",
        "[authz]\nlisten = \"127.0.0.1:0\"\ntrusted_peers = [\"10.0.0.0/8\"]\n",
    );
    std::fs::write(&gw.config, text).unwrap();
    let reloader = rolegate::reload::Reloader::new(gw.shared.clone(), gw.config.clone());
    let outcome = tokio::task::spawn_blocking(move || reloader.reload(true)).await.unwrap();
    assert!(matches!(outcome, rolegate::reload::Outcome::Applied(2)), "{outcome:?}");
    let serving = gw.shared.load();
    assert_eq!(serving.authz.as_ref().unwrap().trusted_peers, vec!["10.0.0.0/8".parse::<ipnet::IpNet>().unwrap()]);
    assert_eq!(authz.check("GET", "/", &nginx).await.status, 200, "the start-up settings still apply");
}

#[test]
fn authz_config_is_checked_with_file_lines() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let load = |authz: &str| {
        let text = format!("[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:9901\"\n[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n[authz]\n{authz}\n");
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, text).unwrap();
        rolegate::config::load(&path, None)
    };
    let err = |authz: &str| load(authz).map(|_| ()).unwrap_err().to_string();
    let defaults = load("listen = \"127.0.0.1:9191\"").unwrap().authz.unwrap();
    assert_eq!(defaults.listen, "127.0.0.1:9191".parse().unwrap());
    assert_eq!(defaults.envoy_path_prefix.as_ref(), "/ext_authz");
    assert_eq!(defaults.dialect, rolegate::snapshot::Dialect::Auto);
    let loopback: Vec<ipnet::IpNet> = vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
    assert_eq!(defaults.trusted_peers, loopback);
    let set = load("listen = \"127.0.0.1:9191\"\ntrusted_peers = [\"10.1.0.0/16\", \"192.168.1.7\"]\nenvoy_path_prefix = \"/authz/check\"\ndialect = \"envoy\"").unwrap();
    let set = set.authz.unwrap();
    assert_eq!(set.trusted_peers.len(), 2);
    assert_eq!((set.envoy_path_prefix.as_ref(), set.dialect), ("/authz/check", rolegate::snapshot::Dialect::Envoy));
    let e = err("listen = \"nowhere\"");
    assert!(e.contains("routes.toml:7") && e.contains("[authz] listen"), "{e}");
    let e = err("listen = \"127.0.0.1:8080\"");
    assert!(e.contains("is [server] listen"), "{e}");
    let e = err("listen = \"127.0.0.1:9901\"");
    assert!(e.contains("is [server] admin_listen"), "{e}");
    let e = err("listen = \"127.0.0.1:9191\"\ntrusted_peers = [\"10.0.0.0/33\"]");
    assert!(e.contains("routes.toml:8") && e.contains("trusted_peers"), "{e}");
    for prefix in ["\"\"", "\"/\"", "\"ext_authz\"", "\"/ext_authz/\"", "\"/a?b\"", "\"/a%2F\""] {
        let e = err(&format!("listen = \"127.0.0.1:9191\"\nenvoy_path_prefix = {prefix}"));
        assert!(e.contains("envoy_path_prefix"), "{prefix}: {e}");
    }
    let e = err("listen = \"127.0.0.1:9191\"\ndialect = \"caddy\"");
    assert!(e.contains("auto") && e.contains("forwarded"), "{e}");
    let e = err("listen = \"127.0.0.1:9191\"\ntrusted_proxies = []");
    assert!(e.contains("trusted_proxies"), "{e}");
    let warned = load("listen = \"127.0.0.1:9191\"\ntrusted_peers = []").unwrap();
    assert!(warned.warnings.iter().any(|w| w.contains("every check is refused")), "{:?}", warned.warnings);
    assert!(load("").is_err(), "[authz] needs listen");
}

/// The binary: `run` serves the decision API on its own listener (`authz
/// listening on ADDR`), writes the access-log line of a check with its
/// dialect, and shuts it down gracefully on SIGTERM.
#[tokio::test]
async fn run_serves_the_decision_api_and_stops_on_sigterm() {
    use support::bin::*;
    let dir = tempfile::tempdir().unwrap();
    let upstream = rolegate::echo::Echo::start(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()).unwrap();
    let path = write_table(dir.path(), &upstream.addr.to_string(), "admin");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}\n[authz]\nlisten = \"127.0.0.1:0\"\n")).unwrap();
    // stderr is a pipe: the log is JSON.
    let (proc, proxy, lines) = spawn_logging(&["run", "--config", path.to_str().unwrap()], "info");
    let (line, _) = wait_for_line(&lines, |l| l.starts_with("authz listening on "));
    let authz: std::net::SocketAddr = line["authz listening on ".len()..].parse().unwrap();
    assert_ne!(authz, proxy);
    let admin = bearer(&rs256(&claims(json!({"ts_roles": ["admin"]}))));
    let ok = support::authz::request(
        authz,
        "GET",
        "/",
        &[("x-original-method", "GET"), ("x-original-uri", "/admin/x"), ("authorization", &admin)],
    )
    .await;
    assert_eq!(ok.status, 200);
    let (access, _) = wait_for_line(&lines, |l| l.contains("\"message\":\"access\""));
    let access: serde_json::Value = serde_json::from_str(&access).unwrap();
    assert_eq!(
        (&access["authz"], &access["route"], &access["decision"], &access["path"], &access["upstream"]),
        (&json!("nginx"), &json!("admin"), &json!("allow"), &json!("/admin/x"), &json!("-"))
    );
    // The decision API is not the proxy: the same request on it is a check naming nothing.
    let on_proxy = support::authz::request(proxy, "GET", "/ext_authz/admin/x", &[("authorization", &admin)]).await;
    assert_eq!(on_proxy.status, 404, "the proxy listener answers no checks");
    assert!(upstream.requests().is_empty(), "nothing was forwarded");
    proc.signal(nix::sys::signal::Signal::SIGTERM);
    wait_for_line(&lines, |l| l.contains("authz: all connections closed"));
    assert!(proc.exit_status().await.success());
}

/// The README's ready-to-paste configurations are the files of
/// `deploy/authz/` (the nginx and Caddy ones run by `tests/authz_proxies.rs`).
#[test]
fn the_readme_shows_the_snippets_of_deploy_authz() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let files = ["nginx.conf", "Caddyfile", "traefik.yml", "envoy.yaml", "ingress-nginx.yaml"];
    for file in files {
        let text = std::fs::read_to_string(root.join("deploy/authz").join(file)).unwrap();
        assert!(
            readme.contains(&format!("\n{}\n```\n", text.trim_end())),
            "README does not show deploy/authz/{file} as it is"
        );
    }
    let listed = std::fs::read_dir(root.join("deploy/authz")).unwrap().count();
    assert_eq!(listed, files.len(), "every file of deploy/authz is in the README");
}
