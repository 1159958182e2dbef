//! The serde mirror of `routes.toml`, one struct per SPEC section. No logic:
//! every semantic check lives in `compile.rs`. `Spanned` fields keep the byte
//! offset of a value so that errors can name its line.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use toml::Spanned;

/// rolegate route table (routes.toml).
#[derive(Debug, Clone, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutesFile {
    #[serde(default)]
    pub server: ServerSpec,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, UpstreamSpec>")]
    pub upstreams: BTreeMap<String, Spanned<UpstreamSpec>>,
    #[serde(default)]
    #[schemars(with = "Vec<IssuerSpec>")]
    pub issuers: Vec<Spanned<IssuerSpec>>,
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, RoleSpec>")]
    pub roles: BTreeMap<String, Spanned<RoleSpec>>,
    #[serde(default)]
    pub forward: ForwardSpec,
    #[serde(default)]
    pub defaults: DefaultsSpec,
    /// The decision API: authorization checks for a proxy in front (nginx, Caddy, Traefik, Envoy).
    #[serde(default)]
    pub authz: Option<AuthzSpec>,
    #[serde(default)]
    #[schemars(with = "Vec<RouteSpec>")]
    pub routes: Vec<Spanned<RouteSpec>>,
}

/// `[server]`: read at start only.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// Address to serve on ("0.0.0.0:8080" in a container).
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Serves /healthz, /readyz, /config, /metrics (never proxied).
    #[serde(default)]
    pub admin_listen: Option<String>,
    /// Serve HTTPS with this certificate chain and key (PEM); renewals are picked up without a restart.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// Peers (CIDRs or addresses) whose `X-Forwarded-*` headers are appended to.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
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
    /// Client header names containing `_`: "drop" (default), "reject" (400) or "allow".
    #[serde(default)]
    pub underscore_headers: UnderscoreSpec,
    /// Serve cleartext HTTP/2 with prior knowledge (h2c) on the plain listener too.
    #[serde(default)]
    pub h2c: bool,
    /// HTTP/2: streams a client may have open at once on one connection.
    #[serde(default = "default_h2_max_concurrent_streams")]
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: the largest header list a client may send (default: `max_header_bytes`).
    #[serde(default)]
    pub h2_max_header_list_size: Option<u32>,
    /// HTTP/2: client stream resets allowed per connection within 10 s; more closes the connection (rapid reset).
    #[serde(default = "default_h2_max_resets")]
    pub h2_max_resets: u32,
}

/// What happens to a client header whose name contains `_` (CGI/WSGI-style
/// frameworks read `X_Auth_Roles` and `X-Auth-Roles` as the same variable).
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnderscoreSpec {
    /// Removed before forwarding (nginx's default).
    #[default]
    Drop,
    /// The request is refused with 400.
    Reject,
    /// Forwarded (identity-namespace names are still removed).
    Allow,
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
            underscore_headers: UnderscoreSpec::default(),
            h2c: false,
            h2_max_concurrent_streams: default_h2_max_concurrent_streams(),
            h2_max_header_list_size: None,
            h2_max_resets: default_h2_max_resets(),
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSpec {
    /// Certificate chain (PEM), relative to routes.toml.
    pub cert: String,
    /// Private key (PEM), relative to routes.toml.
    pub key: String,
}

/// `[upstreams.NAME]`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpstreamSpec {
    /// `http://host:port` or `https://host:port`, without a path.
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    /// Connecting takes longer: 502.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// No response headers by then: 504.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// Extra CA certificates (PEM) trusted for an `https://` upstream.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// `Upgrade` protocols passed through to this upstream (default `["websocket"]`; `h2c` never).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub upgrades: Option<Spanned<Vec<String>>>,
    /// "http1", "h2c" (cleartext HTTP/2), "h2" (HTTP/2 over TLS) or "auto" (TLS, ALPN h2 then
    /// http/1.1); default: "http1" for http://, "auto" for https://.
    #[serde(default)]
    #[schemars(with = "Option<ProtocolSpec>")]
    pub protocol: Option<Spanned<ProtocolSpec>>,
}

/// How rolegate talks to an upstream.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ProtocolSpec {
    Http1,
    H2c,
    H2,
    Auto,
}

/// `[[issuers]]`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IssuerSpec {
    /// The exact `iss` value.
    pub issuer: String,
    /// When set, `aud` is required and must contain one of these.
    #[serde(default)]
    pub audiences: Option<Vec<String>>,
    /// A JWKS URL (https://, or http:// on loopback), refreshed per Cache-Control max-age.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_url: Option<Spanned<String>>,
    /// The issuer URL; its /.well-known/openid-configuration names the jwks_uri.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub discovery: Option<Spanned<String>>,
    /// Extra CA certificates (PEM) trusted for jwks_url / discovery.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// A JWKS document on disk.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub jwks_file: Option<Spanned<String>>,
    /// Public keys in PEM files (RSA, EC P-256/P-384, Ed25519).
    #[serde(default)]
    #[schemars(with = "Option<Vec<KeySpec>>")]
    pub keys: Option<Vec<Spanned<KeySpec>>>,
    /// Name of an environment variable holding an HMAC secret (HS256/384/512).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub secret_env: Option<Spanned<String>>,
    /// The token's `alg` must be one of these; `none` is never accepted.
    #[serde(default = "default_algorithms")]
    #[schemars(with = "Vec<String>")]
    pub algorithms: Spanned<Vec<String>>,
    /// Clock skew allowed for `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway_s")]
    pub leeway_s: u64,
    /// Sets a provider's claim names (roles_claim, permissions_claim, tenant_claim); keys set here win.
    #[serde(default)]
    #[schemars(with = "Option<PresetSpec>")]
    pub preset: Option<Spanned<String>>,
    /// Dotted claim path of the roles, or a list of paths whose values are united; a whole
    /// segment `{param}` is a route's path parameter selecting one key (`organization.{tenant}.roles`).
    /// Default: the preset's, else "roles".
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub roles_claim: Option<Spanned<OneOrMany>>,
    /// Dotted claim path of the permissions (`"scope"` reads a space-separated string), or a list;
    /// `{param}` as in roles_claim. Default: the preset's, else "permissions".
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub permissions_claim: Option<Spanned<OneOrMany>>,
    /// The claim that `$tenant` refers to. Default: the preset's, else "tid".
    #[serde(default)]
    pub tenant_claim: Option<String>,
    /// Roles given to a token whose roles claim is absent (for a path with a `{param}`: absent
    /// before it); a claim present but empty, or without the parameter's key, gives none.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub default_roles: Option<Spanned<Vec<String>>>,
    /// `false` accepts tokens without `exp`.
    #[serde(default = "default_true")]
    pub require_exp: bool,
    /// When set, the token header's `typ` must be one of these (case-insensitive,
    /// `application/` prefix allowed), e.g. `["at+jwt"]` (RFC 9068).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub token_types: Option<Spanned<Vec<String>>>,
}

/// One entry of an issuer's `keys = [...]`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySpec {
    /// The `kid` a token names to pick this key.
    #[serde(default)]
    pub kid: Option<String>,
    /// Public key (SPKI / PKCS#1 PEM) or certificate, relative to routes.toml.
    pub pem_file: String,
}

/// `[roles.NAME]`
#[derive(Debug, Clone, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Permissions every holder of this role has.
    #[serde(default)]
    pub permissions: Vec<String>,
    /// Roles whose permissions and roles this role also has (transitively).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub includes: Vec<Spanned<String>>,
}

/// `[forward]`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForwardSpec {
    /// Keep the client's Authorization header for the upstream.
    #[serde(default = "default_true")]
    pub authorization: bool,
    /// Header name → "claim.path", "$roles", "$permissions" or "$tenant".
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, String>")]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// Globs of client header names removed on every route (names compared
    /// lower-case with `_` read as `-`). Default: the family of each identity
    /// header (`x-auth-subject` → `x-auth-*`).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub strip: Option<Spanned<Vec<String>>>,
    /// Method-override, URL-override and path-carrying forwarding headers
    /// (`x-http-method-override`, `x-original-url`, `x-forwarded-uri`, …) a
    /// client may still send to the upstream. Rarely right: `check` warns.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub keep_client_headers: Vec<Spanned<String>>,
}

impl Default for ForwardSpec {
    fn default() -> Self {
        ForwardSpec { authorization: true, headers: BTreeMap::new(), strip: None, keep_client_headers: Vec::new() }
    }
}

/// `[defaults]`
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSpec {
    /// No route matches: "deny" (404 no_route) or "authenticate" (any valid token goes to upstreams.default).
    #[serde(default)]
    pub unmatched: UnmatchedSpec,
    /// Verified-token cache size (about this many tokens of up to 1 KiB); 0 turns it off.
    #[serde(default = "default_token_cache")]
    pub token_cache: usize,
    /// Claims (dotted paths) recorded in the access-log line of each request with a
    /// verified token, so that `rolegate diff --replay` can replay real traffic.
    /// Never the token itself. Empty (the default): no claims are logged.
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub log_claims: Vec<Spanned<String>>,
}

impl Default for DefaultsSpec {
    fn default() -> Self {
        DefaultsSpec { unmatched: UnmatchedSpec::default(), token_cache: default_token_cache(), log_claims: Vec::new() }
    }
}

/// `[authz]`: the decision API, on a listener of its own. Read at start.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthzSpec {
    /// Address of the decision endpoint (never the proxy listener, never proxied).
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    /// Peers (CIDRs or addresses) whose checks are believed; default loopback only.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub trusted_peers: Option<Vec<Spanned<String>>>,
    /// Where an Envoy ext_authz HTTP check's path starts (its `path_prefix`).
    #[serde(default = "default_envoy_path_prefix")]
    #[schemars(with = "String")]
    pub envoy_path_prefix: Spanned<String>,
    /// Which proxy's headers name the original request: "auto" (any of them), "nginx", "forwarded" (Caddy, Traefik) or "envoy".
    #[serde(default)]
    pub dialect: DialectSpec,
}

/// How a check names the original request.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DialectSpec {
    /// Envoy's when the check's path starts with `envoy_path_prefix`, else nginx's or the forwarded one by the headers present.
    #[default]
    Auto,
    /// nginx `auth_request` and ingress-nginx: `X-Original-Method`, `X-Original-URI` / `X-Original-URL`.
    Nginx,
    /// Caddy `forward_auth`, Traefik `ForwardAuth`: `X-Forwarded-Method`, `X-Forwarded-Uri`, `X-Forwarded-Host`.
    Forwarded,
    /// Envoy `ext_authz` HTTP service: the check's own method and path after `envoy_path_prefix`.
    Envoy,
}

fn default_envoy_path_prefix() -> Spanned<String> {
    Spanned::new(0..0, "/ext_authz".to_owned())
}

/// What a request that no route matches gets.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnmatchedSpec {
    #[default]
    Deny,
    Authenticate,
}

/// Whether a route's denials are enforced or only reported.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    #[default]
    Enforce,
    Report,
}

// The requirement keys are repeated in `RequirementSpec` (for `any_of`) rather
// than flattened, so that unknown keys stay errors.
/// `[[routes]]`: the first match in file order wins; all given requirements must hold.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    /// For logs and `explain` (default: the path).
    #[serde(default)]
    pub name: Option<String>,
    /// HTTP methods, e.g. ["GET", "HEAD"]; omitted: any method.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub methods: Option<Vec<Spanned<String>>>,
    /// Glob on the Host header, case-insensitive, port ignored.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub host: Option<Spanned<String>>,
    /// Path glob: `*` one segment, `**` any segments, `?`, `{a,b}`, `{param}`.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// An [upstreams.NAME] (default: `default`).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub upstream: Option<Spanned<String>>,
    /// No token needed; any token is ignored.
    #[serde(default)]
    pub public: bool,
    /// "enforce", or "report": log a denial but forward anyway.
    #[serde(default)]
    pub mode: ModeSpec,
    /// `Upgrade` protocols passed through on this route (default: the upstream's, else `["websocket"]`; `h2c` never).
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub upgrades: Option<Spanned<Vec<String>>>,
    /// Every one of these effective permissions is required.
    #[serde(default)]
    pub all_permissions: Vec<String>,
    /// At least one of these effective permissions is required.
    #[serde(default)]
    pub any_permissions: Vec<String>,
    /// Every one of these effective roles is required.
    #[serde(default)]
    pub all_roles: Vec<String>,
    /// At least one of these effective roles is required.
    #[serde(default)]
    pub any_roles: Vec<String>,
    /// Claim (dotted path) → required value; "{param}" names a path parameter.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ClaimValue>")]
    pub claims: BTreeMap<String, Spanned<ClaimValue>>,
    /// Alternatives: at least one of these tables must hold.
    #[serde(default)]
    #[schemars(with = "Vec<RequirementSpec>")]
    pub any_of: Vec<Spanned<RequirementSpec>>,
    /// Claim path(s) of the roles on this route, instead of the issuer's `roles_claim`;
    /// a whole segment `{param}` names a parameter of this route's path (`organization.{tenant}.roles`).
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub roles_claim: Option<Spanned<OneOrMany>>,
    /// Claim path(s) of the permissions on this route, instead of the issuer's `permissions_claim`.
    #[serde(default)]
    #[schemars(with = "Option<OneOrMany>")]
    pub permissions_claim: Option<Spanned<OneOrMany>>,
}

impl RouteSpec {
    /// The same route with every span `by` bytes later (it was parsed from a
    /// piece of the file that starts `by` bytes in).
    pub(crate) fn moved(self, by: usize) -> RouteSpec {
        let RouteSpec {
            name,
            methods,
            host,
            path,
            upstream,
            public,
            mode,
            upgrades,
            all_permissions,
            any_permissions,
            all_roles,
            any_roles,
            claims,
            any_of,
            roles_claim,
            permissions_claim,
        } = self;
        let requirement =
            RequirementSpec { all_permissions, any_permissions, all_roles, any_roles, claims, any_of }.moved(by);
        RouteSpec {
            name,
            methods: methods.map(|m| m.into_iter().map(|m| moved(m, by, |v| v)).collect()),
            host: host.map(|h| moved(h, by, |v| v)),
            path: moved(path, by, |v| v),
            upstream: upstream.map(|u| moved(u, by, |v| v)),
            public,
            mode,
            upgrades: upgrades.map(|u| moved(u, by, |v| v)),
            all_permissions: requirement.all_permissions,
            any_permissions: requirement.any_permissions,
            all_roles: requirement.all_roles,
            any_roles: requirement.any_roles,
            claims: requirement.claims,
            any_of: requirement.any_of,
            roles_claim: roles_claim.map(|r| moved(r, by, |v| v)),
            permissions_claim: permissions_claim.map(|p| moved(p, by, |v| v)),
        }
    }
}

/// `s` with its span `by` bytes later and its value passed through `inner`
/// (a span of `0..0`, "no position", stays).
pub(crate) fn moved<T>(s: Spanned<T>, by: usize, inner: impl FnOnce(T) -> T) -> Spanned<T> {
    let span = s.span();
    let span = if span == (0..0) { span } else { span.start + by..span.end + by };
    Spanned::new(span, inner(s.into_inner()))
}

/// One alternative of `any_of`.
#[derive(Debug, Clone, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequirementSpec {
    /// Every one of these effective permissions is required.
    #[serde(default)]
    pub all_permissions: Vec<String>,
    /// At least one of these effective permissions is required.
    #[serde(default)]
    pub any_permissions: Vec<String>,
    /// Every one of these effective roles is required.
    #[serde(default)]
    pub all_roles: Vec<String>,
    /// At least one of these effective roles is required.
    #[serde(default)]
    pub any_roles: Vec<String>,
    /// Claim (dotted path) → required value; "{param}" names a path parameter.
    #[serde(default)]
    #[schemars(with = "BTreeMap<String, ClaimValue>")]
    pub claims: BTreeMap<String, Spanned<ClaimValue>>,
    /// Alternatives: at least one of these tables must hold.
    #[serde(default)]
    #[schemars(with = "Vec<RequirementSpec>")]
    pub any_of: Vec<Spanned<RequirementSpec>>,
}

impl RequirementSpec {
    fn moved(self, by: usize) -> RequirementSpec {
        let RequirementSpec { all_permissions, any_permissions, all_roles, any_roles, claims, any_of } = self;
        RequirementSpec {
            all_permissions,
            any_permissions,
            all_roles,
            any_roles,
            claims: claims.into_iter().map(|(k, v)| (k, moved(v, by, |v| v))).collect(),
            any_of: any_of.into_iter().map(|a| moved(a, by, |a| a.moved(by))).collect(),
        }
    }
}

/// The expected value of a claim: a string template (`"{tenant}"`), a number or a boolean.
#[derive(Debug, Clone, Deserialize, PartialEq, JsonSchema)]
#[serde(untagged)]
pub enum ClaimValue {
    String(String),
    Integer(i64),
    Bool(bool),
}

/// A claim path given as one string or as a list of paths whose values are united.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn as_slice(&self) -> &[String] {
        match self {
            OneOrMany::One(s) => std::slice::from_ref(s),
            OneOrMany::Many(v) => v,
        }
    }
}

// Only for the schema: the compiler reads `preset` as a string, to answer a
// typo with "did you mean".
/// A provider whose claim names `preset` sets (README: Presets).
#[allow(dead_code)]
#[derive(JsonSchema)]
#[serde(rename_all = "kebab-case")]
enum PresetSpec {
    /// Transmit Security (Mosaic) client tokens: ts_roles, ts_permissions, tid.
    Transmit,
    /// Transmit B2B ID tokens: role_values, ts_permissions, org_id.
    TransmitB2b,
    /// Auth0 with RBAC: roles (a custom claim an Action sets), permissions, org_id.
    Auth0,
    /// Keycloak: realm_access.roles, scope, organization.
    Keycloak,
    /// Wristband: roles, permissions, tnt_id.
    Wristband,
    /// Axinom Mosaic: tags (as roles), no permissions claim (name the service's: permissions.<service>), tenantId.
    Axinom,
}

/// The JSON Schema of `routes.toml` (printed by `rolegate schema`, committed as
/// `routes.schema.json` for editors). Draft 7, which TOML editors support best.
/// TOML has no null, so the `null` that `Option` fields get is removed: an
/// absent key is the only way to leave them unset.
pub fn schema() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let mut schema = generator.into_root_schema_for::<RoutesFile>().to_value();
    strip_null(&mut schema);
    let mut text = serde_json::to_string_pretty(&schema).expect("a schema serializes");
    text.push('\n');
    text
}

fn strip_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            if map.get("default") == Some(&Value::Null) {
                map.remove("default");
            }
            if let Some(Value::Array(alternatives)) = map.get_mut("anyOf") {
                alternatives.retain(|a| a.get("type").is_none_or(|t| t != "null"));
                if alternatives.len() == 1 {
                    let only = alternatives.pop().expect("one alternative");
                    map.remove("anyOf");
                    map.insert("allOf".to_owned(), Value::Array(vec![only]));
                }
            }
            if let Some(Value::Array(types)) = map.get_mut("type") {
                types.retain(|t| t != "null");
                if let [only] = types.as_slice() {
                    let only = only.clone();
                    map.insert("type".to_owned(), only);
                }
            }
            map.values_mut().for_each(strip_null);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_null),
        _ => {}
    }
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
fn default_h2_max_concurrent_streams() -> u32 {
    256
}
fn default_h2_max_resets() -> u32 {
    200
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
fn default_token_cache() -> usize {
    10_000
}
fn default_true() -> bool {
    true
}
