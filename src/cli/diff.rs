//! `rolegate diff`: what an edit of the table would change, on replayed requests.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;

use super::identity_of_claims;
use super::{plural, print_error, SKIP_KEYS};
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

#[derive(Debug, Args)]
pub(super) struct DiffArgs {
    /// The table as it is (e.g. the one serving).
    #[arg(value_name = "OLD")]
    old: PathBuf,
    /// The edited table.
    #[arg(value_name = "NEW")]
    new: PathBuf,
    /// Requests to replay, one JSON object a line: {"method": "GET", "host": "api.example.com",
    /// "path": "/v1/x", "claims": {...}} (no `claims`: no token), or a JSON access log as it is.
    /// A line that is not such a request is reported as FILE:LINE, skipped and counted.
    #[arg(long, value_name = "FILE")]
    replay: PathBuf,
    /// Exit 1 when the edit changes verdicts: `newly-allowed` (the default for a bare
    /// `--fail-on`: a request the old table refused is let through) or `any-change`.
    /// Without it, exit 0 whatever changed. Exit 2: a table or the replay file cannot be read.
    #[arg(long, value_enum, value_name = "WHEN", num_args = 0..=1, require_equals = true, default_missing_value = "newly-allowed")]
    fail_on: Option<FailOn>,
}

/// `diff --fail-on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    /// A request the old table refused is allowed by the new one.
    NewlyAllowed,
    /// Any request's verdict changes.
    AnyChange,
}

/// `rolegate diff`: exit 0 (nothing `--fail-on` names changed), 1 (it did),
/// 2 (a table is invalid or the replay file unreadable), like diff(1).
pub(super) fn diff_cmd(args: &DiffArgs) -> ExitCode {
    match replay_both(args) {
        Ok(counts) => {
            let failed = match args.fail_on {
                Some(FailOn::NewlyAllowed) if counts.newly_allowed > 0 => {
                    Some(format!("{} newly allowed", plural(counts.newly_allowed, "request")))
                }
                Some(FailOn::AnyChange) if counts.changed > 0 => {
                    Some(format!("{} changed", plural(counts.changed, "verdict")))
                }
                _ => None,
            };
            match failed {
                Some(what) => {
                    let when = match args.fail_on {
                        Some(FailOn::AnyChange) => "any-change",
                        _ => "newly-allowed",
                    };
                    print_error(format!("--fail-on={when}: {what}"));
                    ExitCode::FAILURE
                }
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => {
            print_error(format!("{e:#}"));
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Default)]
struct Counts {
    changed: usize,
    newly_allowed: usize,
}

/// Replays every line on both tables, printing each changed verdict and the totals.
fn replay_both(args: &DiffArgs) -> anyhow::Result<Counts> {
    let (old, new, replay) = (&args.old, &args.new, &args.replay);
    // Verdicts of unverified claims: no key material needed.
    let before = config::load_with(old, None, &SKIP_KEYS).map_err(|e| anyhow!("{e}"))?;
    let after = config::load_with(new, None, &SKIP_KEYS).map_err(|e| anyhow!("{e}"))?;
    let text = std::fs::read_to_string(replay).with_context(|| format!("reading {}", replay.display()))?;
    let (mut total, mut changed, mut newly_denied, mut newly_allowed, mut tokenless) = (0, 0, 0, 0, 0);
    let (mut not_json, mut invalid) = (0, 0);
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // Logs collected with `kubectl logs` or `2>&1` mix in plain lines: skipped, and said so.
        let Ok(request) = serde_json::from_str::<serde_json::Value>(line) else {
            not_json += 1;
            eprintln!("{}:{}: skipped: not a JSON line", replay.display(), n + 1);
            continue;
        };
        // A JSON log file may be replayed as it is: only access-log lines are requests.
        if request.get("target").is_some_and(|t| t != "rolegate::access") {
            continue;
        }
        // A line that is no request the tables can decide: named, skipped and counted, never the end of the run.
        let verdicts = replay_verdict(&before, &request).and_then(|v1| Ok((v1, replay_verdict(&after, &request)?)));
        let ((s1, r1, why1), (s2, r2, why2)) = match verdicts {
            Ok(v) => v,
            Err(e) => {
                invalid += 1;
                eprintln!("{}:{}: skipped: {e:#}", replay.display(), n + 1);
                continue;
            }
        };
        total += 1;
        tokenless += usize::from(request.get("claims").is_none_or(serde_json::Value::is_null));
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
    println!(
        "{} replayed: {} ({newly_denied} newly denied, {newly_allowed} newly allowed)",
        plural(total, "request"),
        match changed {
            1 => "1 verdict changes".to_owned(),
            n => format!("{n} verdicts change"),
        }
    );
    let lines = |n: usize| if n == 1 { "1 line was".to_owned() } else { format!("{n} lines were") };
    if not_json > 0 {
        println!("{} not JSON and skipped", lines(not_json));
    }
    if invalid > 0 {
        println!("{} not a request that can be replayed and skipped (see above)", lines(invalid));
    }
    if tokenless > 0 {
        println!(
            "{tokenless} of them had no claims and were replayed as requests without a token \
             (access logs record claims only with [defaults] log_claims)"
        );
    }
    Ok(Counts { changed, newly_allowed })
}
