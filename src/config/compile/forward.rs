//! `[forward]` and `[server] underscore_headers`: the identity headers, the client headers stripped, the exceptions kept.

use http::header::HeaderName;

use crate::auth::IdentitySource;
use crate::config::file::{RoutesFile, UnderscoreSpec};
use crate::headers::{ForwardPlan, NamePattern, Underscores};

use super::Compiler;

/// Headers the gateway sets or that carry framing: an identity header may not use these names.
pub(super) const RESERVED_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
    "x-request-id",
    // The decision API's answer states the path it decided on in this one.
    "x-rolegate-path",
    "x-rolegate-error",
];

pub(super) fn compile_forward(c: &mut Compiler<'_>, file: &RoutesFile) -> ForwardPlan {
    let mut identity = Vec::new();
    for (name, source) in &file.forward.headers {
        let header = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => {
                c.err(
                    Some(source),
                    format!("[forward] header {name:?} is set by the gateway itself and cannot carry identity"),
                );
                continue;
            }
            Ok(h) => h,
            Err(_) => {
                c.err(Some(source), format!("[forward] {name:?} is not a valid header name"));
                continue;
            }
        };
        let src = match source.get_ref().as_str() {
            "$roles" => IdentitySource::Roles,
            "$permissions" => IdentitySource::Permissions,
            "$tenant" => IdentitySource::Claim("$tenant".to_owned()),
            s if s.starts_with('$') => {
                c.err(
                    Some(source),
                    format!("[forward] unknown identity source {s:?} ($roles, $permissions, $tenant, or a claim)"),
                );
                continue;
            }
            "" => {
                c.err(Some(source), "[forward] an identity header needs a claim name");
                continue;
            }
            claim => IdentitySource::Claim(claim.to_owned()),
        };
        identity.push((header, src));
    }
    let strip = match &file.forward.strip {
        Some(globs) => {
            let mut strip = Vec::new();
            for glob in globs.get_ref() {
                let lower = glob.to_ascii_lowercase().replace('_', "-");
                match NamePattern::new(&lower) {
                    Ok(p) => strip.push(p),
                    Err(e) => c.err(Some(globs), format!("[forward] strip: bad pattern {glob:?}: {e}")),
                }
            }
            // An identity header outside `strip`: a client's copy spelled
            // another way (`X_Auth_User`) would reach the upstream.
            for (name, _) in &identity {
                if !strip.iter().any(|p| p.matches(name.as_str())) {
                    let (line, _) = c.loc.line_col(globs.span().start);
                    c.warnings.push(format!(
                        "{}:{line}: [forward] strip does not cover the identity header {name}: \
                         a client's copy under another spelling could reach the upstream",
                        c.loc.file().display()
                    ));
                }
            }
            strip
        }
        None => identity.iter().flat_map(|(name, _)| NamePattern::family(name.as_str())).collect(),
    };
    let mut keep = Vec::new();
    for name in &file.forward.keep_client_headers {
        let lower = name.get_ref().to_ascii_lowercase();
        let listed = crate::headers::OVERRIDE_HEADERS.contains(&lower.as_str())
            || crate::headers::PATH_AND_ADDRESS_HEADERS.contains(&lower.as_str());
        match HeaderName::from_bytes(lower.as_bytes()) {
            Ok(h) if listed => {
                let (line, _) = c.loc.line_col(name.span().start);
                c.warnings.push(format!(
                    "{}:{line}: [forward] keep_client_headers passes the client's {h} to the upstream: \
                     an upstream that honours it may run another method or serve another path than the one authorized",
                    c.loc.file().display()
                ));
                keep.push(h);
            }
            _ => c.err(
                Some(name),
                format!(
                    "[forward] keep_client_headers: {:?} is none of the headers the gateway removes or replaces ({})",
                    name.get_ref(),
                    crate::headers::OVERRIDE_HEADERS
                        .iter()
                        .chain(&crate::headers::PATH_AND_ADDRESS_HEADERS)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
        }
    }
    let underscores = match file.server.underscore_headers {
        UnderscoreSpec::Drop => Underscores::Drop,
        UnderscoreSpec::Reject => Underscores::Reject,
        UnderscoreSpec::Allow => Underscores::Allow,
    };
    let identity_unstripped = identity
        .iter()
        .map(|(name, _)| name.clone())
        .filter(|n| !strip.iter().any(|p| p.matches(n.as_str())))
        .collect();
    ForwardPlan { authorization: file.forward.authorization, identity, strip, identity_unstripped, keep, underscores }
}
