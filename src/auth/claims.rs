//! Reading claims: dotted paths, role/permission sets, and the effective
//! roles and permissions of a token after expansion through `[roles]`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

/// Looks up a dotted path (`realm_access.roles`) in the claims object. A
/// top-level claim whose whole name is the path (a namespaced claim such as
/// `https://example.com/roles`, as Auth0 custom claims are) is taken first.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    if path.contains('.') {
        if let Some(v) = claims.get(path) {
            return Some(v);
        }
    }
    let mut parts = path.split('.');
    let mut cur = claims.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// The claims at `paths` (dotted) plus `iss`, as one JSON object with the same
/// nesting as the token: what `[defaults] log_claims` writes to the access log,
/// and what `rolegate diff --replay` reads back.
pub fn record(claims: &Map<String, Value>, paths: &[String]) -> Value {
    fn insert(node: &mut Map<String, Value>, path: &str, value: &Value) {
        match path.split_once('.') {
            None => {
                node.entry(path.to_owned()).or_insert_with(|| value.clone());
            }
            Some((head, rest)) => {
                // A parent path logged too (`a` and `a.b`): it already holds the child.
                if let Value::Object(child) = node.entry(head.to_owned()).or_insert_with(|| Value::Object(Map::new())) {
                    insert(child, rest, value);
                }
            }
        }
    }
    let mut out = Map::new();
    for path in std::iter::once("iss").chain(paths.iter().map(String::as_str)) {
        if let Some(value) = lookup(claims, path) {
            insert(&mut out, path, value);
        }
    }
    Value::Object(out)
}

/// A roles or permissions claim path, compiled: dotted segments, each a key
/// or a whole segment `{param}`, whose value (a path parameter of the route)
/// selects one key of the object there, whole (never split on `.`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimPath {
    source: Box<str>,
    segments: Box<[Segment]>,
    /// The index of the first `{param}` segment (`segments.len()`: none).
    first_param: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Key(Box<str>),
    Param(Box<str>),
}

/// What a claim path finds in a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Resolved<'a> {
    /// Nothing before the path's first parameter (for a path without one:
    /// nothing at the path; a `null` counts as nothing): the claim is absent.
    Absent,
    /// The claim is there up to its parameter, but not the rest: the token's
    /// map has no key for the parameter's value (or the route no such parameter).
    NoValue,
    Value(&'a Value),
}

impl ClaimPath {
    /// `organization.{tenant}.roles`; the error is a plain sentence.
    pub fn parse(text: &str) -> Result<ClaimPath, String> {
        if text.is_empty() {
            return Err("a claim path must not be empty".to_owned());
        }
        let mut segments = Vec::new();
        for seg in text.split('.') {
            if seg.is_empty() {
                return Err(format!("claim path {text:?} has an empty segment"));
            }
            if !seg.contains(['{', '}']) {
                segments.push(Segment::Key(seg.into()));
                continue;
            }
            let name = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')).unwrap_or_default();
            let mut chars = name.chars();
            let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "claim path {text:?}: {seg:?} is not a parameter (a whole segment `{{name}}`, e.g. `organization.{{tenant}}.roles`)"
                ));
            }
            segments.push(Segment::Param(name.into()));
        }
        let first_param = segments.iter().position(|s| matches!(s, Segment::Param(_))).unwrap_or(segments.len());
        Ok(ClaimPath { source: text.into(), segments: segments.into(), first_param })
    }

    /// The path as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The path parameters it names, in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(p) => Some(&**p),
            Segment::Key(_) => None,
        })
    }

    pub fn has_params(&self) -> bool {
        self.first_param < self.segments.len()
    }

    /// The dotted path before the first parameter (the whole path without
    /// one): what decides whether the claim is absent. Empty for `{t}.roles`.
    pub fn prefix(&self) -> String {
        let keys: Vec<&str> = self.segments[..self.first_param]
            .iter()
            .filter_map(|s| match s {
                Segment::Key(k) => Some(&**k),
                Segment::Param(_) => None,
            })
            .collect();
        keys.join(".")
    }

    /// The keys this path names with `params` (name, value) filled in; `None`
    /// when a parameter has no value there.
    pub fn keys(&self, params: &[(&str, &str)]) -> Option<Vec<String>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Key(k) => Some(k.to_string()),
                Segment::Param(name) => params.iter().find(|(n, _)| *n == &**name).map(|(_, v)| v.to_string()),
            })
            .collect()
    }

    /// The value at this path, with `params` (name, value) for its parameters.
    pub fn resolve<'a>(&self, claims: &'a Map<String, Value>, params: &[(&str, &str)]) -> Resolved<'a> {
        if !self.has_params() {
            return match lookup(claims, &self.source) {
                Some(v) if !v.is_null() => Resolved::Value(v),
                _ => Resolved::Absent,
            };
        }
        let mut at: Option<&'a Value> = None;
        for (i, seg) in self.segments.iter().enumerate() {
            let missing = if i < self.first_param { Resolved::Absent } else { Resolved::NoValue };
            let map = match at {
                None => claims,
                Some(Value::Object(m)) => m,
                Some(_) => return missing,
            };
            let key = match seg {
                Segment::Key(k) => &**k,
                Segment::Param(name) => match params.iter().find(|(n, _)| *n == &**name) {
                    Some((_, v)) => *v,
                    None => return Resolved::NoValue,
                },
            };
            match map.get(key) {
                Some(v) if !v.is_null() => at = Some(v),
                _ => return missing,
            }
        }
        at.map_or(Resolved::NoValue, Resolved::Value)
    }
}

/// The claim names that make a caller's roles and permissions: an issuer's,
/// or a route's own `roles_claim` / `permissions_claim` in their place.
#[derive(Debug, Clone, Copy)]
pub struct ClaimNames<'a> {
    pub roles: &'a [ClaimPath],
    pub permissions: &'a [ClaimPath],
    /// Given when every roles claim is [`Resolved::Absent`].
    pub default_roles: &'a [String],
}

/// Effective (roles, permissions) of `claims` read with `names` and `params`
/// (a path parameter a claim path names but `params` lacks gives nothing
/// there), expanded through `[roles]`; each sorted and deduplicated.
pub fn effective(
    claims: &Map<String, Value>,
    names: ClaimNames<'_>,
    params: &[(&str, &str)],
    closure: &RoleClosure,
) -> (Vec<Box<str>>, Vec<Box<str>>) {
    let mut absent = true;
    let mut roles: Vec<&str> = Vec::new();
    for path in names.roles {
        match path.resolve(claims, params) {
            Resolved::Absent => {}
            Resolved::NoValue => absent = false,
            Resolved::Value(v) => {
                absent = false;
                roles.extend(string_set(v));
            }
        }
    }
    if absent {
        roles.extend(names.default_roles.iter().map(String::as_str));
    }
    let permissions = names.permissions.iter().filter_map(|p| match p.resolve(claims, params) {
        Resolved::Value(v) => Some(v),
        Resolved::Absent | Resolved::NoValue => None,
    });
    closure.expand(roles.into_iter(), permissions.flat_map(string_set))
}

/// The strings of a roles/permissions claim: an array of strings (other
/// elements are ignored), or a string split on spaces (OAuth `scope`).
pub fn string_set(value: &Value) -> impl Iterator<Item = &str> {
    let (arr, s): (&[Value], &str) = match value {
        Value::Array(a) => (a.as_slice(), ""),
        Value::String(s) => (&[], s.as_str()),
        _ => (&[], ""),
    };
    arr.iter().filter_map(Value::as_str).chain(s.split(' ').filter(|p| !p.is_empty()))
}

/// Whether a claim value satisfies an expected value: membership for an
/// array, equality for a string, number or boolean (compared as text).
pub fn claim_matches(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(s) => s == expected,
        Value::Array(items) => items.iter().any(|v| !v.is_array() && claim_matches(v, expected)),
        Value::Number(n) => n.to_string() == expected,
        Value::Bool(b) => (if *b { "true" } else { "false" }) == expected,
        Value::Null | Value::Object(_) => false,
    }
}

/// The text a claim gives an identity header: a string as is, an array's
/// strings joined by commas, a number or boolean as text; objects and null give none.
pub fn header_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(header_text).collect();
            Some(parts.join(","))
        }
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null | Value::Object(_) => None,
    }
}

/// `[roles]` compiled: for each role, every role it includes (itself too) and
/// the union of their permissions. Cycles are rejected when this is built.
#[derive(Debug, Default)]
pub struct RoleClosure {
    roles: HashMap<String, Expansion>,
}

#[derive(Debug, Default)]
struct Expansion {
    roles: Vec<String>,
    permissions: Vec<String>,
}

impl RoleClosure {
    /// `defs`: role → (direct permissions, included roles). Every included role
    /// must be defined and the inclusion graph acyclic (checked by the compiler
    /// before calling this; an unchecked cycle is simply cut here).
    pub fn build(defs: &HashMap<String, (Vec<String>, Vec<String>)>) -> Self {
        let mut roles = HashMap::new();
        for name in defs.keys() {
            let mut seen_roles = BTreeSet::new();
            let mut perms = BTreeSet::new();
            let mut stack = vec![name.as_str()];
            while let Some(r) = stack.pop() {
                if !seen_roles.insert(r.to_owned()) {
                    continue;
                }
                if let Some((p, inc)) = defs.get(r) {
                    perms.extend(p.iter().cloned());
                    stack.extend(inc.iter().map(String::as_str));
                }
            }
            roles.insert(
                name.clone(),
                Expansion { roles: seen_roles.into_iter().collect(), permissions: perms.into_iter().collect() },
            );
        }
        RoleClosure { roles }
    }

    pub fn is_defined(&self, role: &str) -> bool {
        self.roles.contains_key(role)
    }

    /// Effective (roles, permissions), each sorted and deduplicated.
    pub fn expand<'a>(
        &self,
        token_roles: impl Iterator<Item = &'a str>,
        token_permissions: impl Iterator<Item = &'a str>,
    ) -> (Vec<Box<str>>, Vec<Box<str>>) {
        let mut roles: BTreeSet<&str> = BTreeSet::new();
        let mut perms: BTreeSet<&str> = token_permissions.collect();
        for r in token_roles {
            roles.insert(r);
            if let Some(exp) = self.roles.get(r) {
                roles.extend(exp.roles.iter().map(String::as_str));
                perms.extend(exp.permissions.iter().map(String::as_str));
            }
        }
        (roles.into_iter().map(Box::from).collect(), perms.into_iter().map(Box::from).collect())
    }
}

/// A sorted, deduplicated set of names, checked by binary search.
pub fn has(set: &[Box<str>], name: &str) -> bool {
    set.binary_search_by(|p| (**p).cmp(name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn record_keeps_only_the_named_claims_with_their_nesting() {
        let claims = json!({"iss": "i", "sub": "s", "email": "e", "realm_access": {"roles": ["a"], "x": 1}, "org": {"tid": "t"}});
        let claims = claims.as_object().unwrap();
        let paths = ["realm_access.roles", "missing.path", "org", "org.tid"].map(str::to_owned);
        assert_eq!(record(claims, &paths), json!({"iss": "i", "realm_access": {"roles": ["a"]}, "org": {"tid": "t"}}));
        assert_eq!(record(claims, &[]), json!({"iss": "i"}));
    }

    #[test]
    fn lookup_follows_dots() {
        let v = json!({"realm_access": {"roles": ["a"]}, "x": 1});
        let m = v.as_object().unwrap();
        assert_eq!(lookup(m, "realm_access.roles"), Some(&json!(["a"])));
        assert_eq!(lookup(m, "x.y"), None);
        assert_eq!(lookup(m, "missing"), None);
    }

    #[test]
    fn string_sets() {
        let v = json!("read:a  write:b");
        assert_eq!(string_set(&v).collect::<Vec<_>>(), vec!["read:a", "write:b"]);
        let v = json!(["x", 1, "y"]);
        assert_eq!(string_set(&v).collect::<Vec<_>>(), vec!["x", "y"]);
        assert_eq!(string_set(&json!(5)).count(), 0);
    }

    #[test]
    fn claim_matching_is_exact() {
        assert!(claim_matches(&json!("acme"), "acme"));
        assert!(!claim_matches(&json!("acme2"), "acme"));
        assert!(claim_matches(&json!(["a", "acme"]), "acme"));
        assert!(claim_matches(&json!(42), "42"));
        assert!(!claim_matches(&json!({"acme": 1}), "acme"));
    }

    fn path(p: &str) -> ClaimPath {
        ClaimPath::parse(p).unwrap()
    }

    #[test]
    fn claim_paths_parse_whole_segment_parameters_only() {
        let p = path("organization.{tenant}.roles");
        assert_eq!(p.params().collect::<Vec<_>>(), ["tenant"]);
        assert_eq!(p.prefix(), "organization");
        assert!(p.has_params());
        assert!(!path("realm_access.roles").has_params());
        assert_eq!(path("{org}.roles").prefix(), "");
        for bad in ["", "a..b", ".a", "a.", "org-{tenant}.roles", "a.{}.b", "a.{1x}", "a.{t", "a.t}"] {
            assert!(ClaimPath::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn a_parameter_selects_one_key_whole() {
        let v = json!({"organization": {"acme": {"roles": ["admin"]}, "a.b": {"roles": ["dotted"]},
                       "a": {"b": {"roles": ["nested"]}}, "*": {"roles": ["star"]}, "empty": {}}});
        let m = v.as_object().unwrap();
        let p = path("organization.{tenant}.roles");
        assert_eq!(p.resolve(m, &[("tenant", "acme")]), Resolved::Value(&json!(["admin"])));
        // Never split on `.`, never a glob.
        assert_eq!(p.resolve(m, &[("tenant", "a.b")]), Resolved::Value(&json!(["dotted"])));
        assert_eq!(p.resolve(m, &[("tenant", "*")]), Resolved::Value(&json!(["star"])));
        assert_eq!(p.resolve(m, &[("tenant", "a*")]), Resolved::NoValue);
        // Present up to the parameter: no value, which is not absent.
        assert_eq!(p.resolve(m, &[("tenant", "globex")]), Resolved::NoValue);
        assert_eq!(p.resolve(m, &[("tenant", "empty")]), Resolved::NoValue);
        assert_eq!(p.resolve(m, &[]), Resolved::NoValue, "a route without the parameter");
        let none = json!({"sub": "s", "organization": null});
        assert_eq!(p.resolve(none.as_object().unwrap(), &[("tenant", "acme")]), Resolved::Absent);
        let string = json!({"organization": "acme"});
        assert_eq!(p.resolve(string.as_object().unwrap(), &[("tenant", "acme")]), Resolved::NoValue);
        assert_eq!(path("missing.{t}.roles").resolve(m, &[("t", "acme")]), Resolved::Absent);
        assert_eq!(path("organization.acme.x.{t}").resolve(m, &[("t", "acme")]), Resolved::Absent);
        assert_eq!(path("organization.acme").resolve(m, &[]), Resolved::Value(&json!({"roles": ["admin"]})));
        assert_eq!(path("organization.nope").resolve(m, &[]), Resolved::Absent);
        assert_eq!(p.keys(&[("tenant", "a.b")]), Some(vec!["organization".into(), "a.b".into(), "roles".into()]));
        assert_eq!(p.keys(&[]), None);
    }

    #[test]
    fn a_namespaced_claim_is_read_by_its_whole_name() {
        let v = json!({"https://example.com/roles": ["admin"], "realm_access": {"roles": ["r"]}});
        let m = v.as_object().unwrap();
        assert_eq!(lookup(m, "https://example.com/roles"), Some(&json!(["admin"])));
        assert_eq!(path("https://example.com/roles").resolve(m, &[]), Resolved::Value(&json!(["admin"])));
        assert_eq!(lookup(m, "realm_access.roles"), Some(&json!(["r"])));
    }

    /// `default_roles` only when the roles claim is absent: for a path with a
    /// parameter, absent before the parameter.
    #[test]
    fn default_roles_only_for_an_absent_claim() {
        let mut defs = HashMap::new();
        defs.insert("guest".to_owned(), (vec!["read:docs".to_owned()], vec![]));
        let closure = RoleClosure::build(&defs);
        let plain = [path("ts_roles")];
        let scoped = [path("organization.{tenant}.roles")];
        let perms = [path("scope")];
        let defaults = ["guest".to_owned()];
        let roles_of = |claims: Value, roles: &[ClaimPath], params: &[(&str, &str)]| {
            let names = ClaimNames { roles, permissions: &perms, default_roles: &defaults };
            let (r, p) = effective(claims.as_object().unwrap(), names, params, &closure);
            (r.iter().map(|s| s.to_string()).collect::<Vec<_>>(), p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        };
        let guest = (vec!["guest".to_owned()], vec!["read:docs".to_owned()]);
        assert_eq!(roles_of(json!({}), &plain, &[]), guest);
        assert_eq!(roles_of(json!({"ts_roles": null}), &plain, &[]), guest);
        assert_eq!(roles_of(json!({"ts_roles": []}), &plain, &[]), (vec![], vec![]), "present but empty");
        assert_eq!(roles_of(json!({"ts_roles": "a b"}), &plain, &[]), (vec!["a".into(), "b".into()], vec![]));
        let acme = [("tenant", "acme")];
        assert_eq!(roles_of(json!({}), &scoped, &acme), guest, "no organization claim at all");
        assert_eq!(roles_of(json!({}), &scoped, &[]), guest, "the same on a route without the parameter");
        assert_eq!(roles_of(json!({"organization": {}}), &scoped, &acme), (vec![], vec![]));
        let other = json!({"organization": {"globex": {"roles": ["admin"]}}, "scope": "x"});
        assert_eq!(roles_of(other.clone(), &scoped, &acme), (vec![], vec!["x".into()]), "lacking the tenant's key");
        assert_eq!(roles_of(other, &scoped, &[("tenant", "globex")]), (vec!["admin".into()], vec!["x".into()]));
        let empty = json!({"organization": {"acme": {"roles": []}}});
        assert_eq!(roles_of(empty, &scoped, &acme), (vec![], vec![]));
        // Several paths: the default only when every one is absent.
        let both = [path("ts_roles"), path("organization.{tenant}.roles")];
        assert_eq!(roles_of(json!({}), &both, &acme), guest);
        assert_eq!(roles_of(json!({"organization": {}}), &both, &acme), (vec![], vec![]));
    }

    #[test]
    fn closure_expands_hierarchy() {
        let mut defs = HashMap::new();
        defs.insert("reader".to_owned(), (vec!["read".to_owned()], vec![]));
        defs.insert("manager".to_owned(), (vec!["write".to_owned()], vec!["reader".to_owned()]));
        defs.insert("admin".to_owned(), (vec![], vec!["manager".to_owned()]));
        let c = RoleClosure::build(&defs);
        let (roles, perms) = c.expand(["admin"].into_iter(), ["direct"].into_iter());
        let roles: Vec<&str> = roles.iter().map(|s| &**s).collect();
        let perms: Vec<&str> = perms.iter().map(|s| &**s).collect();
        assert_eq!(roles, vec!["admin", "manager", "reader"]);
        assert_eq!(perms, vec!["direct", "read", "write"]);
        assert!(has(&c.expand(["x"].into_iter(), [].into_iter()).0, "x"));
    }
}
