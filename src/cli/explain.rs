//! `rolegate explain`: how one request would be decided.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use super::{describe, identity_of_claims};
use crate::auth;
use crate::config;
use crate::decide::{self, Auth, Denial};
use crate::error::GatewayError;
use crate::gateway;
use crate::normalize;

#[derive(Debug, Args)]
pub(super) struct ExplainArgs {
    #[arg(long)]
    method: String,
    #[arg(long)]
    path: String,
    #[arg(long)]
    host: Option<String>,
    /// A token, verified as the gateway would.
    #[arg(long, conflicts_with = "claims", required_unless_present = "claims")]
    token: Option<String>,
    /// Claims as JSON, evaluated without a signature.
    #[arg(long)]
    claims: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub(super) fn explain(path: &Path, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let snap = config::load(path, None).map_err(|e| anyhow!("{e}"))?;
    let report = explain_report(&snap, path, args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    let field = |k: &str| report.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    if let Some(p) = field("path") {
        println!("path:        {p} (normalized)");
    }
    match report.get("route").filter(|r| !r.is_null()) {
        Some(r) => println!("route:       {} ({}:{})", r["name"], path.display(), r["line"]),
        None if report.get("path").is_some() => println!("route:       none"),
        None => {}
    }
    if let Some(req) = field("requirement") {
        println!("requirement: {req}");
    }
    for key in ["roles", "permissions"] {
        if let Some(list) = report.get(key).and_then(|v| v.as_array()) {
            let items: Vec<&str> = list.iter().filter_map(|v| v.as_str()).collect();
            println!("{:<12} {}", format!("{key}:"), items.join(", "));
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
    report["requirement"] = json!(describe(route));
    let auth = match (&args.token, &args.claims) {
        (Some(token), _) => match auth::verify(token, &snap.issuers, &snap.roles, gateway::now_secs()) {
            Ok(id) => Auth::Valid(Arc::new(id)),
            Err(e) => Auth::Invalid(e),
        },
        (None, Some(text)) => {
            let claims: serde_json::Value = serde_json::from_str(text).context("--claims is not JSON")?;
            let claims = claims.as_object().cloned().ok_or_else(|| anyhow!("--claims must be a JSON object"))?;
            Auth::Valid(identity_of_claims(snap, claims)?)
        }
        (None, None) => bail!("give --token or --claims"),
    };
    if let Auth::Valid(id) = &auth {
        report["roles"] = json!(id.roles.iter().map(|r| &**r).collect::<Vec<_>>());
        report["permissions"] = json!(id.permissions.iter().map(|p| &**p).collect::<Vec<_>>());
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
