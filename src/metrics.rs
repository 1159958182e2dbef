//! Prometheus metrics (prometheus-client), exposed on the admin listener's
//! `/metrics`. Label sets are bounded: route *names* (from routes.toml), fixed
//! decision and reason codes, status codes — never paths or subjects.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Tells this set of metrics from others in the process (see [`Metrics::count_request`]).
    id: u64,
    requests: Family<RequestLabels, Counter>,
    /// Whole request, from the first byte of handling to the response head.
    pub request_duration: Histogram,
    /// The gateway's own part: request duration minus the wait for the upstream.
    pub gateway_duration: Histogram,
    pub token_failures: Family<ReasonLabels, Counter>,
    pub upstream_errors: Family<ReasonLabels, Counter>,
    /// `upstream_errors{reason="unsolicited_bytes"}`: bytes on an idle pooled upstream connection.
    pub unsolicited_bytes: Counter,
    /// `upstream_errors{reason="bytes_after_response"}`: bytes right after a response's framed end.
    pub bytes_after_response: Counter,
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
        // Made at once (at 0), and kept: the upstream exchange counts into them directly.
        let unsolicited_bytes = upstream_errors.get_or_create(&ReasonLabels { reason: "unsolicited_bytes" }).clone();
        let bytes_after_response =
            upstream_errors.get_or_create(&ReasonLabels { reason: "bytes_after_response" }).clone();
        static IDS: AtomicU64 = AtomicU64::new(0);
        Metrics {
            registry,
            id: IDS.fetch_add(1, Ordering::Relaxed),
            requests,
            request_duration,
            gateway_duration,
            token_failures,
            upstream_errors,
            unsolicited_bytes,
            bytes_after_response,
            reloads,
            jwks_fetches,
            open_connections,
        }
    }

    /// Counts one request in `requests`. The counter of a label set is found
    /// through a small per-thread table first, so that a request costs no
    /// lock and no SipHash of its labels (`Family::get_or_create` takes both).
    /// An entry holds the route name it was made for, so a name's address
    /// cannot be reused by another while the entry exists: the address
    /// comparison never mistakes one route for another.
    pub fn count_request(&self, labels: RequestLabels) {
        const SLOTS: usize = 64;
        type Slot = Option<(u64, RequestLabels, Counter)>;
        thread_local! {
            static COUNTERS: RefCell<Vec<Slot>> = RefCell::new(vec![None; SLOTS]);
        }
        let route = Arc::as_ptr(&labels.route).cast::<u8>() as usize;
        let slot = (route >> 4 ^ usize::from(labels.status) ^ labels.decision.len()) % SLOTS;
        COUNTERS.with_borrow_mut(|table| {
            if let Some((id, l, counter)) = &table[slot] {
                if *id == self.id
                    && Arc::ptr_eq(&l.route, &labels.route)
                    && l.status == labels.status
                    && l.decision == labels.decision
                {
                    counter.inc();
                    return;
                }
            }
            let counter = self.requests.get_or_create(&labels).clone();
            counter.inc();
            table[slot] = Some((self.id, labels, counter));
        });
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

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(route: &Arc<str>, decision: &'static str, status: u16) -> RequestLabels {
        RequestLabels { route: Arc::clone(route), decision, status }
    }

    fn count(m: &Metrics, route: &str, decision: &str, status: u16) -> u64 {
        let line = format!("rolegate_requests_total{{route=\"{route}\",decision=\"{decision}\",status=\"{status}\"}} ");
        m.render().lines().find_map(|l| l.strip_prefix(&line)).map_or(0, |n| n.parse().unwrap())
    }

    /// Each request lands on its own label set's counter and in its own
    /// metrics, whatever the per-thread table holds from before.
    #[test]
    fn requests_are_counted_under_their_own_labels() {
        let (a, b) = (Metrics::new(), Metrics::new());
        let users: Arc<str> = Arc::from("users");
        let other: Arc<str> = Arc::from("users"); // same name, another route (a reload)
        let admin: Arc<str> = Arc::from("admin");
        for _ in 0..3 {
            a.count_request(labels(&users, "allow", 200));
        }
        a.count_request(labels(&users, "deny_403", 403));
        a.count_request(labels(&admin, "allow", 200));
        a.count_request(labels(&other, "allow", 200));
        b.count_request(labels(&users, "allow", 200));
        assert_eq!(count(&a, "users", "allow", 200), 4);
        assert_eq!(count(&a, "users", "deny_403", 403), 1);
        assert_eq!(count(&a, "admin", "allow", 200), 1);
        assert_eq!(count(&b, "users", "allow", 200), 1);
        assert_eq!(count(&b, "admin", "allow", 200), 0);
        // Many label sets share the table's slots.
        let routes: Vec<Arc<str>> = (0..200).map(|i| Arc::from(format!("r{i}"))).collect();
        for round in 0..3 {
            for r in &routes {
                a.count_request(labels(r, "allow", 200 + round));
            }
        }
        for r in &routes {
            for round in 0..3 {
                assert_eq!(count(&a, r, "allow", 200 + round), 1, "{r}");
            }
        }
    }
}
