//! `rolegate import openapi`: one `[[routes]]` table per operation of a
//! description. The route's requirement is the operation's security (else
//! the document's): each security requirement object is an AND of its
//! schemes' scopes (`all_permissions`), several objects are an OR
//! (`any_of`), and an empty list or an empty object among them makes the
//! route public. `x-rolegate` on an operation adds route keys. What the
//! gateway cannot check (API keys, HTTP Basic, mutual TLS) is a comment on
//! the route and a warning, never dropped in silence; an operation that
//! declares no security at all needs a valid token (fail closed). The text
//! is checked by rolegate's own parser and compiler before it is printed.

use std::path::{Path, PathBuf};

use serde_json::Value;
use toml::Value as Toml;

use super::document::{push_escaped, Document, Operation, SpecError, Where};
use super::template::{self, Converted};
use crate::snapshot::Snapshot;

/// `--prefix` and `--upstream`.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// Put before every template instead of the path of `servers[0].url` (`""` or `/`: nothing).
    pub prefix: Option<String>,
    /// `upstream = NAME` on every route (an `x-rolegate` upstream wins).
    pub upstream: Option<String>,
}

/// The result of an import.
#[derive(Debug)]
pub struct Imported {
    /// The `[[routes]]` tables, with a header comment: what `import` prints.
    pub text: String,
    /// One per operation, in table order (the order of [`Imported::table`]'s routes).
    pub routes: Vec<ImportedRoute>,
    /// One line each, for stderr.
    pub warnings: Vec<String>,
    /// The routes compiled by rolegate's own compiler (behind a header that
    /// defines every upstream they name and no issuer).
    pub table: Snapshot,
}

/// One imported operation.
#[derive(Debug, Clone)]
pub struct ImportedRoute {
    /// `GET`.
    pub method: String,
    /// The template as the description writes it.
    pub template: String,
    /// The operation's JSON pointer.
    pub pointer: String,
    pub name: String,
    /// Position of the operation in the description.
    pub index: usize,
    /// An example request path for the operation (parameters filled in).
    pub example_path: String,
    /// The host such a request is sent to, when known (`servers`, `x-rolegate` host).
    pub example_host: Option<String>,
    /// What the description's security requirements ask.
    pub access: SpecAccess,
    /// Line of the route's `[[routes]]` in [`Imported::text`].
    pub line: usize,
}

/// What the security requirements of an operation ask of a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpecAccess {
    /// Nothing (`security: []`, or `{}` among the alternatives).
    Public,
    /// A valid bearer token that meets one of the alternatives (none: any valid token).
    Token(Vec<Alternative>),
}

/// One security requirement object, as far as the gateway can check it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Alternative {
    /// OAuth 2 / OpenID Connect scopes: `all_permissions`.
    pub permissions: Vec<String>,
    /// Role names of an HTTP bearer scheme (OpenAPI 3.1): `all_roles`.
    pub roles: Vec<String>,
}

/// An operation's security as the importer reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub access: SpecAccess,
    /// What the gateway cannot check, for comments and warnings.
    pub notes: Vec<String>,
    /// Neither the operation nor the document declares security.
    pub undeclared: bool,
}

/// Route keys in the order they are written.
const KEY_ORDER: [&str; 13] = [
    "name",
    "methods",
    "host",
    "path",
    "upstream",
    "public",
    "mode",
    "all_permissions",
    "any_permissions",
    "all_roles",
    "any_roles",
    "claims",
    "any_of",
];

/// Keys whose lists `x-rolegate` adds to rather than replaces.
const LIST_KEYS: [&str; 5] = ["methods", "all_permissions", "any_permissions", "all_roles", "any_roles"];

/// Keys that make a requirement.
const REQUIREMENT_KEYS: [&str; 6] =
    ["all_permissions", "any_permissions", "all_roles", "any_roles", "claims", "any_of"];

/// Imports every operation of `doc`.
pub fn import(doc: &Document, opts: &ImportOptions) -> Result<Imported, SpecError> {
    let ops = doc.operations()?;
    let prefix = opts.prefix.as_deref().map(|p| p.trim_end_matches('/').to_owned());
    let mut drafts = Vec::with_capacity(ops.len());
    for op in ops {
        drafts.push(draft(doc, op, prefix.as_deref(), opts)?);
    }
    let order = template::order(&drafts.iter().map(|d| d.path.segments.as_slice()).collect::<Vec<_>>());
    let literals = template::literals(drafts.iter().map(|d| d.path.segments.as_slice()));

    let mut text = String::new();
    let undeclared = drafts.iter().filter(|d| d.security.undeclared).count();
    text.push_str(&format!(
        "# Imported by `rolegate import openapi` from {} ({}, OpenAPI {}): {} operations.\n\
         # Scopes are permissions, read from the issuer's `permissions_claim` (\"scope\" for an OAuth scope string).\n\
         # Put these routes after [server], [upstreams.default] and [[issuers]]; `rolegate check --openapi` compares them with the description.\n",
        doc.file.display(),
        doc.title(),
        doc.version,
        drafts.len()
    ));
    let mut warnings = Vec::new();
    if undeclared > 0 {
        warnings.push(format!(
            "{undeclared} of {} operations declare no security (neither the operation nor the document): \
             imported as needing any valid token; give them `security: []` to make them public, or a requirement",
            drafts.len()
        ));
    }
    let mut routes = Vec::with_capacity(drafts.len());
    let mut starts = Vec::with_capacity(drafts.len());
    for &i in &order {
        let d = &drafts[i];
        let op = &d.op;
        text.push('\n');
        starts.push((text.matches('\n').count() + 1, i));
        text.push_str(&format!("# {} {}\n", op.method, op.template));
        for note in &d.notes {
            text.push_str(&format!("# note: {}\n", note.replace('\n', " ")));
            warnings.push(format!("{}: at {}: {note}", doc.file.display(), op.pointer));
        }
        if d.security.undeclared {
            text.push_str("# note: the description declares no security for this operation: any valid token\n");
        }
        let line = text.matches('\n').count() + 1;
        text.push_str("[[routes]]\n");
        text.push_str(&render_route(&d.table));
        let sample = |name: &str| {
            let param = op.path_params.iter().find(|p| p.name == name);
            match param.and_then(|p| p.sample.clone()) {
                Some(s) => s,
                None => match param.and_then(|p| p.kind.as_deref()) {
                    Some("integer" | "number") => "1".to_owned(),
                    Some("boolean") => "true".to_owned(),
                    _ => "x".to_owned(),
                },
            }
        };
        let example_host = match d.table.get("host") {
            Some(Toml::String(glob)) => Some(sample_host(glob)),
            _ => op.server.as_ref().and_then(|s| s.host.clone()),
        };
        routes.push(ImportedRoute {
            method: op.method.clone(),
            template: op.template.clone(),
            pointer: op.pointer.clone(),
            name: match d.table.get("name") {
                Some(Toml::String(n)) => n.clone(),
                _ => default_name(op),
            },
            index: op.index,
            example_path: template::example(&d.path.segments, &literals, sample),
            example_host,
            access: d.security.access.clone(),
            line,
        });
    }
    let table = validate(doc, &text, &drafts, &starts)?;
    Ok(Imported { text, routes, warnings, table })
}

/// One operation on its way to a route.
struct Draft {
    op: Operation,
    path: Converted,
    security: Security,
    table: toml::Table,
    notes: Vec<String>,
}

fn default_name(op: &Operation) -> String {
    op.operation_id.clone().unwrap_or_else(|| format!("{} {}", op.method, op.template))
}

fn draft(doc: &Document, op: Operation, prefix: Option<&str>, opts: &ImportOptions) -> Result<Draft, SpecError> {
    let server_path = op.server.as_ref().map_or("", |s| s.path.as_str());
    let path = template::convert(prefix.unwrap_or(server_path), &op.template)
        .map_err(|e| doc.error(&path_pointer(&op.template), e))?;
    let security = security(doc, &op)?;
    let mut notes = path.notes.clone();
    notes.extend(security.notes.iter().cloned());
    notes.extend(op.unchecked.iter().cloned());
    let mut table = toml::Table::new();
    table.insert("name".into(), Toml::String(default_name(&op)));
    table.insert("methods".into(), Toml::Array(vec![Toml::String(op.method.clone())]));
    table.insert("path".into(), Toml::String(path.pattern.clone()));
    if let Some(up) = &opts.upstream {
        table.insert("upstream".into(), Toml::String(up.clone()));
    }
    requirement_keys(&security.access, &mut table);
    if let Some((x, at)) = &op.x_rolegate {
        merge_extension(doc, &mut table, x, at, &path.renamed, &mut notes)?;
    }
    Ok(Draft { op, path, security, table, notes })
}

fn path_pointer(template: &str) -> String {
    let mut at = String::from("#/paths/");
    push_escaped(&mut at, template);
    at
}

/// Reads the security requirements that apply to an operation.
pub fn security(doc: &Document, op: &Operation) -> Result<Security, SpecError> {
    let Some((value, at)) = &op.security else {
        return Ok(Security { access: SpecAccess::Token(Vec::new()), notes: Vec::new(), undeclared: true });
    };
    let Value::Array(list) = value else {
        return Err(doc.error(at, "`security` must be a list of security requirement objects"));
    };
    let public = Security { access: SpecAccess::Public, notes: Vec::new(), undeclared: false };
    if list.is_empty() {
        return Ok(public);
    }
    let (mut alternatives, mut notes, mut unusable) = (Vec::<Alternative>::new(), Vec::new(), Vec::new());
    for (i, requirement) in list.iter().enumerate() {
        let Value::Object(requirement) = requirement else {
            return Err(
                doc.error(&format!("{at}/{i}"), "a security requirement must be a mapping of scheme names to scopes")
            );
        };
        if requirement.is_empty() {
            return Ok(public);
        }
        let (mut alt, mut unchecked, mut checked) = (Alternative::default(), Vec::new(), 0);
        for (name, scopes) in requirement {
            let mut scopes_at = format!("{at}/{i}/");
            push_escaped(&mut scopes_at, name);
            let scopes: Vec<String> = match scopes {
                Value::Array(items) => items
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect::<Option<_>>()
                    .ok_or_else(|| doc.error(&scopes_at, "scopes must be strings"))?,
                _ => return Err(doc.error(&scopes_at, "the value of a security requirement must be a list of scopes")),
            };
            let Some((scheme, _)) = doc.security_scheme(name)? else {
                return Err(doc.error(
                    &scopes_at,
                    format!("the security scheme {name:?} is not defined in #/components/securitySchemes"),
                ));
            };
            let kind = scheme.get("type").and_then(Value::as_str).unwrap_or("");
            let http_scheme = scheme.get("scheme").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase();
            match kind {
                "oauth2" | "openIdConnect" => {
                    alt.permissions.extend(scopes);
                    checked += 1;
                }
                "http" if http_scheme == "bearer" => {
                    // 3.1: "the array MAY contain a list of role names which are required".
                    alt.roles.extend(scopes);
                    checked += 1;
                }
                _ => unchecked.push(describe_scheme(name, scheme)),
            }
        }
        dedup(&mut alt.permissions);
        dedup(&mut alt.roles);
        if checked == 0 {
            unusable.push(unchecked.join(" with "));
            continue;
        }
        if !unchecked.is_empty() {
            notes.push(format!(
                "the gateway cannot check {}: it enforces the bearer token part, the upstream must check the rest",
                unchecked.join(" and ")
            ));
        }
        if !alternatives.iter().any(|a| same_alternative(a, &alt)) {
            alternatives.push(alt);
        }
    }
    if alternatives.is_empty() {
        notes.push(format!(
            "the gateway cannot check {}: the route asks for a valid bearer token instead \
             (x-rolegate: {{public: true}} leaves the check to the upstream alone)",
            unusable.join(", or ")
        ));
        return Ok(Security { access: SpecAccess::Token(Vec::new()), notes, undeclared: false });
    }
    if !unusable.is_empty() {
        notes.push(format!(
            "the gateway cannot check the alternative {}: callers who use only that are refused here",
            unusable.join(", or ")
        ));
    }
    // An alternative that asks for no scope is met by any valid token, and so is the whole requirement.
    if alternatives.iter().any(|a| a.permissions.is_empty() && a.roles.is_empty()) {
        alternatives.clear();
    }
    Ok(Security { access: SpecAccess::Token(alternatives), notes, undeclared: false })
}

fn same_alternative(a: &Alternative, b: &Alternative) -> bool {
    let sorted = |v: &[String]| {
        let mut v = v.to_vec();
        v.sort();
        v
    };
    sorted(&a.permissions) == sorted(&b.permissions) && sorted(&a.roles) == sorted(&b.roles)
}

fn describe_scheme(name: &str, scheme: &Value) -> String {
    let field = |k: &str| scheme.get(k).and_then(Value::as_str).unwrap_or("?");
    match field("type") {
        "apiKey" => format!("the API key {name:?} ({} {:?})", field("in"), field("name")),
        "http" => format!("HTTP {} authentication ({name:?})", field("scheme")),
        "mutualTLS" => format!("mutual TLS ({name:?})"),
        other => format!("the security scheme {name:?} of type {other:?}"),
    }
}

fn dedup(list: &mut Vec<String>) {
    let mut seen = std::collections::HashSet::new();
    list.retain(|s| seen.insert(s.clone()));
}

fn strings(list: &[String]) -> Toml {
    Toml::Array(list.iter().cloned().map(Toml::String).collect())
}

/// The route keys of what the description asks.
fn requirement_keys(access: &SpecAccess, table: &mut toml::Table) {
    let alternative = |a: &Alternative, table: &mut toml::Table| {
        if !a.permissions.is_empty() {
            table.insert("all_permissions".into(), strings(&a.permissions));
        }
        if !a.roles.is_empty() {
            table.insert("all_roles".into(), strings(&a.roles));
        }
    };
    match access {
        SpecAccess::Public => {
            table.insert("public".into(), Toml::Boolean(true));
        }
        SpecAccess::Token(alts) if alts.len() == 1 => alternative(&alts[0], table),
        SpecAccess::Token(alts) if alts.is_empty() => {}
        SpecAccess::Token(alts) => {
            let list = alts
                .iter()
                .map(|a| {
                    let mut t = toml::Table::new();
                    alternative(a, &mut t);
                    Toml::Table(t)
                })
                .collect();
            table.insert("any_of".into(), Toml::Array(list));
        }
    }
}

/// Adds an operation's `x-rolegate` keys: lists of permissions, roles and
/// methods are added to, `claims` merged, an `any_of` joined to the
/// description's (both must hold), `public` decides, any other key replaces
/// (but `path`, which is the template's).
/// Unknown keys and wrong types are kept for the parser to refuse, with
/// "did you mean".
fn merge_extension(
    doc: &Document,
    table: &mut toml::Table,
    x: &Value,
    at: &str,
    renamed: &[(String, String)],
    notes: &mut Vec<String>,
) -> Result<(), SpecError> {
    let Value::Object(x) = x else {
        return Err(
            doc.error(at, "x-rolegate must be a mapping of route keys (any_roles, claims, mode, upstream, ...)")
        );
    };
    for (key, value) in x {
        let mut key_at = format!("{at}/");
        push_escaped(&mut key_at, key);
        if key == "path" {
            // The example requests of `check --openapi` come from the template: the two must agree.
            return Err(doc.error(&key_at, "x-rolegate cannot set `path`: it comes from the template (see --prefix)"));
        }
        let mut value = to_toml(doc, value, &key_at)?;
        if key == "claims" {
            rename_params(&mut value, renamed);
        }
        match (key.as_str(), value) {
            ("public", Toml::Boolean(true)) => {
                let dropped: Vec<&str> = REQUIREMENT_KEYS.iter().copied().filter(|k| table.contains_key(*k)).collect();
                if !dropped.is_empty() {
                    notes.push(format!(
                        "x-rolegate makes the route public: the description's requirement ({}) is not enforced",
                        dropped.join(", ")
                    ));
                }
                for k in REQUIREMENT_KEYS {
                    table.remove(k);
                }
                table.insert("public".into(), Toml::Boolean(true));
            }
            ("public", Toml::Boolean(false)) => {
                table.remove("public");
            }
            (k, Toml::Array(items)) if LIST_KEYS.contains(&k) => match table.get_mut(k) {
                Some(Toml::Array(existing)) => {
                    for item in items {
                        if !existing.contains(&item) {
                            existing.push(item);
                        }
                    }
                }
                _ => {
                    table.insert(k.to_owned(), Toml::Array(items));
                }
            },
            ("claims", Toml::Table(claims)) => match table.get_mut("claims") {
                Some(Toml::Table(existing)) => existing.extend(claims),
                _ => {
                    table.insert("claims".into(), Toml::Table(claims));
                }
            },
            ("any_of", Toml::Array(extra)) => match table.get_mut("any_of") {
                // (a1 or a2) and (b1 or b2): each of the description's alternatives also needs one of x-rolegate's.
                Some(Toml::Array(existing)) => {
                    for alt in existing.iter_mut() {
                        if let Toml::Table(alt) = alt {
                            alt.insert("any_of".into(), Toml::Array(extra.clone()));
                        }
                    }
                }
                _ => {
                    table.insert("any_of".into(), Toml::Array(extra));
                }
            },
            (k, value) => {
                table.insert(k.to_owned(), value);
            }
        }
    }
    Ok(())
}

/// `{enterprise-team}` in claim templates → the renamed `{enterprise_team}`.
fn rename_params(value: &mut Toml, renamed: &[(String, String)]) {
    match value {
        Toml::String(s) => {
            for (from, to) in renamed {
                *s = s.replace(&format!("{{{from}}}"), &format!("{{{to}}}"));
            }
        }
        Toml::Table(t) => t.iter_mut().for_each(|(_, v)| rename_params(v, renamed)),
        Toml::Array(a) => a.iter_mut().for_each(|v| rename_params(v, renamed)),
        _ => {}
    }
}

fn to_toml(doc: &Document, value: &Value, at: &str) -> Result<Toml, SpecError> {
    Ok(match value {
        Value::Null => return Err(doc.error(at, "null has no TOML form; leave the key out")),
        Value::Bool(b) => Toml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Toml::Integer(i),
            None => Toml::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Toml::String(s.clone()),
        Value::Array(items) => Toml::Array(
            items.iter().enumerate().map(|(i, v)| to_toml(doc, v, &format!("{at}/{i}"))).collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => {
            let mut t = toml::Table::new();
            for (k, v) in map {
                let mut k_at = format!("{at}/");
                push_escaped(&mut k_at, k);
                t.insert(k.clone(), to_toml(doc, v, &k_at)?);
            }
            Toml::Table(t)
        }
    })
}

/// A host that a host glob matches: `*.example.com` → `example.example.com`.
fn sample_host(glob: &str) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for c in glob.to_ascii_lowercase().chars() {
        match c {
            '{' => {}
            ',' => skipping = true,
            '}' => skipping = false,
            _ if skipping => {}
            '*' => out.push_str("example"),
            '?' => out.push('x'),
            c => out.push(c),
        }
    }
    out
}

// === writing TOML ===

/// The body of one `[[routes]]` table, keys in [`KEY_ORDER`], then any others.
fn render_route(table: &toml::Table) -> String {
    let mut out = String::new();
    let known = KEY_ORDER.iter().filter_map(|k| table.get(*k).map(|v| (*k, v)));
    let others = table.iter().filter(|(k, _)| !KEY_ORDER.contains(&k.as_str())).map(|(k, v)| (k.as_str(), v));
    for (key, value) in known.chain(others) {
        out.push_str(&render_key(key));
        out.push_str(" = ");
        render_value(value, &mut out);
        out.push('\n');
    }
    out
}

fn render_key(key: &str) -> String {
    if !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        key.to_owned()
    } else {
        let mut out = String::new();
        render_string(key, &mut out);
        out
    }
}

fn render_value(value: &Toml, out: &mut String) {
    match value {
        Toml::String(s) => render_string(s, out),
        Toml::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                render_value(item, out);
            }
            out.push(']');
        }
        Toml::Table(t) if t.is_empty() => out.push_str("{}"),
        Toml::Table(t) => {
            out.push_str("{ ");
            for (i, (k, v)) in t.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&render_key(k));
                out.push_str(" = ");
                render_value(v, out);
            }
            out.push_str(" }");
        }
        Toml::Float(f) if f.is_finite() && f.fract() == 0.0 => out.push_str(&format!("{f:.1}")),
        other => out.push_str(&other.to_string()),
    }
}

fn render_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

// === validation ===

/// Parses and compiles the imported routes behind a header that defines
/// every upstream they name; an error is the operation's (its `x-rolegate`'s,
/// when it has one).
fn validate(doc: &Document, text: &str, drafts: &[Draft], starts: &[(usize, usize)]) -> Result<Snapshot, SpecError> {
    let mut upstreams: Vec<&str> = drafts
        .iter()
        .filter_map(|d| match d.table.get("upstream") {
            Some(Toml::String(u)) => Some(u.as_str()),
            _ => None,
        })
        .chain(["default"])
        .collect();
    upstreams.sort_unstable();
    upstreams.dedup();
    let mut header = String::new();
    for u in &upstreams {
        header.push_str(&format!("[upstreams.{}]\nurl = \"http://127.0.0.1:9\"\n", render_key(u)));
    }
    let offset = header.matches('\n').count();
    let full = header + text;
    let path: PathBuf = PathBuf::from(format!("{} (imported)", doc.file.display()));
    let blame = |errors: crate::config::ConfigErrors| {
        let Some(e) = errors.0.into_iter().next() else {
            return doc.error("#", "the imported routes do not compile");
        };
        let line = e.line.saturating_sub(offset);
        let owner = starts.iter().rev().find(|(start, _)| *start <= line).map(|&(_, i)| &drafts[i].op);
        match owner {
            Some(op) => {
                let at = op.x_rolegate.as_ref().map_or(op.pointer.as_str(), |(_, at)| at.as_str());
                doc.error(at, format!("the route it makes is refused: {}", e.message))
            }
            None => SpecError { file: doc.file.clone(), at: Where::File, message: e.message },
        }
    };
    let file = crate::config::parse(&path, &full).map_err(blame)?;
    crate::config::compile(file, Path::new(&path), &full, None).map_err(blame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        Document::parse(text, Path::new("spec.yaml")).unwrap()
    }

    const SCHEMES: &str = "components:\n  securitySchemes:\n    oauth: {type: oauth2, flows: {implicit: {authorizationUrl: 'https://x', scopes: {a: a, b: b, c: c}}}}\n    oidc: {type: openIdConnect, openIdConnectUrl: 'https://x/.well-known/openid-configuration'}\n    bearer: {type: http, scheme: Bearer}\n    basic: {type: http, scheme: basic}\n    key: {type: apiKey, in: header, name: X-Key}\n    cookie: {type: apiKey, in: cookie, name: sid}\n    tls: {type: mutualTLS}\n";

    fn security_of(security: &str) -> Security {
        let d = doc(&format!("openapi: 3.1.0\npaths:\n  /a:\n    get:\n      security: {security}\n{SCHEMES}"));
        let ops = d.operations().unwrap();
        super::security(&d, &ops[0]).unwrap()
    }

    fn alt(perms: &[&str], roles: &[&str]) -> Alternative {
        Alternative {
            permissions: perms.iter().map(|s| s.to_string()).collect(),
            roles: roles.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn security_requirements_map_to_requirements() {
        use SpecAccess::*;
        assert_eq!(security_of("[{oauth: [a, b]}]").access, Token(vec![alt(&["a", "b"], &[])]));
        // Several objects: an OR; one object with several schemes: an AND.
        assert_eq!(
            security_of("[{oauth: [a]}, {oidc: [b, c]}]").access,
            Token(vec![alt(&["a"], &[]), alt(&["b", "c"], &[])])
        );
        assert_eq!(security_of("[{oauth: [a], oidc: [b]}]").access, Token(vec![alt(&["a", "b"], &[])]));
        // Public: an empty list, or an empty object among the alternatives.
        assert_eq!(security_of("[]").access, Public);
        assert_eq!(security_of("[{oauth: [a]}, {}]").access, Public);
        // A bearer scheme: any valid token; in 3.1 its list names roles.
        assert_eq!(security_of("[{bearer: []}]").access, Token(vec![]));
        assert_eq!(security_of("[{bearer: [admin]}]").access, Token(vec![alt(&[], &["admin"])]));
        // An alternative without scopes is met by any valid token.
        assert_eq!(security_of("[{oauth: [a]}, {bearer: []}]").access, Token(vec![]));
        // Duplicates collapse.
        assert_eq!(security_of("[{oauth: [a, b]}, {oauth: [b, a, a]}]").access, Token(vec![alt(&["a", "b"], &[])]));
    }

    #[test]
    fn what_the_gateway_cannot_check_is_noted_and_fails_closed() {
        // Only an API key: a bearer token is asked instead, and said so.
        let s = security_of("[{key: []}]");
        assert_eq!(s.access, SpecAccess::Token(vec![]));
        assert!(s.notes[0].contains("the API key \"key\" (header \"X-Key\")"), "{:?}", s.notes);
        // An API key as an alternative: dropped (its callers are refused), the other kept.
        let s = security_of("[{oauth: [a]}, {cookie: []}]");
        assert_eq!(s.access, SpecAccess::Token(vec![alt(&["a"], &[])]));
        assert!(s.notes[0].contains("cookie \"sid\"") && s.notes[0].contains("refused"), "{:?}", s.notes);
        // Together with a bearer part: the bearer part is enforced, the rest noted.
        let s = security_of("[{oauth: [a], basic: []}]");
        assert_eq!(s.access, SpecAccess::Token(vec![alt(&["a"], &[])]));
        assert!(s.notes[0].contains("HTTP basic authentication"), "{:?}", s.notes);
        assert!(security_of("[{tls: []}]").notes[0].contains("mutual TLS"));
        // No security anywhere: any valid token, flagged as undeclared.
        let d = doc("openapi: 3.0.0\npaths:\n  /a:\n    get: {}\n");
        let s = super::security(&d, &d.operations().unwrap()[0]).unwrap();
        assert!(s.undeclared && s.access == SpecAccess::Token(vec![]));
        // The document's security applies when the operation has none.
        let d = doc(&format!("openapi: 3.0.0\nsecurity: [{{oauth: [c]}}]\npaths:\n  /a:\n    get: {{}}\n    post: {{security: []}}\n{SCHEMES}"));
        let ops = d.operations().unwrap();
        assert_eq!(super::security(&d, &ops[0]).unwrap().access, SpecAccess::Token(vec![alt(&["c"], &[])]));
        assert_eq!(super::security(&d, &ops[1]).unwrap().access, SpecAccess::Public);
    }

    #[test]
    fn cookie_and_credential_header_parameters_are_noted_never_dropped() {
        let i = imported(
            "openapi: 3.0.0\npaths:\n  /a:\n    parameters: [{in: cookie, name: session}]\n    get:\n      operationId: getA\n      \
             parameters: [{in: header, name: X-Session-Token}, {in: header, name: X-Trace}, {in: query, name: q}]\n",
        )
        .unwrap();
        assert!(i.text.contains("cookie parameter \"session\" is not checked"), "{}", i.text);
        assert!(i.text.contains("header parameter \"X-Session-Token\" looks like a credential"), "{}", i.text);
        assert!(!i.text.contains("X-Trace") && !i.text.contains("\"q\""), "{}", i.text);
        assert_eq!(i.warnings.iter().filter(|w| w.contains("parameter")).count(), 2, "{:?}", i.warnings);
    }

    #[test]
    fn an_undefined_scheme_is_an_error_at_its_pointer() {
        let d = doc("openapi: 3.0.0\npaths:\n  /a:\n    get:\n      security: [{nope: []}]\n");
        let err = super::security(&d, &d.operations().unwrap()[0]).unwrap_err();
        assert_eq!(err.at, Where::Pointer("#/paths/~1a/get/security/0/nope".into()));
    }

    fn imported(text: &str) -> Result<Imported, SpecError> {
        import(&doc(text), &ImportOptions::default())
    }

    fn route_of<'a>(i: &'a Imported, name: &str) -> &'a crate::routes::Route {
        i.table.routes.routes().iter().find(|r| &*r.name == name).unwrap()
    }

    #[test]
    fn x_rolegate_adds_route_keys() {
        let text = format!(
            "openapi: 3.1.0\nservers: [{{url: 'https://api.example.com/v1'}}]\npaths:\n  /tenants/{{tenant-id}}/items:\n    get:\n      operationId: items\n      security: [{{oauth: [a]}}, {{oidc: [b]}}]\n      x-rolegate:\n        any_roles: [admin, owner]\n        claims: {{tid: '{{tenant-id}}'}}\n        all_permissions: [c]\n        methods: [HEAD]\n        mode: report\n        upstream: billing\n        host: '*.example.com'\n        any_of: [{{all_roles: [x]}}, {{all_roles: [y]}}]\n{SCHEMES}"
        );
        let i = imported(&text).unwrap();
        assert!(i.text.contains("claims = { tid = \"{tenant_id}\" }"), "{}", i.text);
        assert!(i.text.contains("methods = [\"GET\", \"HEAD\"]"), "{}", i.text);
        assert!(i.text.contains("any_roles = [\"admin\", \"owner\"]"), "{}", i.text);
        assert!(i.text.contains("upstream = \"billing\""), "{}", i.text);
        let r = route_of(&i, "items");
        assert_eq!(r.mode, crate::routes::Mode::Report);
        assert_eq!(r.upstream.name, "billing");
        let crate::routes::Access::Protected(req) = &r.access else { panic!("protected") };
        assert_eq!(req.all_permissions, ["c"]);
        // The description's alternatives, each also needing one of x-rolegate's.
        assert_eq!(req.any_of.len(), 2);
        assert_eq!(req.any_of[0].all_permissions, ["a"]);
        assert_eq!(req.any_of[0].any_of.len(), 2);
        assert_eq!(i.routes[0].example_host.as_deref(), Some("example.example.com"));
        assert_eq!(i.routes[0].example_path, "/v1/tenants/x/items");
    }

    #[test]
    fn x_rolegate_public_and_mistakes() {
        let base = |x: &str| {
            format!("openapi: 3.0.0\npaths:\n  /a/{{id}}:\n    get:\n      security: [{{oauth: [a]}}]\n      x-rolegate: {x}\n{SCHEMES}")
        };
        let i = imported(&base("{public: true}")).unwrap();
        assert!(matches!(i.table.routes.routes()[0].access, crate::routes::Access::Public));
        assert!(i.warnings.iter().any(|w| w.contains("x-rolegate makes the route public")), "{:?}", i.warnings);
        // A misspelt key: refused by rolegate's own parser, with "did you mean", at the extension's pointer.
        let err = imported(&base("{any_role: [x]}")).unwrap_err();
        assert_eq!(err.at, Where::Pointer("#/paths/~1a~1{id}/get/x-rolegate".into()), "{err}");
        assert!(err.message.contains("did you mean `any_roles`"), "{err}");
        // A claim naming a parameter the path does not have: refused by the compiler.
        let err = imported(&base("{claims: {tid: '{tenant}'}}")).unwrap_err();
        assert!(err.message.contains("no parameter {tenant}"), "{err}");
        // Wrong shapes.
        assert!(imported(&base("[a]")).unwrap_err().message.contains("must be a mapping"));
        assert!(imported(&base("{mode: ~}")).unwrap_err().message.contains("null"));
        let err = imported(&base("{path: /b}")).unwrap_err();
        assert_eq!(err.at, Where::Pointer("#/paths/~1a~1{id}/get/x-rolegate/path".into()), "{err}");
        let err = imported(&base("{mode: sometimes}")).unwrap_err();
        assert!(err.message.contains("sometimes"), "{err}");
    }

    #[test]
    fn routes_come_literal_first_with_names_paths_and_examples() {
        let text = format!(
            "openapi: 3.0.0\nservers: [{{url: 'http://h/v2/'}}]\npaths:\n  /users/{{id}}:\n    get: {{security: [{{oauth: [a]}}], parameters: [{{name: id, in: path, required: true, schema: {{type: integer}}}}]}}\n    delete: {{operationId: del, security: [{{oauth: [b]}}]}}\n  /users/me:\n    get: {{operationId: me, security: []}}\n{SCHEMES}"
        );
        let i = imported(&text).unwrap();
        let names: Vec<&str> = i.routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["me", "GET /users/{id}", "del"]);
        assert_eq!(i.routes[1].example_path, "/v2/users/1");
        assert_eq!(i.routes[0].example_path, "/v2/users/me");
        assert_eq!(i.routes[0].access, SpecAccess::Public);
        let lines: Vec<&str> = i.text.lines().collect();
        assert_eq!(lines[i.routes[1].line - 1], "[[routes]]");
        let by_prefix =
            import(&doc(&text), &ImportOptions { prefix: Some("/api/".into()), upstream: Some("u".into()) }).unwrap();
        assert!(by_prefix.text.contains("path = \"/api/users/{id}\"\nupstream = \"u\""), "{}", by_prefix.text);
    }

    #[test]
    fn toml_values_are_written_escaped() {
        let mut t = toml::Table::new();
        t.insert("name".into(), Toml::String("a \"b\" \\ c\n".into()));
        t.insert("claims".into(), Toml::Table(toml::Table::from_iter([("a.b".to_owned(), Toml::Integer(3))])));
        t.insert("x".into(), Toml::Float(2.0));
        let text = render_route(&t);
        assert_eq!(text, "name = \"a \\\"b\\\" \\\\ c\\n\"\nclaims = { \"a.b\" = 3 }\nx = 2.0\n");
        let parsed: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(parsed, t);
    }
}
