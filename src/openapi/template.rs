//! OpenAPI path templates (`/files/{name}.json`) as rolegate path patterns,
//! the order literal-before-parameter that OpenAPI asks for, and example
//! request paths for each template.
//!
//! A rolegate parameter is a whole segment `{name}` with `name` of
//! `[A-Za-z0-9_]` (not starting with a digit); a template parameter that is
//! not (`{enterprise-team}`) is renamed, and one inside a segment
//! (`{name}.json`, `{base}...{head}`) becomes a `*` of a segment glob
//! (`*.json`). Literal segments are written as the normalizer leaves request
//! paths: escapes of unreserved characters decoded, other escapes upper-case,
//! characters a request path cannot carry raw percent-encoded.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

/// One segment of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// A literal, in normalized request form.
    Literal(String),
    /// A whole-segment parameter: its name in the template.
    Param(String),
    /// Literals and parameters within one segment.
    Mixed(Vec<Part>),
}

/// A piece of a [`Segment::Mixed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Part {
    Literal(String),
    Param(String),
}

/// A template turned into a rolegate pattern.
#[derive(Debug, Clone)]
pub struct Converted {
    /// Prefix and template segments.
    pub segments: Vec<Segment>,
    /// The path pattern for routes.toml.
    pub pattern: String,
    /// Template parameter name → the rolegate parameter name it got (only those renamed).
    pub renamed: Vec<(String, String)>,
    /// What could not be kept exactly, for a comment and a warning.
    pub notes: Vec<String>,
}

/// Parses a template (after `prefix`, a server path such as `/v2`) and writes its pattern.
pub fn convert(prefix: &str, template: &str) -> Result<Converted, String> {
    let mut notes = Vec::new();
    let mut segments = Vec::new();
    for raw in prefix.split('/').filter(|s| !s.is_empty()) {
        segments.push(Segment::Literal(literal(raw)));
    }
    let body = template.strip_prefix('/').unwrap_or(template);
    let raws: Vec<&str> = body.split('/').collect();
    let last = raws.len() - 1;
    for (i, raw) in raws.iter().enumerate() {
        match *raw {
            "" if i != last => {
                notes.push(format!(
                    "the template {template:?} has an empty segment; request paths never do (repeated '/' are merged)"
                ));
                continue;
            }
            "." => continue,
            ".." => {
                segments.pop();
                continue;
            }
            _ => {}
        }
        segments.push(segment(raw).map_err(|e| format!("path template {template:?}: {e}"))?);
    }
    let mut pattern = String::new();
    let mut used: Vec<String> = Vec::new();
    let mut renamed = Vec::new();
    for seg in &segments {
        pattern.push('/');
        match seg {
            Segment::Literal(lit) => {
                if lit.contains('*') {
                    notes.push(format!("the literal segment {lit:?} contains '*', a glob character here: matched as '?' (any one character)"));
                }
                pattern.push_str(&lit.replace('*', "?"));
            }
            Segment::Param(name) => {
                let mut id = identifier(name);
                while used.contains(&id) {
                    id.push_str("_2");
                }
                if id != *name {
                    notes.push(format!(
                        "the parameter {{{name}}} is named {{{id}}} here (rolegate parameter names are letters, digits and '_')"
                    ));
                    renamed.push((name.clone(), id.clone()));
                }
                used.push(id.clone());
                pattern.push('{');
                pattern.push_str(&id);
                pattern.push('}');
            }
            Segment::Mixed(parts) => {
                let glob: String = parts
                    .iter()
                    .map(|p| match p {
                        Part::Literal(l) => l.replace('*', "?"),
                        Part::Param(_) => "*".to_owned(),
                    })
                    .collect();
                let shown: String = parts
                    .iter()
                    .map(|p| match p {
                        Part::Literal(l) => l.clone(),
                        Part::Param(n) => format!("{{{n}}}"),
                    })
                    .collect();
                notes.push(format!(
                    "{shown:?}: a parameter inside a segment is matched as the segment glob {glob:?} (rolegate parameters are whole segments)"
                ));
                pattern.push_str(&glob);
            }
        }
    }
    if pattern.is_empty() {
        pattern.push('/');
    }
    Ok(Converted { segments, pattern, renamed, notes })
}

/// One raw template segment.
fn segment(raw: &str) -> Result<Segment, String> {
    let mut parts = Vec::new();
    let mut rest = raw;
    while let Some(open) = rest.find('{') {
        if rest[..open].contains('}') {
            return Err("'}' without '{'".to_owned());
        }
        if open > 0 {
            parts.push(Part::Literal(literal(&rest[..open])));
        }
        let close = rest[open..].find('}').ok_or("'{' without '}'")? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("{{{name}}} is not a parameter"));
        }
        parts.push(Part::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err("'}' without '{'".to_owned());
    }
    if !rest.is_empty() {
        parts.push(Part::Literal(literal(rest)));
    }
    Ok(match parts.as_slice() {
        [] => Segment::Literal(String::new()),
        [Part::Literal(l)] => Segment::Literal(l.clone()),
        [Part::Param(p)] => Segment::Param(p.clone()),
        _ => Segment::Mixed(parts),
    })
}

/// A literal in the form the normalizer gives request paths.
fn literal(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let hex = |b: u8| (b as char).to_digit(16);
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            if let (Some(h), Some(l)) = (bytes.get(i + 1).and_then(|&b| hex(b)), bytes.get(i + 2).and_then(|&b| hex(b)))
            {
                let v = (h * 16 + l) as u8;
                if is_unreserved(v) {
                    out.push(v as char);
                } else {
                    out.push_str(&format!("%{v:02X}"));
                }
                i += 3;
                continue;
            }
        }
        if is_unreserved(b) || b"!$&'()*+,;=:@[]".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
        i += 1;
    }
    out
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// A rolegate parameter name for a template parameter name.
fn identifier(name: &str) -> String {
    let mut id: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if !id.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        id.insert(0, '_');
    }
    id
}

// === order ===

/// 0 literal, 1 literal and parameters, 2 parameter.
fn rank(s: &Segment) -> u8 {
    match s {
        Segment::Literal(_) => 0,
        Segment::Mixed(_) => 1,
        Segment::Param(_) => 2,
    }
}

/// Whether some request path segment can match both (conservative: `true` when unsure).
fn compatible(a: &Segment, b: &Segment) -> bool {
    match (a, b) {
        (Segment::Literal(x), Segment::Literal(y)) => x == y,
        (Segment::Literal(x), Segment::Param(_)) | (Segment::Param(_), Segment::Literal(x)) => !x.is_empty(),
        (Segment::Literal(x), Segment::Mixed(m)) | (Segment::Mixed(m), Segment::Literal(x)) => mixed_matches(m, x),
        _ => true,
    }
}

/// Whether a mixed segment (parameters as `*`) matches a literal segment.
fn mixed_matches(parts: &[Part], text: &str) -> bool {
    match parts.split_first() {
        None => text.is_empty(),
        Some((Part::Literal(l), rest)) => text.strip_prefix(l.as_str()).is_some_and(|t| mixed_matches(rest, t)),
        Some((Part::Param(_), rest)) => {
            (0..=text.len()).filter(|&i| text.is_char_boundary(i)).any(|i| mixed_matches(rest, &text[i..]))
        }
    }
}

/// Whether `a` must come before `b`: both can match one path, and at the
/// first place where one has a literal and the other a parameter, `a` has
/// the literal (OpenAPI: "concrete paths are matched before templated ones").
fn before(a: &[Segment], b: &[Segment]) -> bool {
    if a.len() != b.len() || !a.iter().zip(b).all(|(x, y)| compatible(x, y)) {
        return false;
    }
    a.iter().map(rank).lt(b.iter().map(rank))
}

/// The order to list templates in: every pair that can match the same path
/// ordered by [`before`], all others in their given order (a topological sort
/// that always takes the earliest template it may).
pub fn order(templates: &[&[Segment]]) -> Vec<usize> {
    let n = templates.len();
    let mut after: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut blockers = vec![0usize; n];
    // Only templates with as many segments can match the same path.
    let mut by_len: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for (i, t) in templates.iter().enumerate() {
        by_len.entry(t.len()).or_default().push(i);
    }
    for group in by_len.values() {
        for (k, &i) in group.iter().enumerate() {
            for &j in &group[k + 1..] {
                if before(templates[i], templates[j]) {
                    after[i].push(j);
                    blockers[j] += 1;
                } else if before(templates[j], templates[i]) {
                    after[j].push(i);
                    blockers[i] += 1;
                }
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| blockers[i] == 0).map(Reverse).collect();
    let mut out = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        out.push(i);
        for &j in &after[i] {
            blockers[j] -= 1;
            if blockers[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    // `before` is a strict lexicographic order on rank vectors: no cycles, every template is output.
    debug_assert_eq!(out.len(), n);
    out
}

// === examples ===

/// Every literal segment text of these templates (a sample parameter value must differ from all).
pub fn literals<'a>(templates: impl IntoIterator<Item = &'a [Segment]>) -> HashSet<String> {
    let mut out = HashSet::new();
    for t in templates {
        for s in t {
            if let Segment::Literal(l) = s {
                out.insert(l.clone());
            }
        }
    }
    out
}

/// An example request path for a template: each parameter replaced by
/// `sample(name)`, changed until it is no literal segment of any template.
pub fn example(segments: &[Segment], literals: &HashSet<String>, sample: impl Fn(&str) -> String) -> String {
    let unique = |name: &str| {
        let mut s = sample(name);
        while literals.contains(&s) {
            s.push('1');
        }
        s
    };
    let mut out = String::new();
    for seg in segments {
        out.push('/');
        match seg {
            Segment::Literal(l) => out.push_str(l),
            Segment::Param(p) => out.push_str(&unique(p)),
            Segment::Mixed(parts) => {
                for part in parts {
                    match part {
                        Part::Literal(l) => out.push_str(l),
                        Part::Param(p) => out.push_str(&unique(p)),
                    }
                }
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(prefix: &str, t: &str) -> String {
        convert(prefix, t).unwrap().pattern
    }

    #[test]
    fn templates_become_patterns() {
        assert_eq!(pattern("/v2", "/pet/{petId}"), "/v2/pet/{petId}");
        assert_eq!(pattern("", "/"), "/");
        assert_eq!(pattern("/v1/", "/a/"), "/v1/a/");
        let c = convert("", "/files/{name}.json").unwrap();
        assert_eq!(c.pattern, "/files/*.json");
        assert!(c.notes[0].contains("*.json"), "{:?}", c.notes);
        assert_eq!(pattern("", "/repos/{owner}/{repo}/compare/{base}...{head}"), "/repos/{owner}/{repo}/compare/*...*");
        let c = convert("", "/teams/{enterprise-team}/x/{1st}").unwrap();
        assert_eq!(c.pattern, "/teams/{enterprise_team}/x/{_1st}");
        assert_eq!(
            c.renamed,
            vec![("enterprise-team".into(), "enterprise_team".into()), ("1st".into(), "_1st".into())]
        );
        assert_eq!(pattern("", "/a/{x-y}/{x_y}"), "/a/{x_y}/{x_y_2}");
        assert_eq!(pattern("", "/caf%c3%a9/%7euser/a b/v1:run"), "/caf%C3%A9/~user/a%20b/v1:run");
        assert_eq!(pattern("", "/a//b"), "/a/b");
        assert!(convert("", "/a/{b").is_err());
        assert!(convert("", "/a/b}").is_err());
        assert!(convert("", "/a/{}").is_err());
    }

    #[test]
    fn patterns_compile_and_match_their_examples() {
        let none = HashSet::new();
        for t in ["/pet/{petId}", "/files/{name}.json", "/c/{base}...{head}", "/t/{enterprise-team}/m", "/", "/a/"] {
            let c = convert("/v2", t).unwrap();
            let p = crate::routes::Pattern::parse(&c.pattern).unwrap();
            let path = example(&c.segments, &none, |_| "x".to_owned());
            assert!(p.is_match(&globset::Candidate::new(&path)), "{t} → {} must match {path}", c.pattern);
        }
    }

    fn order_of(templates: &[&str]) -> Vec<String> {
        let converted: Vec<Converted> = templates.iter().map(|t| convert("", t).unwrap()).collect();
        let segs: Vec<&[Segment]> = converted.iter().map(|c| c.segments.as_slice()).collect();
        order(&segs).into_iter().map(|i| templates[i].to_owned()).collect()
    }

    #[test]
    fn a_literal_comes_before_a_parameter_at_the_same_place_and_the_rest_keeps_its_order() {
        assert_eq!(order_of(&["/users/{id}", "/users/me"]), ["/users/me", "/users/{id}"]);
        assert_eq!(
            order_of(&["/b", "/users/{id}", "/a", "/users/me", "/c"]),
            ["/b", "/a", "/users/me", "/users/{id}", "/c"]
        );
        // The leftmost difference decides.
        assert_eq!(order_of(&["/{a}/b", "/x/{c}"]), ["/x/{c}", "/{a}/b"]);
        // A segment with a literal part comes before a whole parameter, and after a literal.
        assert_eq!(
            order_of(&["/f/{id}", "/f/{name}.json", "/f/index.json"]),
            ["/f/index.json", "/f/{name}.json", "/f/{id}"]
        );
        // Templates that cannot match the same path keep the document's order.
        assert_eq!(order_of(&["/u/{id}", "/v/me", "/u/{id}/x"]), ["/u/{id}", "/v/me", "/u/{id}/x"]);
        assert_eq!(order_of(&["/f/{name}.json", "/f/a.xml"]), ["/f/{name}.json", "/f/a.xml"]);
        // Literal-before-parameter chains through several templates.
        assert_eq!(order_of(&["/{a}/{b}", "/{a}/me", "/x/{b}", "/x/me"]), ["/x/me", "/x/{b}", "/{a}/me", "/{a}/{b}"]);
    }

    #[test]
    fn examples_avoid_every_literal_segment() {
        let c = convert("", "/users/{id}").unwrap();
        let lits = literals([c.segments.as_slice(), convert("", "/users/x").unwrap().segments.as_slice()]);
        assert_eq!(example(&c.segments, &lits, |_| "x".to_owned()), "/users/x1");
        let c = convert("/v2", "/f/{name}.json").unwrap();
        assert_eq!(example(&c.segments, &lits, |n| n.to_owned()), "/v2/f/name.json");
    }
}
