//! Claim paths with a path parameter (`organization.{tenant}.roles`), a
//! route's own `roles_claim` / `permissions_claim`, `default_roles` and
//! `preset`, through the real gateway with RS256 tokens, and through
//! `explain` and `diff` (which must agree with it), and their config errors.

mod support;

use std::path::Path;

use serde_json::{json, Value};
use support::bin::rolegate;
use support::*;

/// Roles per tenant in `organization.<tenant>.roles` (besides `ts_roles`),
/// `guest` for a token with neither claim; a Keycloak issuer by its preset.
const TENANT_ROUTES: &str = r#"
[server]
listen = "127.0.0.1:0"

[upstreams.default]
url = "http://{upstream}"

[[issuers]]
issuer = "https://idp.test"
audiences = ["orders-api"]
keys = [{ kid = "k1", pem_file = "rsa.pub.pem" }]
preset = "transmit"
roles_claim = ["ts_roles", "organization.{tenant}.roles"]
default_roles = ["guest"]

[[issuers]]
issuer = "https://keycloak.test/realms/r"
keys = [{ pem_file = "rsa.pub.pem" }]
preset = "keycloak"

[roles.reader]
permissions = ["read:orders"]
[roles.admin]
includes = ["reader"]
permissions = ["delete:orders"]
[roles.guest]
permissions = ["read:docs"]

[forward]
headers = { "x-auth-roles" = "$roles", "x-auth-permissions" = "$permissions", "x-auth-tenant" = "$tenant" }

[[routes]]
name = "tenant admin"
path = "/v1/tenants/{tenant}/admin/**"
all_roles = ["admin"]

[[routes]]
name = "tenant orders"
path = "/v1/tenants/{tenant}/**"
all_permissions = ["read:orders"]

[[routes]]
name = "org projects"
path = "/v1/orgs/{org}/projects/{project}/**"
roles_claim = "orgs.{org}.roles"
permissions_claim = "orgs.{org}.projects.{project}"
any_of = [{ all_roles = ["admin"] }, { all_permissions = ["read:project"] }]

[[routes]]
name = "docs"
path = "/docs/**"
all_permissions = ["read:docs"]

[[routes]]
name = "admin"
path = "/admin/**"
all_roles = ["admin"]

[[routes]]
name = "me"
path = "/me"
"#;

fn token(extra: Value) -> String {
    rs256(&claims(extra))
}

fn two_tenants() -> Value {
    json!({"organization": {"acme": {"roles": ["admin"]}, "globex": {"roles": ["reader"]}}})
}

async fn status(gw: &TestGateway, path: &str, token: &str) -> u16 {
    gw.send("GET", path, Some(token)).await.status.as_u16()
}

#[tokio::test]
async fn a_tenants_roles_come_from_its_key_of_the_organization_claim() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    let t = token(two_tenants());
    assert_eq!(status(&gw, "/v1/tenants/acme/admin/users", &t).await, 200);
    let r = gw.send("GET", "/v1/tenants/globex/admin/users", Some(&t)).await;
    assert_eq!(r.status, 403, "a reader at globex is no admin there");
    assert_eq!(r.json()["error"], "insufficient_scope");
    // A reader at globex reads its orders; a tenant the token has no key for gives no roles.
    assert_eq!(status(&gw, "/v1/tenants/globex/orders", &t).await, 200);
    assert_eq!(status(&gw, "/v1/tenants/acme/orders", &t).await, 200, "admin includes reader");
    assert_eq!(status(&gw, "/v1/tenants/initech/orders", &t).await, 403);
    // Outside a tenant's routes the claim gives nothing (and ts_roles is absent).
    assert_eq!(status(&gw, "/admin/x", &t).await, 403);
    // ts_roles still counts everywhere, beside the tenant's roles.
    let t = token(json!({"ts_roles": ["reader"], "organization": {"acme": {"roles": ["admin"]}}}));
    assert_eq!(status(&gw, "/v1/tenants/initech/orders", &t).await, 200);
    assert_eq!(status(&gw, "/v1/tenants/initech/admin/x", &t).await, 403);
    assert_eq!(status(&gw, "/v1/tenants/acme/admin/x", &t).await, 200);
    assert_eq!(gw.upstream_saw().len(), 5);
}

/// `claims = { "orgs.{org}.plan" = "pro" }`: a claim key may name a path
/// parameter too, one whole key, like a roles claim path.
#[tokio::test]
async fn a_claim_key_may_name_the_tenant_of_the_path() {
    let table = TENANT_ROUTES.replace(
        "[[routes]]\nname = \"docs\"",
        "[[routes]]\nname = \"pro reports\"\npath = \"/v1/plans/{org}/reports\"\nclaims = { \"orgs.{org}.plan\" = \"pro\" }\n\n\
         [[routes]]\nname = \"one tenant per token\"\npath = \"/v1/one/{tenant}/x\"\nclaims = { \"$tenant\" = \"{tenant}\" }\n\n\
         [[routes]]\nname = \"docs\"",
    );
    let gw = TestGateway::with_routes(&table).await;
    let t = token(json!({"orgs": {"acme": {"plan": "pro"}, "globex": {"plan": "free"}, "a.b": {"plan": "pro"}}}));
    assert_eq!(status(&gw, "/v1/plans/acme/reports", &t).await, 200);
    assert_eq!(status(&gw, "/v1/plans/globex/reports", &t).await, 403, "globex is on the free plan");
    assert_eq!(status(&gw, "/v1/plans/initech/reports", &t).await, 403, "no key for initech: no match, never an error");
    assert_eq!(status(&gw, "/v1/plans/a.b/reports", &t).await, 200, "a key with a dot is selected whole");
    assert_eq!(status(&gw, "/v1/plans/a/reports", &t).await, 403);
    // One token per tenant (Auth0, Wristband): the issuer's tenant claim (`tid` for transmit) names the path's tenant.
    let acme = token(json!({"tid": "acme"}));
    assert_eq!(status(&gw, "/v1/one/acme/x", &acme).await, 200);
    assert_eq!(status(&gw, "/v1/one/globex/x", &acme).await, 403);
    assert_eq!(gw.upstream_saw().len(), 3);
    // A parameter the route's path does not have is a config error.
    let e = errors_of(&format!(
        "{ISSUER}[[routes]]\npath = \"/v1/{{org}}\"\nclaims = {{ \"orgs.{{tenant}}.plan\" = \"pro\" }}\n"
    ));
    assert!(e.contains("claims.orgs.{tenant}.plan: the path has no parameter {tenant}"), "{e}");
}

#[tokio::test]
async fn a_tenant_key_with_dots_is_selected_whole() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    let dotted = token(json!({"organization": {"a.b": {"roles": ["admin"]}}}));
    assert_eq!(status(&gw, "/v1/tenants/a.b/admin/x", &dotted).await, 200);
    assert_eq!(status(&gw, "/v1/tenants/a/admin/x", &dotted).await, 403);
    // Never split on `.`: a nested a → b is another key.
    let nested = token(json!({"organization": {"a": {"b": {"roles": ["admin"]}}}}));
    assert_eq!(status(&gw, "/v1/tenants/a.b/admin/x", &nested).await, 403);
    // Never a glob: `*` is the key `*`, and the key `*` is no wildcard either.
    let star = token(json!({"organization": {"*": {"roles": ["admin"]}}}));
    assert_eq!(status(&gw, "/v1/tenants/acme/admin/x", &star).await, 403);
    assert_eq!(status(&gw, "/v1/tenants/*/admin/x", &star).await, 200);
}

#[tokio::test]
async fn default_roles_only_when_the_roles_claim_is_absent() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    // Neither ts_roles nor any organization claim: guest.
    let bare = token(json!({}));
    assert_eq!(status(&gw, "/docs/a", &bare).await, 200);
    assert_eq!(status(&gw, "/v1/tenants/acme/orders", &bare).await, 403, "guest reads no orders");
    // Present but empty, or lacking that tenant's key: no default.
    for extra in [
        json!({"ts_roles": []}),
        json!({"organization": {}}),
        json!({"organization": {"globex": {"roles": ["reader"]}}}),
        json!({"organization": {"acme": {"roles": []}}}),
    ] {
        let t = token(extra.clone());
        assert_eq!(status(&gw, "/docs/a", &t).await, 403, "{extra}");
    }
    // A default role is expanded through [roles] like any other: guest's read:docs above.
    let r = gw.send("GET", "/me", Some(&bare)).await;
    assert_eq!(r.status, 200);
    let seen = gw.upstream_saw();
    let last = seen.last().unwrap();
    assert_eq!(last.header("x-auth-roles"), Some("guest"));
    assert_eq!(last.header("x-auth-permissions"), Some("read:docs"));
}

#[tokio::test]
async fn identity_headers_carry_the_roles_of_the_tenant_of_the_path() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    let t = token(two_tenants());
    // The same (cached) token on several tenants: each request its tenant's roles.
    let forged = [("authorization", format!("Bearer {t}")), ("x-auth-roles", "admin".to_owned())];
    for path in ["/v1/tenants/acme/admin/x", "/v1/tenants/globex/orders", "/me", "/v1/tenants/acme/orders"] {
        assert_eq!(gw.send_with("GET", path, &forged).await.status, 200, "{path}");
    }
    let seen = gw.upstream_saw();
    let roles: Vec<Option<&str>> = seen.iter().map(|s| s.header("x-auth-roles")).collect();
    let perms: Vec<Option<&str>> = seen.iter().map(|s| s.header("x-auth-permissions")).collect();
    assert_eq!(roles, [Some("admin,reader"), Some("reader"), None, Some("admin,reader")]);
    assert_eq!(
        perms,
        [Some("delete:orders,read:orders"), Some("read:orders"), None, Some("delete:orders,read:orders")]
    );
    assert!(seen.iter().all(|s| s.header("x-auth-tenant") == Some("acme")), "claims headers as before");
}

/// The decision API answers a proxy in front with the same per-tenant headers.
#[tokio::test]
async fn decision_api_answers_with_the_tenants_roles() {
    let gw = TestGateway::with_routes(&format!("{TENANT_ROUTES}\n[authz]\nlisten = \"127.0.0.1:0\"\n")).await;
    let authz = support::authz::AuthzServer::start(&gw).await;
    let bearer = format!("Bearer {}", token(two_tenants()));
    let check = |uri: &'static str| {
        let bearer = bearer.clone();
        let authz = &authz;
        async move {
            let headers = [("x-original-method", "GET"), ("x-original-uri", uri), ("authorization", bearer.as_str())];
            authz.check("GET", "/check", &headers).await
        }
    };
    let r = check("/v1/tenants/globex/orders").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-auth-roles"), Some("reader"));
    let r = check("/v1/tenants/acme/admin/x").await;
    assert_eq!((r.status.as_u16(), r.header("x-auth-roles")), (200, Some("admin,reader")));
    assert_eq!(check("/v1/tenants/globex/admin/x").await.status, 403);
}

#[tokio::test]
async fn a_routes_own_claim_names_replace_the_issuers() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    let path = "/v1/orgs/o1/projects/p1/tasks";
    // ts_roles and organization are not read on this route: orgs.o1.roles is.
    let elsewhere = token(json!({"ts_roles": ["admin"], "organization": {"o1": {"roles": ["admin"]}}}));
    assert_eq!(status(&gw, "/admin/x", &elsewhere).await, 200);
    assert_eq!(status(&gw, path, &elsewhere).await, 403);
    let org_admin = token(json!({"orgs": {"o1": {"roles": ["admin"]}}}));
    assert_eq!(status(&gw, path, &org_admin).await, 200);
    assert_eq!(status(&gw, "/v1/orgs/o2/projects/p1/tasks", &org_admin).await, 403);
    assert_eq!(status(&gw, "/admin/x", &org_admin).await, 403);
    // Permissions of one project, by two parameters.
    let member = token(json!({"orgs": {"o1": {"roles": [], "projects": {"p1": ["read:project"]}}}}));
    assert_eq!(status(&gw, path, &member).await, 200);
    assert_eq!(status(&gw, "/v1/orgs/o1/projects/p2/tasks", &member).await, 403);
    let seen = gw.upstream_saw();
    assert_eq!(seen.last().unwrap().header("x-auth-permissions"), Some("read:project"));
}

#[tokio::test]
async fn presets_set_claim_names_and_explicit_keys_win() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    // keycloak: realm_access.roles and scope.
    let kc = |extra: Value| {
        let mut c = json!({"iss": "https://keycloak.test/realms/r", "sub": "k"});
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        rs256_kid(&c, None)
    };
    assert_eq!(status(&gw, "/admin/x", &kc(json!({"realm_access": {"roles": ["admin"]}}))).await, 200);
    assert_eq!(status(&gw, "/admin/x", &kc(json!({"roles": ["admin"]}))).await, 403);
    assert_eq!(status(&gw, "/docs/x", &kc(json!({"scope": "openid read:docs"}))).await, 200);
    // transmit: ts_permissions (roles_claim is set explicitly on that issuer).
    assert_eq!(status(&gw, "/docs/x", &token(json!({"ts_permissions": ["read:docs"], "ts_roles": []}))).await, 200);

    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let issuer =
        |extra: &str| format!("[[issuers]]\nissuer = \"i\"\nkeys = [{{ pem_file = \"rsa.pub.pem\" }}]\n{extra}\n");
    let cases: [(&str, [&[&str]; 2], &str); 7] = [
        ("", [&["roles"], &["permissions"]], "tid"),
        ("preset = \"transmit\"", [&["ts_roles"], &["ts_permissions"]], "tid"),
        ("preset = \"transmit-b2b\"", [&["role_values"], &["ts_permissions"]], "org_id"),
        ("preset = \"auth0\"", [&["roles"], &["permissions"]], "org_id"),
        ("preset = \"keycloak\"", [&["realm_access.roles"], &["scope"]], "organization"),
        ("preset = \"wristband\"", [&["roles"], &["permissions"]], "tnt_id"),
        ("preset = \"axinom\"", [&["tags"], &[]], "tenantId"),
    ];
    for (extra, [roles, permissions], tenant) in cases {
        let snap = load(dir.path(), &issuer(extra));
        let i = snap.issuers.get("i").unwrap();
        let paths =
            |p: &[rolegate::auth::claims::ClaimPath]| p.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
        assert_eq!(paths(&i.roles_claims), roles, "{extra}");
        assert_eq!(paths(&i.permissions_claims), permissions, "{extra}");
        assert_eq!(i.tenant_claim, tenant, "{extra}");
    }
    // Keys set explicitly win, each on its own.
    let snap = load(
        dir.path(),
        &issuer(
            "preset = \"keycloak\"\nroles_claim = [\"groups\", \"resource_access.api.roles\"]\ntenant_claim = \"tid\"",
        ),
    );
    let i = snap.issuers.get("i").unwrap();
    let roles: Vec<&str> = i.roles_claims.iter().map(|c| c.as_str()).collect();
    assert_eq!(roles, ["groups", "resource_access.api.roles"]);
    assert_eq!(i.permissions_claims[0].as_str(), "scope");
    assert_eq!(i.tenant_claim, "tid");
    // keycloak unites realm roles with each audience's client roles (a client id with a dot cannot be a path).
    let snap = load(dir.path(), &issuer("preset = \"keycloak\"\naudiences = [\"orders-api\", \"a.b\"]"));
    let i = snap.issuers.get("i").unwrap();
    let roles: Vec<&str> = i.roles_claims.iter().map(|c| c.as_str()).collect();
    assert_eq!(roles, ["realm_access.roles", "resource_access.orders-api.roles"]);
    // axinom reads no permissions until told which service's: check says so.
    let snap = load(dir.path(), &issuer("preset = \"axinom\""));
    assert!(snap.warnings.iter().any(|w| w.contains("preset \"axinom\" reads no permissions")), "{:?}", snap.warnings);
    let snap = load(dir.path(), &issuer("preset = \"axinom\"\npermissions_claim = \"permissions.media-service\""));
    assert!(snap.warnings.iter().all(|w| !w.contains("axinom")), "{:?}", snap.warnings);
}

const BASE: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n";

fn load(dir: &Path, extra: &str) -> rolegate::snapshot::Snapshot {
    let path = dir.join("routes.toml");
    std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
    rolegate::config::load(&path, None).unwrap_or_else(|e| panic!("{e}"))
}

fn errors_of(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{BASE}{extra}")).unwrap();
    match rolegate::config::load(&path, None) {
        Ok(_) => panic!("should be invalid:\n{extra}"),
        Err(e) => e.to_string().replace(&path.display().to_string(), "routes.toml"),
    }
}

const ISSUER: &str = "[[issuers]]\nissuer = \"i\"\nkeys = [{ pem_file = \"rsa.pub.pem\" }]\n";

#[test]
fn claim_path_errors_name_their_line() {
    // Lines: BASE is 4, ISSUER 3 more.
    let e = errors_of(&format!(
        "{ISSUER}[[routes]]\npath = \"/v1/orgs/{{org}}/**\"\nroles_claim = \"organization.{{tenant}}.roles\"\n"
    ));
    assert!(e.starts_with("routes.toml:10:15:"), "{e}");
    assert!(e.contains("roles_claim \"organization.{tenant}.roles\": the path has no parameter {tenant}"), "{e}");
    let e = errors_of(&format!(
        "{ISSUER}[[routes]]\npath = \"/v1/{{org}}\"\npermissions_claim = [\"scope\", \"p.{{project}}\"]\n"
    ));
    assert!(e.starts_with("routes.toml:10:") && e.contains("no parameter {project}"), "{e}");
    let e = errors_of("[[issuers]]\nissuer = \"i\"\nkeys = [{ pem_file = \"rsa.pub.pem\" }]\npreset = \"auht0\"\n");
    assert!(e.starts_with("routes.toml:8:10:"), "{e}");
    assert!(e.contains("unknown preset \"auht0\" (did you mean \"auth0\"?)"), "{e}");
    assert!(e.contains("transmit, transmit-b2b, auth0, keycloak, wristband, axinom"), "{e}");
    let e = errors_of(
        "[[issuers]]\nissuer = \"i\"\nkeys = [{ pem_file = \"rsa.pub.pem\" }]\nroles_claim = \"org-{tenant}.roles\"\n",
    );
    assert!(e.starts_with("routes.toml:8:") && e.contains("is not a parameter"), "{e}");
    let e = errors_of(&format!("{ISSUER}[[routes]]\npath = \"/d/**\"\npublic = true\nroles_claim = \"r\"\n"));
    assert!(e.starts_with("routes.toml:11:") && e.contains("is public"), "{e}");
}

#[test]
fn check_warns_about_routes_an_issuers_parameter_cannot_reach() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let table = "[[issuers]]\nissuer = \"i\"\nkeys = [{ pem_file = \"rsa.pub.pem\" }]\n\
        roles_claim = \"organization.{tenant}.roles\"\n\
        [[routes]]\npath = \"/v1/tenants/{tenant}/**\"\nall_roles = [\"admin\"]\n\
        [[routes]]\nname = \"admin\"\npath = \"/admin/**\"\nall_roles = [\"admin\"]\n\
        [[routes]]\nname = \"own\"\npath = \"/own/**\"\nroles_claim = \"roles\"\nall_roles = [\"admin\"]\n\
        [[routes]]\nname = \"perms\"\npath = \"/p/**\"\nall_permissions = [\"read\"]\n\
        [[routes]]\nname = \"me\"\npath = \"/me\"\n";
    let snap = load(dir.path(), &format!("{table}[roles.guest]\n"));
    let warnings: Vec<&String> = snap.warnings.iter().filter(|w| w.contains("gives it no")).collect();
    assert_eq!(warnings.len(), 1, "{:?}", snap.warnings);
    assert!(
        warnings[0].ends_with(
            "routes.toml:12: route \"admin\": its path has no {tenant}, so roles_claim \"organization.{tenant}.roles\" \
             of issuer \"i\" gives it no roles (add {tenant} to the path, or give the route its own roles_claim)"
        ),
        "{}",
        warnings[0]
    );
    // A default role [roles] does not define is most likely a typo.
    let typo =
        table.replace("roles_claim = \"organization", "default_roles = [\"gest\"]\nroles_claim = \"organization");
    let snap = load(dir.path(), &format!("{typo}[roles.guest]\n"));
    let w: Vec<&String> = snap.warnings.iter().filter(|w| w.contains("default role")).collect();
    assert_eq!(w.len(), 1, "{:?}", snap.warnings);
    assert!(
        w[0].ends_with(
            "routes.toml:8: issuer \"i\": default role \"gest\" is not defined in [roles] (did you mean \"guest\"?)"
        ),
        "{}",
        w[0]
    );
}

/// `explain --claims` and `diff` decide tenant-dependent roles as the gateway does.
#[tokio::test]
async fn explain_and_diff_agree_with_the_gateway() {
    let gw = TestGateway::with_routes(TENANT_ROUTES).await;
    let cfg = gw.config.to_str().unwrap().to_owned();
    let cases = [
        ("/v1/tenants/acme/admin/x", two_tenants()),
        ("/v1/tenants/globex/admin/x", two_tenants()),
        ("/v1/tenants/globex/orders", two_tenants()),
        ("/v1/tenants/initech/orders", two_tenants()),
        ("/v1/tenants/a.b/admin/x", json!({"organization": {"a.b": {"roles": ["admin"]}}})),
        ("/v1/tenants/a.b/admin/x", json!({"organization": {"a": {"b": {"roles": ["admin"]}}}})),
        ("/docs/x", json!({})),
        ("/docs/x", json!({"organization": {}})),
        ("/v1/orgs/o1/projects/p1/x", json!({"orgs": {"o1": {"roles": ["admin"]}}})),
        ("/v1/orgs/o1/projects/p1/x", json!({"ts_roles": ["admin"]})),
    ];
    let mut allowed = 0;
    for (path, extra) in &cases {
        let claims = claims(extra.clone());
        let (code, out, err) =
            rolegate(&["explain", "--json", "--config", &cfg, "--path", path, "--claims", &claims.to_string()]);
        assert_eq!(code, 0, "{err}");
        let report: Value = serde_json::from_str(&out).unwrap();
        let explained = match report["verdict"].as_str() {
            Some("allow") => 200,
            _ => report["status"].as_u64().unwrap() as u16,
        };
        let answered = status(&gw, path, &rs256(&claims)).await;
        assert_eq!(explained, answered, "{path} {extra}: explain says {report}");
        allowed += usize::from(answered == 200);
    }
    assert_eq!(allowed, 5, "both verdicts are among the cases");
    // The text names the roles in effect on the route and where they were read.
    let claims = claims(two_tenants()).to_string();
    let (_, out, _) =
        rolegate(&["explain", "--config", &cfg, "--path", "/v1/tenants/globex/orders", "--claims", &claims]);
    assert!(
        out.contains(r#"roles:       reader (on this route, from ts_roles, organization.{tenant}.roles with {tenant} = "globex")"#),
        "the tenant whose key was read: {out}"
    );
    assert!(out.contains("verdict:     allow"), "{out}");
    // On a route with its own roles_claim, the issuer's default role when that claim is absent.
    let admin_elsewhere = self::claims(json!({"ts_roles": ["admin"]})).to_string();
    let (_, out, _) = rolegate(&[
        "explain",
        "--json",
        "--config",
        &cfg,
        "--path",
        "/v1/orgs/o1/projects/p1/x",
        "--claims",
        &admin_elsewhere,
    ]);
    let report: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["roles"], json!(["guest"]), "{report}");
    assert_eq!(report["permissions"], json!(["read:docs"]), "{report}");
    assert_eq!(report["read_on_route"]["roles_claim"], json!(["orgs.{org}.roles"]), "{report}");
    assert_eq!(report["read_on_route"]["params"], json!({"org": "o1", "project": "p1"}), "{report}");
    assert_eq!(report["verdict"], "deny", "{report}");
    let (_, out, _) = rolegate(&["explain", "--config", &cfg, "--path", "/me", "--claims", &claims]);
    assert!(out.contains("verdict:     allow") && !out.contains("on this route"), "{out}");

    // diff: dropping the tenant path from roles_claim changes exactly the tenant verdicts.
    let new = gw.dir.path().join("new.toml");
    let text = std::fs::read_to_string(&gw.config).unwrap();
    std::fs::write(&new, text.replace("roles_claim = [\"ts_roles\", \"organization.{tenant}.roles\"]", "")).unwrap();
    let replay = gw.dir.path().join("replay.jsonl");
    let lines: Vec<String> = cases
        .iter()
        .map(|(path, extra)| json!({"method": "GET", "path": path, "claims": self::claims(extra.clone())}).to_string())
        .collect();
    std::fs::write(&replay, lines.join("\n")).unwrap();
    let (code, out, err) = rolegate(&["diff", &cfg, new.to_str().unwrap(), "--replay", replay.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("replay.jsonl:1: GET /v1/tenants/acme/admin/x: 200 (tenant admin: allow) -> 403"), "{out}");
    assert!(out.contains("replay.jsonl:3: GET /v1/tenants/globex/orders: 200"), "{out}");
    // `organization: {}` made the roles claim present (no default); without that path it is absent: guest.
    assert!(out.contains("replay.jsonl:8: GET /docs/x: 403 (docs: missing permission read:docs) -> 200"), "{out}");
    assert!(out.contains("10 requests replayed: 4 verdicts change (3 newly denied, 1 newly allowed)"), "{out}");
}
