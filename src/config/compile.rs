//! `RoutesFile` → `Snapshot`: every semantic check, every expensive build
//! (globs, keys, role closure, header names), done once per load. Errors are
//! collected, not stopped at, and each names file:line:col.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use toml::Spanned;

use super::error::{ConfigError, ConfigErrors, Locator};
use super::file::RoutesFile;
use crate::auth::{Issuers, TokenCache};
use crate::snapshot::Snapshot;

mod authz;
mod forward;
mod issuers;
mod lint;
mod roles;
mod routes;
mod server;

use authz::compile_authz;
use forward::compile_forward;
use issuers::compile_issuer;
use lint::compile_log_claims;
use roles::compile_roles;
use routes::compile_routes;
use server::{compile_server, compile_upstreams};

struct Compiler<'a> {
    loc: Locator<'a>,
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    warnings: Vec<String>,
    /// Every file read (routes.toml first), for the reload watcher.
    inputs: Vec<PathBuf>,
    /// Hash of the contents of every input, to tell a real change from a touch.
    fingerprint: std::collections::hash_map::DefaultHasher,
    /// [`super::LoadOptions::skip_keys`]: read no key material.
    skip_keys: bool,
}

impl Compiler<'_> {
    fn err<T>(&mut self, span: Option<&Spanned<T>>, message: impl Into<String>) {
        // A default value has the empty span 0..0: no position to report.
        let offset = span.filter(|s| s.span() != (0..0)).map(|s| s.span().start);
        let e = self.loc.error(offset, message);
        self.errors.push(e);
    }

    /// Reads a file the table names, recording it as an input.
    fn read(&mut self, path: &Path) -> std::io::Result<Vec<u8>> {
        use std::hash::Hasher;
        self.inputs.push(path.to_path_buf());
        let bytes = std::fs::read(path)?;
        self.fingerprint.write(path.as_os_str().as_encoded_bytes());
        self.fingerprint.write(&bytes);
        Ok(bytes)
    }

    fn resolve(&self, file: &str) -> PathBuf {
        let p = Path::new(file);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }
}

/// Compiles a parsed file. `text` is the source (for line numbers); relative
/// key paths resolve against `path`'s directory.
pub fn compile(
    file: RoutesFile,
    path: &Path,
    text: &str,
    previous: Option<&Snapshot>,
) -> Result<Snapshot, ConfigErrors> {
    compile_with(file, path, text, previous, &super::LoadOptions::default())
}

/// [`compile`], without key material when `options.skip_keys` (the overrides
/// of `options` are applied by `config::load_with`, before this).
pub fn compile_with(
    file: RoutesFile,
    path: &Path,
    text: &str,
    previous: Option<&Snapshot>,
    options: &super::LoadOptions,
) -> Result<Snapshot, ConfigErrors> {
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut fingerprint = std::collections::hash_map::DefaultHasher::new();
    std::hash::Hasher::write(&mut fingerprint, text.as_bytes());
    let mut c = Compiler {
        loc: Locator::new(path, text),
        base_dir,
        errors: Vec::new(),
        warnings: Vec::new(),
        inputs: vec![path.to_path_buf()],
        fingerprint,
        skip_keys: options.skip_keys,
    };

    let server = compile_server(&mut c, &file);
    let authz = compile_authz(&mut c, &file, server.as_ref());
    let tls_key = server.as_ref().and_then(|s| s.tls.clone()).filter(|_| !c.skip_keys).and_then(|(cert, key)| {
        // Read as inputs (a renewed certificate triggers a reload), then parsed.
        let read = c.read(&cert).and_then(|_| c.read(&key));
        match read.map_err(|e| e.to_string()).and_then(|_| crate::tls::load_certified_key(&cert, &key)) {
            Ok(k) => Some(Arc::new(k)),
            Err(e) => {
                c.err::<()>(None, format!("[server] tls: {e}"));
                None
            }
        }
    });
    let upstreams = compile_upstreams(&mut c, &file, previous);
    let issuers = file.issuers.iter().filter_map(|spec| compile_issuer(&mut c, spec, previous)).collect::<Vec<_>>();
    let mut seen = HashSet::new();
    for (spec, issuer) in file.issuers.iter().zip(&issuers) {
        if !seen.insert(issuer.name.clone()) {
            c.err(Some(spec), format!("issuer {:?} is listed twice", issuer.name));
        }
    }
    let roles = Arc::new(compile_roles(&mut c, &file));
    // A misspelt default role would give nothing, silently (checked as route role names are).
    if !file.roles.is_empty() {
        for spec in &file.issuers {
            let Some(defaults) = &spec.get_ref().default_roles else { continue };
            for role in defaults.get_ref().iter().filter(|r| !roles.is_defined(r)) {
                let (line, _) = c.loc.line_col(defaults.span().start);
                c.warnings.push(format!(
                    "{}:{line}: issuer {:?}: default role {role:?} is not defined in [roles]{}",
                    c.loc.file().display(),
                    spec.get_ref().issuer,
                    super::names::did_you_mean(role, file.roles.keys().map(String::as_str))
                ));
            }
        }
    }
    let forward = compile_forward(&mut c, &file);
    let claims = routes::ClaimContext { issuers: &issuers, closure: &roles };
    let (routes, unmatched) = compile_routes(&mut c, &file, &upstreams, &claims, previous);
    let log_claims = compile_log_claims(&mut c, &file, &issuers, routes.as_ref());

    if !c.errors.is_empty() {
        return Err(ConfigErrors(c.errors));
    }
    let server = server.expect("server settings exist when there are no errors");
    Ok(Snapshot {
        generation: previous.map_or(1, |p| p.generation + 1),
        loaded_at: SystemTime::now(),
        source: path.to_path_buf(),
        server,
        authz,
        routes: routes.expect("routes exist when there are no errors"),
        unmatched,
        issuers: Issuers::new(issuers),
        roles,
        forward,
        upstreams,
        tls_key,
        log_claims,
        token_cache: (file.defaults.token_cache > 0).then(|| TokenCache::new(file.defaults.token_cache)),
        inputs: c.inputs,
        fingerprint: std::hash::Hasher::finish(&c.fingerprint),
        warnings: c.warnings,
    })
}
