//! `[[issuers]]`: key material (PEM files, JWKS files, HMAC secrets, remote key sets, kept across a reload when unchanged), algorithms, claim names, token types.

use std::sync::Arc;

use toml::Spanned;

use crate::auth::claims::ClaimPath;
use crate::auth::keys::{self, VerifyKey};
use crate::auth::remote::{RemoteKeys, Source as RemoteSource};
use crate::auth::Issuer;
use crate::config::file::{IssuerSpec, OneOrMany};
use crate::snapshot::Snapshot;

use super::Compiler;

pub(super) fn previous_remote(previous: Option<&Snapshot>, issuer: &str) -> Option<Arc<RemoteKeys>> {
    previous?.issuers.get(issuer)?.remote.clone()
}

pub(super) fn compile_issuer(
    c: &mut Compiler<'_>,
    spec: &Spanned<IssuerSpec>,
    previous: Option<&Snapshot>,
) -> Option<Issuer> {
    let s = spec.get_ref();
    let errors_before = c.errors.len();
    if s.issuer.is_empty() {
        c.err(Some(spec), "issuer must not be empty");
    }
    let mut remote = None;
    if let (Some(_), Some(d)) = (&s.jwks_url, &s.discovery) {
        c.err(Some(d), "give jwks_url or discovery, not both");
    }
    let source = match (&s.jwks_url, &s.discovery) {
        (Some(u), _) => Some((u, crate::auth::remote::parse_url(u.get_ref()).map(RemoteSource::Jwks))),
        (None, Some(d)) => Some((d, crate::auth::remote::parse_url(d.get_ref()).map(RemoteSource::Discovery))),
        (None, None) => None,
    };
    let ca_file = s.ca_file.as_deref().map(|f| c.resolve(f));
    match source {
        Some((at, Ok(source))) => {
            if let Some(ca) = &ca_file {
                // Read as an input, so that a changed CA file reloads too.
                if let Err(e) = c.read(ca) {
                    c.err(Some(at), format!("cannot read ca_file {}: {e}", ca.display()));
                }
            }
            // A reload keeps the fetched keys of an unchanged issuer.
            let kept = previous_remote(previous, &s.issuer).filter(|r| r.source == source && r.ca_file == ca_file);
            match kept {
                Some(r) => remote = Some(r),
                None => match crate::tls::client_config(ca_file.as_deref()) {
                    Ok(tls) => remote = Some(RemoteKeys::new(&s.issuer, source, ca_file, Arc::new(tls))),
                    Err(e) => c.err(Some(at), e),
                },
            }
        }
        Some((at, Err(e))) => c.err(Some(at), e),
        None => {}
    }
    let mut algorithms = Vec::new();
    for a in s.algorithms.get_ref() {
        if a.eq_ignore_ascii_case("none") {
            c.err(Some(&s.algorithms), "algorithm \"none\" is never accepted");
            continue;
        }
        match keys::parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => c.err(
                Some(&s.algorithms),
                format!("unknown algorithm {a:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"),
            ),
        }
    }
    if s.algorithms.get_ref().is_empty() {
        c.err(Some(&s.algorithms), "algorithms must list at least one algorithm");
    }
    let mut keys: Vec<VerifyKey> = Vec::new();
    if let Some(list) = s.keys.as_ref().filter(|_| !c.skip_keys) {
        for k in list {
            let path = c.resolve(&k.get_ref().pem_file);
            match c.read(&path) {
                Ok(pem) => match keys::from_pem(k.get_ref().kid.clone(), &pem) {
                    Ok(key) => keys.push(key),
                    Err(e) => c.err(Some(k), format!("key file {}: {e}", path.display())),
                },
                Err(e) => c.err(Some(k), format!("cannot read key file {}: {e}", path.display())),
            }
        }
    }
    if let Some(f) = s.jwks_file.as_ref().filter(|_| !c.skip_keys) {
        let path = c.resolve(f.get_ref());
        match c.read(&path).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
            Ok(text) => match keys::from_jwks(&text) {
                Ok((found, notes)) => {
                    keys.extend(found);
                    c.warnings.extend(notes.into_iter().map(|n| format!("{}: {n}", path.display())));
                }
                Err(e) => c.err(Some(f), format!("JWKS file {}: {e}", path.display())),
            },
            Err(e) => c.err(Some(f), format!("cannot read JWKS file {}: {e}", path.display())),
        }
    }
    if let Some(var) = s.secret_env.as_ref().filter(|_| !c.skip_keys) {
        match std::env::var(var.get_ref()) {
            Ok(secret) if !secret.is_empty() => keys.push(keys::hmac(secret.as_bytes())),
            _ => c.err(Some(var), format!("secret_env: environment variable {} is not set or empty", var.get_ref())),
        }
    }
    if s.keys.is_none()
        && s.jwks_file.is_none()
        && s.secret_env.is_none()
        && s.jwks_url.is_none()
        && s.discovery.is_none()
    {
        c.err(Some(spec), format!("issuer {:?} has no keys: give keys, jwks_file or secret_env", s.issuer));
    }
    for alg in &algorithms {
        if c.errors.len() == errors_before
            && !c.skip_keys
            && remote.is_none()
            && !keys.iter().any(|k| k.algorithms.contains(alg))
        {
            c.warnings.push(format!("issuer {:?}: no key accepts {alg:?}; such tokens will be refused", s.issuer));
        }
    }
    let preset = s.preset.as_ref().and_then(|p| match PRESETS.iter().find(|x| x.name == p.get_ref()) {
        Some(x) => Some(x),
        None => {
            let names = PRESETS.iter().map(|x| x.name);
            c.err(
                Some(p),
                format!(
                    "unknown preset {:?}{}; the presets are {}",
                    p.get_ref(),
                    crate::config::names::did_you_mean(p.get_ref(), names.clone()),
                    names.collect::<Vec<_>>().join(", ")
                ),
            );
            None
        }
    });
    let mut roles_claims =
        claim_paths(c, "roles_claim", s.roles_claim.as_ref(), preset.map_or(&["roles"][..], |p| p.roles));
    // Keycloak: realm roles and the client roles of each audience (the API's
    // client id), united; a client id with a dot or brace cannot be written as
    // a claim path (name it in roles_claim yourself).
    if preset.is_some_and(|p| p.name == "keycloak") && s.roles_claim.is_none() {
        for aud in s.audiences.iter().flatten().filter(|a| !a.is_empty() && !a.contains(['.', '{', '}'])) {
            if let Ok(path) = ClaimPath::parse(&format!("resource_access.{aud}.roles")) {
                roles_claims.push(path);
            }
        }
    }
    let permissions_claims = claim_paths(
        c,
        "permissions_claim",
        s.permissions_claim.as_ref(),
        preset.map_or(&["permissions"][..], |p| p.permissions),
    );
    if let (Some(p), Some(at)) = (preset.filter(|p| p.permissions.is_empty()), s.preset.as_ref()) {
        if s.permissions_claim.is_none() {
            let (line, _) = c.loc.line_col(at.span().start);
            c.warnings.push(format!(
                "{}:{line}: issuer {:?}: preset {:?} reads no permissions: {}",
                c.loc.file().display(),
                s.issuer,
                p.name,
                p.note
            ));
        }
    }
    Some(Issuer {
        name: s.issuer.clone(),
        audiences: s.audiences.clone().unwrap_or_default(),
        algorithms,
        keys,
        leeway_s: s.leeway_s,
        roles_claims,
        permissions_claims,
        default_roles: s.default_roles.as_ref().map(|d| d.get_ref().clone()).unwrap_or_default(),
        tenant_claim: s.tenant_claim.clone().unwrap_or_else(|| preset.map_or("tid", |p| p.tenant).to_owned()),
        require_exp: s.require_exp,
        token_types: compile_token_types(c, s.token_types.as_ref()),
        remote,
    })
}

/// A provider's claim names, as `preset` sets them (keys set explicitly win).
pub(super) struct Preset {
    pub name: &'static str,
    pub roles: &'static [&'static str],
    pub permissions: &'static [&'static str],
    pub tenant: &'static str,
    /// Why `permissions` is empty, when it is.
    pub note: &'static str,
}

/// The presets; README "Presets" says where each name comes from.
pub(super) const PRESETS: &[Preset] = &[
    Preset { name: "transmit", roles: &["ts_roles"], permissions: &["ts_permissions"], tenant: "tid", note: "" },
    Preset {
        name: "transmit-b2b",
        roles: &["role_values"],
        permissions: &["ts_permissions"],
        tenant: "org_id",
        note: "",
    },
    Preset { name: "auth0", roles: &["roles"], permissions: &["permissions"], tenant: "org_id", note: "" },
    Preset {
        name: "keycloak",
        roles: &["realm_access.roles"],
        permissions: &["scope"],
        tenant: "organization",
        note: "",
    },
    Preset { name: "wristband", roles: &["roles"], permissions: &["permissions"], tenant: "tnt_id", note: "" },
    Preset {
        name: "axinom",
        roles: &["tags"],
        permissions: &[],
        tenant: "tenantId",
        note: "Axinom's `permissions` claim is an object by service; name the service whose permissions \
               routes require, e.g. permissions_claim = \"permissions.media-service\"",
    },
];

/// A `roles_claim` / `permissions_claim` (of an issuer or a route) compiled;
/// `default` (the preset's or the built-in names) when it is not set.
pub(super) fn claim_paths(
    c: &mut Compiler<'_>,
    key: &str,
    spec: Option<&Spanned<OneOrMany>>,
    default: &[&str],
) -> Vec<ClaimPath> {
    let Some(spec) = spec else {
        return default.iter().map(|d| ClaimPath::parse(d).expect("a preset's claim paths parse")).collect();
    };
    let mut out = Vec::new();
    for text in spec.get_ref().as_slice() {
        match ClaimPath::parse(text) {
            Ok(p) => out.push(p),
            Err(e) => c.err(Some(spec), format!("{key}: {e}")),
        }
    }
    out
}

/// `token_types`, as compared: lower-case, without an `application/` prefix.
pub(super) fn compile_token_types(c: &mut Compiler<'_>, list: Option<&Spanned<Vec<String>>>) -> Vec<Box<str>> {
    let Some(list) = list else { return Vec::new() };
    if list.get_ref().is_empty() {
        c.err(Some(list), "token_types must list at least one type (e.g. \"at+jwt\"), or be left out");
    }
    list.get_ref().iter().map(|t| Box::from(crate::auth::verify::token_type(t))).collect()
}
