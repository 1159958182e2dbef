//! `rolegate explain`: how one request would be decided.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::Args;

use super::{describe, identity_of_claims, SKIP_KEYS};
use crate::auth;
use crate::config;
use crate::decide::{self, Auth, Denial};
use crate::error::GatewayError;
use crate::normalize;

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    /// The request's method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// The request target as a client sends it: path and optional `?query`
    /// (normalized as the gateway would; the query is not matched).
    #[arg(long)]
    path: String,
    /// The request's Host header, for routes with `host` (default: none).
    #[arg(long)]
    host: Option<String>,
    /// A token (JWT), verified as the gateway would. Keys of issuers with
    /// `jwks_url` or `discovery` are fetched first (at most 3 s).
    #[arg(long, conflicts_with_all = ["claims", "no_token"])]
    token: Option<String>,
    /// Claims as a JSON object, evaluated without a signature (no key material needed).
    #[arg(long, conflicts_with = "no_token")]
    claims: Option<String>,
    /// Explain a request that carries no token (the default without --token or --claims).
    #[arg(long)]
    no_token: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// How long `explain --token` waits for an issuer's remote keys.
const KEY_FETCH_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) fn explain(path: &Path, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    // Only a token needs the key material.
    let snap = match &args.token {
        Some(_) => config::load(path, None),
        None => config::load_with(path, None, &SKIP_KEYS),
    }
    .map_err(|e| anyhow!("{e}"))?;
    let keys = match &args.token {
        Some(token) => fetch_remote_keys(&snap, token)?,
        None => None,
    };
    let mut report = explain_report(&snap, path, args)?;
    if let Some(keys) = keys {
        report["keys"] = serde_json::json!(keys);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let field = |k: &str| report.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(t) = field("token") {
        println!("token:       {t}");
    }
    if let Some(k) = field("keys") {
        println!("keys:        {k}");
    }
    if let Some(p) = field("path") {
        println!("path:        {p} (normalized)");
    }
    match report.get("route").filter(|r| !r.is_null()) {
        Some(r) => {
            println!("route:       {} ({}:{})", r["name"], path.display(), r["line"]);
            if let Some(service) = field("grpc_service") {
                println!("grpc:        service {service} (a gRPC call's refusal is a gRPC status)");
            }
        }
        None if report.get("path").is_some() => println!("route:       none"),
        None => {}
    }
    if let Some(req) = field("requirement") {
        println!("requirement: {req}");
    }
    for key in ["roles", "permissions"] {
        if let Some(list) = report.get(key).and_then(|v| v.as_array()) {
            let items: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            let from = report["read_on_route"][format!("{key}_claim")].as_array().map(|paths| {
                let paths: Vec<&str> = paths.iter().filter_map(|p| p.as_str()).collect();
                let params = report["read_on_route"]["params"].as_object().into_iter().flatten();
                let taken: Vec<String> = params.map(|(n, v)| format!("{{{n}}} = {v}")).collect();
                let with = if taken.is_empty() { String::new() } else { format!(" with {}", taken.join(", ")) };
                format!(" (on this route, from {}{with})", paths.join(", "))
            });
            println!("{:<12} {}{}", format!("{key}:"), items.join(", "), from.unwrap_or_default());
        }
    }
    if field("verdict").as_deref() == Some("allow") {
        println!("verdict:     allow ({})", field("reason").unwrap_or_default());
    } else {
        println!("verdict:     deny {} {}", report["status"], field("error").unwrap_or_default());
        println!("reason:      {}", field("reason").unwrap_or_default());
    }
    Ok(ExitCode::SUCCESS)
}

/// What `explain` reports, as JSON (`--json` prints it as is). Uses the same
/// stages as the gateway: normalize, find, verify, decide.
fn explain_report(
    snap: &crate::snapshot::Snapshot,
    path: &Path,
    args: &ExplainArgs,
) -> anyhow::Result<serde_json::Value> {
    use serde_json::json;
    let deny = |e: &GatewayError, mut base: serde_json::Value| {
        let reason = match e {
            GatewayError::Denied(Denial::Forbidden { reason, .. }) => reason.clone(),
            other => other.to_string(),
        };
        base["verdict"] = json!("deny");
        base["status"] = json!(e.status().as_u16());
        base["error"] = json!(e.code());
        base["reason"] = json!(reason);
        if let GatewayError::Denied(Denial::Forbidden { missing_permissions, .. }) = e {
            base["missing_permissions"] = json!(missing_permissions);
        }
        base
    };
    let method = http::Method::from_bytes(args.method.to_ascii_uppercase().as_bytes()).context("--method")?;
    let (raw_path, query) = match args.path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (args.path.as_str(), None),
    };
    let target = match normalize::normalize(raw_path, query) {
        Ok(t) => t,
        Err(e) => return Ok(deny(&GatewayError::BadRequest(e), json!({}))),
    };
    let mut report = json!({ "path": target.path() });
    let host = args.host.as_deref().map(str::to_ascii_lowercase);
    let Some(route) = snap.routes.find(&method, host.as_deref(), target.path()).or(snap.unmatched.as_ref()) else {
        report["route"] = serde_json::Value::Null;
        return Ok(deny(&GatewayError::NoRoute, report));
    };
    report["route"] = json!({"name": &*route.name, "line": route.line, "file": path.display().to_string()});
    if let Some(service) = route.pattern.grpc_service() {
        report["grpc_service"] = json!(service);
    }
    report["requirement"] = json!(describe(route));
    let auth = match (&args.token, &args.claims) {
        (Some(token), _) => match auth::verify(token, &snap.issuers, &snap.roles, auth::now_secs()) {
            Ok(id) => Auth::Valid(Arc::new(id)),
            Err(e) => Auth::Invalid(e),
        },
        (None, Some(text)) => {
            let claims: serde_json::Value = serde_json::from_str(text).context("--claims is not JSON")?;
            let claims = claims.as_object().cloned().ok_or_else(|| anyhow!("--claims must be a JSON object"))?;
            Auth::Valid(identity_of_claims(snap, claims)?)
        }
        (None, None) => Auth::Missing,
    };
    report["token"] = json!(match (&args.token, &args.claims) {
        (Some(_), _) => "verified as the gateway would",
        (None, Some(_)) => "claims, unverified",
        (None, None) => "none",
    });
    if let Auth::Valid(id) = &auth {
        // What the verdict is made with: on a route that reads roles itself
        // (`organization.{tenant}.roles`, its own roles_claim), those.
        let on_route = decide::route_roles(route, target.path(), id);
        let (roles, permissions) = match &on_route {
            Some(r) => (&r.roles, &r.permissions),
            None => (&id.roles, &id.permissions),
        };
        report["roles"] = json!(roles.iter().map(|r| &**r).collect::<Vec<_>>());
        report["permissions"] = json!(permissions.iter().map(|p| &**p).collect::<Vec<_>>());
        if let Some(names) = on_route.and(route.claim_names.as_deref()) {
            let names = names.names(&id.issuer);
            let paths = |p: &[auth::claims::ClaimPath]| p.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>();
            // The value each path parameter took on this path: which tenant's key was read.
            let captured = route.pattern.captures(target.path());
            let mut params = serde_json::Map::new();
            for name in names.roles.iter().chain(names.permissions).flat_map(|c| c.params()) {
                let value = captured.iter().find(|(n, _)| *n == name).map_or("", |(_, v)| *v);
                params.insert(name.to_owned(), json!(value));
            }
            report["read_on_route"] = json!({
                "roles_claim": paths(names.roles),
                "permissions_claim": paths(names.permissions),
                "params": params,
            });
        }
    }
    Ok(match decide::evaluate(route, target.path(), &auth) {
        Ok(()) => {
            report["verdict"] = json!("allow");
            report["reason"] =
                json!(format!("forwarded to upstream {:?} as {}", route.upstream.name, target.path_and_query()));
            report
        }
        Err(denial) if route.mode == crate::routes::Mode::Report => {
            report["verdict"] = json!("allow");
            report["reason"] = json!(format!("report mode; enforce would deny: {denial}"));
            report["report_only"] = json!(true);
            report
        }
        Err(denial) => deny(&GatewayError::Denied(denial), report),
    })
}

/// For a token of an issuer with `jwks_url` or `discovery`: that issuer's
/// keys, fetched now (as the gateway does at start-up), so that `explain`
/// verifies against what the gateway would have. A note saying what was
/// fetched, or why not (then only the table's own keys are tried).
fn fetch_remote_keys(snap: &crate::snapshot::Snapshot, token: &str) -> anyhow::Result<Option<String>> {
    let Some(remote) = auth::issuer_of(token, &snap.issuers).and_then(|i| i.remote.clone()) else {
        return Ok(None);
    };
    let source = match &remote.source {
        auth::remote::Source::Jwks(u) => format!("jwks_url {u}"),
        auth::remote::Source::Discovery(u) => format!("discovery {u}"),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("starting a runtime")?;
    Ok(Some(match rt.block_on(async { tokio::time::timeout(KEY_FETCH_TIMEOUT, remote.fetch()).await }) {
        Ok(Ok(n)) => format!("{} fetched from {source}", super::plural(n, "key")),
        Ok(Err(e)) => format!("cannot fetch the keys of {source}: {e}; the token is checked without them"),
        Err(_) => {
            format!("no keys from {source} within {} s; the token is checked without them", KEY_FETCH_TIMEOUT.as_secs())
        }
    }))
}
