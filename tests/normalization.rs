//! Path normalization over the wire: ambiguous targets answer 400 and never
//! reach the upstream; everything else is matched and forwarded as the one
//! normalized path, so a reader never reaches a route that requires more.

mod support;

use serde_json::json;
use support::*;

fn reader() -> String {
    rs256(&claims(json!({"ts_roles": ["reader"]})))
}

#[tokio::test]
async fn ambiguous_targets_are_400_and_never_forwarded() {
    let gw = TestGateway::start().await;
    let token = reader();
    let cases = [
        "/v1/users/%2e%2e%2fadmin",
        "/v1/users/..%2Fadmin/x",
        "/v1/users%2F..%2Fadmin",
        "/v1/users/%5c..%5cadmin",
        "/v1/users/..\\admin",
        "/v1/users/7%00",
        "/v1/users/7%0a",
        "/v1/users/..;/admin/x",
        "/v1/users/.;/x",
        "/v1/users/%2e%2e;/admin",
        "/..",
        "/v1/../../admin",
        "/v1/users/%zz",
        "/v1/users/%C0%AE%C0%AE/admin",
        "/v1/users/%ff",
    ];
    for target in cases {
        let (status, text) = raw(gw.addr, &raw_get(target, Some(&token))).await;
        assert_eq!(status, 400, "{target} should be refused, got:\n{text}");
        assert!(text.contains("\"error\":\"bad_request\""), "{target}: {text}");
    }
    assert!(gw.upstream_saw().is_empty(), "nothing ambiguous may reach the upstream: {:?}", gw.upstream_saw());
}

#[tokio::test]
async fn dot_segments_resolve_before_matching_and_forwarding() {
    let gw = TestGateway::start().await;
    let token = reader();
    // (target, expected status, path the upstream must see when allowed)
    let cases = [
        ("/v1/users/../../admin/x", 403, None),
        ("/v1/users/%2e%2e/%2e%2e/admin/x", 403, None),
        ("/v1/users/.%2E/.%2e/admin/x", 403, None),
        ("/v1//users/7", 200, Some("/v1/users/7")),
        ("//v1///users//7", 200, Some("/v1/users/7")),
        ("/v1/./users/./7", 200, Some("/v1/users/7")),
        ("/v1/users/7/../8", 200, Some("/v1/users/8")),
        ("/v1/x/../users/9", 200, Some("/v1/users/9")),
        ("/%76%31/users/10", 200, Some("/v1/users/10")),
        ("/v1/users/a%3bb", 200, Some("/v1/users/a%3Bb")),
        ("/v1/users/caf%c3%a9", 200, Some("/v1/users/caf%C3%A9")),
        ("/v1/users/7?next=/../admin&x=%2F", 200, Some("/v1/users/7?next=/../admin&x=%2F")),
        ("/admin/../v1/users/11", 200, Some("/v1/users/11")),
    ];
    for (target, status, _) in cases {
        let (got, text) = raw(gw.addr, &raw_get(target, Some(&token))).await;
        assert_eq!(got, status, "{target}:\n{text}");
    }
    let seen: Vec<String> = gw.upstream_saw().into_iter().map(|s| s.path_and_query).collect();
    let expected: Vec<&str> = cases.iter().filter_map(|(_, _, p)| *p).collect();
    assert_eq!(seen, expected);
    assert!(seen.iter().all(|p| !p.starts_with("/admin")));
}

#[tokio::test]
async fn case_matters_and_encoded_letters_are_decoded() {
    let gw = TestGateway::start().await;
    let token = reader();
    // /Admin is not /admin: no route.
    let (s, _) = raw(gw.addr, &raw_get("/Admin/x", Some(&token))).await;
    assert_eq!(s, 404);
    // %61dmin is /admin: the reader is refused there, not routed elsewhere.
    let (s, _) = raw(gw.addr, &raw_get("/%61dmin/x", Some(&token))).await;
    assert_eq!(s, 403);
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn absolute_form_must_agree_with_host() {
    let gw = TestGateway::start().await;
    let token = reader();
    let req = format!(
        "GET http://gw.test/v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let (s, _) = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(s, 200);
    let req = format!(
        "GET http://evil.test/v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let (s, _) = raw(gw.addr, req.as_bytes()).await;
    assert_eq!(s, 400);
    let seen = gw.upstream_saw();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/users/7");
}

#[tokio::test]
async fn duplicate_authorization_or_host_is_400() {
    let gw = TestGateway::start().await;
    let token = reader();
    let req = format!(
        "GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nAuthorization: Bearer {token}\r\nAuthorization: Bearer x\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(gw.addr, req.as_bytes()).await.0, 400);
    let req = format!(
        "GET /v1/users/7 HTTP/1.1\r\nHost: gw.test\r\nHost: other.test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(raw(gw.addr, req.as_bytes()).await.0, 400);
    let req = "OPTIONS * HTTP/1.1\r\nHost: gw.test\r\nConnection: close\r\n\r\n";
    assert_eq!(raw(gw.addr, req.as_bytes()).await.0, 400);
    assert!(gw.upstream_saw().is_empty());
}
