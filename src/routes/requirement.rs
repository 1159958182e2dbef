//! What a protected route demands, compiled: permissions, roles, claims
//! (with path-parameter templates) and alternatives. `decide` evaluates it.

use std::fmt;

/// What a protected route demands; every given part must hold.
#[derive(Debug, Default, Clone)]
pub struct Requirement {
    pub all_permissions: Vec<String>,
    pub any_permissions: Vec<String>,
    pub all_roles: Vec<String>,
    pub any_roles: Vec<String>,
    pub claims: Vec<ClaimCheck>,
    /// At least one alternative must hold (when not empty).
    pub any_of: Vec<Requirement>,
}

/// `claims = { tid = "{tenant}" }`: the claim at a dotted path must equal (or,
/// for an array, contain) the expected text, after path-parameter substitution.
/// The path may name path parameters too (`"orgs.{tenant}.plan" = "pro"`):
/// each is one whole key, the parameter's value.
#[derive(Debug, Clone)]
pub struct ClaimCheck {
    /// The path as written (`$tenant`: the issuer's tenant claim).
    pub claim: String,
    /// Its parsed form, when it names a path parameter.
    pub path: Option<crate::auth::claims::ClaimPath>,
    pub expected: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    Param(String),
}

impl Requirement {
    pub fn is_empty(&self) -> bool {
        self.all_permissions.is_empty()
            && self.any_permissions.is_empty()
            && self.all_roles.is_empty()
            && self.any_roles.is_empty()
            && self.claims.is_empty()
            && self.any_of.is_empty()
    }

    pub fn uses_params(&self) -> bool {
        self.claims.iter().any(|c| c.path.is_some() || c.expected.iter().any(|p| matches!(p, TemplatePart::Param(_))))
            || self.any_of.iter().any(Requirement::uses_params)
    }
}

impl fmt::Display for Requirement {
    /// `all_permissions [a, b]; any_roles [x]; claims tid = {tenant}; any_of ([…] or […])`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        for (key, list) in [
            ("all_permissions", &self.all_permissions),
            ("any_permissions", &self.any_permissions),
            ("all_roles", &self.all_roles),
            ("any_roles", &self.any_roles),
        ] {
            if !list.is_empty() {
                parts.push(format!("{key} [{}]", list.join(", ")));
            }
        }
        for c in &self.claims {
            let value: String = c
                .expected
                .iter()
                .map(|p| match p {
                    TemplatePart::Literal(s) => s.clone(),
                    TemplatePart::Param(n) => format!("{{{n}}}"),
                })
                .collect();
            parts.push(format!("claims {} = {value}", c.claim));
        }
        if !self.any_of.is_empty() {
            let alts: Vec<String> = self.any_of.iter().map(|a| format!("[{a}]")).collect();
            parts.push(format!("any_of ({})", alts.join(" or ")));
        }
        if parts.is_empty() {
            f.write_str("any valid token")
        } else {
            f.write_str(&parts.join("; "))
        }
    }
}
