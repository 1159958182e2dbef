//! A table of hostile requests, by class, each with the exact status expected
//! and what the upstream may see: nothing, or exactly the normalized path.
//! Counts per class are printed (`cargo test --test adversarial -- --nocapture`).

mod support;

use std::collections::BTreeMap;

use serde_json::json;
use support::*;

struct Case {
    class: &'static str,
    request: Vec<u8>,
    status: u16,
    /// `Some(path)`: the upstream must receive exactly this path and query; `None`: nothing.
    forwarded: Option<String>,
}

fn get(target: &str, token: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

fn path_cases(reader: &str) -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |target: &str, status: u16, forwarded: Option<&str>| {
        cases.push(Case {
            class: "path",
            request: get(target, reader),
            status,
            forwarded: forwarded.map(str::to_owned),
        })
    };
    // Ambiguous forms: 400, never forwarded.
    for t in [
        "/v1/users/%2fadmin",
        "/v1/users/%2Fadmin",
        "/v1/users%2f..%2f..%2fadmin",
        "/v1/users/%5cadmin",
        "/v1/users/%5C..%5Cadmin",
        "/v1/users/..\\admin",
        "/v1/users\\..\\admin",
        "/v1/users/%00",
        "/v1/users/a%00b",
        "/v1/users/%0d%0a",
        "/v1/users/%09",
        "/v1/users/%7f",
        "/v1/users/..;/admin",
        "/v1/users/.;/x",
        "/v1/users/..;x/admin",
        "/v1/users/%2e%2e;/admin",
        "/v1/users/%2E%2E%3B/admin",
        "/..",
        "/../admin",
        "/v1/../../admin",
        "/%2e%2e/admin",
        "/%2E%2e/%2e%2E/admin",
        "/v1/users/%",
        "/v1/users/%4",
        "/v1/users/%zz",
        "/v1/users/%g1",
        "/v1/users/%c0%ae%c0%ae/admin",
        "/v1/users/%e0%80%ae",
        "/v1/users/%ff",
        "/v1/users/%c3",
        "/v1/users/%ed%a0%80",
        // Double encoding: an upstream that decodes twice would see `..`, `/`, `\`.
        "/v1/users/%252e%252e/%252e%252e/admin",
        "/v1/users/%252E%252E/admin",
        "/v1/users/7%252fadmin",
        "/v1/users/7%252Fadmin",
        "/v1/users/7%255cadmin",
        "/v1/users/7%255C..%255Cadmin",
        "/v1/users/%25%32%65%25%32%65/admin",
        "/v1/users/%25%32%66admin",
    ] {
        add(t, 400, None);
    }
    // Resolved forms that climb into a stronger route: refused there (403), never forwarded.
    for t in [
        "/v1/users/../../admin/x",
        "/v1/users/%2e%2e/%2e%2e/admin/x",
        "/v1/./users/../../admin/x",
        "/v1//users/..//..//admin/x",
        "/%61dmin/x",
        "/%41dmin/x",
    ] {
        let status = if t.contains("%41") { 404 } else { 403 };
        add(t, status, None);
    }
    // Harmless forms: forwarded as exactly the normalized path.
    for (t, fwd) in [
        ("/v1//users///7", "/v1/users/7"),
        ("/v1/./users/./7", "/v1/users/7"),
        ("/v1/users/6/../7", "/v1/users/7"),
        ("/v1/users/%37", "/v1/users/7"),
        ("/%76%31/%75sers/7", "/v1/users/7"),
        ("/v1/users/7%3bx", "/v1/users/7%3Bx"),
        ("/v1/users/7;x", "/v1/users/7;x"),
        ("/v1/users/7?a=../../admin&b=%2f", "/v1/users/7?a=../../admin&b=%2f"),
        ("/v1/users/caf%C3%A9", "/v1/users/caf%C3%A9"),
        ("/v1/users/7/", "/v1/users/7/"),
    ] {
        add(t, 200, Some(fwd));
    }
    cases
}

fn token_cases() -> Vec<Case> {
    let good = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let now = rolegate::auth::now_secs() as i64;
    let payload = |extra: serde_json::Value| {
        let mut c = claims(json!({"ts_roles": ["admin"], "exp": now + 600}));
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        b64(c.to_string().as_bytes())
    };
    let header = |h: &str| b64(h.as_bytes());
    let mut tokens: Vec<String> = vec![
        String::new(),
        "x".into(),
        "a.b".into(),
        "a.b.c.d".into(),
        format!("{}.{}", parts[0], parts[1]),
        format!("{}.{}.", parts[0], parts[1]),
        format!("{}.{}.{}=", parts[0], parts[1], parts[2]),
        format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
        format!("{}.{}+{}.{}", parts[0], &parts[1][..5], &parts[1][5..], parts[2]),
        format!("{}.{}.{}", parts[0], payload(json!({"ts_roles": ["admin", "x"]})), parts[2]),
        format!("{}.{}.{}", parts[0], parts[1], parts[2].chars().rev().collect::<String>()),
        "a".repeat(17_000),
    ];
    for alg in ["none", "None", "NONE", "nOnE", "RS999", "rs256", "HS1", ""] {
        tokens.push(format!("{}.{}.{}", header(&format!(r#"{{"alg":"{alg}"}}"#)), payload(json!({})), parts[2]));
    }
    for h in [
        r#"{"alg":"RS256","kid":"k1","crit":["exp"]}"#,
        r#"{"alg":"RS256","alg":"RS256","kid":"k1"}"#,
        r#"{"alg":"RS256","kid":["k1"]}"#,
        r#"{"alg":["RS256"]}"#,
        r#"[]"#,
        r#"null"#,
        r#"{"alg":"HS256","kid":"k1"}"#,
        r#"{"alg":"ES256","kid":"k1"}"#,
        r#"{"alg":"RS256","kid":"../../../dev/null"}"#,
        r#"{"alg":"RS256","kid":"' OR 1=1 --"}"#,
        r#"{"alg":"RS256","jku":"http://evil.test/k","kid":"evil"}"#,
    ] {
        tokens.push(format!("{}.{}.{}", header(h), parts[1], parts[2]));
    }
    for extra in [
        json!({"exp": "4102444800"}),
        json!({"exp": now - 3600}),
        json!({"exp": null}),
        json!({"nbf": now + 3600}),
        json!({"nbf": "0"}),
        json!({"iat": "now"}),
        json!({"iss": ["https://idp.test"]}),
        json!({"iss": "https://evil.test"}),
        json!({"aud": 5}),
        json!({"aud": ["other"]}),
        json!({"sub": {"id": 1}}),
    ] {
        // Re-signed with the trusted key: only the claim makes it invalid.
        let c = {
            let mut c = claims(json!({"ts_roles": ["admin"]}));
            for (k, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    c.as_object_mut().unwrap().remove(k);
                } else {
                    c[k] = v.clone();
                }
            }
            c
        };
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(keys().rsa.private_pem.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some("k1".into());
        tokens.push(jsonwebtoken::encode(&h, &c, &key).unwrap());
    }
    tokens.push(hs256(&claims(json!({"ts_roles": ["admin"]})), keys().rsa.public_pem.as_bytes()));
    tokens.push(rogue(&claims(json!({"ts_roles": ["admin"]})), Some("k1")));
    tokens
        .into_iter()
        .map(|t| Case { class: "token", request: get("/admin/x", &t), status: 401, forwarded: None })
        .collect()
}

fn header_cases(reader: &str) -> Vec<Case> {
    let h = |s: String, status: u16, forwarded: Option<&str>| Case {
        class: "headers",
        request: s.into_bytes(),
        status,
        forwarded: forwarded.map(str::to_owned),
    };
    let auth = format!("Authorization: Bearer {reader}\r\n");
    vec![
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: a\r\nHost: b\r\n{auth}Connection: close\r\n\r\n"), 400, None),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: a\r\n{auth}Authorization: Bearer x\r\nConnection: close\r\n\r\n"), 400, None),
        h(format!("GET http://evil.test/v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n"), 400, None),
        h(format!("GET http://gw.test/v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n"), 200, Some("/v1/users/7")),
        h("OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n".into(), 400, None),
        // Both framings: hyper drops Content-Length (RFC 9112 §6.3) and decodes the chunks,
        // so the upstream gets one consistent, chunked body (checked below).
        h(format!("POST /docs/te HTTP/1.1\r\nHost: gw.test\r\nContent-Length: 30\r\nTransfer-Encoding: chunked\r\n{auth}Connection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 200, Some("/docs/te")),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nX-Folded: a\r\n b\r\n{auth}Connection: close\r\n\r\n"), 400, None),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nX-Big: {}\r\n{auth}Connection: close\r\n\r\n", "a".repeat(200_000)), 431, None),
        h(format!("GET /v1/users/7 HTTP/1.0\r\nHost: gw.test\r\n{auth}\r\n"), 200, Some("/v1/users/7")),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nX-Auth-Roles: admin\r\nX-Auth-Subject: root\r\n{auth}Connection: close\r\n\r\n"), 200, Some("/v1/users/7")),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nConnection: close, x-auth-subject\r\n{auth}\r\n"), 200, Some("/v1/users/7")),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nX-Forwarded-For: 1.2.3.4\r\nForwarded: for=1.2.3.4\r\n{auth}Connection: close\r\n\r\n"), 200, Some("/v1/users/7")),
        h(format!("POST /docs/x HTTP/1.1\r\nHost: gw.test\r\nExpect: 100-continue\r\nContent-Length: 2\r\n{auth}Connection: close\r\n\r\nok"), 200, Some("/docs/x")),
        h(format!("GET /admin/x HTTP/1.1\r\nHost: gw.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{auth}\r\n"), 403, None),
        h("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Basic dXNlcjpwYXNz\r\nConnection: close\r\n\r\n".into(), 401, None),
        h("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer\r\nConnection: close\r\n\r\n".into(), 401, None),
        h(format!("GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: BEARER {reader}\r\nConnection: close\r\n\r\n"), 200, Some("/v1/users/7")),
        h(format!("DELETE /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n"), 403, None),
        h(format!("PATCH /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n"), 404, None),
        h(format!("get /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\n{auth}Connection: close\r\n\r\n"), 404, None),
    ]
}

#[tokio::test]
async fn hostile_requests_get_exact_statuses_and_never_slip_through() {
    let gw = TestGateway::start().await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let mut cases = path_cases(&reader);
    cases.extend(token_cases());
    cases.extend(header_cases(&reader));
    let mut per_class: BTreeMap<&str, usize> = BTreeMap::new();
    for case in &cases {
        let before = gw.upstream_saw().len();
        let (status, text) = raw(gw.addr, &case.request).await;
        let request = String::from_utf8_lossy(&case.request);
        let shown = &request[..request.len().min(160)];
        assert_eq!(status, case.status, "[{}] {shown}\n→ {text}", case.class);
        let seen = gw.upstream_saw();
        match &case.forwarded {
            None => assert_eq!(seen.len(), before, "[{}] reached the upstream: {shown}", case.class),
            Some(path) => {
                assert_eq!(seen.len(), before + 1, "[{}] {shown}", case.class);
                assert_eq!(&seen[before].path_and_query, path, "[{}] {shown}", case.class);
                if path == "/docs/te" {
                    assert_eq!(seen[before].body_bytes, 3);
                    assert_eq!(seen[before].header("content-length"), None);
                }
                // Identity headers are the gateway's, never the client's.
                assert_ne!(seen[before].header("x-auth-subject"), Some("root"));
                assert_ne!(seen[before].header("x-forwarded-for"), Some("1.2.3.4"));
            }
        }
        *per_class.entry(case.class).or_default() += 1;
    }
    println!("adversarial cases per class: {per_class:?} (total {})", cases.len());
    assert!(cases.len() >= 100, "{}", cases.len());
}

/// One request through the gateway with extra raw header lines (and a reader
/// token); returns the status and what the upstream saw.
async fn through(gw: &TestGateway, method: &str, target: &str, extra: &str) -> (u16, Option<rolegate::echo::Seen>) {
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let before = gw.upstream_saw().len();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {reader}\r\n{extra}Connection: close\r\n\r\n"
    );
    let (status, _) = raw(gw.addr, req.as_bytes()).await;
    let seen = gw.upstream_saw();
    assert!(seen.len() <= before + 1);
    (status, seen.get(before).cloned())
}

/// The upstream acts on exactly the request that was authorized: no client
/// header can give it another identity (identity namespace, underscore
/// spellings), another method or path (override headers), or another path or
/// address through a forwarding header (replaced by the gateway's values).
#[tokio::test]
async fn client_headers_never_change_what_the_upstream_acts_on() {
    let gw = TestGateway::start().await;
    let names = |seen: &rolegate::echo::Seen| seen.headers.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    // Identity: underscore spellings and unset names of the identity family.
    let forged = "X_Auth_Roles: admin\r\nX_AUTH_SUBJECT: root\r\nx-auth-user: root\r\nX-Auth-Admin: yes\r\n\
                  x_auth-tenant: other\r\nX-Custom_Thing: 1\r\nx_forwarded_for: 6.6.6.6\r\n";
    let (status, seen) = through(&gw, "GET", "/v1/users/7", forged).await;
    let seen = seen.expect("forwarded");
    assert_eq!(status, 200);
    let got = names(&seen);
    for name in got.iter() {
        assert!(!name.contains('_'), "a header with an underscore reached the upstream: {got:?}");
    }
    assert!(!got.iter().any(|n| n == "x-auth-user" || n == "x-auth-admin"), "{got:?}");
    assert_eq!(seen.header("x-auth-roles"), Some("reader"), "the gateway's value, alone");
    assert_eq!(seen.headers.iter().filter(|(n, _)| n == "x-auth-roles").count(), 1);
    assert_eq!(seen.header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen.header("x-auth-tenant"), Some("acme"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));

    // Method and URL overrides never reach the upstream.
    let overrides = "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\
                     X-Original-URL: /admin/secret\r\nX-Rewrite-URL: /admin/secret\r\nX-Original-URI: /admin/secret\r\n";
    let (status, seen) = through(&gw, "GET", "/v1/users/7", overrides).await;
    let seen = seen.expect("forwarded");
    assert_eq!(status, 200);
    for name in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-original-uri",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the upstream");
    }
    assert_eq!((seen.method.as_str(), seen.path_and_query.as_str()), ("GET", "/v1/users/7"));

    // Forwarding headers that carry a path or an address: the gateway's values.
    let forwarding = "X-Forwarded-Uri: /admin/secret?x=1\r\nX-Forwarded-Path: /admin/secret\r\n\
                      X-Forwarded-Prefix: /admin\r\nX-Real-IP: 10.0.0.1\r\n";
    let (status, seen) = through(&gw, "GET", "/v1//users/./7?q=1", forwarding).await;
    let seen = seen.expect("forwarded");
    assert_eq!(status, 200);
    assert_eq!(seen.header("x-forwarded-uri"), Some("/v1/users/7?q=1"), "the authorized path and query");
    assert_eq!(seen.header("x-forwarded-path"), Some("/v1/users/7"));
    assert_eq!(seen.header("x-forwarded-prefix"), None);
    assert_eq!(seen.header("x-real-ip"), Some("127.0.0.1"), "the peer's address");

    // The same on a public route (no identity, still no forged one).
    let (status, seen) = through(&gw, "GET", "/docs/a", "X-Auth-Roles: admin\r\nX_Auth_Subject: root\r\n").await;
    let seen = seen.expect("forwarded");
    assert_eq!(status, 200);
    assert!(!names(&seen).iter().any(|n| n.starts_with("x-auth") || n.starts_with("x_auth")), "{:?}", names(&seen));
}

/// `[server] underscore_headers` and `[forward] strip` / `keep_client_headers`.
#[tokio::test]
async fn header_hygiene_settings() {
    let reject = STANDARD_ROUTES.replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:0\"\nunderscore_headers = \"reject\"",
        1,
    );
    let gw = TestGateway::with_routes(&reject).await;
    let (status, seen) = through(&gw, "GET", "/v1/users/7", "X_Custom: 1\r\n").await;
    assert_eq!((status, seen.is_none()), (400, true), "reject: 400, never forwarded");
    assert_eq!(through(&gw, "GET", "/v1/users/7", "X-Custom: 1\r\n").await.0, 200);

    let allow = STANDARD_ROUTES
        .replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:0\"\nunderscore_headers = \"allow\"", 1)
        .replacen(
            "[forward]\n",
            "[forward]\nstrip = [\"x-auth-*\", \"x-internal-*\"]\nkeep_client_headers = [\"X-HTTP-Method-Override\"]\n",
            1,
        );
    let gw = TestGateway::with_routes(&allow).await;
    let (status, seen) = through(
        &gw,
        "GET",
        "/v1/users/7",
        "X_Custom: 1\r\nX_Auth_Roles: admin\r\nx_internal_flag: 1\r\nX-Internal-User: root\r\nX_Forwarded_Host: evil\r\n\
         X-HTTP-Method-Override: PATCH\r\nX-Original-URL: /admin\r\nContent_Length: 40\r\nTransfer_Encoding: chunked\r\n\
         Keep_Alive: 1\r\nProxy_Connection: close\r\nHTTP2_Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nProxy_Authorization: x\r\n",
    )
    .await;
    let seen = seen.expect("forwarded");
    assert_eq!(status, 200);
    assert_eq!(seen.header("x_custom"), Some("1"), "allowed underscore names pass");
    for gone in [
        "x_auth_roles",
        "x_internal_flag",
        "x-internal-user",
        "x_forwarded_host",
        "x-original-url",
        // Underscore spellings of framing and hop-by-hop headers, even when underscores are allowed.
        "content_length",
        "transfer_encoding",
        "keep_alive",
        "proxy_connection",
        "http2_settings",
        "proxy_authorization",
    ] {
        assert_eq!(seen.header(gone), None, "{gone}");
    }
    assert_eq!(seen.header("x-http-method-override"), Some("PATCH"), "kept on request");
}

/// `Upgrade` only for the protocols a route allows (default `websocket`),
/// `h2c` never: its `Upgrade` and `HTTP2-Settings` are removed however
/// `Connection` lists them, and the request is forwarded as a plain one.
#[tokio::test]
async fn h2c_and_unlisted_upgrades_are_never_forwarded() {
    let gw = TestGateway::start().await;
    for extra in [
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade, HTTP2-Settings\r\n",
        "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: Upgrade\r\n",
        "Upgrade: H2C, foo\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nConnection: upgrade\r\n",
        "Upgrade: foo/1\r\nConnection: upgrade\r\n",
    ] {
        let (status, seen) = through(&gw, "GET", "/v1/users/7", extra).await;
        let seen = seen.expect("forwarded as a plain request");
        assert_eq!(status, 200, "{extra}");
        assert_eq!(seen.header("upgrade"), None, "{extra}");
        assert_eq!(seen.header("http2-settings"), None, "{extra}");
        assert!(!seen.header("connection").unwrap_or_default().to_ascii_lowercase().contains("upgrade"), "{extra}");
    }
}
