//! The compiled world a request sees: immutable, built once per (re)load by
//! `config::compile`, shared through `ArcSwap`. No serde, no IO.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use ipnet::IpNet;

use crate::auth::claims::RoleClosure;
use crate::auth::{Issuers, TokenCache};
use crate::headers::ForwardPlan;
use crate::routes::{Route, RouteTable};
use crate::upstream::Upstream;

/// The snapshot slot: `reload` is its only writer, `gateway` its reader.
pub type Shared = Arc<ArcSwap<Snapshot>>;

/// `[server]`, compiled. Read at start; a reload that changes it only warns.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub admin_listen: Option<SocketAddr>,
    pub trusted_proxies: Vec<IpNet>,
    pub shutdown_timeout: Duration,
    pub header_read_timeout: Duration,
    /// Worker threads (`[server] workers`, 0 = one per CPU).
    pub workers: usize,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub max_connections: usize,
    pub idle_timeout: Duration,
    /// `[server] tls`: certificate and key files (PEM).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// `[server] h2c`: cleartext HTTP/2 with prior knowledge on the plain listener.
    pub h2c: bool,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    /// Client stream resets allowed per connection within [`crate::server::RESET_WINDOW`].
    pub h2_max_resets: u32,
}

/// `[authz]`, compiled: the decision API. Read at start; a reload that
/// changes it only warns.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthzSettings {
    pub listen: SocketAddr,
    /// Peers whose checks are believed (default: loopback).
    pub trusted_peers: Vec<IpNet>,
    /// The path an Envoy `ext_authz` check starts with, without a trailing `/`.
    pub envoy_path_prefix: Box<str>,
    pub dialect: Dialect,
}

/// Which proxy's headers name the original request of a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// Envoy's when the path starts with the prefix; else by the headers present.
    Auto,
    /// `X-Original-Method`, `X-Original-URI` / `X-Original-URL` (nginx, ingress-nginx).
    Nginx,
    /// `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host` (Caddy, Traefik).
    Forwarded,
    /// The check's own method and path after the prefix (Envoy `ext_authz`).
    Envoy,
}

impl Dialect {
    /// As written in routes.toml, and in the access log's `authz` field.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Auto => "auto",
            Dialect::Nginx => "nginx",
            Dialect::Forwarded => "forwarded",
            Dialect::Envoy => "envoy",
        }
    }
}

#[derive(Debug)]
pub struct Snapshot {
    /// 1 for the first load, +1 per successful reload.
    pub generation: u64,
    pub loaded_at: SystemTime,
    pub source: PathBuf,
    pub server: ServerSettings,
    /// `[authz]`, when the table has it.
    pub authz: Option<AuthzSettings>,
    pub routes: RouteTable,
    /// The route used when none matches and `[defaults] unmatched = "authenticate"`.
    pub unmatched: Option<Route>,
    pub issuers: Issuers,
    /// `[roles]`, shared with the routes that read roles at decision time.
    pub roles: Arc<RoleClosure>,
    pub forward: ForwardPlan,
    pub upstreams: BTreeMap<String, Arc<Upstream>>,
    /// The server certificate read from `[server] tls` for this snapshot.
    pub tls_key: Option<Arc<rustls::sign::CertifiedKey>>,
    /// `[defaults] log_claims`: claim paths recorded in the access log.
    pub log_claims: Vec<String>,
    /// Verified tokens of this snapshot (`None`: `[defaults] token_cache = 0`).
    pub token_cache: Option<TokenCache>,
    /// Every file this snapshot was built from: routes.toml first, then key files.
    pub inputs: Vec<PathBuf>,
    /// Hash of the inputs' contents: a reload whose inputs hash the same is skipped.
    pub fingerprint: u64,
    /// Non-fatal findings of the compiler (shown by `check`, logged at load).
    pub warnings: Vec<String>,
}

impl Snapshot {
    /// Starts the background fetching of every remote key set (once per set:
    /// sets carried over from an earlier snapshot are already running).
    pub fn start_remote_keys(&self, rt: &tokio::runtime::Handle, metrics: Option<&Arc<crate::metrics::Metrics>>) {
        for issuer in self.issuers.iter() {
            if let Some(remote) = &issuer.remote {
                remote.start_refresher(rt, metrics);
            }
        }
    }

    /// Whether every issuer with remote keys has some.
    pub fn remote_keys_ready(&self) -> bool {
        self.issuers.iter().all(|i| i.remote.as_ref().is_none_or(|r| r.has_keys()))
    }
}
