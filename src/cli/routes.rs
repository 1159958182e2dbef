//! `rolegate routes`: the compiled table in match order.

use std::path::Path;
use std::process::ExitCode;

use anyhow::anyhow;

use super::describe;
use super::SKIP_KEYS;
use crate::config;

pub(super) fn routes_cmd(path: &Path) -> anyhow::Result<ExitCode> {
    // Key material is not needed to list the table.
    let snap = config::load_with(path, None, &SKIP_KEYS).map_err(|e| anyhow!("{e}"))?;
    println!(
        "{:<4} {:<6} {:<24} {:<12} {:<32} {:<10} {:<8} requirement",
        "#", "line", "name", "methods", "path", "upstream", "mode"
    );
    for (i, r) in snap.routes.routes().iter().enumerate() {
        let methods =
            r.methods.as_ref().map_or("*".to_owned(), |m| m.iter().map(|m| m.as_str()).collect::<Vec<_>>().join(","));
        let path = match &r.host {
            Some(h) => format!("{}{}", h.glob().glob(), r.pattern.source),
            None => r.pattern.source.clone(),
        };
        let mode = match r.mode {
            crate::routes::Mode::Enforce => "enforce",
            crate::routes::Mode::Report => "report",
        };
        println!(
            "{:<4} {:<6} {:<24} {:<12} {:<32} {:<10} {:<8} {}",
            i + 1,
            r.line,
            &*r.name,
            methods,
            path,
            r.upstream.name,
            mode,
            describe(r)
        );
    }
    match &snap.unmatched {
        Some(_) => println!("(no match: any valid token passes to upstream \"default\")"),
        None => println!("(no match: 404 no_route)"),
    }
    Ok(ExitCode::SUCCESS)
}
