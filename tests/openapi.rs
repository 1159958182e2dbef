//! `rolegate import openapi` and `rolegate check --openapi` on real published
//! descriptions (tests/fixtures/openapi, see NOTICE.md there): the Swagger
//! Petstore (OpenAPI 3.0 and 3.1, YAML and JSON), a 3.1 description of every
//! kind of security scheme, and GitHub's REST API (1,223 operations). The
//! imported tables are served by a real gateway, and every operation's
//! example request gets the verdict its security requirement implies, with
//! real RS256 tokens.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use rolegate::openapi::{self, Document, ImportOptions, Imported, SpecAccess};
use serde_json::json;
use support::*;

const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

/// What an operator puts before the imported routes: the scopes are read from `scope`.
const HEADER: &str = r#"[server]
listen = "127.0.0.1:0"

[upstreams.default]
url = "http://{upstream}"

[[issuers]]
issuer = "https://idp.test"
audiences = ["orders-api"]
keys = [{ kid = "k1", pem_file = "rsa.pub.pem" }]
permissions_claim = "scope"
roles_claim = "roles"
"#;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/openapi").join(name)
}

/// GitHub's description, decompressed into `dir`.
fn github_json(dir: &Path) -> PathBuf {
    use std::io::Read as _;
    let gz = std::fs::File::open(fixture("github-api.json.gz")).unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(gz).read_to_string(&mut text).unwrap();
    let path = dir.join("api.github.com.json");
    std::fs::write(&path, text).unwrap();
    path
}

fn import(path: &Path) -> Imported {
    let doc = Document::read(path).unwrap_or_else(|e| panic!("{e}"));
    openapi::import(&doc, &ImportOptions::default()).unwrap_or_else(|e| panic!("{e}"))
}

fn rolegate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn token(scopes: &[&str]) -> String {
    rs256(&claims(json!({ "scope": scopes.join(" ") })))
}

/// Sends every operation's example request through a gateway serving the
/// imported table: without a token (401, or forwarded for a public
/// operation), with exactly the scopes of each alternative (forwarded), and
/// with each of those scopes missing (403 naming it, unless another
/// alternative is still met). Returns how many requests were sent.
async fn verdicts_over_http(imported: &Imported) -> usize {
    let gw = TestGateway::with_routes(&format!("{HEADER}\n{}", imported.text)).await;
    let mut sent = 0;
    for op in &imported.routes {
        let (method, path) = (op.method.as_str(), op.example_path.as_str());
        let what = format!("{method} {path} ({})", op.name);
        let forwarded = |r: &Reply| {
            assert_eq!(r.status, 200, "{what}: {:?}", r.body);
            assert_eq!((r.json()["method"].as_str(), r.json()["path"].as_str()), (Some(method), Some(path)), "{what}");
        };
        let anonymous = gw.send(method, path, None).await;
        sent += 1;
        let alternatives = match &op.access {
            SpecAccess::Public => {
                forwarded(&anonymous);
                continue;
            }
            SpecAccess::Token(alts) => alts.clone(),
        };
        assert_eq!(anonymous.status, 401, "{what}");
        if alternatives.is_empty() {
            forwarded(&gw.send(method, path, Some(&token(&[]))).await);
            sent += 1;
        }
        for alt in &alternatives {
            assert!(alt.roles.is_empty(), "these descriptions name no roles");
            let scopes: Vec<&str> = alt.permissions.iter().map(String::as_str).collect();
            forwarded(&gw.send(method, path, Some(&token(&scopes))).await);
            sent += 1;
            for (i, missing) in scopes.iter().enumerate() {
                let mut fewer = scopes.clone();
                fewer.remove(i);
                let still_met = alternatives.iter().any(|a| a.permissions.iter().all(|p| fewer.contains(&p.as_str())));
                let r = gw.send(method, path, Some(&token(&fewer))).await;
                sent += 1;
                if still_met {
                    forwarded(&r);
                } else {
                    assert_eq!(r.status, 403, "{what} without {missing}");
                    let challenge = r.header("www-authenticate").unwrap_or_default();
                    assert!(
                        challenge.contains("insufficient_scope") && challenge.contains(missing),
                        "{what}: {challenge}"
                    );
                }
            }
        }
    }
    sent
}

#[tokio::test]
async fn petstore_3_0_and_3_1_yaml_and_json_import_alike_and_are_enforced_end_to_end() {
    let forms = ["petstore-3.0.yaml", "petstore-3.0.json", "petstore-3.1.yaml", "petstore-3.1.json"];
    let imported: Vec<Imported> = forms.iter().map(|f| import(&fixture(f))).collect();
    // One description in four forms: the same routes (after the header comment, which names the file).
    let body = |i: &Imported| i.text.split_once("\n\n").unwrap().1.to_owned();
    for (form, other) in forms.iter().zip(&imported).skip(1) {
        assert_eq!(body(other), body(&imported[0]), "{form}");
    }
    let pet = &imported[0];
    assert_eq!(pet.routes.len(), 20);
    let by_name = |n: &str| pet.routes.iter().find(|r| r.name == n).unwrap();
    let both = vec!["write:pets".to_owned(), "read:pets".to_owned()];
    let SpecAccess::Token(alts) = &by_name("addPet").access else { panic!("addPet is secured") };
    assert_eq!(alts[0].permissions, both);
    // The server's path is the prefix; literal segments come before parameters.
    assert_eq!(by_name("findPetsByStatus").example_path, "/v2/pet/findByStatus");
    assert_eq!(by_name("getPetById").example_path, "/v2/pet/1");
    let position = |n: &str| pet.routes.iter().position(|r| r.name == n).unwrap();
    assert!(position("loginUser") < position("getUserByName") && position("logoutUser") < position("getUserByName"));
    // The api_key scheme cannot be checked here: said on the route and in a warning.
    assert!(
        pet.text.contains("# GET /pet/{petId}\n# note: the gateway cannot check the API key \"api_key\""),
        "{}",
        pet.text
    );
    assert!(
        pet.warnings.iter().any(|w| w.contains("#/paths/~1pet~1{petId}/get") && w.contains("api_key")),
        "{:?}",
        pet.warnings
    );
    // 7 operations need both scopes (no token, both, each missing), 13 any valid token (no token, a token).
    assert_eq!(verdicts_over_http(pet).await, 7 * 4 + 13 * 2);
}

#[tokio::test]
async fn every_kind_of_security_scheme_of_a_3_1_description() {
    let imported = import(&fixture("security-3.1.yaml"));
    assert_eq!(imported.routes.len(), 15);
    let access = |method: &str, template: &str| {
        let r = imported.routes.iter().find(|r| r.method == method && r.template == template).unwrap();
        r.access.clone()
    };
    let write =
        SpecAccess::Token(vec![openapi::Alternative { permissions: vec!["write:things".into()], roles: vec![] }]);
    for method in ["GET", "PUT", "POST", "DELETE", "PATCH"] {
        assert_eq!(access(method, "/anything/oauth2"), write, "{method}: every OAuth2 flow gives its scopes");
    }
    let any_token = SpecAccess::Token(vec![]);
    assert_eq!(access("POST", "/anything/bearer"), any_token);
    assert_eq!(access("POST", "/anything/openIdConnect"), any_token);
    // API keys (query, header, cookie), Basic and mutual TLS: a bearer token instead, each noted.
    for (method, template, said) in [
        ("GET", "/anything/apiKey", "(query \"apiKey\")"),
        ("PUT", "/anything/apiKey", "(header \"X-API-KEY\")"),
        ("POST", "/anything/apiKey", "(cookie \"api_key\")"),
        ("POST", "/anything/basic", "HTTP basic"),
        ("POST", "/anything/mutualTLS", "mutual TLS"),
    ] {
        assert_eq!(access(method, template), any_token, "{method} {template}");
        let pointer = format!("#/paths/{}/{}", template.replace('/', "~1"), method.to_ascii_lowercase());
        assert!(
            imported.warnings.iter().any(|w| w.contains(&pointer) && w.contains(said)),
            "{pointer}: {:?}",
            imported.warnings
        );
    }
    verdicts_over_http(&imported).await;
}

/// GitHub's description: every operation imports, the table serves, and each
/// example request is matched by its own operation's route with the verdict
/// its (undeclared: any valid token) security implies, over HTTP.
#[tokio::test]
async fn github_rest_api_every_operation_imports_serves_and_gets_its_verdict() {
    let dir = tempfile::tempdir().unwrap();
    let imported = import(&github_json(dir.path()));
    assert_eq!(imported.routes.len(), 1223);
    assert!(
        imported.warnings[0].starts_with("1223 of 1223 operations declare no security"),
        "{}",
        imported.warnings[0]
    );
    // A parameter name rolegate cannot use, and a parameter inside a segment.
    assert!(imported.text.contains("path = \"/enterprises/{enterprise}/teams/{enterprise_team}/memberships\""));
    assert!(imported.text.contains("path = \"/repos/{owner}/{repo}/compare/*...*\""), "compare");

    let text = format!("{HEADER}\n{}", imported.text);
    let gw = TestGateway::with_routes(&text).await;
    let snap = gw.shared.load_full();
    assert_eq!(snap.routes.len(), 1223);
    // In-process: the gateway's matcher picks each operation's own route.
    for op in &imported.routes {
        let method = http::Method::from_bytes(op.method.as_bytes()).unwrap();
        let route = snap.routes.find(&method, None, &op.example_path).unwrap_or_else(|| panic!("{}", op.name));
        assert_eq!(&*route.name, op.name, "{} {}", op.method, op.example_path);
    }
    let sent = verdicts_over_http(&imported).await;
    assert_eq!(sent, 2 * 1223);
}

/// The output of the binary, placed after a header, loads with rolegate's own loader.
#[test]
fn imported_routes_load_behind_a_header() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    for (args, routes) in
        [(vec!["import", "openapi"], 20), (vec!["import", "openapi", "--prefix", "/api/", "--upstream", "pets"], 20)]
    {
        let spec = fixture("petstore-3.0.yaml");
        let mut args = args.clone();
        args.insert(2, spec.to_str().unwrap());
        let (code, out, err) = rolegate(&args);
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("warning:") && err.contains("api_key"), "{err}");
        let upstream = "[upstreams.pets]\nurl = \"http://127.0.0.1:9\"\n";
        let table = dir.path().join("routes.toml");
        std::fs::write(&table, format!("{}{upstream}\n{out}", HEADER.replace("{upstream}", "127.0.0.1:9"))).unwrap();
        let snap = rolegate::config::load(&table, None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(snap.routes.len(), routes);
        let first = &snap.routes.routes()[0];
        if args.contains(&"--prefix") {
            assert_eq!((first.pattern.source.as_str(), first.upstream.name.as_str()), ("/api/pet", "pets"));
        } else {
            assert_eq!((first.pattern.source.as_str(), first.upstream.name.as_str()), ("/v2/pet", "default"));
        }
    }
}

/// Splits a table into its `[[routes]]` blocks (separated by blank lines) and rejoins them.
fn edit_blocks(text: &str, mut edit: impl FnMut(&str) -> Option<String>) -> String {
    text.split("\n\n").filter_map(&mut edit).collect::<Vec<_>>().join("\n\n")
}

#[test]
fn check_openapi_reports_a_deleted_a_widened_and_an_extra_route() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let spec = fixture("petstore-3.1.yaml");
    let spec = spec.to_str().unwrap();
    let (code, imported, err) = rolegate(&["import", "openapi", spec]);
    assert_eq!(code, 0, "{err}");
    let header = HEADER.replace("{upstream}", "127.0.0.1:9");
    let table = dir.path().join("routes.toml");
    let table_arg = table.to_str().unwrap();
    std::fs::write(&table, format!("{header}\n{imported}")).unwrap();
    let (code, out, err) = rolegate(&["check", "--config", table_arg, "--openapi", spec]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("20 routes against") && out.contains("(20 operations): 0 findings"), "{out}");

    let edited = edit_blocks(&imported, |block| {
        if block.contains("name = \"deletePet\"") {
            None
        } else if block.contains("name = \"findPetsByTags\"") {
            Some(block.replace("all_permissions = [\"write:pets\", \"read:pets\"]", "public = true"))
        } else {
            Some(block.to_owned())
        }
    }) + "\n[[routes]]\nname = \"extra\"\npath = \"/v2/admin/**\"\nall_roles = [\"admin\"]\n";
    std::fs::write(&table, format!("{header}\n{edited}")).unwrap();
    let (code, out, err) = rolegate(&["check", "--config", table_arg, "--openapi", spec]);
    assert_eq!(code, 0, "without --strict findings do not fail: {out}{err}");
    let findings: Vec<&str> = out.lines().filter(|l| !l.starts_with("warning:") && l.contains(": ")).collect();
    assert_eq!(findings.len(), 4, "three findings and the summary: {out}");
    assert!(
        findings[0].starts_with("under-protected: GET /pet/findByTags (findPetsByTags): route \"findPetsByTags\"")
            && findings[0].contains("is public"),
        "{out}"
    );
    assert!(
        findings[1].starts_with("not routed: DELETE /pet/{petId} (deletePet): no route admits DELETE /v2/pet/1"),
        "{out}"
    );
    assert!(
        findings[2].starts_with("undocumented: route \"extra\" (") && findings[2].contains("routes.toml:"),
        "{out}"
    );
    assert!(findings[3].contains("3 findings (1 not routed, 1 under-protected, 1 undocumented)"), "{out}");
    let (code, _, err) = rolegate(&["check", "--strict", "--config", table_arg, "--openapi", spec]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("3 finding(s), refused by --strict"), "{err}");

    // A route that requires one scope less is named with the scope it lets through without.
    let narrowed = imported.replacen(
        "path = \"/v2/pet/findByStatus\"\nall_permissions = [\"write:pets\", \"read:pets\"]",
        "path = \"/v2/pet/findByStatus\"\nall_permissions = [\"read:pets\"]",
        1,
    );
    assert_ne!(narrowed, imported);
    std::fs::write(&table, format!("{header}\n{narrowed}")).unwrap();
    let (_, out, _) = rolegate(&["check", "--config", table_arg, "--openapi", spec]);
    assert!(
        out.contains("under-protected: GET /pet/findByStatus (findPetsByStatus): route \"findPetsByStatus\""),
        "{out}"
    );
    assert!(out.contains("lets a token through without write:pets;"), "{out}");
    // A table imported with --prefix is checked with the same --prefix.
    let (_, prefixed, _) = rolegate(&["import", "openapi", spec, "--prefix", "/api"]);
    std::fs::write(&table, format!("{header}\n{prefixed}")).unwrap();
    let (code, out, _) = rolegate(&["check", "--config", table_arg, "--openapi", spec, "--prefix", "/api"]);
    assert!(code == 0 && out.contains("0 findings"), "{out}");
    let (_, out, _) = rolegate(&["check", "--config", table_arg, "--openapi", spec]);
    assert!(out.contains("40 findings (20 not routed, 0 under-protected, 20 undocumented)"), "{out}");
    // And `check` without --openapi is unchanged.
    let (code, out, _) = rolegate(&["check", "--config", table_arg]);
    assert_eq!(code, 0);
    assert!(out.contains("ok (20 routes, 1 issuer)") && !out.contains("under-protected"), "{out}");
}

#[test]
fn check_openapi_on_the_github_table_finds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_keys(dir.path());
    let spec = github_json(dir.path());
    let spec = spec.to_str().unwrap();
    let (code, imported, err) = rolegate(&["import", "openapi", spec]);
    assert_eq!(code, 0, "{err}");
    let table = dir.path().join("routes.toml");
    std::fs::write(&table, format!("{}\n{imported}", HEADER.replace("{upstream}", "127.0.0.1:9"))).unwrap();
    let (code, out, err) = rolegate(&["check", "--config", table.to_str().unwrap(), "--openapi", spec]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("1223 routes against") && out.contains("(1223 operations): 0 findings"), "{out}");
}

#[test]
fn a_description_that_does_not_parse_exits_1_with_its_line_or_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_owned()
    };
    // Invalid YAML: the line.
    let yaml = std::fs::read_to_string(fixture("petstore-3.0.yaml")).unwrap();
    let broken = yaml.replacen("      operationId: addPet\n", "      operationId: [addPet\n", 1);
    let line = broken.lines().position(|l| l.contains("[addPet")).unwrap() + 1;
    let path = write("broken.yaml", &broken);
    let (code, out, err) = rolegate(&["import", "openapi", &path]);
    assert_eq!(code, 1, "{out}");
    assert!(out.is_empty());
    let at = format!("broken.yaml:{}:", line);
    let next = format!("broken.yaml:{}:", line + 1);
    assert!(err.contains(&at) || err.contains(&next), "line {line}: {err}");
    // Invalid JSON: the line.
    let path = write("broken.json", "{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {\n    \"/a\": {\"get\": }\n  }\n}\n");
    let (code, _, err) = rolegate(&["import", "openapi", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("broken.json:4:"), "{err}");
    // A $ref to nothing: the JSON pointer of the $ref and the one it names.
    let dangling = yaml.replacen("'#/components/requestBodies/Pet'", "'#/components/requestBodies/Missing'", 1);
    let path = write("dangling.yaml", &dangling);
    let (code, _, err) = rolegate(&["import", "openapi", &path]);
    assert_eq!(code, 1);
    assert!(
        err.contains(
            "at #/paths/~1pet/post/requestBody: `$ref` \"#/components/requestBodies/Missing\" points at nothing"
        ),
        "{err}"
    );
    // A security requirement naming an undefined scheme.
    let path = write("scheme.yaml", &yaml.replacen("- api_key: []", "- apikey: []", 1));
    let (code, _, err) = rolegate(&["import", "openapi", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("at #/paths/~1pet~1{petId}/get/security/0/apikey") && err.contains("not defined"), "{err}");
    // `check --openapi` refuses such a description the same way.
    let table = dir.path().join("routes.toml");
    write_keys(dir.path());
    std::fs::write(&table, HEADER.replace("{upstream}", "127.0.0.1:9")).unwrap();
    let (code, _, err) = rolegate(&["check", "--config", table.to_str().unwrap(), "--openapi", &path]);
    assert_eq!(code, 1);
    assert!(err.contains("apikey"), "{err}");
}
