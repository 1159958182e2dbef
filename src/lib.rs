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
//! per request (gateway::Gateway::handle, one snapshot for the whole request):
//!   normalize::normalize_request   request target → Target        400 on ambiguity
//!   auth::extract                  headers → bearer token          400 on two Authorization headers
//!   routes::RouteTable::find       (method, host, path) → Route    404 when nothing matches
//!   auth::verify                   token → Identity                401 invalid_token / no token
//!   decide::decide                 Route + Identity → Permit       403 insufficient_scope
//!   upstream::forward              Permit → upstream response      502 / 504
//!   error::GatewayError::response  the one status/header/body mapping
//! ```

pub mod admin;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod decide;
pub mod demo;
pub mod echo;
pub mod error;
pub mod gateway;
pub mod h1;
pub mod headers;
pub mod keygen;
pub mod metrics;
pub mod mint;
pub mod normalize;
pub mod openapi;
mod pace;
pub mod reload;
pub mod routes;
pub mod server;
pub mod snapshot;
mod sock;
pub mod tls;
pub mod upstream;
