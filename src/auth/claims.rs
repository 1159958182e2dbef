//! Reading claims: dotted paths, role/permission sets, and the effective
//! roles and permissions of a token after expansion through `[roles]`.

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

/// Looks up a dotted path (`realm_access.roles`) in the claims object.
pub fn lookup<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
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
