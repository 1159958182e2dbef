//! Config errors name file:line, every kind of them, and the example table is valid.

mod support;

use std::path::Path;

use support::*;

const BASE: &str = r#"[server]
listen = "127.0.0.1:0"

[upstreams.default]
url = "http://127.0.0.1:9"

[[issuers]]
issuer = "https://idp.test"
keys = [{ kid = "k1", pem_file = "rsa.pub.pem" }]
algorithms = ["RS256"]
"#;

/// Loads `BASE + extra` and returns the error text (panics if it loads).
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

/// The warnings of a valid table (BASE + `extra`), one per line.
fn warnings_of(extra: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    loads(&format!("{BASE}{extra}"), dir.path()).warnings.join("\n")
}

fn loads(text: &str, dir: &Path) -> rolegate::snapshot::Snapshot {
    let path = dir.join("routes.toml");
    std::fs::write(&path, text).unwrap();
    rolegate::config::load(&path, None).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn base_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let s = loads(BASE, dir.path());
    assert_eq!(s.routes.len(), 0);
    assert_eq!(s.generation, 1);
}

#[test]
fn unknown_key_names_its_line() {
    let e = errors_of("\n[[routes]]\npath = \"/a\"\nall_permision = [\"x\"]\n");
    assert!(e.starts_with("routes.toml:14:"), "{e}");
    assert!(e.contains("all_permision"), "{e}");
    assert!(e.contains("did you mean `all_permissions`?"), "{e}");
}

#[test]
fn misspelt_tables_and_values_get_a_suggestion_and_their_line() {
    let e = errors_of(
        "
[defaults]
unmatched = \"deni\"
",
    );
    assert!(e.starts_with("routes.toml:13:13:"), "{e}");
    assert!(e.contains("did you mean `deny`?"), "{e}");
    let e = errors_of(
        "
[forwrd]
authorization = false
",
    );
    assert!(e.starts_with("routes.toml:12:"), "{e}");
    assert!(e.contains("did you mean `forward`?"), "{e}");
    let e = errors_of(
        "
[[routes]]
path = \"/a\"
colour = \"blue\"
",
    );
    assert!(e.starts_with("routes.toml:14:") && e.contains("unknown field `colour`"), "{e}");
    assert!(!e.contains("did you mean"), "no suggestion for a word unlike any key: {e}");
}

#[test]
fn syntax_error_names_its_line() {
    let e = errors_of("\n[[routes]]\npath = \"/a\n");
    assert!(e.starts_with("routes.toml:13:"), "{e}");
}

#[test]
fn bad_glob_names_its_line() {
    let e = errors_of("\n[[routes]]\npath = \"/a/**b\"\n");
    assert!(e.starts_with("routes.toml:13:"), "{e}");
    assert!(e.contains("'**' must be a whole segment"), "{e}");
    let e = errors_of("\n[[routes]]\npath = \"/a/{b\"\n");
    assert!(e.starts_with("routes.toml:13:") && e.contains("unclosed"), "{e}");
    let e = errors_of("\n[[routes]]\npath = \"no-slash\"\n");
    assert!(e.contains("must start with '/'"), "{e}");
}

#[test]
fn unknown_upstream_names_its_line() {
    let e = errors_of("\n[[routes]]\npath = \"/a\"\nupstream = \"nope\"\n");
    assert!(e.starts_with("routes.toml:14:"), "{e}");
    assert!(e.contains("unknown upstream \"nope\""), "{e}");
}

#[test]
fn role_cycle_and_unknown_include() {
    let e = errors_of("\n[roles.a]\nincludes = [\"b\"]\n[roles.b]\nincludes = [\"a\"]\n");
    assert!(e.contains("role cycle: a -> b -> a"), "{e}");
    assert!(e.starts_with("routes.toml:12:"), "{e}");
    let e = errors_of("\n[roles.a]\nincludes = [\"ghost\"]\n");
    assert!(e.starts_with("routes.toml:13:") && e.contains("unknown role \"ghost\""), "{e}");
}

#[test]
fn unreadable_or_bad_key_file() {
    let e = errors_of("\n[[issuers]]\nissuer = \"x\"\nkeys = [{ pem_file = \"missing.pem\" }]\n");
    assert!(e.starts_with("routes.toml:14:") && e.contains("cannot read key file"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    std::fs::write(dir.path().join("priv.pem"), &keys().rsa.private_pem).unwrap();
    let path = dir.path().join("routes.toml");
    std::fs::write(&path, format!("{BASE}\n[[issuers]]\nissuer = \"x\"\nkeys = [{{ pem_file = \"priv.pem\" }}]\n"))
        .unwrap();
    let e = rolegate::config::load(&path, None).unwrap_err().to_string();
    assert!(e.contains("private key"), "{e}");
}

#[test]
fn claim_template_must_name_a_path_parameter() {
    let e = errors_of("\n[[routes]]\npath = \"/t/{tenant}/**\"\nclaims = { tid = \"{tenat}\" }\n");
    assert!(e.starts_with("routes.toml:14:") && e.contains("no parameter {tenat}"), "{e}");
}

#[test]
fn other_semantic_errors() {
    let cases = [
        ("\n[[routes]]\npath = \"/a\"\nmethods = [\"G T\"]\n", "not an HTTP method"),
        ("\n[[routes]]\npath = \"/a\"\npublic = true\nall_roles = [\"x\"]\n", "is public and has requirements"),
        ("\n[[routes]]\npath = \"/a\"\nany_of = [{}]\n", "any_of alternative with no requirement"),
        ("\n[forward]\nheaders = { \"x-forwarded-for\" = \"sub\" }\n", "set by the gateway itself"),
        ("\n[forward]\nheaders = { \"x-a\" = \"$nope\" }\n", "unknown identity source"),
        ("\n[defaults]\nunmatched = \"allow\"\n", "unknown variant"),
        ("\n[[routes]]\npath = \"/a\"\nmode = \"audit\"\n", "unknown variant"),
        ("\n[[issuers]]\nissuer = \"y\"\nsecret_env = \"ROLEGATE_TEST_SURELY_UNSET\"\n", "is not set"),
        (
            "\n[[issuers]]\nissuer = \"z\"\nalgorithms = [\"none\"]\nsecret_env = \"ROLEGATE_TEST_HS_SECRET\"\n",
            "never accepted",
        ),
        ("\n[[issuers]]\nissuer = \"w\"\n", "has no keys"),
        ("\n[[issuers]]\nissuer = \"https://idp.test\"\nkeys = [{ pem_file = \"rsa.pub.pem\" }]\n", "listed twice"),
        ("\n[upstreams.x]\nurl = \"http://127.0.0.1:9/base\"\n", "has a path"),
    ];
    let _ = keys();
    for (extra, want) in cases {
        let e = errors_of(extra);
        assert!(e.contains(want), "expected {want:?} in:\n{e}");
        assert!(e.starts_with("routes.toml:"), "{e}");
    }
}

#[test]
fn errors_are_collected_not_stopped_at_the_first() {
    let e = errors_of("\n[[routes]]\npath = \"/a/**b\"\n\n[[routes]]\npath = \"/c\"\nupstream = \"nope\"\n");
    assert_eq!(e.lines().count(), 2, "{e}");
}

#[test]
fn the_example_routes_toml_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("keys")).unwrap();
    std::fs::write(dir.path().join("keys/idp.pub.pem"), &keys().rsa.public_pem).unwrap();
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/routes.toml")).unwrap();
    let s = loads(&text, dir.path());
    assert!(s.routes.len() >= 5);
    assert_eq!(s.issuers.len(), 1);
}

#[test]
fn check_warns_about_unreachable_and_open_routes() {
    let extra = "\n[[routes]]\nname = \"all admin\"\npath = \"/admin/**\"\npublic = true\n\n[[routes]]\nname = \"admin users\"\npath = \"/admin/users/*\"\nall_roles = [\"admin\"]\n\n[[routes]]\nname = \"x\"\nmethods = [\"GET\"]\npath = \"/x\"\nall_roles = [\"a\"]\n\n[[routes]]\nname = \"x again\"\nmethods = [\"GET\"]\npath = \"/x\"\nall_roles = [\"b\"]\n\n[[routes]]\nname = \"x post\"\nmethods = [\"POST\", \"PURGE\"]\npath = \"/x\"\n";
    let w = warnings_of(extra);
    assert!(
        w.contains(
            "routes.toml:17: route \"admin users\" is never reached: the earlier public route \"all admin\" (line 12)"
        ),
        "{w}"
    );
    assert!(w.contains("route \"x again\" is never reached: the earlier route \"x\""), "{w}");
    assert!(!w.contains("\"x post\" is never reached"), "different methods do not shadow: {w}");
    assert!(w.contains("route \"x post\" has no requirement"), "{w}");
    assert!(w.contains("unusual method PURGE"), "{w}");
}

#[test]
fn log_claims_warns_about_claims_decisions_read_but_the_log_would_not_record() {
    let extra = "\n[defaults]\nlog_claims = [\"roles\", \"sub\"]\n\n[[routes]]\npath = \"/t/{tenant}\"\nclaims = { \"org.tid\" = \"{tenant}\" }\n";
    let w = warnings_of(extra);
    assert!(
        w.contains("routes.toml:13: log_claims does not record `org.tid`, `permissions`, which decisions read"),
        "{w}"
    );
    // A parent path records everything below it.
    let covered = extra.replace("\"sub\"", "\"org\", \"permissions\"");
    let w = warnings_of(&covered);
    assert!(!w.contains("log_claims"), "{w}");
    let e = errors_of("\n[defaults]\nlog_claims = [\"roles\", \"org..tid\"]\n");
    assert!(e.starts_with("routes.toml:13:") && e.contains("\"org..tid\" is not a claim path"), "{e}");
}

#[test]
fn check_warns_when_a_public_route_takes_some_requests_of_a_protected_one() {
    let route = |name: &str, methods: &str, path: &str, access: &str| {
        format!("\n[[routes]]\nname = \"{name}\"\nmethods = {methods}\npath = \"{path}\"\n{access}\n")
    };
    let extra = [
        route("public docs", "[\"GET\"]", "/api/*/docs", "public = true"),
        route("admin", "[\"GET\", \"POST\"]", "/api/admin/**", "all_roles = [\"admin\"]"),
        route("public images", "[\"GET\"]", "/img/*.png", "public = true"),
        route("private images", "[\"GET\"]", "/img/*.jpg", "all_roles = [\"admin\"]"),
        route("health", "[\"GET\"]", "/health", "public = true"),
        route("writes", "[\"POST\"]", "/**", "all_roles = [\"admin\"]"),
    ]
    .concat();
    let w = warnings_of(&extra);
    assert!(
        w.contains(
            "routes.toml:18: protected route \"admin\" overlaps the earlier public route \"public docs\" (line 12): \
             e.g. GET /api/admin/docs is served without a token"
        ),
        "{w}"
    );
    assert!(!w.contains("\"private images\" overlaps"), "*.png and *.jpg never meet: {w}");
    assert!(!w.contains("\"writes\" overlaps"), "GET-only public routes do not take POSTs: {w}");
}

/// The header-hygiene keys: `h2c` in `upgrades` is refused; `check` warns
/// about `keep_client_headers` and about identity headers outside `strip`.
#[test]
fn header_hygiene_keys_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    let base = "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n";
    std::fs::write(
        &path,
        format!("{base}[[routes]]\npath = \"/ws\"\npublic = true\nupgrades = [\"websocket\", \"h2c\"]\n"),
    )
    .unwrap();
    let e = rolegate::config::load(&path, None).unwrap_err().to_string();
    assert!(e.contains("h2c is never passed through") && e.contains("routes.toml:6:"), "{e}");
    std::fs::write(&path, format!("{base}[forward]\nkeep_client_headers = [\"x-custom\"]\n")).unwrap();
    let e = rolegate::config::load(&path, None).unwrap_err().to_string();
    assert!(e.contains("none of the headers the gateway removes"), "{e}");
    std::fs::write(
        &path,
        format!(
            "{base}[forward]\nheaders = {{ \"x-auth-subject\" = \"sub\", \"x-user-roles\" = \"$roles\" }}\n\
             strip = [\"x-auth-*\"]\nkeep_client_headers = [\"X-Original-URL\"]\n"
        ),
    )
    .unwrap();
    let snap = rolegate::config::load(&path, None).unwrap();
    let warnings = snap.warnings.join("\n");
    assert!(warnings.contains("strip does not cover the identity header x-user-roles"), "{warnings}");
    assert!(!warnings.contains("identity header x-auth-subject"), "{warnings}");
    assert!(warnings.contains("keep_client_headers passes the client's x-original-url"), "{warnings}");
    // Defaults: the family of each identity header.
    std::fs::write(
        &path,
        format!("{base}[forward]\nheaders = {{ \"x-auth-subject\" = \"sub\", \"x-user\" = \"sub\" }}\n"),
    )
    .unwrap();
    let snap = rolegate::config::load(&path, None).unwrap();
    let strip: Vec<String> = snap.forward.strip.iter().map(|p| p.to_string()).collect();
    assert_eq!(strip, ["x-auth-*", "x-user", "x-user-*"]);
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
}

/// gRPC routes are recognised: with no `methods` they pass quietly (every call
/// is a POST); listing methods without POST is warned about.
#[test]
fn grpc_routes_are_checked_for_post() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("routes.toml");
    let base = "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"h2c\"\n[[issuers]]\nissuer = \"x\"\nsecret_env = \"HOME\"\nalgorithms = [\"HS256\"]\n";
    std::fs::write(&path, format!("{base}[[routes]]\npath = \"/orders.v1.Orders/*\"\nany_roles = [\"m\"]\n")).unwrap();
    let snap = rolegate::config::load(&path, None).unwrap();
    assert!(snap.warnings.is_empty(), "{:?}", snap.warnings);
    std::fs::write(
        &path,
        format!("{base}[[routes]]\npath = \"/orders.v1.Orders/GetOrder\"\nmethods = [\"GET\"]\nany_roles = [\"m\"]\n"),
    )
    .unwrap();
    let snap = rolegate::config::load(&path, None).unwrap();
    assert!(
        snap.warnings
            .iter()
            .any(|w| w.contains("looks like a gRPC route (service orders.v1.Orders) but does not allow POST")
                && w.contains("routes.toml:8")),
        "{:?}",
        snap.warnings
    );
    // protocol names are checked against the URL.
    std::fs::write(&path, "[upstreams.default]\nurl = \"https://127.0.0.1:9\"\nprotocol = \"h2c\"\n").unwrap();
    let e = rolegate::config::load(&path, None).unwrap_err().to_string();
    assert!(e.contains("protocol \"h2c\" is cleartext HTTP/2") && e.contains("routes.toml:2:"), "{e}");
    std::fs::write(&path, "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\nprotocol = \"h2\"\n").unwrap();
    let e = rolegate::config::load(&path, None).unwrap_err().to_string();
    assert!(e.contains("needs TLS"), "{e}");
}
