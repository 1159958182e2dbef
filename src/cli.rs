//! The command line: `run` (default), `check`, `explain`, `demo`, `mint`,
//! `import openapi` (in `cli/openapi.rs`, with `check --openapi`).
//! The only module (with `main.rs`) that uses `anyhow`.

mod openapi;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use arc_swap::ArcSwap;
use clap::{Args, Parser, Subcommand};

use crate::auth;
use crate::config;
use crate::decide::{self, Auth, Denial};
use crate::error::GatewayError;
use crate::gateway::{self, Gateway};
use crate::mint::{self, Signer};
use crate::normalize;
use crate::reload;
use crate::routes::{Access, Route};
use crate::server::{self, ServeOptions};

#[derive(Debug, Parser)]
#[command(
    name = "rolegate",
    version,
    about = "Role-based access enforcement gateway (JWT + route table reverse proxy)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Route table (for `run`, the default command).
    #[arg(long, env = "ROLEGATE_CONFIG", default_value = "routes.toml", global = true)]
    config: PathBuf,
    /// Log format on stderr: `text`, or `json` (one object per line). Default: json
    /// when stderr is not a terminal. The level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Run,
    /// Validate the route table: exit 0 when valid, 1 with file:line errors otherwise.
    Check {
        /// Treat warnings (unreachable routes, routes with no requirement, unusual methods) as errors,
        /// and with --openapi, findings too.
        #[arg(long)]
        strict: bool,
        /// Also report the table's coverage of this OpenAPI description (YAML or JSON): operations no
        /// route admits, secured operations whose route requires less, routes of no operation.
        #[arg(long, value_name = "SPEC")]
        openapi: Option<PathBuf>,
        /// With --openapi: the prefix the routes were imported with (default: the path of servers[0].url).
        #[arg(long, requires = "openapi")]
        prefix: Option<String>,
    },
    /// Write routes.toml tables from another description of the API.
    Import {
        #[command(subcommand)]
        from: ImportFrom,
    },
    /// List the compiled route table in match order.
    Routes,
    /// Print the JSON Schema of routes.toml (for editors: Taplo / Even Better TOML).
    Schema,
    /// What would an edit change? Evaluates two tables on the same requests
    /// (JSON lines of {method, host, path, claims}) and prints every changed verdict.
    Diff {
        old: PathBuf,
        new: PathBuf,
        /// JSON lines: {"method": "GET", "host": "api.example.com", "path": "/v1/x", "claims": {...}}
        /// (no `claims`: no token).
        #[arg(long)]
        replay: PathBuf,
    },
    /// Show how one request would be decided.
    Explain(ExplainArgs),
    /// Run the example table in front of a built-in echo upstream, with ready-made tokens.
    Demo {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Sign a test token; prints the compact JWT alone.
    Mint(MintArgs),
}

#[derive(Debug, Subcommand)]
enum ImportFrom {
    /// `[[routes]]` for every operation of an OpenAPI 3.0/3.1 document (YAML or JSON), on stdout.
    Openapi {
        spec: PathBuf,
        /// Put this before every path template instead of the path of servers[0].url ("/" for none).
        #[arg(long)]
        prefix: Option<String>,
        /// `upstream = NAME` on every route.
        #[arg(long)]
        upstream: Option<String>,
    },
}

#[derive(Debug, Args)]
struct ExplainArgs {
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

#[derive(Debug, Args)]
struct MintArgs {
    /// Private key (PEM): RSA → RS256, EC → ES256/ES384, Ed25519 → EdDSA.
    #[arg(long, required_unless_present = "secret_env", conflicts_with = "secret_env")]
    key: Option<PathBuf>,
    /// Name of an environment variable holding an HS256 secret.
    #[arg(long)]
    secret_env: Option<String>,
    /// Claims as a JSON object.
    #[arg(long)]
    claims: String,
    /// Lifetime: sets iat and exp unless the claims have them (30s, 15m, 1h, 2d; negative for expired).
    #[arg(long, default_value = "1h", allow_hyphen_values = true)]
    ttl: String,
    #[arg(long)]
    kid: Option<String>,
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // Held until `main` returns: dropping it writes out the lines still queued.
    let _log_writer = init_tracing(cli.log_format.as_deref());
    let result = match cli.command.unwrap_or(Command::Run) {
        Command::Run => run(&cli.config),
        Command::Check { strict, openapi: None, .. } => return check(&cli.config, strict),
        Command::Check { strict, openapi: Some(spec), prefix } => openapi::check(&cli.config, &spec, prefix, strict),
        Command::Import { from: ImportFrom::Openapi { spec, prefix, upstream } } => {
            openapi::import(&spec, prefix, upstream)
        }
        Command::Routes => routes_cmd(&cli.config),
        Command::Schema => {
            print!("{}", config::file::schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff { old, new, replay } => diff_cmd(&old, &new, &replay),
        Command::Explain(args) => explain(&cli.config, &args),
        Command::Demo { listen } => runtime()
            .and_then(|rt| rt.block_on(crate::demo::run(listen)).map(|()| ExitCode::SUCCESS).map_err(|e| anyhow!(e))),
        Command::Mint(args) => mint_cmd(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rolegate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr through a queue and a writer thread that writes them
/// in batches: a request thread formats its access-log line and moves on,
/// instead of making a `write` syscall per line (with the access log on:
/// 31–32 → 15 µs of CPU per request, README "Performance"). Never lossy: when
/// the queue is full, loggers wait.
fn init_tracing(format: Option<&str>) -> tracing_appender::non_blocking::WorkerGuard {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        Some(f) => f == "json",
        None => !std::io::stderr().is_terminal(),
    };
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        // The queue's slots are allocated up front: the default (128,000
        // lines) cost ~3 MiB of idle RSS; 8,192 lines are milliseconds of
        // full load.
        .buffered_lines_limit(8192)
        .thread_name("rolegate-log")
        .finish(std::io::BufWriter::with_capacity(64 * 1024, std::io::stderr()));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
    guard
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

/// How long `run` waits for remote key sets at start-up.
const STARTUP_KEY_WAIT: Duration = Duration::from_secs(10);

/// `rolegate run`: load (exit 1 on errors, before binding), bind, serve with
/// worker threads; this thread handles signals (SIGHUP reload, SIGTERM stop).
fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let snapshot = match config::load(path, None) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &snapshot.warnings {
        tracing::warn!("{w}");
    }
    let listener =
        server::bind(snapshot.server.listen).with_context(|| format!("cannot listen on {}", snapshot.server.listen))?;
    let bound = listener.local_addr()?;
    // TLS: the certificate sits in a slot that reloads refill, so renewals need no restart.
    let cert_slot = snapshot.tls_key.as_ref().map(|k| crate::tls::CertSlot::new((**k).clone()));
    let tls = match &cert_slot {
        Some(slot) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(Arc::clone(slot)).map_err(|e| anyhow!("TLS: {e}"))?,
        )),
        None => None,
    };
    let opts = ServeOptions { tls, ..ServeOptions::from_settings(&snapshot.server) };
    let workers = match snapshot.server.workers {
        0 => server::default_workers(),
        n => n,
    };
    tracing::info!(routes = snapshot.routes.len(), issuers = snapshot.issuers.len(), workers, "route table loaded");
    snapshot.routes.warm(None, || true);
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let gateway = Gateway::with_metrics(Arc::clone(&shared), Arc::clone(&metrics));
    let serving = std::thread::Builder::new()
        .name("rolegate-serve".into())
        .spawn(move || server::serve_workers(listener, gateway, opts, workers, stop_rx))?;
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reloader = reload::Reloader::with_metrics(Arc::clone(&shared), path.to_path_buf(), Arc::clone(&metrics));
    // Signal handlers first: a SIGTERM or SIGHUP right after the line below must not be lost.
    let (terminated, hangups) = {
        let _rt = signals.enter();
        (server::shutdown_signal(), reload::on_sighup(Arc::clone(&reloader)))
    };
    // Scripts and tests read the bound address from this line.
    println!("listening on {bound}");
    if let Some(slot) = cert_slot {
        reloader.serve_certificate_into(slot);
    }
    let admin = crate::admin::Admin::new(Arc::clone(&reloader), Arc::clone(&metrics));
    let admin_listener = match shared.load().server.admin_listen {
        Some(addr) => {
            let l = server::bind(addr).with_context(|| format!("cannot listen on {addr} (admin)"))?;
            l.set_nonblocking(true)?;
            println!("admin listening on {}", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    signals
        .block_on(async {
            // Remote key sets: fetched in the background; wait a bounded time for them.
            let snap = shared.load_full();
            snap.start_remote_keys(&tokio::runtime::Handle::current(), Some(&metrics));
            let deadline = tokio::time::Instant::now() + STARTUP_KEY_WAIT;
            while !snap.remote_keys_ready() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !snap.remote_keys_ready() {
                tracing::warn!("some issuers have no keys yet; their tokens get 401 until a fetch succeeds");
            }
            drop(snap);
            if let Some(l) = admin_listener {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => drop(tokio::spawn(crate::admin::serve(l, Arc::clone(&admin)))),
                    Err(e) => tracing::error!(error = %e, "cannot serve the admin endpoints"),
                }
            }
            tokio::spawn(hangups);
            let _watch = match reload::watch(Arc::clone(&reloader)) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the route table's files; reload with SIGHUP");
                    None
                }
            };
            terminated.await;
            tracing::info!("stop requested");
            admin.set_stopping();
            let _ = stop_tx.send(true);
            // Keep this runtime (admin endpoints: /readyz now 503) alive while workers drain.
            tokio::task::spawn_blocking(move || serving.join()).await
        })
        .map_err(|e| anyhow!("waiting for the workers: {e}"))?
        .map_err(|_| anyhow!("a worker thread panicked"))??;
    Ok(ExitCode::SUCCESS)
}

fn check(path: &Path, strict: bool) -> ExitCode {
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

fn routes_cmd(path: &Path) -> anyhow::Result<ExitCode> {
    let snap = config::load(path, None).map_err(|e| anyhow!("{e}"))?;
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

fn explain(path: &Path, args: &ExplainArgs) -> anyhow::Result<ExitCode> {
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

fn describe(route: &Route) -> String {
    match &route.access {
        Access::Public => "public (no token needed)".to_owned(),
        Access::Protected(req) => req.to_string(),
    }
}

fn mint_cmd(args: &MintArgs) -> anyhow::Result<ExitCode> {
    let signer = match (&args.key, &args.secret_env) {
        (Some(key), _) => Signer::Pem(std::fs::read(key).with_context(|| format!("reading {}", key.display()))?),
        (None, Some(var)) => Signer::Secret(
            std::env::var(var).with_context(|| format!("environment variable {var} is not set"))?.into_bytes(),
        ),
        (None, None) => bail!("give --key or --secret-env"),
    };
    let claims: serde_json::Value = serde_json::from_str(&args.claims).context("--claims is not JSON")?;
    let ttl = mint::parse_ttl(&args.ttl).map_err(|e| anyhow!(e))?;
    let token = mint::sign(&signer, &claims, args.kid.as_deref(), Some(ttl)).map_err(|e| anyhow!(e))?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

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

fn diff_cmd(old: &Path, new: &Path, replay: &Path) -> anyhow::Result<ExitCode> {
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

/// The identity unverified claims stand for, read with the claim names of the
/// issuer they name (or the table's first issuer): for `explain --claims` and `diff`.
fn identity_of_claims(
    snap: &crate::snapshot::Snapshot,
    claims: serde_json::Map<String, serde_json::Value>,
) -> anyhow::Result<Arc<auth::Identity>> {
    let issuer = claims
        .get("iss")
        .and_then(|i| i.as_str())
        .and_then(|i| snap.issuers.get(i))
        .or_else(|| snap.issuers.iter().next())
        .cloned()
        .ok_or_else(|| anyhow!("the route table has no issuer"))?;
    Ok(Arc::new(auth::identity_from_claims(claims, issuer, &snap.roles, None)))
}
