//! `rolegate diff`: what an edit of the table would change, on replayed requests.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};

use super::identity_of_claims;
use crate::config;
use crate::decide::{self, Auth};
use crate::error::GatewayError;
use crate::normalize;

/// The verdict of one replayed request on one table: (status, route name, reason).
fn replay_verdict(
    snap: &crate::snapshot::Snapshot,
    request: &serde_json::Value,
) -> anyhow::Result<(u16, String, String)> {
    let method = request.get("method").and_then(|m| m.as_str()).unwrap_or("GET");
    let method = http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).context("method")?;
    let raw = request.get("path").and_then(|p| p.as_str()).ok_or_else(|| anyhow!("a request needs \"path\""))?;
    let (raw_path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    let target = match normalize::normalize(raw_path, query) {
        Ok(t) => t,
        Err(e) => return Ok((400, "-".into(), e.to_string())),
    };
    let host = request.get("host").and_then(|h| h.as_str()).map(str::to_ascii_lowercase);
    let Some(route) = snap.routes.find(&method, host.as_deref(), target.path()).or(snap.unmatched.as_ref()) else {
        return Ok((404, "-".into(), "no route".into()));
    };
    let auth = match replay_claims(request)? {
        None => Auth::Missing,
        Some(claims) => Auth::Valid(identity_of_claims(snap, claims)?),
    };
    Ok(match decide::evaluate(route, target.path(), &auth) {
        Ok(()) => (200, route.name.to_string(), "allow".into()),
        Err(_) if route.mode == crate::routes::Mode::Report => {
            (200, route.name.to_string(), "allow (report mode)".into())
        }
        Err(d) => (GatewayError::Denied(d.clone()).status().as_u16(), route.name.to_string(), d.to_string()),
    })
}

/// A replayed request's claims: an object, or (in access-log lines written with
/// `[defaults] log_claims`) that object as JSON text. Absent: no token.
fn replay_claims(request: &serde_json::Value) -> anyhow::Result<Option<serde_json::Map<String, serde_json::Value>>> {
    match request.get("claims") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Object(claims)) => Ok(Some(claims.clone())),
        Some(serde_json::Value::String(text)) => match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(claims)) => Ok(Some(claims)),
            _ => bail!("\"claims\" is text but not a JSON object"),
        },
        Some(_) => bail!("\"claims\" must be an object"),
    }
}

pub(super) fn diff_cmd(old: &Path, new: &Path, replay: &Path) -> anyhow::Result<ExitCode> {
    let before = config::load(old, None).map_err(|e| anyhow!("{e}"))?;
    let after = config::load(new, None).map_err(|e| anyhow!("{e}"))?;
    let text = std::fs::read_to_string(replay).with_context(|| format!("reading {}", replay.display()))?;
    let (mut total, mut changed, mut newly_denied, mut newly_allowed, mut tokenless, mut skipped) = (0, 0, 0, 0, 0, 0);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // Logs collected with `kubectl logs` or `2>&1` mix in plain lines: skipped, and said so.
        let Ok(request) = serde_json::from_str::<serde_json::Value>(line) else {
            skipped += 1;
            eprintln!("{}:{}: skipped: not a JSON line", replay.display(), n + 1);
            continue;
        };
        // A JSON log file may be replayed as it is: only access-log lines are requests.
        if request.get("target").is_some_and(|t| t != "rolegate::access") {
            continue;
        }
        total += 1;
        tokenless += usize::from(request.get("claims").is_none_or(serde_json::Value::is_null));
        let (s1, r1, why1) = replay_verdict(&before, &request)?;
        let (s2, r2, why2) = replay_verdict(&after, &request)?;
        if s1 != s2 {
            changed += 1;
            if s1 == 200 {
                newly_denied += 1;
            } else if s2 == 200 {
                newly_allowed += 1;
            }
            let method = request.get("method").and_then(|m| m.as_str()).unwrap_or("GET");
            let path = request.get("path").and_then(|p| p.as_str()).unwrap_or("");
            println!("{}:{}: {method} {path}: {s1} ({r1}: {why1}) -> {s2} ({r2}: {why2})", replay.display(), n + 1);
        }
    }
    println!("{total} requests replayed: {changed} verdicts change ({newly_denied} newly denied, {newly_allowed} newly allowed)");
    if skipped > 0 {
        println!("{skipped} lines were not JSON and were skipped");
    }
    if tokenless > 0 {
        println!(
            "{tokenless} of them had no claims and were replayed as requests without a token \
             (access logs record claims only with [defaults] log_claims)"
        );
    }
    Ok(ExitCode::SUCCESS)
}
