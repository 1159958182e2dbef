//! The SPEC's path glob (`*`, `**`, `?`, `{a,b}`, whole-segment `{name}`),
//! translated once at load time into globset globs (for matching many routes
//! at once) and, for routes with parameters, a regex that captures them.
//!
//! Semantics, on a normalized path (no `//`, no dot segments):
//! - `*` matches within one segment (possibly empty), `?` one character of a segment;
//! - `**` must be a whole segment and matches zero or more segments; a trailing
//!   `/**` also matches the bare prefix (`/admin/**` matches `/admin`);
//! - `{a,b}` matches one of the alternatives (which may use `*` and `?`);
//! - a whole segment `{name}` is a parameter matching one non-empty segment;
//! - `[` and `]` are literal characters; matching is case-sensitive.

use globset::{Candidate, Glob, GlobBuilder, GlobMatcher};
use regex::Regex;

/// A compiled path pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The pattern as written in routes.toml.
    pub source: String,
    /// globset globs equivalent to the pattern (two when it ends in `/**`).
    pub globs: Vec<String>,
    /// The same, compiled (segment-aware: `*` never matches `/`).
    compiled: Vec<Glob>,
    /// Built on first use (each is a regex; building thousands at load time would dominate reloads).
    matchers: std::sync::OnceLock<Vec<GlobMatcher>>,
    /// The leading whole segments that are plain literals (`/v1/users/*` → `["v1", "users"]`):
    /// the route table indexes routes by them.
    pub literal_prefix: Vec<String>,
    /// The leading whole segments that are literals or parameters
    /// (`/repos/{owner}/{repo}/issues/*` → `repos`, a parameter, a
    /// parameter, `issues`): the route table indexes routes by them.
    pub index_prefix: Vec<IndexSegment>,
    /// What the pattern asks after its index prefix, when that is simple
    /// enough to check without a glob (`None`: it is not).
    pub index_tail: Option<Tail>,
    /// Parameter names in order of appearance.
    pub params: Vec<String>,
    /// The same pattern as an anchored regex, one named group per parameter.
    regex_source: String,
    /// `regex_source` compiled on first use (only routes whose claims name a
    /// parameter ever capture; compiling thousands of regexes up front would
    /// dominate reload time).
    capture: std::sync::OnceLock<Option<Regex>>,
}

impl Pattern {
    /// Parses a pattern; the error is a plain sentence for the config error.
    pub fn parse(source: &str) -> Result<Pattern, String> {
        if !source.starts_with('/') {
            return Err(format!("path pattern {source:?} must start with '/'"));
        }
        let segments: Vec<&str> = source[1..].split('/').collect();
        let mut glob = String::with_capacity(source.len() + 8);
        let mut re = String::from("^");
        let mut params: Vec<String> = Vec::new();
        let last = segments.len() - 1;
        let literal_prefix: Vec<String> = segments
            .iter()
            .take_while(|s| !s.contains(['*', '?', '{', '}', '[', ']', '\\']))
            .map(|s| s.to_string())
            .collect();
        for (i, seg) in segments.iter().enumerate() {
            if seg.is_empty() && i != last {
                return Err(format!(
                    "path pattern {source:?} has an empty segment ('//'); request paths never do after normalization"
                ));
            }
            if *seg == "**" {
                glob.push_str("/**");
                re.push_str("(?:/.*)?");
                continue;
            }
            if seg.contains("**") {
                return Err(format!("in path pattern {source:?}, '**' must be a whole segment"));
            }
            glob.push('/');
            re.push('/');
            if let Some(name) = param_name(seg) {
                if params.iter().any(|p| p == name) {
                    return Err(format!("path pattern {source:?} names parameter {{{name}}} twice"));
                }
                params.push(name.to_owned());
                glob.push_str("?*");
                re.push_str(&format!("(?P<{name}>[^/]+)"));
                continue;
            }
            translate_segment(seg, &mut glob, &mut re).map_err(|e| format!("in path pattern {source:?}: {e}"))?;
        }
        re.push('$');
        let mut globs = vec![glob.clone()];
        if let Some(prefix) = glob.strip_suffix("/**") {
            globs.push(if prefix.is_empty() { "/".to_owned() } else { prefix.to_owned() });
        }
        let compiled = globs
            .iter()
            .map(|g| GlobBuilder::new(g).literal_separator(true).backslash_escape(true).build())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("path pattern {source:?}: {e}"))?;
        let index_prefix: Vec<IndexSegment> = segments
            .iter()
            .map_while(|s| match param_name(s) {
                Some(_) => Some(IndexSegment::Param),
                None if !s.contains(['*', '?', '{', '}', '[', ']', '\\']) => Some(IndexSegment::Literal(s.to_string())),
                None => None,
            })
            .collect();
        // A trailing `{name}` is in the index prefix already.
        let index_tail = match &segments[index_prefix.len()..] {
            [] => Some(Tail::Exact),
            ["*"] => Some(Tail::Segment),
            ["**"] => Some(Tail::Any),
            _ => None,
        };
        Ok(Pattern {
            source: source.to_owned(),
            globs,
            compiled,
            matchers: std::sync::OnceLock::new(),
            literal_prefix,
            index_prefix,
            index_tail,
            params,
            regex_source: re,
            capture: std::sync::OnceLock::new(),
        })
    }

    /// The compiled globs (for building glob sets).
    /// The gRPC service a route's pattern names, when it looks like a gRPC
    /// route: `/package.Service/Method`, or `/package.Service/*` (any method
    /// of the service); gRPC calls are POSTs to such paths.
    pub fn grpc_service(&self) -> Option<&str> {
        let rest = self.source.strip_prefix('/')?;
        let (service, method) = rest.split_once('/')?;
        let name = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        let service_ok = service.contains('.') && service.split('.').all(name);
        let method_ok = name(method) || method == "*" || (method.starts_with('{') && method.ends_with('}'));
        (service_ok && method_ok).then_some(service)
    }

    pub fn compiled_globs(&self) -> &[Glob] {
        &self.compiled
    }

    /// Whether the (normalized) path matches.
    pub fn is_match(&self, path: &Candidate<'_>) -> bool {
        self.matchers
            .get_or_init(|| self.compiled.iter().map(Glob::compile_matcher).collect())
            .iter()
            .any(|m| m.is_match_candidate(path))
    }

    /// The pattern as an anchored regex (documentation, tests, tooling).
    pub fn regex_source(&self) -> &str {
        &self.regex_source
    }

    /// The parameter values of `path` (which must already match the pattern), in
    /// the order of [`Pattern::params`]. Empty when the pattern has no parameters.
    pub fn captures<'p>(&self, path: &'p str) -> Vec<(&str, &'p str)> {
        if self.params.is_empty() {
            return Vec::new();
        }
        // The source is built from escaped literals and fixed fragments, so it always compiles.
        let Some(re) = self.capture.get_or_init(|| Regex::new(&self.regex_source).ok()) else {
            return Vec::new();
        };
        let Some(caps) = re.captures(path) else {
            return Vec::new();
        };
        self.params.iter().filter_map(|name| caps.name(name).map(|m| (name.as_str(), m.as_str()))).collect()
    }
}

/// One leading segment of a pattern, as the route index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexSegment {
    /// The segment itself.
    Literal(String),
    /// `{name}`: any one non-empty segment.
    Param,
}

/// The rest of a pattern after its index prefix, in the simple forms that
/// most routes take; checked on the rest of the path after that prefix with
/// the same result as the pattern's globs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: the path is the prefix (`/v1/health`).
    Exact,
    /// `*`: one more segment, possibly empty (`/v1/users/*`).
    Segment,
    /// `**`: anything below the prefix, or the prefix itself (`/admin/**`).
    Any,
}

impl Tail {
    /// Whether `rest` fits: what follows the index prefix in a path that
    /// starts with `/` (empty, or starting with `/`).
    pub fn matches(self, rest: &str) -> bool {
        match self {
            Tail::Exact => rest.is_empty(),
            Tail::Segment => rest.strip_prefix('/').is_some_and(|seg| !seg.contains('/')),
            Tail::Any => rest.is_empty() || rest.starts_with('/'),
        }
    }
}

impl Pattern {
    /// A path that both patterns match, if one is easy to find (used by `check`
    /// to warn about a public route that takes requests of a protected one).
    /// Conservative: `None` can mean "none found", never a wrong example; every
    /// example returned is verified against both patterns.
    pub fn overlap_example(&self, other: &Pattern) -> Option<String> {
        let (a, b) = (segments(&self.source), segments(&other.source));
        let mut out = Vec::new();
        let mut failed = std::collections::HashSet::new();
        if !overlap(&a, &b, &mut out, &mut failed) {
            return None;
        }
        let path = format!("/{}", out.join("/"));
        let candidate = Candidate::new(&path);
        (self.is_match(&candidate) && other.is_match(&candidate)).then_some(path)
    }
}

/// A pattern's segments; `None` stands for `**`.
fn segments(source: &str) -> Vec<Option<&str>> {
    source[1..].split('/').map(|s| (s != "**").then_some(s)).collect()
}

/// Builds in `out` a path matched by both segment lists (depth-first; `failed`
/// remembers positions from which no common path exists).
fn overlap<'s>(
    a: &[Option<&'s str>],
    b: &[Option<&'s str>],
    out: &mut Vec<String>,
    failed: &mut std::collections::HashSet<(usize, usize)>,
) -> bool {
    let key = (a.len(), b.len());
    if failed.contains(&key) {
        return false;
    }
    let found = match (a.first(), b.first()) {
        (None, None) => true,
        (Some(None), _) => {
            overlap(&a[1..], b, out, failed)
                || (!b.is_empty() && take_one(b[0], out, |out| overlap(a, &b[1..], out, failed)))
        }
        (_, Some(None)) => {
            overlap(a, &b[1..], out, failed)
                || (!a.is_empty() && take_one(a[0], out, |out| overlap(&a[1..], b, out, failed)))
        }
        (Some(Some(x)), Some(Some(y))) => match common_segment(x, y) {
            Some(seg) => {
                out.push(seg);
                overlap(&a[1..], &b[1..], out, failed) || {
                    out.pop();
                    false
                }
            }
            None => false,
        },
        _ => false,
    };
    if !found {
        failed.insert(key);
    }
    found
}

/// `**` consumes one segment of the other side: a sample of it (a `**` there consumes nothing).
fn take_one(seg: Option<&str>, out: &mut Vec<String>, rest: impl FnOnce(&mut Vec<String>) -> bool) -> bool {
    let Some(seg) = seg else { return false };
    let Some(sample) = sample_segment(seg).into_iter().find(|c| segment_matches(seg, c)) else {
        return false;
    };
    out.push(sample);
    rest(out) || {
        out.pop();
        false
    }
}

/// One segment text that both segment globs match, among a few samples of each.
fn common_segment(x: &str, y: &str) -> Option<String> {
    sample_segment(x).into_iter().chain(sample_segment(y)).find(|c| segment_matches(x, c) && segment_matches(y, c))
}

/// Sample texts for a segment glob: its literals, `*`/`?`/parameters as "x" or nothing, first alternatives.
fn sample_segment(seg: &str) -> Vec<String> {
    if param_name(seg).is_some() {
        return vec!["x".to_owned()];
    }
    let fill = |star: &str| {
        let mut s = String::new();
        let mut skipping = false;
        for c in seg.chars() {
            match c {
                '{' => {}
                ',' => skipping = true,
                '}' => skipping = false,
                _ if skipping => {}
                '*' => s.push_str(star),
                '?' => s.push('x'),
                c => s.push(c),
            }
        }
        s
    };
    vec![fill(""), fill("x")]
}

fn segment_matches(seg: &str, text: &str) -> bool {
    if param_name(seg).is_some() {
        return !text.is_empty();
    }
    let (mut glob, mut re) = (String::new(), String::from("^"));
    translate_segment(seg, &mut glob, &mut re).is_ok() && Regex::new(&(re + "$")).is_ok_and(|r| r.is_match(text))
}

/// `{name}` as a whole segment, with `name` an identifier, is a parameter.
fn param_name(seg: &str) -> Option<&str> {
    let inner = seg.strip_prefix('{')?.strip_suffix('}')?;
    let mut chars = inner.chars();
    let first = chars.next()?;
    if (first.is_ascii_alphabetic() || first == '_') && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Some(inner)
    } else {
        None
    }
}

/// Translates one segment (no `/`, no `**`, not a parameter) into glob and regex syntax.
fn translate_segment(seg: &str, glob: &mut String, re: &mut String) -> Result<(), String> {
    let mut in_alt = false;
    let mut alt_count = 0;
    for c in seg.chars() {
        match c {
            '*' => {
                glob.push('*');
                re.push_str("[^/]*");
            }
            '?' => {
                glob.push('?');
                re.push_str("[^/]");
            }
            '{' if in_alt => return Err("nested '{' is not supported".to_owned()),
            '{' => {
                in_alt = true;
                alt_count = 1;
                glob.push('{');
                re.push_str("(?:");
            }
            ',' if in_alt => {
                alt_count += 1;
                glob.push(',');
                re.push('|');
            }
            '}' if in_alt => {
                in_alt = false;
                if alt_count < 2 {
                    return Err("'{...}' inside a segment needs at least two alternatives (a,b)".to_owned());
                }
                glob.push('}');
                re.push(')');
            }
            '}' => return Err("unmatched '}'".to_owned()),
            '[' => {
                glob.push_str("[[]");
                re.push_str("\\[");
            }
            ']' => {
                glob.push_str("[]]");
                re.push_str("\\]");
            }
            '\\' => return Err("'\\' is not allowed (request paths containing it are rejected)".to_owned()),
            c if c.is_ascii_control() || c == ' ' => {
                return Err("control characters and spaces are not allowed".to_owned())
            }
            c => {
                glob.push(c);
                let mut buf = [0u8; 4];
                re.push_str(&regex::escape(c.encode_utf8(&mut buf)));
            }
        }
    }
    if in_alt {
        return Err("unclosed '{'".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use globset::{GlobBuilder, GlobSetBuilder};

    fn set(p: &Pattern) -> globset::GlobSet {
        let mut b = GlobSetBuilder::new();
        for g in &p.globs {
            b.add(GlobBuilder::new(g).literal_separator(true).build().unwrap());
        }
        b.build().unwrap()
    }

    /// The regex translation, to cross-check it against globset.
    fn full_regex(p: &str) -> Regex {
        Regex::new(&Pattern::parse(p).unwrap().regex_source).unwrap()
    }

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("/v1/users/**", "/v1/users", true),
            ("/v1/users/**", "/v1/users/", true),
            ("/v1/users/**", "/v1/users/7", true),
            ("/v1/users/**", "/v1/users/7/x", true),
            ("/v1/users/**", "/v1/usersx", false),
            ("/v1/users/*", "/v1/users/7", true),
            ("/v1/users/*", "/v1/users/7/x", false),
            ("/v1/*/x", "/v1/a/x", true),
            ("/a/**/b", "/a/b", true),
            ("/a/**/b", "/a/x/y/b", true),
            ("/a/**/b", "/a/x/y/c", false),
            ("/**", "/", true),
            ("/**", "/anything/at/all", true),
            ("/docs/{a,b}/x", "/docs/a/x", true),
            ("/docs/{a,b}/x", "/docs/c/x", false),
            ("/f?o", "/foo", true),
            ("/f?o", "/f/o", false),
            ("/Case", "/case", false),
            ("/lit[1]", "/lit[1]", true),
            ("/lit[1]", "/lit1", false),
            ("/", "/", true),
            ("/", "/a", false),
        ];
        for (pat, path, want) in cases {
            let p = Pattern::parse(pat).unwrap();
            assert_eq!(set(&p).is_match(path), *want, "globset {pat} vs {path}");
            assert_eq!(full_regex(pat).is_match(path), *want, "regex {pat} vs {path}");
        }
    }

    #[test]
    fn params_match_one_nonempty_segment() {
        let p = Pattern::parse("/v1/tenants/{tenant}/**").unwrap();
        let s = set(&p);
        assert!(s.is_match("/v1/tenants/acme/users"));
        assert!(s.is_match("/v1/tenants/acme"));
        assert!(!s.is_match("/v1/tenants/"));
        assert_eq!(p.captures("/v1/tenants/acme/users/1"), vec![("tenant", "acme")]);
        let p = Pattern::parse("/a/{x}/b/{y}").unwrap();
        assert_eq!(p.captures("/a/1/b/2"), vec![("x", "1"), ("y", "2")]);
    }

    #[test]
    fn overlap_examples_match_both_patterns() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("/api/*/public", "/api/admin/**", Some("/api/admin/public")),
            ("/api/**", "/api/admin/{id}", Some("/api/admin/x")),
            ("/**", "/", Some("/")),
            ("/a/{x}", "/a/b", Some("/a/b")),
            ("/docs/{a,b}/x", "/docs/b/*", Some("/docs/b/x")),
            ("/v1/users/*", "/v1/orders/*", None),
            ("/a/*", "/a/b/c", None),
            ("/a/**/z", "/a/b/c/z", Some("/a/b/c/z")),
            ("/img/*.png", "/img/*.jpg", None),
        ];
        for (a, b, want) in cases {
            let (pa, pb) = (Pattern::parse(a).unwrap(), Pattern::parse(b).unwrap());
            assert_eq!(pa.overlap_example(&pb).as_deref(), *want, "{a} ∩ {b}");
            assert_eq!(pb.overlap_example(&pa).is_some(), want.is_some(), "{b} ∩ {a}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 5_000, ..Default::default() })]

        /// A simple tail, checked on what follows the literal prefix, gives
        /// what the pattern's globs give on the whole path.
        #[test]
        fn simple_tails_agree_with_the_globs(
            prefix in proptest::collection::vec(proptest::sample::select(vec!["", "a", "b", "ab", "{p}"]), 0..3),
            tail in proptest::sample::select(vec!["", "*", "**", "{id}", "*.x", "?"]),
            path in "(/[abx.*]{0,2}){0,5}/?",
            below_prefix in proptest::bool::ANY,
        ) {
            // Parameters of the prefix get names of their own (`{p0}`, `{p1}`).
            let mut source: String = prefix
                .iter()
                .enumerate()
                .map(|(i, s)| if *s == "{p}" { format!("/{{p{i}}}") } else { format!("/{s}") })
                .collect();
            if !tail.is_empty() || source.is_empty() {
                source = format!("{source}/{tail}");
            }
            // Patterns with empty segments inside are refused; those are not the point here.
            let Ok(p) = Pattern::parse(&source) else { return Ok(()) };
            let Some(t) = p.index_tail else { return Ok(()) };
            // A path with the index prefix: its literals, `x` for a parameter.
            let lit: String = p
                .index_prefix
                .iter()
                .map(|s| match s {
                    IndexSegment::Literal(s) => format!("/{s}"),
                    IndexSegment::Param => "/x".to_owned(),
                })
                .collect();
            // Half the paths are the prefix and something (often nothing) after it.
            let path = if below_prefix { format!("{lit}{path}") } else { path };
            let path = if path.is_empty() { "/".to_owned() } else { path };
            // The route index reaches a pattern's routes only on paths whose
            // leading segments fit its index prefix (a parameter: any non-empty segment).
            if let Some(rest) = after_index_prefix(&p.index_prefix, &path) {
                proptest::prop_assert_eq!(t.matches(rest), p.is_match(&Candidate::new(&path)), "{} on {}", source, path);
            }
        }
    }

    #[test]
    fn grpc_routes_are_recognised() {
        for (source, service) in [
            ("/orders.v1.Orders/*", Some("orders.v1.Orders")),
            ("/orders.v1.Orders/GetOrder", Some("orders.v1.Orders")),
            ("/grpc.health.v1.Health/{method}", Some("grpc.health.v1.Health")),
            ("/v1/users/*", None),
            ("/orders/GetOrder", None),
            ("/a.b/c/d", None),
            ("/a.b/**", None),
            ("/docs/index.html", None),
        ] {
            assert_eq!(Pattern::parse(source).unwrap().grpc_service(), service, "{source}");
        }
    }

    /// What follows `prefix` in `path`, if the path's leading segments fit it.
    fn after_index_prefix<'p>(prefix: &[IndexSegment], path: &'p str) -> Option<&'p str> {
        let mut rest = path;
        for want in prefix {
            let after = rest.strip_prefix('/')?;
            let segment = after.split_once('/').map_or(after, |(s, _)| s);
            match want {
                IndexSegment::Literal(l) if l == segment => {}
                IndexSegment::Param if !segment.is_empty() => {}
                _ => return None,
            }
            rest = &after[segment.len()..];
        }
        Some(rest)
    }

    #[test]
    fn tails() {
        let tail = |p: &str| Pattern::parse(p).unwrap().index_tail;
        assert_eq!(tail("/v1/health"), Some(Tail::Exact));
        assert_eq!(tail("/"), Some(Tail::Exact));
        assert_eq!(tail("/v1/users/*"), Some(Tail::Segment));
        // Parameters are segments of the index prefix.
        assert_eq!(tail("/v1/users/{id}"), Some(Tail::Exact));
        assert_eq!(tail("/a/{x}/b"), Some(Tail::Exact));
        assert_eq!(tail("/repos/{owner}/{repo}/issues/*"), Some(Tail::Segment));
        assert_eq!(tail("/admin/**"), Some(Tail::Any));
        assert_eq!(tail("/**"), Some(Tail::Any));
        for complex in ["/v1/*/x", "/v1/users/*.json", "/a/**/b", "/f?o", "/lit[1]", "/docs/{a,b}"] {
            assert_eq!(tail(complex), None, "{complex}");
        }
        let prefix = |p: &str| Pattern::parse(p).unwrap().index_prefix;
        let lit = |s: &str| IndexSegment::Literal(s.to_owned());
        assert_eq!(
            prefix("/repos/{owner}/{repo}/issues/*"),
            [lit("repos"), IndexSegment::Param, IndexSegment::Param, lit("issues")]
        );
        assert_eq!(prefix("/v1/users/*.json"), [lit("v1"), lit("users")]);
    }

    #[test]
    fn errors() {
        for bad in ["v1", "/a//b", "/a**", "/a/{x}/{x}", "/a/{b", "/a/b}", "/a/{b}x{", "/a\\b", "/{a{b,c}}"] {
            assert!(Pattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
