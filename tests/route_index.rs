//! The indexed route lookup agrees with the plain definition of first match:
//! the first route in file order whose method, host and path glob all fit.

mod support;

use globset::Candidate;
use http::Method;
use rolegate::routes::Route;

const PATTERNS: &[&str] = &[
    "/**",
    "/v1/users/**",
    "/v1/users/*",
    "/v1/users/{id}",
    "/v1/users/{id}/orders/**",
    "/v1/*/orders",
    "/v1/{a,b}/x",
    "/v2/**/items",
    "/v?/users",
    "/docs/**",
    "/docs",
    "/docs/",
    "/admin/**",
    "/admin/*/x",
    "/t/{tenant}/**",
    "/t/{tenant}/svc/{id}",
    "/a/b/c/d",
    "/a/b/**",
    "/a/*/c/**",
    "/{x}",
    "/{x}/**",
    "/lit[1]/x",
    // Parameters inside the prefix (an imported OpenAPI table's shape): the
    // index follows a literal child and the parameter child of one segment.
    "/repos/{owner}/{repo}/issues",
    "/repos/{owner}/{repo}/issues/{n}",
    "/repos/me/{repo}/issues",
    "/repos/{owner}/{repo}/*",
    "/repos/{owner}/x/**",
    "/{x}/{y}/z",
];
const PATHS: &[&str] = &[
    "/",
    "/v1",
    "/v1/users",
    "/v1/users/",
    "/v1/users/7",
    "/v1/users/7/orders",
    "/v1/users/7/orders/3",
    "/v1/a/x",
    "/v1/c/x",
    "/v1/q/orders",
    "/v2/items",
    "/v2/a/b/items",
    "/v3/users",
    "/docs",
    "/docs/",
    "/docs/a/b",
    "/admin",
    "/admin/q/x",
    "/t/acme",
    "/t/acme/svc/1",
    "/a/b/c/d",
    "/a/b/c/e",
    "/a/z/c/q",
    "/zzz",
    "/zzz/y",
    "/lit[1]/x",
    "/repos/me/r/issues",
    "/repos/you/r/issues",
    "/repos/me/r/issues/3",
    "/repos/me/x/issues",
    "/repos/me/x",
    "/repos/me/r/pulls",
    "/repos//r/issues",
    "/repos/me//issues",
    "/a/b/z",
    "/t/acme/z",
];

fn reference<'a>(routes: &'a [Route], method: &Method, path: &str) -> Option<&'a Route> {
    routes.iter().find(|r| r.accepts(method, None) && r.pattern.is_match(&Candidate::new(path)))
}

/// Tables made of rotations and subsets of the patterns, with methods on some routes,
/// so that first-match order, crowded nodes (glob sets) and method filtering all vary.
#[test]
fn index_agrees_with_linear_first_match() {
    let dir = tempfile::tempdir().unwrap();
    support::write_keys(dir.path());
    let mut tables = 0;
    for rotate in 0..PATTERNS.len() {
        for stride in [1usize, 2, 3] {
            let mut text = String::from("[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n");
            // Repeat the pattern list so some index nodes exceed the glob-set threshold.
            for rep in 0..3 {
                for (i, p) in PATTERNS.iter().cycle().skip(rotate).step_by(stride).take(PATTERNS.len()).enumerate() {
                    let methods = if (i + rep) % 3 == 0 { "methods = [\"POST\"]\n" } else { "" };
                    text.push_str(&format!(
                        "[[routes]]\nname = \"r{rep}-{i}\"\npath = \"{p}\"\n{methods}public = true\n"
                    ));
                }
            }
            let path = dir.path().join("routes.toml");
            std::fs::write(&path, &text).unwrap();
            let snap = rolegate::config::load(&path, None).unwrap();
            for method in [Method::GET, Method::POST] {
                for p in PATHS {
                    let got = snap.routes.find(&method, None, p).map(|r| &*r.name);
                    let want = reference(snap.routes.routes(), &method, p).map(|r| &*r.name);
                    assert_eq!(got, want, "{method} {p} (rotate {rotate}, stride {stride})");
                }
            }
            tables += 1;
        }
    }
    assert_eq!(tables, PATTERNS.len() * 3);
}
