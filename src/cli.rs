//! The command line: `run` (default), `check` (with `--openapi`), `routes`,
//! `schema`, `diff`, `explain`, `demo`, `mint`, `health`, `import openapi`,
//! one file per subcommand under `cli/`.
//! The only module (with `main.rs`) that uses `anyhow`.

mod check;
mod diff;
mod explain;
mod health;
mod mint;
mod openapi;
mod routes;
mod run;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, Context as _};
use clap::{CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::auth;
use crate::config;
use crate::routes::{Access, Route};

#[derive(Debug, Parser)]
#[command(
    name = "rolegate",
    version,
    about = "Role-based access enforcement gateway (JWT + route table reverse proxy)"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// The route table that `run`, `check`, `routes` and `explain` read (the
    /// other commands read none and refuse it on the command line).
    #[arg(long, env = "ROLEGATE_CONFIG", default_value = "routes.toml", global = true, value_name = "FILE")]
    config: PathBuf,
    /// Log format on stderr: `text`, or `json` (one object per line). Default: json
    /// when stderr is not a terminal. The level comes from RUST_LOG (default `info`).
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default when no command is given).
    Run(run::RunArgs),
    /// Validate the route table: exit 0 when valid, 1 with file:line errors otherwise.
    Check {
        /// Treat warnings (unreachable routes, routes with no requirement, unusual methods,
        /// role and permission names [roles] does not know) as errors, and with --openapi, findings too.
        #[arg(long)]
        strict: bool,
        /// Validate everything but the key material (key, JWKS and TLS files, secret_env),
        /// for pipelines where keys are mounted only at deploy time.
        #[arg(long)]
        skip_keys: bool,
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
    Diff(diff::DiffArgs),
    /// Show how one request would be decided.
    Explain(explain::ExplainArgs),
    /// Run the example table in front of a built-in echo upstream, with ready-made tokens
    /// (always the built-in table: to serve your own, use `run --config FILE`).
    Demo {
        /// Address of the demo gateway.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// Sign a test token; prints the compact JWT alone.
    Mint(mint::MintArgs),
    /// Probe the admin `/readyz` of a running gateway: exit 0 when it answers 200, else 1
    /// (a container HEALTHCHECK without curl).
    Health(health::HealthArgs),
}

#[derive(Debug, Subcommand)]
enum ImportFrom {
    /// `[[routes]]` for every operation of an OpenAPI 3.0/3.1 document (YAML or JSON), on stdout.
    Openapi {
        /// The OpenAPI document (YAML or JSON).
        spec: PathBuf,
        /// Put this before every path template instead of the path of servers[0].url ("/" for none).
        #[arg(long)]
        prefix: Option<String>,
        /// `upstream = NAME` on every route.
        #[arg(long)]
        upstream: Option<String>,
    },
}

impl Command {
    /// For a command that reads no route table: its name and what to do
    /// instead of giving `--config`.
    fn refuses_config(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Command::Run(_) | Command::Check { .. } | Command::Routes | Command::Explain(_) => None,
            Command::Demo { .. } => Some((
                "demo",
                "it always serves the built-in example table, with its own echo upstream and key; \
                 to serve your table: rolegate run --config FILE",
            )),
            Command::Diff(_) => {
                Some(("diff", "it compares the two tables it is given: rolegate diff OLD NEW --replay FILE"))
            }
            Command::Schema => Some(("schema", "it prints the schema of every routes.toml")),
            Command::Mint(_) => Some(("mint", "it signs with the key it is given")),
            Command::Health(_) => Some(("health", "it probes the admin endpoint --url names")),
            Command::Import { .. } => Some(("import", "it prints the routes of the description it is given")),
        }
    }
}

/// Parses the command line and runs it.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = cli.command.unwrap_or_else(|| Command::Run(run::RunArgs::default()));
    // Only on the command line: ROLEGATE_CONFIG may well be set for every command (the Docker image sets it).
    if matches.value_source("config") == Some(clap::parser::ValueSource::CommandLine) {
        if let Some((name, instead)) = command.refuses_config() {
            print_error(format!("`{name}` reads no route table, so --config is refused: {instead}"));
            return ExitCode::from(2);
        }
    }
    // Held until `main` returns: dropping it writes out the lines still queued.
    let _log_writer = crate::logging::init(cli.log_format.as_deref());
    let result = match command {
        Command::Run(args) => run::run(&cli.config, &args),
        Command::Check { strict, skip_keys, openapi: None, .. } => return check::check(&cli.config, strict, skip_keys),
        Command::Check { strict, skip_keys, openapi: Some(spec), prefix } => {
            openapi::check(&cli.config, &spec, prefix, strict, skip_keys)
        }
        Command::Import { from: ImportFrom::Openapi { spec, prefix, upstream } } => {
            openapi::import(&spec, prefix, upstream)
        }
        Command::Routes => routes::routes_cmd(&cli.config),
        Command::Schema => {
            print!("{}", config::file::schema());
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff(args) => return diff::diff_cmd(&args),
        Command::Explain(args) => explain::explain(&cli.config, &args),
        Command::Demo { listen } => runtime()
            .and_then(|rt| rt.block_on(crate::demo::run(listen)).map(|()| ExitCode::SUCCESS).map_err(|e| anyhow!(e))),
        Command::Mint(args) => mint::mint_cmd(&args),
        Command::Health(args) => health::health(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            print_error(format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

/// Prints an error on stderr: every line starts with `rolegate: `, in every
/// subcommand (a table's errors then name `file:line:col`).
fn print_error(e: impl std::fmt::Display) {
    for line in e.to_string().lines() {
        eprintln!("rolegate: {line}");
    }
}

/// How the commands that only inspect a table load it (no key material read).
const SKIP_KEYS: config::LoadOptions = config::LoadOptions { skip_keys: true, listen: None, default_upstream: None };

/// `1 route`, `2 routes`.
fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the tokio runtime")
}

fn describe(route: &Route) -> String {
    let req = match &route.access {
        Access::Public => return "public (no token needed)".to_owned(),
        Access::Protected(req) => req.to_string(),
    };
    // The route's own claim names, which replace the issuers'.
    let own = route.claim_names.as_deref().into_iter().flat_map(|n| {
        let list = |key: &str, paths: &Option<Vec<auth::claims::ClaimPath>>| {
            paths.as_ref().map(|p| format!("{key} {}", p.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")))
        };
        [list("roles_claim", &n.roles), list("permissions_claim", &n.permissions)].into_iter().flatten()
    });
    std::iter::once(req).chain(own).collect::<Vec<_>>().join("; ")
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
