//! The decision API behind real proxies: Debian's nginx (`auth_request`)
//! and Caddy (`forward_auth`), started on 127.0.0.1 with the configurations
//! of `deploy/authz/` (the README's snippets), in front of the echo upstream
//! and asking rolegate's decision endpoint. Every case runs through both.
//!
//! Without nginx or caddy on the machine a test prints `SKIPPED: …` and
//! passes, but under `CI` it fails (`.ci/run` installs them).

mod support;

use std::net::SocketAddr;

use serde_json::json;
use support::authz::{authz_routes, caddy, metric, nginx, request, AuthzServer, Front};
use support::*;

/// An issuer whose keys are never there (its key URL is a closed port).
const REMOTE_ISSUER: &str = "[[issuers]]\nissuer = \"https://remote.test\"\njwks_url = \"http://{dead}/jwks.json\"\n";

/// The gateway's table and decision endpoint, and the proxy in front.
struct Stack {
    gw: TestGateway,
    _authz: AuthzServer,
    front: Front,
}

#[derive(Clone, Copy)]
enum Proxy {
    Nginx,
    Caddy,
}

impl Stack {
    async fn start(proxy: Proxy) -> Option<Stack> {
        let gw = TestGateway::with_routes(&format!("{}{REMOTE_ISSUER}", authz_routes(""))).await;
        let authz = AuthzServer::start(&gw).await;
        let front = match proxy {
            Proxy::Nginx => nginx(authz.addr, gw.echo.addr).await?,
            Proxy::Caddy => caddy(authz.addr, gw.echo.addr).await?,
        };
        Some(Stack { gw, _authz: authz, front })
    }

    fn addr(&self) -> SocketAddr {
        self.front.addr
    }

    async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        self.send("GET", target, headers).await
    }

    async fn send(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr(), method, target, headers).await
    }

    /// The requests the upstream received since the last call.
    fn upstream_took(&self) -> Vec<rolegate::echo::Seen> {
        let seen = self.gw.upstream_saw();
        self.gw.echo.seen.lock().unwrap().clear();
        seen
    }

    fn context(&self) -> String {
        format!("{} log:\n{}", self.front.name, self.front.log())
    }
}

/// Percent-decoded (for comparing paths that may differ only in escapes).
fn decoded(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match (b[i], b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok())) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bearer(claims_extra: serde_json::Value) -> String {
    format!("Bearer {}", rs256(&claims(claims_extra)))
}

/// A reader reads a user: 200 from the upstream, which gets the identity
/// headers of rolegate's answer (never a client's forged copies), the path
/// rolegate decided on, and none of the override or other-dialect headers.
async fn allow_with_identity_headers(s: &Stack) {
    let reader = bearer(json!({"ts_roles": ["reader"]}));
    let r = s
        .get(
            "/v1/users/%37?page=2",
            &[
                ("authorization", &reader),
                ("x-auth-roles", "admin"),
                ("x-auth-subject", "someone-else"),
                // The other dialect's headers, as a client would send them to either proxy.
                ("x-original-uri", "/docs/anything"),
                ("x-original-method", "DELETE"),
                ("x-forwarded-uri", "/docs/anything"),
                ("x-forwarded-method", "DELETE"),
                ("x-http-method-override", "DELETE"),
                ("x-rolegate-path", "/admin"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{:?}\n{}", r.body, s.context());
    let seen = s.upstream_took();
    assert_eq!(seen.len(), 1);
    let up = &seen[0];
    // The decided path; Caddy keeps a client's spelling of it that decodes the same.
    assert_eq!((up.method.as_str(), decoded(&up.path_and_query).as_str()), ("GET", "/v1/users/7?page=2"));
    if s.front.name == "nginx" {
        assert_eq!(up.path_and_query, "/v1/users/7?page=2", "nginx forwards x-rolegate-path as it is");
    }
    assert_eq!(up.header("x-auth-subject"), Some("user-1"));
    assert_eq!(up.header("x-auth-tenant"), Some("acme"));
    assert_eq!(up.header("x-auth-roles"), Some("reader"));
    assert_eq!(up.header("x-auth-permissions"), Some("read:user"));
    for gone in [
        "x-original-uri",
        "x-original-method",
        "x-forwarded-uri",
        "x-forwarded-method",
        "x-http-method-override",
        "x-rolegate-path",
    ] {
        assert_eq!(up.header(gone), None, "{gone} reached the upstream");
    }
    // An identity header with no value for this caller is not sent, whatever the client sent.
    let bare = bearer(json!({"tid": null}));
    let r = s.get("/me", &[("authorization", &bare), ("x-auth-roles", "admin"), ("x-auth-tenant", "other")]).await;
    assert_eq!(r.status, 200, "{}", s.context());
    let up = s.upstream_took().pop().unwrap();
    assert_eq!((up.header("x-auth-roles"), up.header("x-auth-tenant")), (None, None));
    assert_eq!(up.header("x-auth-subject"), Some("user-1"));
}

/// 401, 403, 404, 400, 503 reach the client as rolegate answers them:
/// status, `WWW-Authenticate`, `Retry-After` and the JSON body.
async fn refusals_reach_the_client(s: &Stack) {
    let reader = bearer(json!({"ts_roles": ["reader"]}));
    let r = s.get("/v1/users/7", &[]).await;
    assert_eq!(r.status, 401, "{}", s.context());
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"rolegate\""));
    assert_eq!(r.json()["error"], "missing_token");
    let r = s.get("/v1/users/7", &[("authorization", "Bearer not.a.token")]).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().starts_with("Bearer error=\"invalid_token\""), "{:?}", r.headers);
    let r = s.send("DELETE", "/v1/users/7", &[("authorization", &reader)]).await;
    assert_eq!(r.status, 403, "{}", s.context());
    assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"delete:user\""));
    assert_eq!(r.json()["error"], "insufficient_scope");
    let r = s.get("/nothing/here", &[("authorization", &reader)]).await;
    assert_eq!(r.status, 404, "{}", s.context());
    assert_eq!(r.json()["error"], "no_route");
    let r = s.get("/docs/a%2Fb", &[]).await;
    assert_eq!(r.status, 400, "{}", s.context());
    assert_eq!(r.json()["error"], "bad_request");
    let remote = bearer(json!({"iss": "https://remote.test"}));
    let r = s.get("/me", &[("authorization", &remote)]).await;
    assert_eq!(r.status, 503, "{}", s.context());
    assert_eq!(r.header("retry-after"), Some("5"));
    assert_eq!(r.json()["error"], "keys_unavailable");
    assert!(s.upstream_took().is_empty(), "a refused request is never forwarded");
}

/// A public route (no token, and a bad one ignored), tenant binding, a
/// host-bound route, and a report-mode route that answers allow and records
/// the would-be denial.
async fn public_tenant_host_and_report_routes(s: &Stack) {
    for headers in [&[][..], &[("authorization", "Bearer garbage")]] {
        let r = s.get("/docs/guide", headers).await;
        assert_eq!(r.status, 200, "{}", s.context());
        let up = s.upstream_took().pop().unwrap();
        assert_eq!(up.header("x-auth-subject"), None, "no identity on a public route");
    }
    let admin = bearer(json!({"ts_roles": ["admin"], "tid": "acme"}));
    assert_eq!(s.get("/v1/tenants/acme/projects", &[("authorization", &admin)]).await.status, 200);
    assert_eq!(s.upstream_took().len(), 1);
    let other = s.get("/v1/tenants/globex/projects", &[("authorization", &admin)]).await;
    assert_eq!(other.status, 403, "another tenant");
    assert!(s.upstream_took().is_empty());
    // The original Host reaches the decision (X-Forwarded-Host).
    assert_eq!(s.get("/vip", &[("authorization", &admin), ("host", "vip.example.com")]).await.status, 200);
    assert_eq!(s.get("/vip", &[("authorization", &admin), ("host", "api.example.com")]).await.status, 404);
    s.upstream_took();
    let before = metric(&s.gw, r#"rolegate_requests_total{route="shadow",decision="report_only",status="200"}"#);
    let reader = bearer(json!({"ts_roles": ["reader"]}));
    let r = s.get("/shadow/report", &[("authorization", &reader)]).await;
    assert_eq!(r.status, 200, "report mode lets it through");
    assert_eq!(s.upstream_took().pop().unwrap().path_and_query, "/shadow/report");
    let after = metric(&s.gw, r#"rolegate_requests_total{route="shadow",decision="report_only",status="200"}"#);
    assert_eq!(after, before + 1.0, "the would-be denial is recorded");
}

/// Path tricks sent to the proxy never give an allow for a path the table
/// denies, whatever the proxy does with them before it asks: each is refused
/// (by the proxy itself or by rolegate) and nothing reaches the upstream.
/// A trick that resolves to an allowed path reaches the upstream as that path.
async fn path_tricks_never_allow_a_denied_path(s: &Stack) {
    let reader = format!("Authorization: Bearer {}\r\n", rs256(&claims(json!({"ts_roles": ["reader"]}))));
    let tricks = [
        "/docs/../admin/x",
        "/docs/%2e%2e/admin/x",
        "/docs/%2E%2e/admin/x",
        "/docs/.%2e/admin/x",
        "/docs/..%2Fadmin/x",
        "/docs/%2e%2e%2fadmin/x",
        "/docs/..%2fadmin/x",
        "//admin/x",
        "/docs//..//admin/x",
        "/docs/%252e%252e/admin/x",
        "/docs/%252e%252e%252fadmin/x",
        "/docs/%25%32%65%25%32%65/admin/x",
        "/docs/..;/admin/x",
        "/docs/..%3B/admin/x",
        "/docs/..\\admin/x",
        "/docs/%5c../admin/x",
        "/%61dmin/x",
        "/docs/%2e%2e/%2e%2e/admin/x",
    ];
    for trick in tricks {
        for auth in ["", reader.as_str()] {
            let req = format!("GET {trick} HTTP/1.1\r\nHost: api.test\r\n{auth}Connection: close\r\n\r\n");
            let (status, text) = raw(s.addr(), req.as_bytes()).await;
            assert!(
                matches!(status, 400 | 401 | 403 | 404),
                "{} {trick} ({}) answered {status}:\n{text}\n{}",
                s.front.name,
                if auth.is_empty() { "no token" } else { "reader" },
                s.context()
            );
        }
        let took = s.upstream_took();
        assert!(took.is_empty(), "{trick} reached the upstream: {took:?}");
    }
    // Resolving to an allowed path: the upstream gets that path.
    let req =
        format!("GET /v1/users/%2e%2e/%2e%2e/docs/a HTTP/1.1\r\nHost: api.test\r\n{reader}Connection: close\r\n\r\n");
    let (status, text) = raw(s.addr(), req.as_bytes()).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(s.upstream_took().pop().unwrap().path_and_query, "/docs/a");
}

/// A client's copy of the proxy's own or the other dialect's headers never
/// changes the method or path decided on.
async fn client_copies_of_dialect_headers_change_nothing(s: &Stack) {
    let reader = bearer(json!({"ts_roles": ["reader"]}));
    let forged = [
        ("authorization", reader.as_str()),
        ("x-original-uri", "/v1/users/7"),
        ("x-original-url", "http://api.test/v1/users/7"),
        ("x-original-method", "GET"),
        ("x-forwarded-uri", "/v1/users/7"),
        ("x-forwarded-method", "GET"),
    ];
    // DELETE /v1/users/7 named as GET, /admin/x named as a user read.
    assert_eq!(s.send("DELETE", "/v1/users/7", &forged).await.status, 403, "{}", s.context());
    assert_eq!(s.get("/admin/x", &forged).await.status, 403);
    assert!(s.upstream_took().is_empty());
}

macro_rules! through {
    ($($name:ident: $proxy:expr => $case:ident;)*) => {$(
        #[tokio::test]
        async fn $name() {
            let Some(stack) = Stack::start($proxy).await else { return };
            $case(&stack).await;
        }
    )*};
}

through! {
    nginx_allow_sends_identity_headers_and_the_decided_path: Proxy::Nginx => allow_with_identity_headers;
    nginx_refusals_reach_the_client_with_status_header_and_body: Proxy::Nginx => refusals_reach_the_client;
    nginx_public_tenant_host_and_report_routes: Proxy::Nginx => public_tenant_host_and_report_routes;
    nginx_path_tricks_never_allow_a_denied_path: Proxy::Nginx => path_tricks_never_allow_a_denied_path;
    nginx_client_copies_of_dialect_headers_change_nothing: Proxy::Nginx => client_copies_of_dialect_headers_change_nothing;
    caddy_allow_sends_identity_headers_and_the_decided_path: Proxy::Caddy => allow_with_identity_headers;
    caddy_refusals_reach_the_client_with_status_header_and_body: Proxy::Caddy => refusals_reach_the_client;
    caddy_public_tenant_host_and_report_routes: Proxy::Caddy => public_tenant_host_and_report_routes;
    caddy_path_tricks_never_allow_a_denied_path: Proxy::Caddy => path_tricks_never_allow_a_denied_path;
    caddy_client_copies_of_dialect_headers_change_nothing: Proxy::Caddy => client_copies_of_dialect_headers_change_nothing;
}

/// Caddy removes a client's headers of the whole identity namespace
/// (`X-Auth-*`), not only the names rolegate sets.
#[tokio::test]
async fn caddy_strips_the_whole_identity_namespace() {
    let Some(s) = Stack::start(Proxy::Caddy).await else { return };
    let reader = bearer(json!({"ts_roles": ["reader"]}));
    let r = s.get("/v1/users/7", &[("authorization", &reader), ("x-auth-user", "forged"), ("x-auth-admin", "1")]).await;
    assert_eq!(r.status, 200);
    let up = s.upstream_took().pop().unwrap();
    assert_eq!((up.header("x-auth-user"), up.header("x-auth-admin")), (None, None));
}

/// Without the program: skipped (with a line saying so) on a developer's
/// machine, a failure naming `.ci/run` under CI.
#[test]
fn a_missing_proxy_is_skipped_here_and_fails_under_ci() {
    use support::authz::find_program;
    assert_eq!(find_program("rolegate-test-no-such-proxy", false), None);
    let failed = std::panic::catch_unwind(|| find_program("rolegate-test-no-such-proxy", true)).unwrap_err();
    let message = failed.downcast_ref::<String>().unwrap();
    assert!(message.contains(".ci/run should have installed it"), "{message}");
    assert!(find_program("sh", true).is_some());
}
