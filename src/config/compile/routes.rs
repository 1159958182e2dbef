//! `[[routes]]` and `[defaults] unmatched`: patterns (reused from the serving table by their text), methods, hosts, upstreams, requirements, upgrades.

use std::collections::BTreeMap;
use std::sync::Arc;

use foldhash::HashMap as FastMap;
use globset::GlobBuilder;
use http::Method;
use toml::Spanned;

use crate::auth::claims::{ClaimPath, RoleClosure};
use crate::auth::Issuer;
use crate::config::file::{ClaimValue, ModeSpec, OneOrMany, RequirementSpec, RouteSpec, RoutesFile, UnmatchedSpec};
use crate::routes::{Access, Mode, Pattern, Route, RouteClaimNames, RouteTable};
use crate::routes::{ClaimCheck, Requirement, TemplatePart};
use crate::snapshot::Snapshot;
use crate::upstream::Upstream;

use super::issuers::claim_paths;
use super::lint::{lint_param_claims, lint_routes};
use super::Compiler;

pub(super) type CompiledRoutes = (Option<RouteTable>, Option<Route>);

/// What routes need of the issuers and `[roles]` to read roles at decision time.
pub(super) struct ClaimContext<'a> {
    pub issuers: &'a [Issuer],
    pub closure: &'a Arc<RoleClosure>,
}

pub(super) fn compile_routes(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    claims: &ClaimContext<'_>,
    previous: Option<&Snapshot>,
) -> CompiledRoutes {
    // A reload reuses the compiled patterns of the serving table (a pattern is a
    // function of its text alone): most reloads change a few lines, and parsing
    // patterns was a fifth of compiling a large table.
    let known: FastMap<&str, &Arc<Pattern>> = previous
        .map(|p| p.routes.routes().iter().map(|r| (r.pattern.source.as_str(), &r.pattern)).collect())
        .unwrap_or_default();
    // Each upstream's `upgrades` (routes without their own use them), else `websocket`.
    let default_upgrades: Arc<[Box<str>]> = Arc::from([Box::from("websocket")]);
    let upgrades: BTreeMap<&str, Arc<[Box<str>]>> = file
        .upstreams
        .iter()
        .map(|(name, spec)| {
            let list = match &spec.get_ref().upgrades {
                Some(list) => compile_upgrades(c, list),
                None => Arc::clone(&default_upgrades),
            };
            (name.as_str(), list)
        })
        .collect();
    let mut routes = Vec::with_capacity(file.routes.len());
    for (index, spec) in file.routes.iter().enumerate() {
        crate::pace::point();
        if let Some(route) = compile_route(c, index, spec, upstreams, &upgrades, &known, claims) {
            routes.push(route);
        }
    }
    lint_routes(c, &routes);
    let roles_grant = file.roles.values().any(|r| !r.get_ref().permissions.is_empty());
    lint_param_claims(c, &routes, claims.issuers, roles_grant);
    c.warnings.extend(crate::config::names::undefined_in_roles(c.loc.file(), &file.roles, &routes));
    let unmatched = match file.defaults.unmatched {
        UnmatchedSpec::Deny => None,
        UnmatchedSpec::Authenticate => match upstreams.get("default") {
            Some(up) => Some(Route {
                index: usize::MAX,
                name: Arc::from("(unmatched: authenticate)"),
                line: 0,
                methods: None,
                host: None,
                pattern: Arc::new(Pattern::parse("/**").expect("static pattern")),
                upstream: Arc::clone(up),
                access: Access::Protected(Requirement::default()),
                mode: Mode::Enforce,
                upgrades: upgrades.get("default").cloned().unwrap_or(default_upgrades),
                claim_names: None,
            }),
            None => {
                c.err::<()>(
                    None,
                    "[defaults] unmatched = \"authenticate\" forwards to [upstreams.default], which is not defined",
                );
                None
            }
        },
    };
    (Some(RouteTable::build(routes)), unmatched)
}

pub(super) fn compile_route(
    c: &mut Compiler<'_>,
    index: usize,
    spec: &Spanned<RouteSpec>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    upgrades: &BTreeMap<&str, Arc<[Box<str>]>>,
    known: &FastMap<&str, &Arc<Pattern>>,
    claims: &ClaimContext<'_>,
) -> Option<Route> {
    let s = spec.get_ref();
    let line = c.loc.line_col(spec.span().start).0;
    let name: Arc<str> = Arc::from(s.name.as_deref().unwrap_or(s.path.get_ref()));
    let pattern = match known.get(s.path.get_ref().as_str()) {
        Some(&p) => Ok(Arc::clone(p)),
        None => Pattern::parse(s.path.get_ref()).map(Arc::new),
    };
    let pattern = match pattern {
        Ok(p) => Some(p),
        Err(e) => {
            c.err(Some(&s.path), e);
            None
        }
    };
    let methods = s.methods.as_ref().map(|list| {
        list.iter()
            .filter_map(|m| {
                let upper = m.get_ref().to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        c.err(Some(m), format!("{:?} is not an HTTP method", m.get_ref()));
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    let host = s.host.as_ref().and_then(|h| {
        match GlobBuilder::new(&h.get_ref().to_ascii_lowercase()).case_insensitive(true).build() {
            Ok(g) => Some(g.compile_matcher()),
            Err(e) => {
                c.err(Some(h), format!("bad host pattern: {e}"));
                None
            }
        }
    });
    let upstream_name = s.upstream.as_ref().map_or("default", |u| u.get_ref().as_str());
    let upstream = match upstreams.get(upstream_name) {
        Some(u) => Some(Arc::clone(u)),
        None => {
            let msg = match &s.upstream {
                Some(_) => format!(
                    "route {name:?}: unknown upstream {upstream_name:?}{}",
                    crate::config::names::did_you_mean(upstream_name, upstreams.keys().map(String::as_str))
                ),
                None => format!("route {name:?} has no upstream and there is no [upstreams.default]"),
            };
            match &s.upstream {
                Some(u) => c.err(Some(u), msg),
                None => c.err(Some(spec), msg),
            }
            None
        }
    };
    let params = pattern.as_ref().map(|p| p.params.clone()).unwrap_or_default();
    let requirement = compile_requirement(
        c,
        &RequirementSpec {
            all_permissions: s.all_permissions.clone(),
            any_permissions: s.any_permissions.clone(),
            all_roles: s.all_roles.clone(),
            any_roles: s.any_roles.clone(),
            claims: s.claims.clone(),
            any_of: s.any_of.clone(),
        },
        &params,
    );
    let claim_names = route_claim_names(c, s, &name, &params, claims);
    let access = if s.public {
        if !requirement.is_empty() {
            c.err(Some(spec), format!("route {name:?} is public and has requirements; a public route ignores tokens"));
        }
        if let Some(at) = s.roles_claim.as_ref().or(s.permissions_claim.as_ref()) {
            c.err(
                Some(at),
                format!("route {name:?} is public: it reads no token, so no roles_claim or permissions_claim"),
            );
        }
        Access::Public
    } else {
        Access::Protected(requirement)
    };
    Some(Route {
        index,
        name,
        line,
        methods,
        host,
        pattern: pattern?,
        upstream: upstream?,
        access,
        mode: match s.mode {
            ModeSpec::Enforce => Mode::Enforce,
            ModeSpec::Report => Mode::Report,
        },
        upgrades: match &s.upgrades {
            Some(list) => compile_upgrades(c, list),
            None => upgrades.get(upstream_name).cloned().unwrap_or_else(|| Arc::from([Box::from("websocket")])),
        },
        claim_names: claim_names.filter(|_| !s.public),
    })
}

/// The route's own `roles_claim` / `permissions_claim`, each `{param}` a
/// parameter of its path; or, without them, whether an issuer's claim path
/// names a parameter of its path: then the route reads roles at decision time.
fn route_claim_names(
    c: &mut Compiler<'_>,
    s: &RouteSpec,
    name: &str,
    params: &[String],
    claims: &ClaimContext<'_>,
) -> Option<Box<RouteClaimNames>> {
    let own = |c: &mut Compiler<'_>, key: &str, spec: Option<&Spanned<OneOrMany>>| {
        let spec = spec?;
        let paths = claim_paths(c, key, Some(spec), &[]);
        for p in &paths {
            for param in p.params().filter(|p| !params.iter().any(|q| q == p)) {
                c.err(
                    Some(spec),
                    format!("route {name:?}: {key} {:?}: the path has no parameter {{{param}}}", p.as_str()),
                );
            }
        }
        Some(paths)
    };
    let roles = own(c, "roles_claim", s.roles_claim.as_ref());
    let permissions = own(c, "permissions_claim", s.permissions_claim.as_ref());
    let issuer_params = claims.issuers.iter().any(|i| {
        let mut paths = roles.is_none().then_some(&i.roles_claims).into_iter().flatten();
        let mut perms = permissions.is_none().then_some(&i.permissions_claims).into_iter().flatten();
        paths.any(|p| p.params().any(|q| params.iter().any(|r| r == q)))
            || perms.any(|p| p.params().any(|q| params.iter().any(|r| r == q)))
    });
    (roles.is_some() || permissions.is_some() || issuer_params)
        .then(|| Box::new(RouteClaimNames { roles, permissions, closure: Arc::clone(claims.closure) }))
}

pub(super) fn compile_requirement(c: &mut Compiler<'_>, s: &RequirementSpec, params: &[String]) -> Requirement {
    let mut claims = Vec::new();
    for (claim, value) in &s.claims {
        let expected = match value.get_ref() {
            ClaimValue::String(t) => match parse_template(t) {
                Ok(parts) => {
                    for p in &parts {
                        if let TemplatePart::Param(name) = p {
                            if !params.contains(name) {
                                c.err(Some(value), format!("claims.{claim}: the path has no parameter {{{name}}}"));
                            }
                        }
                    }
                    parts
                }
                Err(e) => {
                    c.err(Some(value), format!("claims.{claim}: {e}"));
                    continue;
                }
            },
            ClaimValue::Integer(i) => vec![TemplatePart::Literal(i.to_string())],
            ClaimValue::Bool(b) => vec![TemplatePart::Literal(b.to_string())],
        };
        let path = match ClaimPath::parse(claim) {
            Ok(p) if p.has_params() => {
                for name in p.params() {
                    if !params.iter().any(|n| n == name) {
                        c.err(Some(value), format!("claims.{claim}: the path has no parameter {{{name}}}"));
                    }
                }
                Some(p)
            }
            Ok(_) => None,
            Err(e) => {
                c.err(Some(value), format!("claims: {e}"));
                continue;
            }
        };
        claims.push(ClaimCheck { claim: claim.clone(), path, expected });
    }
    let any_of = s
        .any_of
        .iter()
        .map(|alt| {
            let r = compile_requirement(c, alt.get_ref(), params);
            if r.is_empty() {
                c.err(Some(alt), "an any_of alternative with no requirement would let every valid token through");
            }
            r
        })
        .collect();
    Requirement {
        all_permissions: s.all_permissions.clone(),
        any_permissions: s.any_permissions.clone(),
        all_roles: s.all_roles.clone(),
        any_roles: s.any_roles.clone(),
        claims,
        any_of,
    }
}

/// `"org-{tenant}"` → `[Literal("org-"), Param("tenant")]`.
pub(super) fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in {t:?}"))? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(format!("{{{name}}} in {t:?} is not a parameter name"));
        }
        parts.push(TemplatePart::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {t:?}"));
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

/// The `Upgrade` protocols passed through (a route's or an upstream's
/// `upgrades`); `h2c` is refused.
pub(super) fn compile_upgrades(c: &mut Compiler<'_>, list: &Spanned<Vec<String>>) -> Arc<[Box<str>]> {
    let mut out = Vec::new();
    for p in list.get_ref() {
        if p.eq_ignore_ascii_case("h2c") {
            c.err(
                Some(list),
                "upgrades: h2c is never passed through (a client could then reach the upstream past the gateway)",
            );
        } else if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            c.err(Some(list), format!("upgrades: {p:?} is not a protocol name"));
        } else {
            out.push(Box::from(p.to_ascii_lowercase()));
        }
    }
    out.into()
}
