//! Warnings, never errors: routes that are never reached, protected routes a
//! public route takes requests of, routes with no requirement, unusual
//! methods, gRPC routes that do not allow POST, and claims decisions read that
//! the access log would not record.

use foldhash::HashMap as FastMap;

use crate::auth::Issuer;
use crate::config::file::RoutesFile;
use crate::routes::Requirement;
use crate::routes::{Access, Pattern, Route, RouteTable};

use super::Compiler;

pub(super) const KNOWN_METHODS: &[&str] =
    &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

/// Whether every request route `b` matches is matched by the earlier `a` first
/// (conservative: same pattern, or `a` is a literal prefix followed by `/**`
/// that `b`'s literal prefix starts with; `a` accepts every method and host of `b`).
pub(super) fn shadows(a: &Route, b: &Route) -> bool {
    let methods_cover = match (&a.methods, &b.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(am), Some(bm)) => bm.iter().all(|m| am.contains(m)),
    };
    if !methods_cover || a.host.is_some() {
        return false;
    }
    let (ap, bp) = (&a.pattern, &b.pattern);
    if ap.source == bp.source {
        return true;
    }
    is_prefix_all(ap) && bp.literal_prefix.starts_with(&ap.literal_prefix)
}

/// `literal/prefix/**`: the pattern's only glob part is a trailing `**`.
pub(super) fn is_prefix_all(p: &Pattern) -> bool {
    p.source.ends_with("/**")
        && p.literal_prefix.len() + 1 == p.source[1..].split('/').count()
        && !p.literal_prefix.iter().any(String::is_empty)
}

/// The routes that could shadow a later one, indexed so that linting a table
/// stays linear (checking every earlier route made 10,000 routes take seconds).
#[derive(Default)]
struct ShadowIndex<'r> {
    /// Routes by pattern text.
    by_source: FastMap<&'r str, Vec<usize>>,
    /// `prefix/**` routes by their literal prefix.
    prefix_all: FastMap<&'r [String], Vec<usize>>,
    /// Public routes by their first literal segment (`None`: the pattern starts with a glob).
    public: FastMap<Option<&'r str>, Vec<usize>>,
}

impl<'r> ShadowIndex<'r> {
    /// The earliest of the indexed routes that shadows `b`.
    fn first_shadowing(&self, routes: &'r [Route], b: &Route) -> Option<&'r Route> {
        let prefix = &b.pattern.literal_prefix;
        let same = self.by_source.get(b.pattern.source.as_str()).into_iter().flatten();
        let above = (0..=prefix.len()).filter_map(|k| self.prefix_all.get(&prefix[..k])).flatten();
        same.chain(above).copied().filter(|&a| shadows(&routes[a], b)).min().map(|a| &routes[a])
    }

    fn add(&mut self, i: usize, route: &'r Route) {
        self.by_source.entry(route.pattern.source.as_str()).or_default().push(i);
        if is_prefix_all(&route.pattern) {
            self.prefix_all.entry(route.pattern.literal_prefix.as_slice()).or_default().push(i);
        }
        if matches!(route.access, Access::Public) {
            self.public.entry(route.pattern.literal_prefix.first().map(String::as_str)).or_default().push(i);
        }
    }

    /// The public routes that may share a path with `b`, in file order.
    fn public_candidates(&self, b: &Route) -> Vec<usize> {
        let mut found: Vec<usize> = match b.pattern.literal_prefix.first() {
            Some(first) => {
                [None, Some(first.as_str())].iter().filter_map(|k| self.public.get(k)).flatten().copied().collect()
            }
            None => self.public.values().flatten().copied().collect(),
        };
        found.sort_unstable();
        found
    }
}

/// The first earlier public route that takes some (not all: that is shadowing)
/// of protected route `b`'s requests, with an example path.
pub(super) fn taken_by_public_route<'r>(
    routes: &'r [Route],
    public: &[usize],
    b: &Route,
) -> Option<(&'r Route, String)> {
    if matches!(b.access, Access::Public) {
        return None;
    }
    public.iter().map(|&a| &routes[a]).filter(|a| !shadows(a, b)).find_map(|a| {
        let methods_meet = match (&a.methods, &b.methods) {
            (Some(am), Some(bm)) => bm.iter().any(|m| am.contains(m)),
            _ => true,
        };
        let hosts_meet = match (&a.host, &b.host) {
            (Some(ah), Some(bh)) => {
                let (ah, bh) = (ah.glob().glob(), bh.glob().glob());
                ah == bh || ah.contains(['*', '?', '{']) || bh.contains(['*', '?', '{'])
            }
            _ => true,
        };
        // Two literal segments at the same position that differ: no overlap (cheap filter).
        let (ap, bp) = (&a.pattern.literal_prefix, &b.pattern.literal_prefix);
        let prefixes_meet = ap.iter().zip(bp).all(|(x, y)| x == y);
        if !(methods_meet && hosts_meet && prefixes_meet) {
            return None;
        }
        a.pattern.overlap_example(&b.pattern).map(|example| (a, example))
    })
}

/// Warnings (not errors): routes that can never match, protected routes with
/// no requirement, public routes that hide protected ones, unusual methods.
pub(super) fn lint_routes(c: &mut Compiler<'_>, routes: &[Route]) {
    let file = c.loc.file().display().to_string();
    let mut index = ShadowIndex::default();
    for (i, b) in routes.iter().enumerate() {
        crate::pace::point();
        if let Some(a) = index.first_shadowing(routes, b) {
            let what = if matches!(a.access, Access::Public) && !matches!(b.access, Access::Public) {
                "public route"
            } else {
                "route"
            };
            c.warnings.push(format!(
                "{file}:{}: route {:?} is never reached: the earlier {what} {:?} (line {}) matches all its requests first",
                b.line, &*b.name, &*a.name, a.line
            ));
        }
        if let Some((a, example)) = taken_by_public_route(routes, &index.public_candidates(b), b) {
            let method = b.methods.as_ref().and_then(|m| m.first()).map_or("GET", |m| m.as_str());
            c.warnings.push(format!(
                "{file}:{}: protected route {:?} overlaps the earlier public route {:?} (line {}): \
                 e.g. {method} {example} is served without a token",
                b.line, &*b.name, &*a.name, a.line
            ));
        }
        if let Access::Protected(req) = &b.access {
            if req.is_empty() {
                c.warnings.push(format!(
                    "{file}:{}: route {:?} has no requirement: any valid token passes (add `public = true` or a requirement)",
                    b.line, &*b.name
                ));
            }
        }
        for m in b.methods.iter().flatten() {
            if !KNOWN_METHODS.contains(&m.as_str()) {
                c.warnings.push(format!("{file}:{}: route {:?}: unusual method {m}", b.line, &*b.name));
            }
        }
        // A gRPC route needs no `methods` (every call is a POST); one that lists
        // methods without POST admits no call at all.
        if let (Some(service), Some(methods)) = (b.pattern.grpc_service(), &b.methods) {
            if !methods.contains(&http::Method::POST) {
                c.warnings.push(format!(
                    "{file}:{}: route {:?} looks like a gRPC route (service {service}) but does not allow POST, \
                     the method of every gRPC call: leave `methods` out",
                    b.line, &*b.name
                ));
            }
        }
        index.add(i, b);
    }
}

/// Warnings for the protected routes that need roles or permissions but
/// whose path lacks a parameter an issuer's claim path names
/// (`organization.{tenant}.roles` on a route without `{tenant}`): that claim
/// gives them none.
/// `roles_grant`: some `[roles]` entry grants permissions (then roles give permissions too).
pub(super) fn lint_param_claims(c: &mut Compiler<'_>, routes: &[Route], issuers: &[Issuer], roles_grant: bool) {
    /// Whether `req` reads what a roles claim (`roles`) or a permissions claim gives.
    fn needs(req: &Requirement, roles: bool, roles_grant: bool) -> bool {
        let perms = !req.all_permissions.is_empty() || !req.any_permissions.is_empty();
        let role_checks = !req.all_roles.is_empty() || !req.any_roles.is_empty();
        let direct = if roles { role_checks || (perms && roles_grant) } else { perms };
        direct || req.any_of.iter().any(|alt| needs(alt, roles, roles_grant))
    }
    let file = c.loc.file().display().to_string();
    for issuer in issuers.iter().filter(|i| i.has_param_claims()) {
        for route in routes {
            let Access::Protected(req) = &route.access else { continue };
            let own = route.claim_names.as_deref();
            let kinds = [
                ("roles_claim", "roles", &issuer.roles_claims, own.is_some_and(|n| n.roles.is_some()), true),
                (
                    "permissions_claim",
                    "permissions",
                    &issuer.permissions_claims,
                    own.is_some_and(|n| n.permissions.is_some()),
                    false,
                ),
            ];
            for (key, what, paths, overridden, roles) in kinds {
                if overridden || !needs(req, roles, roles_grant) {
                    continue;
                }
                for path in paths.iter() {
                    let Some(missing) = path.params().find(|p| !route.pattern.params.iter().any(|q| q == p)) else {
                        continue;
                    };
                    c.warnings.push(format!(
                        "{file}:{}: route {:?}: its path has no {{{missing}}}, so {key} {:?} of issuer {:?} gives it no {what} \
                         (add {{{missing}}} to the path, or give the route its own {key})",
                        route.line,
                        &*route.name,
                        path.as_str(),
                        issuer.name
                    ));
                }
            }
        }
    }
}

/// `[defaults] log_claims`, with a warning for each claim that decisions read
/// but the log would not record (a replay of that log could not see it).
pub(super) fn compile_log_claims(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    issuers: &[Issuer],
    routes: Option<&RouteTable>,
) -> Vec<String> {
    let mut logged: Vec<String> = file.defaults.log_claims.iter().map(|s| s.get_ref().clone()).collect();
    // Parents before children, so that a logged `a` is recorded whole next to `a.b`.
    logged.sort_by_key(|p| p.split('.').count());
    for spec in &file.defaults.log_claims {
        if spec.get_ref().is_empty() || spec.get_ref().split('.').any(str::is_empty) {
            c.err(Some(spec), format!("log_claims: {:?} is not a claim path", spec.get_ref()));
        }
    }
    let (Some(first), Some(routes)) = (file.defaults.log_claims.first(), routes) else {
        return logged;
    };
    let mut read: Vec<String> = Vec::new();
    // A path with a parameter is recorded whole from where the parameter selects.
    let logged_as = |p: &crate::auth::claims::ClaimPath| p.prefix();
    for issuer in issuers {
        read.extend(issuer.roles_claims.iter().chain(&issuer.permissions_claims).map(logged_as));
    }
    fn claims_of(req: &Requirement, issuers: &[Issuer], read: &mut Vec<String>) {
        for check in &req.claims {
            match check.claim.as_str() {
                "$tenant" => read.extend(issuers.iter().map(|i| i.tenant_claim.clone())),
                claim => read.push(claim.to_owned()),
            }
        }
        req.any_of.iter().for_each(|alt| claims_of(alt, issuers, read));
    }
    for route in routes.routes() {
        if let Access::Protected(req) = &route.access {
            claims_of(req, issuers, &mut read);
        }
        if let Some(names) = &route.claim_names {
            read.extend(names.roles.iter().chain(&names.permissions).flatten().map(logged_as));
        }
    }
    read.retain(|r| !r.is_empty());
    read.sort();
    read.dedup();
    // A logged parent path (`realm_access`) records everything below it.
    let covered = |claim: &str| {
        logged.iter().any(|l| claim == l || claim.strip_prefix(l.as_str()).is_some_and(|r| r.starts_with('.')))
    };
    let missing: Vec<&str> = read.iter().map(String::as_str).filter(|r| !covered(r)).collect();
    if !missing.is_empty() {
        let (line, _) = c.loc.line_col(first.span().start);
        c.warnings.push(format!(
            "{}:{line}: log_claims does not record {}, which decisions read: replays of this log will not see {}",
            c.loc.file().display(),
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    logged
}
