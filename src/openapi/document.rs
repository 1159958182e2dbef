//! Reading an OpenAPI 3.0 / 3.1 description: YAML or JSON text → a JSON
//! tree (path templates kept in the order the document gives them), `$ref`s
//! inside the document checked and followed, and the operations listed with
//! what the importer needs of each. Errors name the line (syntax) or the JSON
//! pointer (structure) of the problem.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

/// The HTTP methods an OpenAPI path item may describe, in the specification's order.
pub const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Most `$ref` hops followed from one place (a longer chain is taken for a cycle).
const MAX_REF_HOPS: usize = 64;

/// Why a description cannot be read: the file, where in it, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub file: PathBuf,
    pub at: Where,
    pub message: String,
}

/// Where a [`SpecError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Where {
    /// Nowhere in particular (the file cannot be read).
    File,
    /// 1-based line and column (syntax errors).
    Line(usize, usize),
    /// A JSON pointer (`#/paths/~1pets/get/security/0`).
    Pointer(String),
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = self.file.display();
        match &self.at {
            Where::File => write!(f, "{file}: {}", self.message),
            Where::Line(line, col) => write!(f, "{file}:{line}:{col}: {}", self.message),
            Where::Pointer(p) => write!(f, "{file}: at {p}: {}", self.message),
        }
    }
}

impl std::error::Error for SpecError {}

/// A parsed description.
#[derive(Debug)]
pub struct Document {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    /// The `openapi` version string (`3.0.3`, `3.1.0`).
    pub version: String,
    root: Value,
    /// The keys of `paths`, in document order (the tree's maps are sorted).
    path_order: Vec<String>,
}

/// One operation (a method of a path item).
#[derive(Debug, Clone)]
pub struct Operation {
    /// Upper case: `GET`.
    pub method: String,
    /// The path template as written: `/pets/{petId}`.
    pub template: String,
    /// Where the operation object is (after following a path item's `$ref`).
    pub pointer: String,
    pub operation_id: Option<String>,
    /// The security requirements that apply (the operation's, else the
    /// document's) and where they are; `None` when neither declares any.
    pub security: Option<(Value, String)>,
    /// The `x-rolegate` extension and where it is.
    pub x_rolegate: Option<(Value, String)>,
    /// `servers[0]` of the operation, else of its path item, else of the document.
    pub server: Option<Server>,
    /// Path parameters declared for the operation (its own and its path item's).
    pub path_params: Vec<PathParam>,
    /// Cookie parameters, and header parameters named like a credential
    /// (its own and its path item's): the gateway checks none of them, which
    /// the imported route says.
    pub unchecked: Vec<String>,
    /// Position in the document (path order, then method order).
    pub index: usize,
}

/// The parts of a server URL the importer uses (variables replaced by their defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Lower case, without port; `None` for a relative URL.
    pub host: Option<String>,
    /// The path, without a trailing `/` (empty for none).
    pub path: String,
}

/// A declared path parameter: its name and a sample value, when the
/// description gives a usable one (an example, an enum value, a default), or
/// the kind of value its schema asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathParam {
    pub name: String,
    pub sample: Option<String>,
    /// `integer` / `number` / `boolean` / `string`, when the schema says.
    pub kind: Option<String>,
}

impl Document {
    /// Reads and parses a description file (YAML or JSON).
    pub fn read(path: &Path) -> Result<Document, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|e| SpecError {
            file: path.to_path_buf(),
            at: Where::File,
            message: format!("cannot read: {e}"),
        })?;
        Document::parse(&text, path)
    }

    /// Parses a description: JSON when the text starts with `{`, YAML
    /// otherwise. Checks the version and every `$ref` inside the document.
    pub fn parse(text: &str, file: &Path) -> Result<Document, SpecError> {
        let file = file.to_path_buf();
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        let root: Root = if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(|e| {
                // serde_json counts from the trimmed start: add the lines skipped.
                let skipped = text[..text.len() - trimmed.len()].matches('\n').count();
                let message = strip_position(&e.to_string());
                SpecError { file: file.clone(), at: Where::Line(e.line() + skipped, e.column()), message }
            })?
        } else {
            // OpenAPI descriptions are YAML 1.2: `y`, `on`, `no` are strings, not booleans.
            let mut options = serde_saphyr::Options::default();
            options.strict_booleans = true;
            options.with_snippet = false;
            serde_saphyr::from_str_with_options(text, options).map_err(|e| {
                let at = e.location().map_or(Where::File, |l| Where::Line(l.line() as usize, l.column() as usize));
                let message = strip_position(&e.without_snippet().to_string());
                SpecError { file: file.clone(), at, message }
            })?
        };
        let Root { map, path_order } = root;
        let doc = Document { file, version: String::new(), root: Value::Object(map), path_order };
        let version = match doc.root.get("openapi") {
            Some(Value::String(v)) if v.starts_with("3.0") || v.starts_with("3.1") => v.clone(),
            Some(Value::String(v)) => {
                return Err(doc.error("#/openapi", format!("OpenAPI {v} is not supported (3.0 and 3.1 are)")))
            }
            Some(_) => return Err(doc.error("#/openapi", "`openapi` must be a version string such as \"3.1.0\"")),
            None if doc.root.get("swagger").is_some() => {
                return Err(doc.error("#/swagger", "Swagger 2.0 is not supported: convert the description to OpenAPI 3"))
            }
            None => return Err(doc.error("#", "not an OpenAPI description: there is no `openapi` version")),
        };
        if doc.root.get("paths").is_some_and(|p| !p.is_object() && !p.is_null()) {
            return Err(doc.error("#/paths", "`paths` must be a mapping of path templates"));
        }
        doc.check_refs(&doc.root, &mut String::from("#"))?;
        Ok(Document { version, ..doc })
    }

    /// The whole tree.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// `info.title` and `info.version`, for the import's header.
    pub fn title(&self) -> String {
        let info = self.root.get("info");
        let field = |k: &str| info.and_then(|i| i.get(k)).and_then(Value::as_str).unwrap_or("").to_owned();
        let (title, version) = (field("title"), field("version"));
        match (title.is_empty(), version.is_empty()) {
            (true, _) => "(untitled)".to_owned(),
            (false, true) => title,
            (false, false) => format!("{title} {version}"),
        }
    }

    /// An error at a JSON pointer of this document.
    pub fn error(&self, pointer: &str, message: impl Into<String>) -> SpecError {
        SpecError { file: self.file.clone(), at: Where::Pointer(pointer.to_owned()), message: message.into() }
    }

    /// The value at a pointer of the form `#/a/b` (`~0`, `~1` and percent-escapes decoded).
    pub fn pointer(&self, pointer: &str) -> Option<&Value> {
        let fragment = pointer.strip_prefix('#')?;
        self.root.pointer(&percent_decode(fragment))
    }

    /// `value`, or what its `$ref` (followed as far as it goes) points at,
    /// with that place's pointer. `at` is `value`'s own pointer.
    pub fn deref<'a>(&'a self, value: &'a Value, at: &str) -> Result<(&'a Value, String), SpecError> {
        let (mut value, mut at) = (value, at.to_owned());
        for _ in 0..MAX_REF_HOPS {
            let Some(target) = value.get("$ref") else {
                return Ok((value, at));
            };
            let Some(target) = target.as_str() else {
                return Err(self.error(&at, "`$ref` must be a string"));
            };
            if !target.starts_with('#') {
                return Err(self.error(
                    &at,
                    format!("`$ref` {target:?} points outside the document; only references inside it are resolved (bundle the description first)"),
                ));
            }
            value =
                self.pointer(target).ok_or_else(|| self.error(&at, format!("`$ref` {target:?} points at nothing")))?;
            at = target.to_owned();
        }
        Err(self.error(&at, "`$ref`s form a cycle"))
    }

    /// Every `$ref` to a place inside the document must point at something.
    /// Example values, defaults, enums, constants and extensions are data,
    /// not description, and are not looked into; nor are schemas with their
    /// own `$id` (3.1), whose references are relative to it.
    fn check_refs(&self, value: &Value, at: &mut String) -> Result<(), SpecError> {
        match value {
            Value::Object(map) => {
                if map.contains_key("$id") {
                    return Ok(());
                }
                if let Some(Value::String(target)) = map.get("$ref") {
                    if target.starts_with('#') && self.pointer(target).is_none() {
                        return Err(self.error(at, format!("`$ref` {target:?} points at nothing")));
                    }
                }
                for (key, child) in map {
                    if matches!(key.as_str(), "example" | "examples" | "default" | "enum" | "const" | "value")
                        || key.starts_with("x-")
                    {
                        if key == "examples" {
                            self.check_example_refs(child, at)?;
                        }
                        continue;
                    }
                    let len = at.len();
                    at.push('/');
                    push_escaped(at, key);
                    self.check_refs(child, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    let len = at.len();
                    at.push('/');
                    at.push_str(&i.to_string());
                    self.check_refs(child, at)?;
                    at.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The `$ref`s of an `examples` map (its Example objects' values are data).
    fn check_example_refs(&self, examples: &Value, at: &str) -> Result<(), SpecError> {
        let Value::Object(map) = examples else { return Ok(()) };
        for (key, example) in map {
            if let Some(Value::String(target)) = example.get("$ref") {
                if target.starts_with('#') && self.pointer(target).is_none() {
                    let mut here = format!("{at}/examples/");
                    push_escaped(&mut here, key);
                    return Err(self.error(&here, format!("`$ref` {target:?} points at nothing")));
                }
            }
        }
        Ok(())
    }

    /// The operations, in document order: path templates as the document
    /// lists them, methods in the specification's order within a path item.
    pub fn operations(&self) -> Result<Vec<Operation>, SpecError> {
        let Some(Value::Object(paths)) = self.root.get("paths") else {
            return Ok(Vec::new());
        };
        let doc_security = self.root.get("security").map(|s| (s.clone(), "#/security".to_owned()));
        let doc_server = self.server(self.root.get("servers"), "#/servers")?;
        let mut ops = Vec::new();
        for template in &self.path_order {
            let Some(item) = paths.get(template) else { continue };
            let mut at = String::from("#/paths/");
            push_escaped(&mut at, template);
            if !template.starts_with('/') {
                return Err(self.error(&at, format!("path template {template:?} must start with '/'")));
            }
            let (item, item_at) = self.deref(item, &at)?;
            let Value::Object(item) = item else {
                return Err(self.error(&item_at, "a path item must be a mapping"));
            };
            let item_server = self.server(item.get("servers"), &format!("{item_at}/servers"))?;
            let item_params = self.parameters(item.get("parameters"), &format!("{item_at}/parameters"))?;
            for method in METHODS {
                let Some(op) = item.get(method) else { continue };
                let op_at = format!("{item_at}/{method}");
                let Value::Object(op) = op else {
                    return Err(self.error(&op_at, "an operation must be a mapping"));
                };
                let own_params = self.parameters(op.get("parameters"), &format!("{op_at}/parameters"))?;
                // The operation's parameters override its path item's of the same name.
                let mut path_params: Vec<PathParam> =
                    item_params.iter().filter(|p| !own_params.iter().any(|o| o.name == p.name)).cloned().collect();
                path_params.extend(own_params);
                let mut unchecked = self.unchecked_params(item.get("parameters"), &format!("{item_at}/parameters"));
                for note in self.unchecked_params(op.get("parameters"), &format!("{op_at}/parameters")) {
                    if !unchecked.contains(&note) {
                        unchecked.push(note);
                    }
                }
                let operation_id = match op.get("operationId") {
                    None => None,
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(_) => {
                        return Err(self.error(&format!("{op_at}/operationId"), "`operationId` must be a string"))
                    }
                };
                let security = match op.get("security") {
                    Some(s) => Some((s.clone(), format!("{op_at}/security"))),
                    None => doc_security.clone(),
                };
                let op_server = self.server(op.get("servers"), &format!("{op_at}/servers"))?;
                ops.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    pointer: op_at.clone(),
                    operation_id,
                    security,
                    x_rolegate: op.get("x-rolegate").map(|x| (x.clone(), format!("{op_at}/x-rolegate"))),
                    server: op_server.or_else(|| item_server.clone()).or_else(|| doc_server.clone()),
                    path_params,
                    unchecked,
                    index: ops.len(),
                });
            }
        }
        Ok(ops)
    }

    /// The security scheme of that name in `components/securitySchemes`, and its pointer.
    pub fn security_scheme(&self, name: &str) -> Result<Option<(&Value, String)>, SpecError> {
        let mut at = String::from("#/components/securitySchemes/");
        push_escaped(&mut at, name);
        match self.root.get("components").and_then(|c| c.get("securitySchemes")).and_then(|s| s.get(name)) {
            Some(scheme) => self.deref(scheme, &at).map(Some),
            None => Ok(None),
        }
    }

    /// `servers[0]` of a `servers` list, variables replaced by their defaults.
    fn server(&self, servers: Option<&Value>, at: &str) -> Result<Option<Server>, SpecError> {
        let Some(servers) = servers else { return Ok(None) };
        let Value::Array(list) = servers else {
            return Err(self.error(at, "`servers` must be a list"));
        };
        let Some(first) = list.first() else { return Ok(None) };
        let Some(url) = first.get("url").and_then(Value::as_str) else {
            return Err(self.error(&format!("{at}/0"), "a server needs a `url` string"));
        };
        let mut url = url.to_owned();
        if let Some(Value::Object(vars)) = first.get("variables") {
            for (name, var) in vars {
                if let Some(default) = var.get("default").and_then(Value::as_str) {
                    url = url.replace(&format!("{{{name}}}"), default);
                }
            }
        }
        Ok(Some(parse_server_url(&url)))
    }

    /// The path parameters of a `parameters` list (`$ref`s followed).
    fn parameters(&self, params: Option<&Value>, at: &str) -> Result<Vec<PathParam>, SpecError> {
        let Some(params) = params else { return Ok(Vec::new()) };
        let Value::Array(list) = params else {
            return Err(self.error(at, "`parameters` must be a list"));
        };
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let (p, p_at) = self.deref(p, &format!("{at}/{i}"))?;
            if p.get("in").and_then(Value::as_str) != Some("path") {
                continue;
            }
            let Some(name) = p.get("name").and_then(Value::as_str) else {
                return Err(self.error(&p_at, "a parameter needs a `name` string"));
            };
            let schema = match p.get("schema") {
                Some(s) => Some(self.deref(s, &format!("{p_at}/schema"))?.0),
                None => None,
            };
            let kind = schema.and_then(|s| match s.get("type") {
                Some(Value::String(t)) => Some(t.clone()),
                // 3.1: a list of types, e.g. ["integer", "null"].
                Some(Value::Array(types)) => {
                    types.iter().filter_map(Value::as_str).find(|t| *t != "null").map(str::to_owned)
                }
                _ => None,
            });
            let candidates = [
                p.get("example"),
                schema.and_then(|s| s.get("example")),
                schema.and_then(|s| s.get("examples")).and_then(|e| e.get(0)),
                schema.and_then(|s| s.get("enum")).and_then(|e| e.get(0)),
                schema.and_then(|s| s.get("default")),
            ];
            let sample = candidates.into_iter().flatten().find_map(sample_text);
            out.push(PathParam { name: name.to_owned(), sample, kind });
        }
        Ok(out)
    }

    /// A note for each cookie parameter and each header parameter named like
    /// a credential (`Authorization`, `X-API-Key`, `*token*`, `*auth*`…):
    /// nothing the gateway checks, so never dropped in silence.
    fn unchecked_params(&self, params: Option<&Value>, at: &str) -> Vec<String> {
        let Some(Value::Array(list)) = params else { return Vec::new() };
        let mut out = Vec::new();
        for (i, p) in list.iter().enumerate() {
            let Ok((p, _)) = self.deref(p, &format!("{at}/{i}")) else { continue };
            let Some(name) = p.get("name").and_then(Value::as_str) else { continue };
            let lower = name.to_ascii_lowercase();
            match p.get("in").and_then(Value::as_str) {
                Some("cookie") => out.push(format!(
                    "cookie parameter {name:?} is not checked by the gateway (if it carries a credential, only the upstream checks it)"
                )),
                Some("header") if ["auth", "token", "key", "session", "cookie"].iter().any(|w| lower.contains(w)) => {
                    out.push(format!(
                        "header parameter {name:?} looks like a credential; the gateway checks only the bearer token"
                    ))
                }
                _ => {}
            }
        }
        out
    }
}

/// A value usable as a path segment as it is: a non-empty string of
/// unreserved characters, or a number.
fn sample_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let ok = !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
        && text != "."
        && text != "..";
    ok.then_some(text)
}

/// `https://Api.Example.com:8443/v1/` → host `api.example.com`, path `/v1`;
/// `/v1` → no host, path `/v1`.
pub fn parse_server_url(url: &str) -> Server {
    let (host, path) = match url.split_once("://") {
        Some((_, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(i) => (&rest[..i], &rest[i..]),
                None => (rest, ""),
            };
            let authority = authority.rsplit('@').next().unwrap_or(authority);
            let host = match authority.strip_prefix('[') {
                Some(v6) => v6.split(']').next().unwrap_or(v6).to_owned(),
                None => authority.split(':').next().unwrap_or(authority).to_owned(),
            };
            ((!host.is_empty()).then(|| host.to_ascii_lowercase()), path)
        }
        None if url.starts_with("//") => return parse_server_url(&format!("x:{url}")),
        None => (None, url),
    };
    let path = path.split(['?', '#']).next().unwrap_or("");
    let path = if path.starts_with('/') { path.trim_end_matches('/') } else { "" };
    Server { host, path: path.to_owned() }
}

/// Appends a JSON-pointer token (`~` → `~0`, `/` → `~1`).
pub fn push_escaped(out: &mut String, token: &str) {
    for c in token.chars() {
        match c {
            '~' => out.push_str("~0"),
            '/' => out.push_str("~1"),
            c => out.push(c),
        }
    }
}

/// A `$ref` fragment is a URI fragment: percent-escapes stand for bytes.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' {
            if let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
            {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parsers append " at line L column C" to their messages; the position is given separately.
fn strip_position(message: &str) -> String {
    let message = message.trim();
    let message = message.strip_prefix("error: ").unwrap_or(message);
    let message = match message.find(" at line ") {
        Some(i) => &message[..i],
        None => message,
    };
    // serde-saphyr starts with "line L column C: ".
    let message = match message.strip_prefix("line ").and_then(|m| m.split_once(": ")) {
        Some((pos, rest)) if pos.split(' ').count() == 3 => rest,
        _ => message,
    };
    // Advice meant for programs using the parser, not for the description's author.
    let message = message.split(", set DuplicateKeyPolicy").next().unwrap_or(message);
    message.to_owned()
}

// === impl Root ===

/// The top-level mapping, with the keys of `paths` in document order.
struct Root {
    map: Map<String, Value>,
    path_order: Vec<String>,
}

impl<'de> Deserialize<'de> for Root {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Root, D::Error> {
        d.deserialize_map(RootVisitor)
    }
}

struct RootVisitor;

impl<'de> Visitor<'de> for RootVisitor {
    type Value = Root;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OpenAPI description (a mapping)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Root, A::Error> {
        let mut map = Map::new();
        let mut path_order = Vec::new();
        while let Some(key) = access.next_key::<String>()? {
            if map.contains_key(&key) {
                return Err(de::Error::custom(format_args!("the key {key:?} is given twice")));
            }
            let value = if key == "paths" {
                let Paths(entries) = access.next_value()?;
                let mut paths = Map::new();
                for (template, item) in entries {
                    path_order.push(template.clone());
                    paths.insert(template, item);
                }
                Value::Object(paths)
            } else {
                access.next_value()?
            };
            map.insert(key, value);
        }
        Ok(Root { map, path_order })
    }
}

/// The `paths` mapping as a list, in document order.
struct Paths(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Paths {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Paths, D::Error> {
        struct PathsVisitor;
        impl<'de> Visitor<'de> for PathsVisitor {
            type Value = Paths;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping of path templates to path items")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Paths, E> {
                Ok(Paths(Vec::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Paths, A::Error> {
                let mut entries: Vec<(String, Value)> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                while let Some(key) = access.next_key::<String>()? {
                    if !seen.insert(key.clone()) {
                        return Err(de::Error::custom(format_args!("the path {key:?} is given twice")));
                    }
                    let value: Value = access.next_value()?;
                    entries.push((key, value));
                }
                Ok(Paths(entries))
            }
        }
        d.deserialize_any(PathsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Document, SpecError> {
        Document::parse(text, Path::new("spec.yaml"))
    }

    #[test]
    fn yaml_and_json_give_the_same_operations_in_document_order() {
        let yaml = "openapi: 3.0.3\npaths:\n  /z:\n    post: {}\n    get: {}\n  /a:\n    get:\n      operationId: a\n";
        let json =
            r#"{"openapi": "3.0.3", "paths": {"/z": {"post": {}, "get": {}}, "/a": {"get": {"operationId": "a"}}}}"#;
        for text in [yaml, json] {
            let ops = parse(text).unwrap().operations().unwrap();
            let list: Vec<(String, String)> = ops.iter().map(|o| (o.method.clone(), o.template.clone())).collect();
            assert_eq!(list, [("GET", "/z"), ("POST", "/z"), ("GET", "/a")].map(|(m, t)| (m.to_owned(), t.to_owned())));
            assert_eq!(ops[2].operation_id.as_deref(), Some("a"));
        }
    }

    #[test]
    fn yaml_is_read_as_yaml_1_2() {
        // `y`, `no`, `on` are strings (YAML 1.1 made them booleans); `200:` keys are text.
        let d = parse("openapi: 3.0.0\nx: [y, no, on, true]\nr: {200: ok}\n").unwrap();
        assert_eq!(d.root()["x"], serde_json::json!(["y", "no", "on", true]));
        assert_eq!(d.root()["r"]["200"], "ok");
        assert!(parse("openapi: 3.0.0\na: 1\na: 2\n").unwrap_err().message.contains("duplicate"));
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("openapi: 3.1.0\npaths:\n  /a:\n    get: [\n").unwrap_err();
        assert!(matches!(err.at, Where::Line(4..=5, _)), "{err}");
        let err = Document::parse("\n\n{\"openapi\": \"3.1.0\",\n \"paths\": {,}}", Path::new("s.json")).unwrap_err();
        assert!(matches!(err.at, Where::Line(4, _)), "{err}");
        assert!(err.to_string().starts_with("s.json:4:"), "{err}");
    }

    #[test]
    fn refs_are_followed_and_dangling_ones_name_their_pointer() {
        let text = "openapi: 3.1.0\npaths:\n  /a/{id}:\n    $ref: '#/components/pathItems/a'\ncomponents:\n  pathItems:\n    a:\n      get:\n        parameters:\n          - $ref: '#/components/parameters/id'\n  parameters:\n    id: {name: id, in: path, schema: {type: integer}}\n";
        let ops = parse(text).unwrap().operations().unwrap();
        assert_eq!(ops[0].pointer, "#/components/pathItems/a/get");
        assert_eq!(
            ops[0].path_params,
            vec![PathParam { name: "id".into(), sample: None, kind: Some("integer".into()) }]
        );
        let broken = text.replace("'#/components/parameters/id'", "'#/components/parameters/nope'");
        let err = parse(&broken).unwrap_err();
        assert_eq!(err.at, Where::Pointer("#/components/pathItems/a/get/parameters/0".into()), "{err}");
        assert!(err.message.contains("#/components/parameters/nope"), "{err}");
        let cyclic = "openapi: 3.0.0\npaths:\n  /a:\n    $ref: '#/components/x'\ncomponents:\n  x: {$ref: '#/components/y'}\n  y: {$ref: '#/components/x'}\n";
        assert!(parse(cyclic).unwrap().operations().unwrap_err().message.contains("cycle"));
    }

    #[test]
    fn versions_other_than_3_0_and_3_1_are_refused() {
        assert!(parse("swagger: '2.0'\n").unwrap_err().message.contains("Swagger 2.0"));
        assert!(parse("openapi: 4.0.0\n").unwrap_err().message.contains("not supported"));
        assert!(parse("info: {}\n").unwrap_err().message.contains("no `openapi`"));
        assert_eq!(parse("openapi: 3.1.1\n").unwrap().version, "3.1.1");
    }

    #[test]
    fn server_urls_give_host_and_path() {
        let s = parse_server_url("https://User@Api.Example.com:8443/v1/");
        assert_eq!(s, Server { host: Some("api.example.com".into()), path: "/v1".into() });
        assert_eq!(parse_server_url("/api/v3"), Server { host: None, path: "/api/v3".into() });
        assert_eq!(
            parse_server_url("http://petstore.swagger.io"),
            Server { host: Some("petstore.swagger.io".into()), path: String::new() }
        );
        assert_eq!(parse_server_url("."), Server { host: None, path: String::new() });
    }

    #[test]
    fn pointers_decode_escapes() {
        assert_eq!(percent_decode("/paths/~1a~1%7Bid%7D"), "/paths/~1a~1{id}");
        let mut p = String::new();
        push_escaped(&mut p, "/a/{b}~");
        assert_eq!(p, "~1a~1{b}~0");
    }
}
