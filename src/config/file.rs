//! The serde mirror of `routes.toml`, one struct per SPEC section. No logic:
//! every semantic check lives in `compile.rs`. `Spanned` fields keep the byte
//! offset of a value so that errors can name its line.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};
use toml::Spanned;

/// The whole file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSpec>>,
    #[serde(default)]
    pub issuers: Vec<Spanned<IssuerSpec>>,
    #[serde(default)]
    pub roles: BTreeMap<String, Spanned<RoleSpec>>,
    #[serde(default)]
    pub forward: ForwardSpec,
    #[serde(default)]
    pub defaults: DefaultsSpec,
    #[serde(default)]
    pub routes: Vec<Spanned<RouteSpec>>,
}

/// `[server]`: read at start only.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default)]
    pub admin_listen: Option<String>,
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-*` headers are appended to.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// How long in-flight requests may take to finish on SIGTERM.
    #[serde(default = "default_shutdown_timeout_ms")]
    pub shutdown_timeout_ms: u64,
    /// Worker threads, each with its own event loop; 0 = one per CPU.
    #[serde(default)]
    pub workers: usize,
    /// Largest request head (request line + headers) accepted; larger gets 431.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most header fields in one request; more gets 431.
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// A keep-alive connection with no request for this long is closed.
    #[serde(default = "default_idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Most client connections open at once; further ones are closed at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed for a client to send the request headers (slowloris guard).
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            listen: default_listen(),
            admin_listen: None,
            tls: None,
            trusted_proxies: Vec::new(),
            shutdown_timeout_ms: default_shutdown_timeout_ms(),
            workers: 0,
            max_header_bytes: default_max_header_bytes(),
            max_headers: default_max_headers(),
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout_ms(),
            header_read_timeout_ms: default_header_read_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    pub cert: String,
    pub key: String,
}

/// `[upstreams.NAME]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    pub url: Spanned<String>,
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra CA certificates (PEM) trusted for an `https://` upstream.
    #[serde(default)]
    pub ca_file: Option<String>,
}

/// `[[issuers]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    #[serde(default)]
    pub jwks_url: Option<Spanned<String>>,
    #[serde(default)]
    pub discovery: Option<Spanned<String>>,
    #[serde(default)]
    pub ca_file: Option<String>,
    #[serde(default)]
    pub jwks_file: Option<Spanned<String>>,
    #[serde(default)]
    pub keys: Option<Vec<Spanned<KeySpec>>>,
    #[serde(default)]
    pub secret_env: Option<Spanned<String>>,
    #[serde(default = "default_algorithms")]
    pub algorithms: Spanned<Vec<String>>,
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    #[serde(default = "default_roles_claim", deserialize_with = "one_or_many")]
    pub roles_claim: Vec<String>,
    #[serde(default = "default_permissions_claim", deserialize_with = "one_or_many")]
    pub permissions_claim: Vec<String>,
    #[serde(default = "default_tenant_claim")]
    pub tenant_claim: String,
    #[serde(default = "default_true")]
    pub require_exp: bool,
}

/// One entry of an issuer's `keys = [...]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    #[serde(default)]
    pub kid: Option<String>,
    pub pem_file: String,
}

/// `[roles.NAME]`
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default)]
    pub permissions: Vec<String>,
    #[serde(default)]
    pub includes: Vec<Spanned<String>>,
}

/// `[forward]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    #[serde(default = "default_true")]
    pub authorization: bool,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
}

impl Default for ForwardSpec {
    fn default() -> Self {
        ForwardSpec { authorization: true, headers: BTreeMap::new() }
    }
}

/// `[defaults]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    #[serde(default)]
    pub unmatched: UnmatchedSpec,
    /// Verified-token cache size (about this many tokens of up to 1 KiB); 0 turns it off.
    #[serde(default = "default_token_cache")]
    pub token_cache: usize,
}

impl Default for DefaultsSpec {
    fn default() -> Self {
        DefaultsSpec { unmatched: UnmatchedSpec::default(), token_cache: default_token_cache() }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedSpec {
    #[default]
    Deny,
    Authenticate,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    #[default]
    Enforce,
    Report,
}

/// `[[routes]]`. The requirement keys are repeated in [`RequirementSpec`]
/// (for `any_of`) rather than flattened, so that unknown keys stay errors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub methods: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub host: Option<Spanned<String>>,
    pub path: Spanned<String>,
    #[serde(default)]
    pub upstream: Option<Spanned<String>>,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub mode: ModeSpec,
    #[serde(default)]
    pub all_permissions: Vec<String>,
    #[serde(default)]
    pub any_permissions: Vec<String>,
    #[serde(default)]
    pub all_roles: Vec<String>,
    #[serde(default)]
    pub any_roles: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, Spanned<ClaimValue>>,
    #[serde(default)]
    pub any_of: Vec<Spanned<RequirementSpec>>,
}

/// One alternative of `any_of`.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RequirementSpec {
    #[serde(default)]
    pub all_permissions: Vec<String>,
    #[serde(default)]
    pub any_permissions: Vec<String>,
    #[serde(default)]
    pub all_roles: Vec<String>,
    #[serde(default)]
    pub any_roles: Vec<String>,
    #[serde(default)]
    pub claims: BTreeMap<String, Spanned<ClaimValue>>,
    #[serde(default)]
    pub any_of: Vec<Spanned<RequirementSpec>>,
}

/// The expected value of a claim: a string template (`"{tenant}"`), a number or a boolean.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ClaimValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_owned()
}
fn default_shutdown_timeout_ms() -> u64 {
    30_000
}
fn default_header_read_timeout_ms() -> u64 {
    10_000
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_headers() -> usize {
    100
}
fn default_idle_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_connect_timeout_ms() -> u64 {
    1_000
}
fn default_timeout_ms() -> u64 {
    30_000
}
fn default_algorithms() -> Spanned<Vec<String>> {
    Spanned::new(0..0, vec!["RS256".to_owned()])
}
fn default_leeway_s() -> u64 {
    30
}
fn default_roles_claim() -> Vec<String> {
    vec!["roles".to_owned()]
}
fn default_permissions_claim() -> Vec<String> {
    vec!["permissions".to_owned()]
}
fn default_tenant_claim() -> String {
    "tid".to_owned()
}
fn default_token_cache() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}
