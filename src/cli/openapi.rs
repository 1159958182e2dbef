//! `rolegate import openapi` and `rolegate check --openapi`.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::config;
use crate::openapi::{self, Document, ImportOptions};

/// Prints the routes of every operation of `spec` on stdout, warnings on stderr.
pub(super) fn import(spec: &Path, prefix: Option<String>, upstream: Option<String>) -> anyhow::Result<ExitCode> {
    let doc = Document::read(spec)?;
    let imported = openapi::import(&doc, &ImportOptions { prefix, upstream })?;
    for w in &imported.warnings {
        eprintln!("warning: {w}");
    }
    let mut out = std::io::stdout().lock();
    match out.write_all(imported.text.as_bytes()).and_then(|()| out.flush()) {
        // `| head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => other.map(|()| ExitCode::SUCCESS).context("writing the routes"),
    }
}

/// `check --openapi`: what `check` does, then the coverage of the table against
/// `spec`. `--strict`: any warning or finding fails.
pub(super) fn check(
    path: &Path,
    spec: &Path,
    prefix: Option<String>,
    strict: bool,
    skip_keys: bool,
) -> anyhow::Result<ExitCode> {
    let options = config::LoadOptions { skip_keys, ..config::LoadOptions::default() };
    let snap = match config::load_with(path, None, &options) {
        Ok(s) => s,
        Err(errors) => {
            super::print_error(&errors);
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &snap.warnings {
        println!("warning: {w}");
    }
    let doc = Document::read(spec)?;
    let imported = openapi::import(&doc, &ImportOptions { prefix, upstream: None })?;
    let report = openapi::coverage(&snap, path, &imported);
    for finding in &report.findings {
        println!("{finding}");
    }
    for note in &report.notes {
        println!("note: {note}");
    }
    let (not_routed, under, undocumented) = report.counts();
    println!(
        "{}: {} routes against {} ({} operations): {} findings ({not_routed} not routed, {under} under-protected, {undocumented} undocumented)",
        path.display(),
        snap.routes.len(),
        spec.display(),
        report.operations,
        report.findings.len()
    );
    if strict && !(snap.warnings.is_empty() && report.findings.is_empty()) {
        eprintln!(
            "{}: {} warning(s) and {} finding(s), refused by --strict",
            path.display(),
            snap.warnings.len(),
            report.findings.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
