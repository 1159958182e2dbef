//! `rolegate check --openapi`: a route table held against a description.
//! For every operation, an example request (its template with parameters
//! filled in) goes through the gateway's own matcher (`RouteTable::find`,
//! then the `[defaults] unmatched` route) and its own verdict
//! (`decide::evaluate`) on synthetic identities, made by
//! `auth::identity_from_claims` with each issuer's claim names and the
//! table's `[roles]`:
//! - an operation no route admits would get 404;
//! - an operation whose first matching route lets through a request that
//!   the route imported from the description refuses (no token at all, or a
//!   token that meets one of its alternatives but for one scope, role or
//!   claim) is under-protected;
//! - a route that matches no operation's example request is undocumented.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use globset::Candidate;
use http::Method;
use serde_json::{Map, Value};

use super::import::{Imported, ImportedRoute};
use crate::auth::{identity_from_claims, Issuer};
use crate::decide::{self, Auth};
use crate::routes::{Access, Mode, Route};
use crate::routes::{Requirement, TemplatePart};
use crate::snapshot::Snapshot;

/// Most ways of meeting one requirement tried (alternatives of nested `any_of`s multiply).
const MAX_CONJUNCTIONS: usize = 64;

/// What `check --openapi` found.
#[derive(Debug, Default)]
pub struct Coverage {
    /// In the description's order of operations, then the table's order of routes.
    pub findings: Vec<Finding>,
    pub operations: usize,
    /// What could not be checked, and why.
    pub notes: Vec<String>,
}

/// One difference between the table and the description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A documented operation that no route admits (404).
    NotRouted { operation: String, example: String },
    /// A secured operation whose first matching route requires less.
    UnderProtected { operation: String, route: String, why: String, asked: String },
    /// A route that matches no documented operation.
    Undocumented { route: String },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NotRouted { operation, example } => {
                write!(f, "not routed: {operation}: no route admits {example} (it gets 404 no_route)")
            }
            Finding::UnderProtected { operation, route, why, asked } => {
                write!(f, "under-protected: {operation}: {route} {why}; the description asks for {asked}")
            }
            Finding::Undocumented { route } => {
                write!(f, "undocumented: {route} matches no operation of the description")
            }
        }
    }
}

impl Coverage {
    /// (not routed, under-protected, undocumented)
    pub fn counts(&self) -> (usize, usize, usize) {
        let count = |p: fn(&Finding) -> bool| self.findings.iter().filter(|f| p(f)).count();
        (
            count(|f| matches!(f, Finding::NotRouted { .. })),
            count(|f| matches!(f, Finding::UnderProtected { .. })),
            count(|f| matches!(f, Finding::Undocumented { .. })),
        )
    }
}

/// Holds `table` (loaded from `file`) against an imported description.
pub fn coverage(table: &Snapshot, file: &Path, imported: &Imported) -> Coverage {
    let mut issuers: Vec<&Arc<Issuer>> = table.issuers.iter().collect();
    issuers.sort_by(|a, b| a.name.cmp(&b.name));
    let mut notes = Vec::new();
    if issuers.is_empty() {
        notes.push(
            "the table has no [[issuers]], so no token is valid: only requests without a token were compared"
                .to_owned(),
        );
    }
    let label = |r: &Route| {
        if r.index == usize::MAX {
            "[defaults] unmatched = \"authenticate\"".to_owned()
        } else {
            format!("route {:?} ({}:{})", &*r.name, file.display(), r.line)
        }
    };
    let spec_routes = imported.table.routes.routes();
    let mut first_match = vec![false; table.routes.len()];
    let mut findings: Vec<(usize, Finding)> = Vec::new();
    let mut requests = Vec::with_capacity(imported.routes.len());
    for (op, spec_route) in imported.routes.iter().zip(spec_routes) {
        let operation = describe_operation(op);
        let Ok(method) = Method::from_bytes(op.method.as_bytes()) else { continue };
        let path = match crate::normalize::normalize(&op.example_path, None) {
            Ok(t) => t.path().to_owned(),
            Err(e) => {
                notes.push(format!(
                    "{operation}: the example path {} is refused by the normalizer ({e})",
                    op.example_path
                ));
                continue;
            }
        };
        let host = op.example_host.as_deref();
        let Some(route) = table.routes.find(&method, host, &path).or(table.unmatched.as_ref()) else {
            findings.push((op.index, Finding::NotRouted { operation, example: format!("{} {path}", op.method) }));
            requests.push((method, path));
            continue;
        };
        if let Some(slot) = first_match.get_mut(route.index) {
            *slot = true;
        }
        if let Some(why) = requires_less(spec_route, route, &path, &issuers, table) {
            findings.push((
                op.index,
                Finding::UnderProtected { operation, route: label(route), why, asked: describe_access(spec_route) },
            ));
        }
        requests.push((method, path));
    }
    findings.sort_by_key(|(i, _)| *i);
    let mut findings: Vec<Finding> = findings.into_iter().map(|(_, f)| f).collect();
    // Routes that no example reached first: do they match any operation at all?
    for (route, _) in table.routes.routes().iter().zip(&first_match).filter(|(_, hit)| !**hit) {
        let matches_one = imported.routes.iter().zip(&requests).any(|(op, (method, path))| {
            route.accepts(method, op.example_host.as_deref()) && route.pattern.is_match(&Candidate::new(path))
        });
        if !matches_one {
            findings.push(Finding::Undocumented { route: label(route) });
        }
    }
    Coverage { findings, operations: imported.routes.len(), notes }
}

fn describe_operation(op: &ImportedRoute) -> String {
    if op.name == format!("{} {}", op.method, op.template) {
        op.name.clone()
    } else {
        format!("{} {} ({})", op.method, op.template, op.name)
    }
}

fn describe_access(route: &Route) -> String {
    match &route.access {
        Access::Public => "nothing (public)".to_owned(),
        Access::Protected(req) => req.to_string(),
    }
}

/// Whether `route` lets the request through (a report-mode route forwards its denials).
fn allows(route: &Route, path: &str, auth: &Auth) -> bool {
    route.mode == Mode::Report || decide::evaluate(route, path, auth).is_ok()
}

/// Why the table's route requires less than the description's, if it does.
fn requires_less(
    spec: &Route,
    table_route: &Route,
    path: &str,
    issuers: &[&Arc<Issuer>],
    snap: &Snapshot,
) -> Option<String> {
    if allows(table_route, path, &Auth::Missing) && !allows(spec, path, &Auth::Missing) {
        return Some(match (&table_route.access, table_route.mode) {
            (Access::Public, _) => "is public".to_owned(),
            (_, Mode::Report) => "is in report mode (its denials are forwarded)".to_owned(),
            _ => "lets requests without a token through".to_owned(),
        });
    }
    let Access::Protected(req) = &spec.access else { return None };
    let params = spec.pattern.captures(path);
    let mut ways = Vec::new();
    conjunctions(req, &params, Conjunction::default(), &mut ways);
    for issuer in issuers {
        let mut missing: Vec<String> = Vec::new();
        for way in &ways {
            if !allows(spec, path, &identity(way, issuer, snap, [spec, table_route], path)) {
                // A requirement this generator cannot meet (e.g. a claim on a parameter it has no value for).
                continue;
            }
            for (what, less) in way.near_misses() {
                let auth = identity(&less, issuer, snap, [spec, table_route], path);
                if !allows(spec, path, &auth) && allows(table_route, path, &auth) && !missing.contains(&what) {
                    missing.push(what);
                }
            }
        }
        if !missing.is_empty() {
            let whose = if issuers.len() > 1 { format!(" of issuer {:?}", issuer.name) } else { String::new() };
            return Some(format!("lets a token{whose} through without {}", missing.join(", or without ")));
        }
    }
    None
}

/// One way of meeting a requirement: these permissions, roles and claim values together.
#[derive(Debug, Clone, Default)]
struct Conjunction {
    permissions: Vec<String>,
    roles: Vec<String>,
    claims: Vec<(String, String)>,
}

impl Conjunction {
    /// The same, less one permission, role or claim each, with what is missing.
    fn near_misses(&self) -> Vec<(String, Conjunction)> {
        let mut out = Vec::new();
        for i in 0..self.permissions.len() {
            let mut less = self.clone();
            let gone = less.permissions.remove(i);
            out.push((gone, less));
        }
        for i in 0..self.roles.len() {
            let mut less = self.clone();
            let gone = less.roles.remove(i);
            out.push((format!("role {gone}"), less));
        }
        for i in 0..self.claims.len() {
            let mut less = self.clone();
            let (claim, value) = less.claims.remove(i);
            out.push((format!("claim {claim} = {value:?}"), less));
        }
        out
    }
}

/// The ways of meeting `req` (one per choice among its `any_of` alternatives,
/// the first of each `any_` list), added to `base`.
fn conjunctions(req: &Requirement, params: &[(&str, &str)], mut base: Conjunction, out: &mut Vec<Conjunction>) {
    let add = |list: &mut Vec<String>, items: &[String]| {
        for i in items {
            if !list.contains(i) {
                list.push(i.clone());
            }
        }
    };
    add(&mut base.permissions, &req.all_permissions);
    add(&mut base.permissions, &req.any_permissions[..req.any_permissions.len().min(1)]);
    add(&mut base.roles, &req.all_roles);
    add(&mut base.roles, &req.any_roles[..req.any_roles.len().min(1)]);
    'claims: for check in &req.claims {
        let mut value = String::new();
        for part in &check.expected {
            match part {
                TemplatePart::Literal(s) => value.push_str(s),
                TemplatePart::Param(name) => match params.iter().find(|(n, _)| n == name) {
                    Some((_, v)) => value.push_str(v),
                    None => continue 'claims,
                },
            }
        }
        base.claims.push((check.claim.clone(), value));
    }
    if req.any_of.is_empty() {
        out.push(base);
        return;
    }
    for alt in &req.any_of {
        if out.len() >= MAX_CONJUNCTIONS {
            return;
        }
        conjunctions(alt, params, base.clone(), out);
    }
}

/// A verified identity of `issuer` holding exactly what `way` lists, as the
/// gateway would read it from a token on `routes` at `path` (the claim names
/// in effect there, their path parameters filled in; `[roles]`).
fn identity(way: &Conjunction, issuer: &Arc<Issuer>, snap: &Snapshot, routes: [&Route; 2], path: &str) -> Auth {
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::String(issuer.name.clone()));
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    for route in routes {
        let names = route.claim_names.as_deref().map_or_else(|| issuer.claim_names(), |n| n.names(issuer));
        let params = route.pattern.captures(path);
        if let Some(keys) = names.permissions.first().and_then(|at| at.keys(&params)) {
            set(&mut claims, &keys, strings(&way.permissions));
        }
        if let Some(keys) = names.roles.first().and_then(|at| at.keys(&params)) {
            set(&mut claims, &keys, strings(&way.roles));
        }
    }
    for (claim, value) in &way.claims {
        let at = if claim == "$tenant" { issuer.tenant_claim.as_str() } else { claim.as_str() };
        let keys: Vec<String> = at.split('.').map(str::to_owned).collect();
        set(&mut claims, &keys, Value::String(value.clone()));
    }
    Auth::Valid(Arc::new(identity_from_claims(claims, Arc::clone(issuer), &snap.roles, None)))
}

/// Puts `value` at a claim path (its keys), making the objects on the way.
fn set(claims: &mut Map<String, Value>, keys: &[String], value: Value) {
    match keys {
        [] => {}
        [last] => {
            claims.insert(last.clone(), value);
        }
        [head, rest @ ..] => {
            let child = claims.entry(head.clone()).or_insert_with(|| Value::Object(Map::new()));
            if !child.is_object() {
                *child = Value::Object(Map::new());
            }
            if let Value::Object(child) = child {
                set(child, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openapi::{import, Document, ImportOptions};

    const SPEC: &str = "openapi: 3.1.0\npaths:\n  /t/{tenant}/items:\n    get:\n      operationId: items\n      security: [{oauth: [a]}, {oauth: [b, c]}]\n      x-rolegate: {any_roles: [admin], claims: {tid: '{tenant}'}}\n  /open:\n    get: {operationId: open, security: []}\ncomponents:\n  securitySchemes:\n    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://x', scopes: {a: a, b: b, c: c}}}}\n";

    /// The findings for a table of these routes (behind a header with one issuer).
    fn findings(routes: &str, defaults: &str) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::keygen::rsa().unwrap();
        std::fs::write(dir.path().join("k.pem"), &key.public_pem).unwrap();
        let text = format!(
            "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"i\"\nkeys = [{{ pem_file = \"k.pem\" }}]\npermissions_claim = \"scope\"\n{defaults}\n{routes}"
        );
        let path = dir.path().join("routes.toml");
        std::fs::write(&path, &text).unwrap();
        let table = crate::config::load(&path, None).unwrap_or_else(|e| panic!("{e}"));
        let doc = Document::parse(SPEC, std::path::Path::new("spec.yaml")).unwrap();
        let imported = import(&doc, &ImportOptions::default()).unwrap();
        coverage(&table, Path::new("routes.toml"), &imported).findings.iter().map(ToString::to_string).collect()
    }

    const OPEN: &str = "[[routes]]\npath = \"/open\"\npublic = true\n";

    fn items(requirement: &str) -> String {
        format!(
            "[[routes]]\nname = \"items\"\nmethods = [\"GET\"]\npath = \"/t/{{tenant}}/items\"\n{requirement}\n{OPEN}"
        )
    }

    #[test]
    fn the_imported_requirement_itself_passes() {
        let exact = "any_roles = [\"admin\"]\nclaims = { tid = \"{tenant}\" }\nany_of = [{ all_permissions = [\"a\"] }, { all_permissions = [\"b\", \"c\"] }]";
        assert_eq!(findings(&items(exact), ""), Vec::<String>::new());
        // Stricter than the description is not a finding.
        let stricter = format!("{exact}\nall_roles = [\"auditor\"]");
        assert_eq!(findings(&items(&stricter), ""), Vec::<String>::new());
    }

    #[test]
    fn each_thing_a_route_does_not_ask_for_is_named() {
        let no_claim =
            "any_roles = [\"admin\"]\nany_of = [{ all_permissions = [\"a\"] }, { all_permissions = [\"b\", \"c\"] }]";
        let f = findings(&items(no_claim), "");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("lets a token through without claim tid = \"x\""), "{f:?}");
        let one_scope_less = "any_roles = [\"admin\"]\nclaims = { tid = \"{tenant}\" }\nany_of = [{ all_permissions = [\"a\"] }, { all_permissions = [\"b\"] }]";
        let f = findings(&items(one_scope_less), "");
        assert!(f[0].contains("without c;"), "{f:?}");
        let no_role = "claims = { tid = \"{tenant}\" }\nany_of = [{ all_permissions = [\"a\"] }, { all_permissions = [\"b\", \"c\"] }]";
        assert!(findings(&items(no_role), "")[0].contains("without role admin"));
        let report = "mode = \"report\"\nany_roles = [\"admin\"]\nclaims = { tid = \"{tenant}\" }\nall_permissions = [\"a\", \"b\", \"c\"]";
        assert!(findings(&items(report), "")[0].contains("is in report mode"));
        assert!(findings(&items("public = true"), "")[0].contains("is public"));
    }

    #[test]
    fn the_unmatched_route_counts_as_a_route_and_catch_alls_document_nothing_extra() {
        let f = findings(OPEN, "[defaults]\nunmatched = \"authenticate\"");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].starts_with("under-protected: GET /t/{tenant}/items (items): [defaults] unmatched"), "{f:?}");
        let f = findings(OPEN, "");
        assert_eq!(
            f,
            ["not routed: GET /t/{tenant}/items (items): no route admits GET /t/x/items (it gets 404 no_route)"]
        );
        // A catch-all matches an operation: not undocumented (but under-protected).
        let f = findings(&format!("{OPEN}[[routes]]\nname = \"all\"\npath = \"/**\"\n"), "");
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].contains("route \"all\" (routes.toml:"), "{f:?}");
        let f = findings(&format!("{OPEN}[[routes]]\nname = \"docs\"\npath = \"/docs/**\"\npublic = true\n"), "");
        assert!(f[1].starts_with("undocumented: route \"docs\""), "{f:?}");
    }
}
