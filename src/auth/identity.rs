//! A verified caller, and what of it the upstream may learn: the values of
//! the `[forward]` identity headers, made once per identity.

use std::sync::{Arc, OnceLock};

use http::header::{HeaderName, HeaderValue};
use serde_json::{Map, Value};

use super::claims;
use super::verify::Issuer;

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: Arc<Issuer>,
    pub claims: Map<String, Value>,
    /// Effective roles (token roles plus included roles), sorted.
    pub roles: Vec<Box<str>>,
    /// Effective permissions (token permissions plus those of every effective role), sorted.
    pub permissions: Vec<Box<str>>,
    /// `exp`, in seconds since the epoch, when present.
    pub expires_at: Option<u64>,
    /// The issuer's remote key generation when a remote key verified the
    /// token: a cached identity is good only while it is unchanged (a key
    /// that left the key set must stop working at once).
    pub key_generation: Option<u64>,
    /// The `[forward] headers` values of this identity, made on first use (an
    /// identity from the token cache serves many requests), with the header
    /// names and sources they were made from.
    pub forwarded: OnceLock<Box<[ForwardedHeader]>>,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        claims::has(&self.roles, role)
    }

    pub fn has_permission(&self, perm: &str) -> bool {
        claims::has(&self.permissions, perm)
    }

    /// A claim by dotted path; `$tenant` names the issuer's tenant claim.
    pub fn claim(&self, path: &str) -> Option<&Value> {
        let path = if path == "$tenant" { self.issuer.tenant_claim.as_str() } else { path };
        claims::lookup(&self.claims, path)
    }
}

/// The roles and permissions in effect on one route when they are not the
/// identity's own: read at decision time, on a route with its own
/// `roles_claim` / `permissions_claim` or whose path parameter an issuer's
/// claim path names (`organization.{tenant}.roles`). Each sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRoles {
    pub roles: Vec<Box<str>>,
    pub permissions: Vec<Box<str>>,
}

/// A verified caller on one route: the identity, and the roles and
/// permissions in effect there when they differ from the identity's own.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub identity: &'a Identity,
    pub route_roles: Option<&'a RouteRoles>,
}

impl<'a> Caller<'a> {
    /// Effective roles on this route, sorted.
    pub fn roles(&self) -> &'a [Box<str>] {
        self.route_roles.map_or(&self.identity.roles, |r| &r.roles)
    }

    /// Effective permissions on this route, sorted.
    pub fn permissions(&self) -> &'a [Box<str>] {
        self.route_roles.map_or(&self.identity.permissions, |r| &r.permissions)
    }

    pub fn has_role(&self, role: &str) -> bool {
        claims::has(self.roles(), role)
    }

    pub fn has_permission(&self, perm: &str) -> bool {
        claims::has(self.permissions(), perm)
    }
}

/// Where an identity header's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// A claim by dotted path (`$tenant`: the issuer's tenant claim).
    Claim(String),
    /// `$roles`: effective roles, comma-separated.
    Roles,
    /// `$permissions`: effective permissions, comma-separated.
    Permissions,
}

/// One `[forward] headers` entry with its value for one identity (none when
/// the claim is missing, empty or not a valid header value), with the header
/// name and source it was made from (an identity is only ever used with one
/// plan, but a cached value is checked against it anyway).
#[derive(Debug, Clone)]
pub struct ForwardedHeader {
    pub name: HeaderName,
    pub source: IdentitySource,
    pub value: Option<HeaderValue>,
}

impl Identity {
    /// The value of one identity header, or none (claim missing, empty — no
    /// roles, say: the header is not sent rather than sent empty — or not a
    /// valid header value).
    pub fn header_value(&self, source: &IdentitySource) -> Option<HeaderValue> {
        match source {
            IdentitySource::Roles => list_value(&self.roles),
            IdentitySource::Permissions => list_value(&self.permissions),
            IdentitySource::Claim(path) => text_value(&claims::header_text(self.claim(path)?)?),
        }
    }
}

/// `$roles` / `$permissions`: the names comma-separated; none when there are none.
pub fn list_value(items: &[Box<str>]) -> Option<HeaderValue> {
    text_value(&items.iter().map(|s| &**s).collect::<Vec<_>>().join(","))
}

fn text_value(text: &str) -> Option<HeaderValue> {
    (!text.is_empty()).then(|| HeaderValue::from_str(text).ok()).flatten()
}
