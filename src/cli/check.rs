//! `rolegate check`: validate the route table.

use std::path::Path;
use std::process::ExitCode;

use crate::config;

pub(super) fn check(path: &Path, strict: bool) -> ExitCode {
    match config::load(path, None) {
        Ok(s) => {
            for w in &s.warnings {
                println!("warning: {w}");
            }
            if strict && !s.warnings.is_empty() {
                eprintln!("{}: {} warning(s), refused by --strict", path.display(), s.warnings.len());
                return ExitCode::FAILURE;
            }
            println!("{}: ok ({} routes, {} issuers)", path.display(), s.routes.len(), s.issuers.len());
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}
