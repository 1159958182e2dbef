//! `rolegate check`: validate the route table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::{plural, print_error};
use crate::config::{self, LoadOptions};

pub(super) fn check(path: &Path, strict: bool, skip_keys: bool) -> ExitCode {
    match config::load_with(path, None, &LoadOptions { skip_keys, ..LoadOptions::default() }) {
        Ok(s) => {
            for w in &s.warnings {
                println!("warning: {w}");
            }
            if strict && !s.warnings.is_empty() {
                print_error(format!(
                    "{}: {}, refused by --strict",
                    path.display(),
                    plural(s.warnings.len(), "warning")
                ));
                return ExitCode::FAILURE;
            }
            let skipped = if skip_keys { "; key material not checked (--skip-keys)" } else { "" };
            println!(
                "{}: ok ({}, {}{skipped})",
                path.display(),
                plural(s.routes.len(), "route"),
                plural(s.issuers.len(), "issuer")
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            print_error(&errors);
            print_key_hints(path, &errors.to_string(), true);
            ExitCode::FAILURE
        }
    }
}

/// After a table's errors: for each `keys` PEM file the table names that does
/// not exist and that `errors` says could not be read, how to make a key pair
/// for a test (the README's `openssl` lines, for the issuer's first
/// algorithm), and, in `check`, `--skip-keys`.
pub(super) fn print_key_hints(path: &Path, errors: &str, offer_skip_keys: bool) {
    let Ok(text) = std::fs::read_to_string(path) else { return };
    let Ok(file) = config::parse(path, &text) else { return };
    let base = path.parent().unwrap_or(Path::new(""));
    let mut missing = false;
    for issuer in &file.issuers {
        let issuer = issuer.get_ref();
        let generate = match issuer.algorithms.get_ref().first().map(String::as_str) {
            Some(a) if a.starts_with("ES384") => "-algorithm EC -pkeyopt ec_paramgen_curve:P-384",
            Some(a) if a.starts_with("ES") => "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
            Some("EdDSA" | "Ed25519") => "-algorithm ed25519",
            _ => "-algorithm RSA",
        };
        for key in issuer.keys.iter().flatten() {
            let public = base.join(&key.get_ref().pem_file);
            if public.exists() || !errors.contains(&format!("cannot read key file {}", public.display())) {
                continue;
            }
            missing = true;
            let private = private_key_path(&public);
            eprintln!(
                "hint: {} does not exist; for a test, make a key pair (in production, put the identity provider's public key there):",
                public.display()
            );
            if let Some(dir) = public.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
                eprintln!("  mkdir -p {}", dir.display());
            }
            eprintln!("  openssl genpkey {generate} -out {}", private.display());
            eprintln!("  openssl pkey -in {} -pubout -out {}", private.display(), public.display());
            eprintln!("  (sign test tokens with: rolegate mint --key {} --claims '{{...}}')", private.display());
        }
    }
    if missing && offer_skip_keys {
        eprintln!("hint: or validate everything but the key material: rolegate check --skip-keys");
    }
}

/// `keys/idp.pub.pem` → `keys/idp.key`; `a.pem` → `a.key`; else `name.key`.
fn private_key_path(public: &Path) -> PathBuf {
    let name = public.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let stem = name.strip_suffix(".pub.pem").or_else(|| name.strip_suffix(".pem")).unwrap_or(&name);
    public.with_file_name(format!("{stem}.key"))
}
