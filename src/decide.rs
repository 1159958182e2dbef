//! Stage 5 of a request: the verdict. Pure: a route, the normalized target and
//! the outcome of authentication go in; a [`Permit`] (the only way to reach
//! the forwarder) or a [`Denial`] comes out. `rolegate explain` calls the same
//! function, so the CLI and the server cannot disagree.

use std::fmt;
use std::sync::Arc;

use crate::auth::claims;
use crate::auth::{Caller, Identity, RouteRoles, TokenError};
use crate::normalize::Target;
use crate::routes::{Access, Mode, Requirement, Route, RouteClaimNames, TemplatePart};
use crate::upstream::{Destination, Upstream};

/// `Ok` when `ident` (with the roles and permissions in effect on the route)
/// meets the requirement; otherwise the missing permissions (for `scope=`)
/// and a reason for logs and `explain`.
fn check(req: &Requirement, ident: &Caller<'_>, params: &[(&str, &str)]) -> Result<(), Unmet> {
    let mut unmet = Unmet::default();
    let missing: Vec<&String> = req.all_permissions.iter().filter(|p| !ident.has_permission(p)).collect();
    if !missing.is_empty() {
        unmet.permissions.extend(missing.iter().map(|s| s.to_string()));
        unmet.reasons.push(format!("missing permission {}", join(&missing)));
    }
    if !req.any_permissions.is_empty() && !req.any_permissions.iter().any(|p| ident.has_permission(p)) {
        unmet.permissions.extend(req.any_permissions.iter().cloned());
        unmet.reasons.push(format!("needs one of the permissions {}", join(&req.any_permissions)));
    }
    let missing: Vec<&String> = req.all_roles.iter().filter(|r| !ident.has_role(r)).collect();
    if !missing.is_empty() {
        unmet.reasons.push(format!("missing role {}", join(&missing)));
    }
    if !req.any_roles.is_empty() && !req.any_roles.iter().any(|r| ident.has_role(r)) {
        unmet.reasons.push(format!("needs one of the roles {}", join(&req.any_roles)));
    }
    for check in &req.claims {
        let expected = render(&check.expected, params);
        let value = match &check.path {
            Some(path) => match path.resolve(&ident.identity.claims, params) {
                claims::Resolved::Value(v) => Some(v),
                claims::Resolved::Absent | claims::Resolved::NoValue => None,
            },
            None => ident.identity.claim(&check.claim),
        };
        let ok = expected.as_deref().is_some_and(|e| value.is_some_and(|v| claims::claim_matches(v, e)));
        if !ok {
            unmet.reasons.push(format!("claim {} does not match the required value", check.claim));
        }
    }
    if !req.any_of.is_empty() {
        let mut alternatives = Unmet::default();
        let mut met = false;
        for alt in &req.any_of {
            match check(alt, ident, params) {
                Ok(()) => {
                    met = true;
                    break;
                }
                Err(u) => {
                    alternatives.permissions.extend(u.permissions);
                    alternatives.reasons.push(u.reasons.join(" and "));
                }
            }
        }
        if !met {
            unmet.permissions.extend(alternatives.permissions);
            unmet.reasons.push(format!("no alternative of any_of holds ({})", alternatives.reasons.join("; or ")));
        }
    }
    if unmet.reasons.is_empty() {
        Ok(())
    } else {
        Err(unmet)
    }
}

#[derive(Debug, Default)]
struct Unmet {
    permissions: Vec<String>,
    reasons: Vec<String>,
}

fn join<S: AsRef<str>>(items: &[S]) -> String {
    items.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(", ")
}

/// Substitutes path parameters; `None` when a parameter has no value.
fn render(parts: &[TemplatePart], params: &[(&str, &str)]) -> Option<String> {
    let mut out = String::new();
    for part in parts {
        match part {
            TemplatePart::Literal(s) => out.push_str(s),
            TemplatePart::Param(name) => out.push_str(params.iter().find(|(n, _)| n == name)?.1),
        }
    }
    Some(out)
}

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Protected route, no bearer token: 401 `Bearer realm="rolegate"`.
    MissingToken,
    /// 401 `error="invalid_token"`.
    InvalidToken(TokenError),
    /// Valid token, requirement not met: 403 `error="insufficient_scope"`.
    Forbidden { missing_permissions: Vec<String>, reason: String },
    /// The token's issuer has no usable key at all (not fetched yet, or its
    /// IdP was down at start): 503 with `Retry-After`, never allowed, in
    /// report mode too; the caller's token is not at fault.
    KeysUnavailable,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Denial::MissingToken => f.write_str("no bearer token"),
            Denial::InvalidToken(e) => write!(f, "{e}"),
            Denial::Forbidden { reason, .. } => f.write_str(reason),
            Denial::KeysUnavailable => f.write_str("the token's issuer has no keys yet"),
        }
    }
}

impl std::error::Error for Denial {}

/// The authentication outcome handed to [`decide`].
#[derive(Debug, Clone)]
pub enum Auth {
    /// No bearer token was sent.
    Missing,
    Invalid(TokenError),
    Valid(Arc<Identity>),
}

/// Permission to forward one request. Only [`decide`] makes one; the forwarder
/// takes it by value, and it carries the exact path that was authorized.
#[derive(Debug)]
pub struct Permit {
    target: Target,
    upstream: Arc<Upstream>,
    identity: Option<Arc<Identity>>,
    /// The roles and permissions in effect on the route, when not the identity's own.
    route_roles: Option<Box<RouteRoles>>,
    report: Option<Denial>,
}

impl Permit {
    /// The normalized path and query to forward: the path that was authorized.
    pub fn target(&self) -> &Target {
        &self.target
    }
    pub fn upstream(&self) -> &Arc<Upstream> {
        &self.upstream
    }
    /// The caller, when a valid token was presented on a protected route.
    pub fn identity(&self) -> Option<&Arc<Identity>> {
        self.identity.as_ref()
    }
    /// The caller with the roles and permissions in effect on the route (what
    /// its `$roles` and `$permissions` identity headers carry).
    pub fn caller(&self) -> Option<Caller<'_>> {
        let identity = self.identity.as_deref()?;
        Some(Caller { identity, route_roles: self.route_roles.as_deref() })
    }
    /// Where the request may go: the only way to a [`Destination`].
    pub fn destination(&self) -> Destination<'_> {
        Destination::new(&self.upstream, self.target.path_and_query())
    }
    /// For a `mode = "report"` route: the denial that was not enforced.
    pub fn reported_denial(&self) -> Option<&Denial> {
        self.report.as_ref()
    }
}

/// The verdict for `route` on `target`, given how authentication went.
/// `auth` is ignored on a public route. A `report` route turns every denial
/// into a permit that records it.
pub fn decide(route: &Route, target: Target, auth: Auth) -> Result<Permit, Denial> {
    let (verdict, route_roles) = verdict(route, target.path(), &auth);
    let identity = match auth {
        Auth::Valid(id) if !matches!(route.access, Access::Public) => Some(id),
        _ => None,
    };
    let permit = |report| Permit { target, upstream: Arc::clone(&route.upstream), identity, route_roles, report };
    match verdict {
        Ok(()) => Ok(permit(None)),
        Err(denial) if route.mode == Mode::Report && denial != Denial::KeysUnavailable => Ok(permit(Some(denial))),
        Err(denial) => Err(denial),
    }
}

/// The verdict alone, without building a permit (shared by `decide`, `explain` and `diff`).
pub fn evaluate(route: &Route, path: &str, auth: &Auth) -> Result<(), Denial> {
    verdict(route, path, auth).0
}

/// The roles and permissions in effect for `ident` on `route` at `path`
/// (which the route matches), when they are not the identity's own: read
/// with the route's claim names and path parameters. What [`evaluate`]
/// decides with, and what `explain` shows.
pub fn route_roles(route: &Route, path: &str, ident: &Identity) -> Option<RouteRoles> {
    let names = route.claim_names.as_deref().filter(|n| n.applies_to(&ident.issuer))?;
    Some(read_route_roles(names, ident, &route.pattern.captures(path)))
}

fn read_route_roles(names: &RouteClaimNames, ident: &Identity, params: &[(&str, &str)]) -> RouteRoles {
    let (roles, permissions) = claims::effective(&ident.claims, names.names(&ident.issuer), params, &names.closure);
    RouteRoles { roles, permissions }
}

/// The verdict, and the roles and permissions it was made with when they are
/// not the identity's own.
fn verdict(route: &Route, path: &str, auth: &Auth) -> (Result<(), Denial>, Option<Box<RouteRoles>>) {
    let requirement = match &route.access {
        Access::Public => return (Ok(()), None),
        Access::Protected(req) => req,
    };
    let ident = match auth {
        Auth::Missing => return (Err(Denial::MissingToken), None),
        Auth::Invalid(TokenError::KeysUnavailable) => return (Err(Denial::KeysUnavailable), None),
        Auth::Invalid(e) => return (Err(Denial::InvalidToken(e.clone())), None),
        Auth::Valid(id) => id,
    };
    // Most routes read neither: no captures, nothing read again.
    let names = route.claim_names.as_deref().filter(|n| n.applies_to(&ident.issuer));
    let params = if names.is_some() || requirement.uses_params() { route.pattern.captures(path) } else { Vec::new() };
    let route_roles = names.map(|n| Box::new(read_route_roles(n, ident, &params)));
    let caller = Caller { identity: ident, route_roles: route_roles.as_deref() };
    let verdict = check(requirement, &caller, &params).map_err(|mut u| {
        u.permissions.sort();
        u.permissions.dedup();
        Denial::Forbidden { missing_permissions: u.permissions, reason: u.reasons.join("; ") }
    });
    (verdict, route_roles)
}
