//! `RoutesFile` → `Snapshot`: every semantic check, every expensive build
//! (globs, keys, role closure, header names), done once per load. Errors are
//! collected, not stopped at, and each names file:line:col.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use foldhash::HashMap as FastMap;
use globset::GlobBuilder;
use http::header::HeaderName;
use http::Method;
use ipnet::IpNet;
use toml::Spanned;

use super::error::{ConfigError, ConfigErrors, Locator};
use super::file::{
    ClaimValue, IssuerSpec, ModeSpec, RequirementSpec, RouteSpec, RoutesFile, UnderscoreSpec, UnmatchedSpec,
};
use crate::auth::claims::RoleClosure;
use crate::auth::keys::{self, VerifyKey};
use crate::auth::remote::{RemoteKeys, Source as RemoteSource};
use crate::auth::{Issuer, Issuers, TokenCache};
use crate::routes::{ClaimCheck, Requirement, TemplatePart};
use crate::auth::IdentitySource;
use crate::headers::{ForwardPlan, NamePattern, Underscores};
use crate::routes::{Access, Mode, Pattern, Route, RouteTable};
use crate::snapshot::{ServerSettings, Snapshot};
use crate::upstream::Upstream;

/// Headers the gateway sets or that carry framing: an identity header may not use these names.
const RESERVED_HEADERS: &[&str] = &[
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
];

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
    let roles = compile_roles(&mut c, &file);
    let forward = compile_forward(&mut c, &file);
    let (routes, unmatched) = compile_routes(&mut c, &file, &upstreams, previous);
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

/// `[defaults] log_claims`, with a warning for each claim that decisions read
/// but the log would not record (a replay of that log could not see it).
fn compile_log_claims(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    issuers: &[Issuer],
    routes: Option<&RouteTable>,
) -> Vec<String> {
    let mut logged: Vec<String> = file.defaults.log_claims.iter().map(|s| s.get_ref().clone()).collect();
    // Parents before children, so that a logged `a` is recorded whole next to `a.b`.
    logged.sort_by_key(|p| p.split('.').count());
    for spec in &file.defaults.log_claims {
        if spec.get_ref().is_empty() || spec.get_ref().split('.').any(str::is_empty) {
            c.err(Some(spec), format!("log_claims: {:?} is not a claim path", spec.get_ref()));
        }
    }
    let (Some(first), Some(routes)) = (file.defaults.log_claims.first(), routes) else {
        return logged;
    };
    let mut read: Vec<String> = Vec::new();
    for issuer in issuers {
        read.extend(issuer.roles_claims.iter().chain(&issuer.permissions_claims).cloned());
    }
    fn claims_of(req: &Requirement, issuers: &[Issuer], read: &mut Vec<String>) {
        for check in &req.claims {
            match check.claim.as_str() {
                "$tenant" => read.extend(issuers.iter().map(|i| i.tenant_claim.clone())),
                claim => read.push(claim.to_owned()),
            }
        }
        req.any_of.iter().for_each(|alt| claims_of(alt, issuers, read));
    }
    for route in routes.routes() {
        if let Access::Protected(req) = &route.access {
            claims_of(req, issuers, &mut read);
        }
    }
    read.sort();
    read.dedup();
    // A logged parent path (`realm_access`) records everything below it.
    let covered = |claim: &str| {
        logged.iter().any(|l| claim == l || claim.strip_prefix(l.as_str()).is_some_and(|r| r.starts_with('.')))
    };
    let missing: Vec<&str> = read.iter().map(String::as_str).filter(|r| !covered(r)).collect();
    if !missing.is_empty() {
        let (line, _) = c.loc.line_col(first.span().start);
        c.warnings.push(format!(
            "{}:{line}: log_claims does not record {}, which decisions read: replays of this log will not see {}",
            c.loc.file().display(),
            missing.iter().map(|m| format!("`{m}`")).collect::<Vec<_>>().join(", "),
            if missing.len() == 1 { "it" } else { "them" }
        ));
    }
    logged
}

fn compile_server(c: &mut Compiler<'_>, file: &RoutesFile) -> Option<ServerSettings> {
    let s = &file.server;
    let listen = parse_addr(c, "listen", &s.listen);
    let admin_listen = s.admin_listen.as_deref().map(|a| parse_addr(c, "admin_listen", a));
    let tls = s.tls.as_ref().map(|t| (c.resolve(&t.cert), c.resolve(&t.key)));
    let mut trusted = Vec::new();
    for p in &s.trusted_proxies {
        match p.get_ref().parse::<IpNet>().or_else(|_| p.get_ref().parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(n) => trusted.push(n),
            Err(_) => c.err(Some(p), format!("trusted_proxies: {:?} is not a CIDR or IP address", p.get_ref())),
        }
    }
    Some(ServerSettings {
        listen: listen?,
        admin_listen: match admin_listen {
            Some(a) => Some(a?),
            None => None,
        },
        trusted_proxies: trusted,
        shutdown_timeout: Duration::from_millis(s.shutdown_timeout_ms),
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms.max(1)),
        workers: s.workers,
        // hyper needs room for at least one read buffer (8 KiB).
        max_header_bytes: s.max_header_bytes.max(8192),
        max_headers: s.max_headers.max(1),
        max_connections: s.max_connections.max(1),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms.max(100)),
        tls,
    })
}

fn parse_addr(c: &mut Compiler<'_>, key: &str, value: &str) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err::<()>(None, format!("[server] {key} = {value:?} is not an IP:port address"));
            None
        }
    }
}

fn compile_upstreams(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    previous: Option<&Snapshot>,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, spec) in &file.upstreams {
        let s = spec.get_ref();
        let (ct, to) = (Duration::from_millis(s.connect_timeout_ms), Duration::from_millis(s.timeout_ms));
        let ca_file = s.ca_file.as_deref().map(|f| c.resolve(f));
        if let Some(ca) = &ca_file {
            if let Err(e) = c.read(ca) {
                c.err(Some(&s.url), format!("[upstreams.{name}] cannot read ca_file {}: {e}", ca.display()));
                continue;
            }
        }
        if let Some(old) = previous
            .and_then(|p| p.upstreams.get(name))
            .filter(|u| u.same_settings(s.url.get_ref(), ct, to, ca_file.as_deref()))
        {
            out.insert(name.clone(), Arc::clone(old));
            continue;
        }
        match Upstream::new(name, s.url.get_ref(), ct, to, ca_file.as_deref()) {
            Ok(u) => {
                out.insert(name.clone(), Arc::new(u));
            }
            Err(e) => c.err(Some(&s.url), format!("[upstreams.{name}] {e}")),
        }
    }
    out
}

fn previous_remote(previous: Option<&Snapshot>, issuer: &str) -> Option<Arc<RemoteKeys>> {
    previous?.issuers.get(issuer)?.remote.clone()
}

fn compile_issuer(c: &mut Compiler<'_>, spec: &Spanned<IssuerSpec>, previous: Option<&Snapshot>) -> Option<Issuer> {
    let s = spec.get_ref();
    let errors_before = c.errors.len();
    if s.issuer.is_empty() {
        c.err(Some(spec), "issuer must not be empty");
    }
    let mut remote = None;
    if let (Some(_), Some(d)) = (&s.jwks_url, &s.discovery) {
        c.err(Some(d), "give jwks_url or discovery, not both");
    }
    let source = match (&s.jwks_url, &s.discovery) {
        (Some(u), _) => Some((u, crate::auth::remote::parse_url(u.get_ref()).map(RemoteSource::Jwks))),
        (None, Some(d)) => Some((d, crate::auth::remote::parse_url(d.get_ref()).map(RemoteSource::Discovery))),
        (None, None) => None,
    };
    let ca_file = s.ca_file.as_deref().map(|f| c.resolve(f));
    match source {
        Some((at, Ok(source))) => {
            if let Some(ca) = &ca_file {
                // Read as an input, so that a changed CA file reloads too.
                if let Err(e) = c.read(ca) {
                    c.err(Some(at), format!("cannot read ca_file {}: {e}", ca.display()));
                }
            }
            // A reload keeps the fetched keys of an unchanged issuer.
            let kept = previous_remote(previous, &s.issuer).filter(|r| r.source == source && r.ca_file == ca_file);
            match kept {
                Some(r) => remote = Some(r),
                None => match crate::tls::client_config(ca_file.as_deref()) {
                    Ok(tls) => remote = Some(RemoteKeys::new(&s.issuer, source, ca_file, Arc::new(tls))),
                    Err(e) => c.err(Some(at), e),
                },
            }
        }
        Some((at, Err(e))) => c.err(Some(at), e),
        None => {}
    }
    let mut algorithms = Vec::new();
    for a in s.algorithms.get_ref() {
        if a.eq_ignore_ascii_case("none") {
            c.err(Some(&s.algorithms), "algorithm \"none\" is never accepted");
            continue;
        }
        match keys::parse_algorithm(a) {
            Some(alg) => algorithms.push(alg),
            None => c.err(
                Some(&s.algorithms),
                format!("unknown algorithm {a:?} (RS256/384/512, PS256/384/512, ES256/384, EdDSA, HS256/384/512)"),
            ),
        }
    }
    if s.algorithms.get_ref().is_empty() {
        c.err(Some(&s.algorithms), "algorithms must list at least one algorithm");
    }
    let mut keys: Vec<VerifyKey> = Vec::new();
    if let Some(list) = s.keys.as_ref().filter(|_| !c.skip_keys) {
        for k in list {
            let path = c.resolve(&k.get_ref().pem_file);
            match c.read(&path) {
                Ok(pem) => match keys::from_pem(k.get_ref().kid.clone(), &pem) {
                    Ok(key) => keys.push(key),
                    Err(e) => c.err(Some(k), format!("key file {}: {e}", path.display())),
                },
                Err(e) => c.err(Some(k), format!("cannot read key file {}: {e}", path.display())),
            }
        }
    }
    if let Some(f) = s.jwks_file.as_ref().filter(|_| !c.skip_keys) {
        let path = c.resolve(f.get_ref());
        match c.read(&path).and_then(|b| String::from_utf8(b).map_err(std::io::Error::other)) {
            Ok(text) => match keys::from_jwks(&text) {
                Ok((found, notes)) => {
                    keys.extend(found);
                    c.warnings.extend(notes.into_iter().map(|n| format!("{}: {n}", path.display())));
                }
                Err(e) => c.err(Some(f), format!("JWKS file {}: {e}", path.display())),
            },
            Err(e) => c.err(Some(f), format!("cannot read JWKS file {}: {e}", path.display())),
        }
    }
    if let Some(var) = s.secret_env.as_ref().filter(|_| !c.skip_keys) {
        match std::env::var(var.get_ref()) {
            Ok(secret) if !secret.is_empty() => keys.push(keys::hmac(secret.as_bytes())),
            _ => c.err(Some(var), format!("secret_env: environment variable {} is not set or empty", var.get_ref())),
        }
    }
    if s.keys.is_none()
        && s.jwks_file.is_none()
        && s.secret_env.is_none()
        && s.jwks_url.is_none()
        && s.discovery.is_none()
    {
        c.err(Some(spec), format!("issuer {:?} has no keys: give keys, jwks_file or secret_env", s.issuer));
    }
    for alg in &algorithms {
        if c.errors.len() == errors_before
            && !c.skip_keys
            && remote.is_none()
            && !keys.iter().any(|k| k.algorithms.contains(alg))
        {
            c.warnings.push(format!("issuer {:?}: no key accepts {alg:?}; such tokens will be refused", s.issuer));
        }
    }
    Some(Issuer {
        name: s.issuer.clone(),
        audiences: s.audiences.clone().unwrap_or_default(),
        algorithms,
        keys,
        leeway_s: s.leeway_s,
        roles_claims: s.roles_claim.clone(),
        permissions_claims: s.permissions_claim.clone(),
        tenant_claim: s.tenant_claim.clone(),
        require_exp: s.require_exp,
        token_types: compile_token_types(c, s.token_types.as_ref()),
        remote,
    })
}

/// `token_types`, as compared: lower-case, without an `application/` prefix.
fn compile_token_types(c: &mut Compiler<'_>, list: Option<&Spanned<Vec<String>>>) -> Vec<Box<str>> {
    let Some(list) = list else { return Vec::new() };
    if list.get_ref().is_empty() {
        c.err(Some(list), "token_types must list at least one type (e.g. \"at+jwt\"), or be left out");
    }
    list.get_ref().iter().map(|t| Box::from(crate::auth::verify::token_type(t))).collect()
}

fn compile_roles(c: &mut Compiler<'_>, file: &RoutesFile) -> RoleClosure {
    let mut defs: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for (name, spec) in &file.roles {
        let s = spec.get_ref();
        for inc in &s.includes {
            if !file.roles.contains_key(inc.get_ref()) {
                c.err(Some(inc), format!("role {name:?} includes unknown role {:?}", inc.get_ref()));
            }
        }
        defs.insert(name.clone(), (s.permissions.clone(), s.includes.iter().map(|i| i.get_ref().clone()).collect()));
    }
    // Cycle detection: depth-first search with colours.
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
    fn visit<'a>(
        n: &'a str,
        defs: &'a HashMap<String, (Vec<String>, Vec<String>)>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(_) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(n, 1);
        path.push(n);
        if let Some((_, incs)) = defs.get(n) {
            for i in incs {
                if let Some(cycle) = visit(i, defs, state, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    for name in file.roles.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(name, &defs, &mut state, &mut path) {
            let at = file.roles.get(&cycle[0]);
            c.err(at, format!("role cycle: {}", cycle.join(" -> ")));
            break;
        }
    }
    RoleClosure::build(&defs)
}

fn compile_forward(c: &mut Compiler<'_>, file: &RoutesFile) -> ForwardPlan {
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

/// The `Upgrade` protocols passed through (a route's or an upstream's
/// `upgrades`); `h2c` is refused.
fn compile_upgrades(c: &mut Compiler<'_>, list: &Spanned<Vec<String>>) -> Arc<[Box<str>]> {
    let mut out = Vec::new();
    for p in list.get_ref() {
        if p.eq_ignore_ascii_case("h2c") {
            c.err(
                Some(list),
                "upgrades: h2c is never passed through (a client could then reach the upstream past the gateway)",
            );
        } else if p.is_empty() || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)) {
            c.err(Some(list), format!("upgrades: {p:?} is not a protocol name"));
        } else {
            out.push(Box::from(p.to_ascii_lowercase()));
        }
    }
    out.into()
}

type CompiledRoutes = (Option<RouteTable>, Option<Route>);

fn compile_routes(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    previous: Option<&Snapshot>,
) -> CompiledRoutes {
    // A reload reuses the compiled patterns of the serving table (a pattern is a
    // function of its text alone): most reloads change a few lines, and parsing
    // patterns was a fifth of compiling a large table.
    let known: FastMap<&str, &Arc<Pattern>> = previous
        .map(|p| p.routes.routes().iter().map(|r| (r.pattern.source.as_str(), &r.pattern)).collect())
        .unwrap_or_default();
    // Each upstream's `upgrades` (routes without their own use them), else `websocket`.
    let default_upgrades: Arc<[Box<str>]> = Arc::from([Box::from("websocket")]);
    let upgrades: BTreeMap<&str, Arc<[Box<str>]>> = file
        .upstreams
        .iter()
        .map(|(name, spec)| {
            let list = match &spec.get_ref().upgrades {
                Some(list) => compile_upgrades(c, list),
                None => Arc::clone(&default_upgrades),
            };
            (name.as_str(), list)
        })
        .collect();
    let mut routes = Vec::with_capacity(file.routes.len());
    for (index, spec) in file.routes.iter().enumerate() {
        crate::pace::point();
        if let Some(route) = compile_route(c, index, spec, upstreams, &upgrades, &known) {
            routes.push(route);
        }
    }
    lint_routes(c, &routes);
    c.warnings.extend(super::names::undefined_in_roles(c.loc.file(), &file.roles, &routes));
    let unmatched = match file.defaults.unmatched {
        UnmatchedSpec::Deny => None,
        UnmatchedSpec::Authenticate => match upstreams.get("default") {
            Some(up) => Some(Route {
                index: usize::MAX,
                name: Arc::from("(unmatched: authenticate)"),
                line: 0,
                methods: None,
                host: None,
                pattern: Arc::new(Pattern::parse("/**").expect("static pattern")),
                upstream: Arc::clone(up),
                access: Access::Protected(Requirement::default()),
                mode: Mode::Enforce,
                upgrades: upgrades.get("default").cloned().unwrap_or(default_upgrades),
            }),
            None => {
                c.err::<()>(
                    None,
                    "[defaults] unmatched = \"authenticate\" forwards to [upstreams.default], which is not defined",
                );
                None
            }
        },
    };
    (Some(RouteTable::build(routes)), unmatched)
}

fn compile_route(
    c: &mut Compiler<'_>,
    index: usize,
    spec: &Spanned<RouteSpec>,
    upstreams: &BTreeMap<String, Arc<Upstream>>,
    upgrades: &BTreeMap<&str, Arc<[Box<str>]>>,
    known: &FastMap<&str, &Arc<Pattern>>,
) -> Option<Route> {
    let s = spec.get_ref();
    let line = c.loc.line_col(spec.span().start).0;
    let name: Arc<str> = Arc::from(s.name.as_deref().unwrap_or(s.path.get_ref()));
    let pattern = match known.get(s.path.get_ref().as_str()) {
        Some(&p) => Ok(Arc::clone(p)),
        None => Pattern::parse(s.path.get_ref()).map(Arc::new),
    };
    let pattern = match pattern {
        Ok(p) => Some(p),
        Err(e) => {
            c.err(Some(&s.path), e);
            None
        }
    };
    let methods = s.methods.as_ref().map(|list| {
        list.iter()
            .filter_map(|m| {
                let upper = m.get_ref().to_ascii_uppercase();
                match Method::from_bytes(upper.as_bytes()) {
                    Ok(method) => Some(method),
                    Err(_) => {
                        c.err(Some(m), format!("{:?} is not an HTTP method", m.get_ref()));
                        None
                    }
                }
            })
            .collect::<Vec<_>>()
    });
    let host = s.host.as_ref().and_then(|h| {
        match GlobBuilder::new(&h.get_ref().to_ascii_lowercase()).case_insensitive(true).build() {
            Ok(g) => Some(g.compile_matcher()),
            Err(e) => {
                c.err(Some(h), format!("bad host pattern: {e}"));
                None
            }
        }
    });
    let upstream_name = s.upstream.as_ref().map_or("default", |u| u.get_ref().as_str());
    let upstream = match upstreams.get(upstream_name) {
        Some(u) => Some(Arc::clone(u)),
        None => {
            let msg = match &s.upstream {
                Some(_) => format!(
                    "route {name:?}: unknown upstream {upstream_name:?}{}",
                    super::names::did_you_mean(upstream_name, upstreams.keys().map(String::as_str))
                ),
                None => format!("route {name:?} has no upstream and there is no [upstreams.default]"),
            };
            match &s.upstream {
                Some(u) => c.err(Some(u), msg),
                None => c.err(Some(spec), msg),
            }
            None
        }
    };
    let params = pattern.as_ref().map(|p| p.params.clone()).unwrap_or_default();
    let requirement = compile_requirement(
        c,
        &RequirementSpec {
            all_permissions: s.all_permissions.clone(),
            any_permissions: s.any_permissions.clone(),
            all_roles: s.all_roles.clone(),
            any_roles: s.any_roles.clone(),
            claims: s.claims.clone(),
            any_of: s.any_of.clone(),
        },
        &params,
    );
    let access = if s.public {
        if !requirement.is_empty() {
            c.err(Some(spec), format!("route {name:?} is public and has requirements; a public route ignores tokens"));
        }
        Access::Public
    } else {
        Access::Protected(requirement)
    };
    Some(Route {
        index,
        name,
        line,
        methods,
        host,
        pattern: pattern?,
        upstream: upstream?,
        access,
        mode: match s.mode {
            ModeSpec::Enforce => Mode::Enforce,
            ModeSpec::Report => Mode::Report,
        },
        upgrades: match &s.upgrades {
            Some(list) => compile_upgrades(c, list),
            None => upgrades.get(upstream_name).cloned().unwrap_or_else(|| Arc::from([Box::from("websocket")])),
        },
    })
}

fn compile_requirement(c: &mut Compiler<'_>, s: &RequirementSpec, params: &[String]) -> Requirement {
    let mut claims = Vec::new();
    for (claim, value) in &s.claims {
        let expected = match value.get_ref() {
            ClaimValue::String(t) => match parse_template(t) {
                Ok(parts) => {
                    for p in &parts {
                        if let TemplatePart::Param(name) = p {
                            if !params.contains(name) {
                                c.err(Some(value), format!("claims.{claim}: the path has no parameter {{{name}}}"));
                            }
                        }
                    }
                    parts
                }
                Err(e) => {
                    c.err(Some(value), format!("claims.{claim}: {e}"));
                    continue;
                }
            },
            ClaimValue::Integer(i) => vec![TemplatePart::Literal(i.to_string())],
            ClaimValue::Bool(b) => vec![TemplatePart::Literal(b.to_string())],
        };
        claims.push(ClaimCheck { claim: claim.clone(), expected });
    }
    let any_of = s
        .any_of
        .iter()
        .map(|alt| {
            let r = compile_requirement(c, alt.get_ref(), params);
            if r.is_empty() {
                c.err(Some(alt), "an any_of alternative with no requirement would let every valid token through");
            }
            r
        })
        .collect();
    Requirement {
        all_permissions: s.all_permissions.clone(),
        any_permissions: s.any_permissions.clone(),
        all_roles: s.all_roles.clone(),
        any_roles: s.any_roles.clone(),
        claims,
        any_of,
    }
}

/// `"org-{tenant}"` → `[Literal("org-"), Param("tenant")]`.
fn parse_template(t: &str) -> Result<Vec<TemplatePart>, String> {
    let mut parts = Vec::new();
    let mut rest = t;
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(TemplatePart::Literal(rest[..open].to_owned()));
        }
        let close = rest[open..].find('}').ok_or_else(|| format!("unclosed '{{' in {t:?}"))? + open;
        let name = &rest[open + 1..close];
        if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_') {
            return Err(format!("{{{name}}} in {t:?} is not a parameter name"));
        }
        parts.push(TemplatePart::Param(name.to_owned()));
        rest = &rest[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unmatched '}}' in {t:?}"));
    }
    if !rest.is_empty() {
        parts.push(TemplatePart::Literal(rest.to_owned()));
    }
    Ok(parts)
}

const KNOWN_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"];

/// Whether every request route `b` matches is matched by the earlier `a` first
/// (conservative: same pattern, or `a` is a literal prefix followed by `/**`
/// that `b`'s literal prefix starts with; `a` accepts every method and host of `b`).
fn shadows(a: &Route, b: &Route) -> bool {
    let methods_cover = match (&a.methods, &b.methods) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(am), Some(bm)) => bm.iter().all(|m| am.contains(m)),
    };
    if !methods_cover || a.host.is_some() {
        return false;
    }
    let (ap, bp) = (&a.pattern, &b.pattern);
    if ap.source == bp.source {
        return true;
    }
    is_prefix_all(ap) && bp.literal_prefix.starts_with(&ap.literal_prefix)
}

/// `literal/prefix/**`: the pattern's only glob part is a trailing `**`.
fn is_prefix_all(p: &Pattern) -> bool {
    p.source.ends_with("/**")
        && p.literal_prefix.len() + 1 == p.source[1..].split('/').count()
        && !p.literal_prefix.iter().any(String::is_empty)
}

/// The routes that could shadow a later one, indexed so that linting a table
/// stays linear (checking every earlier route made 10,000 routes take seconds).
#[derive(Default)]
struct ShadowIndex<'r> {
    /// Routes by pattern text.
    by_source: FastMap<&'r str, Vec<usize>>,
    /// `prefix/**` routes by their literal prefix.
    prefix_all: FastMap<&'r [String], Vec<usize>>,
    /// Public routes by their first literal segment (`None`: the pattern starts with a glob).
    public: FastMap<Option<&'r str>, Vec<usize>>,
}

impl<'r> ShadowIndex<'r> {
    /// The earliest of the indexed routes that shadows `b`.
    fn first_shadowing(&self, routes: &'r [Route], b: &Route) -> Option<&'r Route> {
        let prefix = &b.pattern.literal_prefix;
        let same = self.by_source.get(b.pattern.source.as_str()).into_iter().flatten();
        let above = (0..=prefix.len()).filter_map(|k| self.prefix_all.get(&prefix[..k])).flatten();
        same.chain(above).copied().filter(|&a| shadows(&routes[a], b)).min().map(|a| &routes[a])
    }

    fn add(&mut self, i: usize, route: &'r Route) {
        self.by_source.entry(route.pattern.source.as_str()).or_default().push(i);
        if is_prefix_all(&route.pattern) {
            self.prefix_all.entry(route.pattern.literal_prefix.as_slice()).or_default().push(i);
        }
        if matches!(route.access, Access::Public) {
            self.public.entry(route.pattern.literal_prefix.first().map(String::as_str)).or_default().push(i);
        }
    }

    /// The public routes that may share a path with `b`, in file order.
    fn public_candidates(&self, b: &Route) -> Vec<usize> {
        let mut found: Vec<usize> = match b.pattern.literal_prefix.first() {
            Some(first) => {
                [None, Some(first.as_str())].iter().filter_map(|k| self.public.get(k)).flatten().copied().collect()
            }
            None => self.public.values().flatten().copied().collect(),
        };
        found.sort_unstable();
        found
    }
}

/// The first earlier public route that takes some (not all: that is shadowing)
/// of protected route `b`'s requests, with an example path.
fn taken_by_public_route<'r>(routes: &'r [Route], public: &[usize], b: &Route) -> Option<(&'r Route, String)> {
    if matches!(b.access, Access::Public) {
        return None;
    }
    public.iter().map(|&a| &routes[a]).filter(|a| !shadows(a, b)).find_map(|a| {
        let methods_meet = match (&a.methods, &b.methods) {
            (Some(am), Some(bm)) => bm.iter().any(|m| am.contains(m)),
            _ => true,
        };
        let hosts_meet = match (&a.host, &b.host) {
            (Some(ah), Some(bh)) => {
                let (ah, bh) = (ah.glob().glob(), bh.glob().glob());
                ah == bh || ah.contains(['*', '?', '{']) || bh.contains(['*', '?', '{'])
            }
            _ => true,
        };
        // Two literal segments at the same position that differ: no overlap (cheap filter).
        let (ap, bp) = (&a.pattern.literal_prefix, &b.pattern.literal_prefix);
        let prefixes_meet = ap.iter().zip(bp).all(|(x, y)| x == y);
        if !(methods_meet && hosts_meet && prefixes_meet) {
            return None;
        }
        a.pattern.overlap_example(&b.pattern).map(|example| (a, example))
    })
}

/// Warnings (not errors): routes that can never match, protected routes with
/// no requirement, public routes that hide protected ones, unusual methods.
fn lint_routes(c: &mut Compiler<'_>, routes: &[Route]) {
    let file = c.loc.file().display().to_string();
    let mut index = ShadowIndex::default();
    for (i, b) in routes.iter().enumerate() {
        crate::pace::point();
        if let Some(a) = index.first_shadowing(routes, b) {
            let what = if matches!(a.access, Access::Public) && !matches!(b.access, Access::Public) {
                "public route"
            } else {
                "route"
            };
            c.warnings.push(format!(
                "{file}:{}: route {:?} is never reached: the earlier {what} {:?} (line {}) matches all its requests first",
                b.line, &*b.name, &*a.name, a.line
            ));
        }
        if let Some((a, example)) = taken_by_public_route(routes, &index.public_candidates(b), b) {
            let method = b.methods.as_ref().and_then(|m| m.first()).map_or("GET", |m| m.as_str());
            c.warnings.push(format!(
                "{file}:{}: protected route {:?} overlaps the earlier public route {:?} (line {}): \
                 e.g. {method} {example} is served without a token",
                b.line, &*b.name, &*a.name, a.line
            ));
        }
        if let Access::Protected(req) = &b.access {
            if req.is_empty() {
                c.warnings.push(format!(
                    "{file}:{}: route {:?} has no requirement: any valid token passes (add `public = true` or a requirement)",
                    b.line, &*b.name
                ));
            }
        }
        for m in b.methods.iter().flatten() {
            if !KNOWN_METHODS.contains(&m.as_str()) {
                c.warnings.push(format!("{file}:{}: route {:?}: unusual method {m}", b.line, &*b.name));
            }
        }
        index.add(i, b);
    }
}
