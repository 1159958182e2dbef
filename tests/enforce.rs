//! Allow and every deny path, over the wire: exact status, WWW-Authenticate,
//! JSON body, and whether the upstream saw the request.

mod support;

use serde_json::json;
use support::*;

fn reader() -> String {
    rs256(&claims(json!({"ts_roles": ["reader"]})))
}

#[tokio::test]
async fn allowed_request_reaches_upstream_with_identity() {
    let gw = TestGateway::start().await;
    let r = gw.send("GET", "/v1/users/7?x=1", Some(&reader())).await;
    assert_eq!(r.status, 200);
    assert!(r.header("x-request-id").is_some());
    let seen = gw.upstream_saw();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path_and_query, "/v1/users/7?x=1");
    assert_eq!(seen[0].header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen[0].header("x-auth-roles"), Some("reader"));
    assert_eq!(seen[0].header("x-auth-permissions"), Some("read:user"));
    assert_eq!(seen[0].header("x-auth-tenant"), Some("acme"));
    assert_eq!(seen[0].header("x-request-id"), r.header("x-request-id"));
}

#[tokio::test]
async fn no_token_is_401_with_realm() {
    let gw = TestGateway::start().await;
    let r = gw.send("GET", "/v1/users/7", None).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"rolegate\""));
    let body = r.json();
    assert_eq!(body["error"], "missing_token");
    assert_eq!(body["request_id"].as_str(), r.header("x-request-id"));
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn other_auth_scheme_counts_as_no_token() {
    let gw = TestGateway::start().await;
    let r = gw.send_with("GET", "/v1/users/7", &[("authorization", "Basic dXNlcjpwYXNz".into())]).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.header("www-authenticate"), Some("Bearer realm=\"rolegate\""));
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive() {
    let gw = TestGateway::start().await;
    let r = gw.send_with("GET", "/v1/users/7", &[("authorization", format!("bEARer {}", reader()))]).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn invalid_token_is_401_invalid_token() {
    let gw = TestGateway::start().await;
    let r = gw.send("GET", "/v1/users/7", Some("not-a-jwt")).await;
    assert_eq!(r.status, 401);
    let www = r.header("www-authenticate").unwrap();
    assert!(www.starts_with("Bearer error=\"invalid_token\", error_description=\""), "{www}");
    assert_eq!(r.json()["error"], "invalid_token");
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn missing_permission_is_403_with_scope() {
    let gw = TestGateway::start().await;
    let r = gw.send("DELETE", "/v1/users/7", Some(&reader())).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"delete:user\""));
    assert_eq!(r.json()["error"], "insufficient_scope");
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn missing_role_is_403_without_scope() {
    let gw = TestGateway::start().await;
    let r = gw.send("GET", "/admin/stats", Some(&reader())).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"insufficient_scope\""));
}

#[tokio::test]
async fn no_route_is_404_json() {
    let gw = TestGateway::start().await;
    let r = gw.send("GET", "/v2/unknown", Some(&reader())).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"], "no_route");
    // Method not listed on the only matching path: also no route.
    let r = gw.send("POST", "/v1/users/7", Some(&reader())).await;
    assert_eq!(r.status, 404);
    assert!(gw.upstream_saw().is_empty());
}

#[tokio::test]
async fn role_hierarchy_grants_included_permissions() {
    let gw = TestGateway::start().await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    // admin includes manager includes reader.
    assert_eq!(gw.send("GET", "/v1/users/7", Some(&admin)).await.status, 200);
    assert_eq!(gw.send("DELETE", "/v1/users/7", Some(&admin)).await.status, 200);
    let manager = rs256(&claims(json!({"ts_roles": ["manager"]})));
    assert_eq!(gw.send("DELETE", "/v1/users/7", Some(&manager)).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&manager)).await.status, 403);
    let seen = gw.upstream_saw();
    assert_eq!(seen[0].header("x-auth-roles"), Some("admin,manager,reader"));
}

#[tokio::test]
async fn direct_permissions_count_without_roles() {
    let gw = TestGateway::start().await;
    let m2m = rs256(&claims(json!({"ts_permissions": ["read:user"]})));
    assert_eq!(gw.send("GET", "/v1/users/7", Some(&m2m)).await.status, 200);
}

#[tokio::test]
async fn tenant_binding_compares_claim_with_path_parameter() {
    let gw = TestGateway::start().await;
    let acme_admin = rs256(&claims(json!({"ts_roles": ["admin"], "tid": "acme"})));
    assert_eq!(gw.send("GET", "/v1/tenants/acme/settings", Some(&acme_admin)).await.status, 200);
    assert_eq!(gw.send("GET", "/v1/tenants/acme", Some(&acme_admin)).await.status, 200);
    assert_eq!(gw.send("GET", "/v1/tenants/globex/settings", Some(&acme_admin)).await.status, 403);
    assert_eq!(gw.send("GET", "/v1/tenants/acmex/settings", Some(&acme_admin)).await.status, 403);
    let no_tid = rs256(&claims(json!({"ts_roles": ["owner"], "tid": null})));
    assert_eq!(gw.send("GET", "/v1/tenants/acme/settings", Some(&no_tid)).await.status, 403);
    let multi = rs256(&claims(json!({"ts_roles": ["owner"], "tid": ["globex", "acme"]})));
    assert_eq!(gw.send("GET", "/v1/tenants/acme/x", Some(&multi)).await.status, 200);
}

#[tokio::test]
async fn nested_claim_path_and_scope_string() {
    let gw = TestGateway::start().await;
    let kc = |realm_roles: serde_json::Value, scope: &str| {
        rs256_kid(
            &claims(json!({"iss": "https://keycloak.test/realms/r", "aud": null,
                           "realm_access": {"roles": realm_roles}, "scope": scope})),
            None,
        )
    };
    // Keycloak-style nested roles.
    assert_eq!(gw.send("GET", "/admin/x", Some(&kc(json!(["admin"]), "openid"))).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&kc(json!(["user"]), "openid"))).await.status, 403);
    // OAuth scope, space-separated.
    assert_eq!(gw.send("GET", "/v1/users/1", Some(&kc(json!([]), "openid read:user profile"))).await.status, 200);
    assert_eq!(gw.send("GET", "/v1/users/1", Some(&kc(json!([]), "openid read:users"))).await.status, 403);
}

#[tokio::test]
async fn roles_as_a_string_are_split_on_spaces_and_matched_exactly() {
    let gw = TestGateway::start().await;
    let t = |roles: &str| rs256(&claims(json!({"ts_roles": roles})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&t("user admin"))).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&t("superadmin"))).await.status, 403);
    assert_eq!(gw.send("GET", "/admin/x", Some(&t("user,admin"))).await.status, 403);
    assert_eq!(gw.send("GET", "/admin/x", Some(&t("Admin"))).await.status, 403);
}

#[tokio::test]
async fn any_of_needs_one_alternative() {
    let gw = TestGateway::start().await;
    let perm = rs256(&claims(json!({"ts_permissions": ["read:reports"]})));
    let auditor = rs256(&claims(json!({"ts_roles": ["auditor"]})));
    let neither = rs256(&claims(json!({"ts_roles": ["reader"]})));
    assert_eq!(gw.send("GET", "/reports/q1", Some(&perm)).await.status, 200);
    assert_eq!(gw.send("GET", "/reports/q1", Some(&auditor)).await.status, 200);
    let r = gw.send("GET", "/reports/q1", Some(&neither)).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("www-authenticate"), Some("Bearer error=\"insufficient_scope\", scope=\"read:reports\""));
}

#[tokio::test]
async fn route_without_requirement_needs_a_valid_token() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.send("GET", "/me", None).await.status, 401);
    assert_eq!(gw.send("GET", "/me", Some("x.y.z")).await.status, 401);
    assert_eq!(gw.send("GET", "/me", Some(&rs256(&claims(json!({}))))).await.status, 200);
}

#[tokio::test]
async fn public_route_ignores_tokens_and_sets_no_identity() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.send("GET", "/docs/a", None).await.status, 200);
    // A bad token on a public route is ignored, not a 401.
    assert_eq!(gw.send("GET", "/docs/a", Some("garbage")).await.status, 200);
    let r = gw
        .send_with(
            "GET",
            "/docs",
            &[
                ("authorization", format!("Bearer {}", reader())),
                ("x-auth-roles", "admin".into()),
                ("x-auth-subject", "root".into()),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = gw.upstream_saw();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].path_and_query, "/docs");
    assert_eq!(seen[2].header("x-auth-roles"), None);
    assert_eq!(seen[2].header("x-auth-subject"), None);
}

#[tokio::test]
async fn report_mode_forwards_denials() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.send("GET", "/shadow/x", Some(&reader())).await.status, 200);
    assert_eq!(gw.send("GET", "/shadow/x", None).await.status, 200);
    assert_eq!(gw.send("GET", "/shadow/x", Some("garbage")).await.status, 200);
    let seen = gw.upstream_saw();
    assert_eq!(seen.len(), 3);
    // A valid token still gives identity headers; an invalid one none.
    assert_eq!(seen[0].header("x-auth-subject"), Some("user-1"));
    assert_eq!(seen[2].header("x-auth-subject"), None);
}

#[tokio::test]
async fn host_glob_restricts_a_route() {
    let gw = TestGateway::start().await;
    let admin = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let r = gw
        .send_with(
            "GET",
            "/vip",
            &[("authorization", format!("Bearer {admin}")), ("host", "VIP.example.com:8443".into())],
        )
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .send_with("GET", "/vip", &[("authorization", format!("Bearer {admin}")), ("host", "other.example.com".into())])
        .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn unmatched_authenticate_lets_any_valid_token_through() {
    let routes = STANDARD_ROUTES.replace("unmatched = \"deny\"", "unmatched = \"authenticate\"");
    let gw = TestGateway::with_routes(&routes).await;
    assert_eq!(gw.send("GET", "/v2/anything", None).await.status, 401);
    assert_eq!(gw.send("GET", "/v2/anything", Some("bad")).await.status, 401);
    assert_eq!(gw.send("GET", "/v2/anything", Some(&reader())).await.status, 200);
    // Matched routes still apply their own requirement.
    assert_eq!(gw.send("GET", "/admin/x", Some(&reader())).await.status, 403);
}

#[tokio::test]
async fn first_match_in_file_order_wins() {
    let routes = STANDARD_ROUTES.replace(
        "[[routes]]\nname = \"public docs\"",
        "[[routes]]\nname = \"locked docs\"\npath = \"/docs/secret/**\"\nall_roles = [\"admin\"]\n\n[[routes]]\nname = \"public docs\"",
    );
    let gw = TestGateway::with_routes(&routes).await;
    assert_eq!(gw.send("GET", "/docs/secret/plan", None).await.status, 401);
    assert_eq!(gw.send("GET", "/docs/open", None).await.status, 200);
}

#[tokio::test]
async fn es256_and_hs256_issuers_work() {
    let gw = TestGateway::start().await;
    assert_eq!(gw.send("GET", "/v1/users/1", Some(&es256(&claims(json!({"ts_roles": ["reader"]}))))).await.status, 200);
    let _ = keys();
    let hs =
        hs256(&json!({"iss": "https://hs.test", "sub": "svc", "permissions": ["read:user"]}), HS_SECRET.as_bytes());
    assert_eq!(gw.send("GET", "/v1/users/1", Some(&hs)).await.status, 200);
}
