//! rolegate: a reverse proxy that enforces role-based access control in front
//! of existing HTTP APIs, from JWT bearer tokens and a route table.
//!
//! A request flows through the modules in one direction:
//!
//! ```text
//! startup / reload:  routes.toml ─ config::parse ─ config::compile ─► Snapshot ─► ArcSwap (snapshot::Shared)
//!
//! per connection: server::serve → server/lean.rs (plain HTTP/1.1 requests without a body)
//!                 or hyper's server (everything else) → one Gateway::handle per request
//!
//! decision API:   authz::Authz::check (on `[authz] listen`): a proxy's check → the original
//!                 method, URI and host in its dialect → Gateway::authorize → 200 with the
//!                 identity headers, or the refusal → Gateway::finish; nothing is forwarded
//!
//! per request (gateway::Gateway::handle, one snapshot for the whole request):
//!   normalize::normalize_request   request target → Target        400 on ambiguity
//!   auth::extract                  headers → bearer token          400 on two Authorization headers
//!   routes::RouteTable::find       (method, host, path) → Route    404 when nothing matches
//!   auth::verify                   token → Identity                401 invalid_token / no token
//!   decide::decide                 Route + Identity → Permit       403 insufficient_scope
//!   headers::upstream_request      what reaches the upstream       (the client's headers rewritten)
//!   upstream::forward              Permit's Destination → response 502 / 504
//!   error::GatewayError::response  the one status/header/body mapping
//! ```
//!
//! The modules stand in layers, and each uses only those below it
//! (`tests/layering.rs` holds the code to this list):
//!
//! 1. entry points and tools: `cli` (one file per subcommand), `demo`,
//!    `admin`, `openapi` (import and coverage), `mint`, `reload` (watching and
//!    swapping the table), `config` (routes.toml → Snapshot; nothing on the
//!    request path uses it);
//! 2. serving: `authz` (the decision API: checks from a proxy in front, on
//!    a listener of its own, decided by the gateway's stages), `server`
//!    (listeners, the lean HTTP/1.1 server, hyper's for the rest), `gateway`
//!    (the pipeline above), `error` (refusals → responses), `snapshot` (the
//!    compiled world a request sees);
//! 3. the stages of a request: `headers` (what reaches the upstream),
//!    `decide`, `routes`, `auth`, `normalize`;
//! 4. connections and exchanges: `upstream` (pools, rolegate's own HTTP/1.1
//!    client; one place picks the exchange for an upstream);
//! 5. wire codecs, message types and plain helpers: `h1` (every HTTP/1.1
//!    framing rule, written once), `body` (a request's body), `logging`,
//!    `metrics`, `tls`, `sock`, `pace`, `keygen`, `echo`.

pub mod cli;
pub mod demo;
pub mod admin;
pub mod openapi;
pub mod mint;
pub mod reload;
pub mod config;

pub mod authz;
pub mod server;
pub mod gateway;
pub mod error;
pub mod snapshot;

pub mod headers;
pub mod decide;
pub mod routes;
pub mod auth;
pub mod normalize;

pub mod upstream;

pub mod h1;
pub mod body;
pub mod logging;
pub mod metrics;
pub mod tls;
mod sock;
mod pace;
pub mod keygen;
pub mod echo;
