//! Prometheus metrics (prometheus-client), exposed on the admin listener's
//! `/metrics`. Label sets are bounded: route *names* (from routes.toml), fixed
//! decision and reason codes, status codes — never paths or subjects.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// One request's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Arc<str>,
    /// allow, report_only, deny_401, deny_403, no_route, bad_request, upstream_error
    pub decision: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    pub issuer: String,
    pub result: &'static str,
}

/// Every metric the gateway keeps.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    /// Whole request, from the first byte of handling to the response head.
    pub request_duration: Histogram,
    /// The gateway's own part: request duration minus the wait for the upstream.
    pub gateway_duration: Histogram,
    pub token_failures: Family<ReasonLabels, Counter>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    pub reloads: Family<ResultLabels, Counter>,
    /// Remote key set fetches by issuer and result (ok, error).
    pub jwks_fetches: Family<FetchLabels, Counter>,
    pub open_connections: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rolegate");
        let requests = Family::<RequestLabels, Counter>::default();
        // 10 µs .. ~10 s.
        let request_duration = Histogram::new(exponential_buckets(0.000_01, 2.5, 16));
        let gateway_duration = Histogram::new(exponential_buckets(0.000_001, 2.5, 14));
        let token_failures = Family::<ReasonLabels, Counter>::default();
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        let open_connections = Gauge::default();
        registry.register("requests", "Requests by route, decision and status", requests.clone());
        registry.register("request_duration_seconds", "Time to the response head", request_duration.clone());
        registry.register(
            "gateway_duration_seconds",
            "Time spent in the gateway itself (excluding the upstream)",
            gateway_duration.clone(),
        );
        registry.register("token_failures", "Refused tokens by reason", token_failures.clone());
        registry.register("upstream_errors", "Upstream failures by kind", upstream_errors.clone());
        registry.register("reloads", "Route table reloads by result", reloads.clone());
        registry.register("jwks_fetches", "Remote key set fetches by issuer and result", jwks_fetches.clone());
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        Metrics {
            registry,
            requests,
            request_duration,
            gateway_duration,
            token_failures,
            upstream_errors,
            reloads,
            jwks_fetches,
            open_connections,
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
