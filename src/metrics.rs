//! Prometheus metrics (prometheus-client), exposed on the admin listener's
//! `/metrics`, in the Prometheus text format 0.0.4 or in OpenMetrics, as the
//! scraper asks. Label sets are bounded: route *names* (from routes.toml),
//! fixed decision and reason codes, status codes — never paths or subjects.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// One request's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Arc<str>,
    /// allow, report_only, deny_401, deny_403, no_route, bad_request, upstream_error
    pub decision: &'static str,
    pub status: u16,
}

/// The route of a request's durations.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: Arc<str>,
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
    /// Whole request, from the first byte of handling to the response head, by route.
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    /// The gateway's own part: request duration minus the wait for the upstream, by route.
    gateway_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
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
    /// Decision-API checks refused before any stage ran, by reason
    /// (untrusted_peer, missing_original, conflicting_original, bad_original).
    pub authz_refused: Family<ReasonLabels, Counter>,
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

/// Upper bounds of `request_duration_seconds`, 10 µs to 10 s: written out
/// (1, 2.5, 5 per decade) so that the `le` labels are these exact decimals,
/// not the float noise of multiplied bounds (`0.006103515625000001`).
const REQUEST_BUCKETS: [f64; 19] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
];

/// Upper bounds of `gateway_duration_seconds`, 1 µs to 100 ms.
const GATEWAY_BUCKETS: [f64; 16] = [
    0.000001, 0.0000025, 0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
    0.025, 0.05, 0.1,
];

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

fn gateway_histogram() -> Histogram {
    Histogram::new(GATEWAY_BUCKETS)
}

/// The media type of the Prometheus text format 0.0.4.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// The media type of OpenMetrics text 1.0.0.
pub const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("rolegate");
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration = Family::new_with_constructor(request_histogram as fn() -> Histogram);
        let gateway_duration = Family::new_with_constructor(gateway_histogram as fn() -> Histogram);
        let token_failures = Family::<ReasonLabels, Counter>::default();
        let upstream_errors = Family::<ReasonLabels, Counter>::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let jwks_fetches = Family::<FetchLabels, Counter>::default();
        let open_connections = Gauge::default();
        let authz_refused = Family::<ReasonLabels, Counter>::default();
        registry.register("requests", "Requests by route, decision and status", requests.clone());
        registry.register("request_duration_seconds", "Time to the response head, by route", request_duration.clone());
        registry.register(
            "gateway_duration_seconds",
            "Time spent in the gateway itself (excluding the upstream), by route",
            gateway_duration.clone(),
        );
        registry.register("token_failures", "Refused tokens by reason", token_failures.clone());
        registry.register("upstream_errors", "Upstream failures by kind", upstream_errors.clone());
        registry.register("reloads", "Route table reloads by result", reloads.clone());
        registry.register("jwks_fetches", "Remote key set fetches by issuer and result", jwks_fetches.clone());
        registry.register("open_connections", "Client connections open now", open_connections.clone());
        registry.register(
            "authz_refused",
            "Decision API checks refused for who sent them or how they name the original request, by reason",
            authz_refused.clone(),
        );
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
            authz_refused,
        }
    }

    /// Records one request: counted in `requests` under `labels`, its
    /// duration (`total`) and the gateway's own part of it (`own`) in the
    /// route's histograms. The counter and the route's two histograms are
    /// found through a small per-thread table first, so that a request costs
    /// no lock and no SipHash of its labels (`Family::get_or_create` takes
    /// both). An entry holds the route name it was made for, so a name's
    /// address cannot be reused by another while the entry exists: the address
    /// comparison never mistakes one route for another.
    pub fn record_request(&self, labels: RequestLabels, total: Duration, own: Duration) {
        const SLOTS: usize = 64;
        type Slot = Option<(u64, RequestLabels, Handles)>;
        /// A label set's counter and its route's histograms.
        #[derive(Clone)]
        struct Handles {
            count: Counter,
            total: Histogram,
            own: Histogram,
        }
        thread_local! {
            static COUNTERS: RefCell<Vec<Slot>> = RefCell::new(vec![None; SLOTS]);
        }
        let (total, own) = (total.as_secs_f64(), own.as_secs_f64());
        let route = Arc::as_ptr(&labels.route).cast::<u8>() as usize;
        let slot = (route >> 4 ^ usize::from(labels.status) ^ labels.decision.len()) % SLOTS;
        COUNTERS.with_borrow_mut(|table| {
            if let Some((id, l, h)) = &table[slot] {
                if *id == self.id
                    && Arc::ptr_eq(&l.route, &labels.route)
                    && l.status == labels.status
                    && l.decision == labels.decision
                {
                    h.count.inc();
                    h.total.observe(total);
                    h.own.observe(own);
                    return;
                }
            }
            let route = RouteLabels { route: Arc::clone(&labels.route) };
            let h = Handles {
                count: self.requests.get_or_create(&labels).clone(),
                total: self.request_duration.get_or_create(&route).clone(),
                own: self.gateway_duration.get_or_create(&route).clone(),
            };
            h.count.inc();
            h.total.observe(total);
            h.own.observe(own);
            table[slot] = Some((self.id, labels, h));
        });
    }

    /// The OpenMetrics text exposition (what prometheus-client encodes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    /// The Prometheus text format 0.0.4 (for scrapers that ask for
    /// `text/plain`, or for nothing in particular), converted from
    /// [`Metrics::render`]: a counter family is named with its `_total`
    /// suffix in its `# HELP` and `# TYPE` lines, as its samples are; there is
    /// no `# UNIT` and no `# EOF`; `unknown` is `untyped`.
    pub fn render_prometheus(&self) -> String {
        to_prometheus_text(&self.render())
    }

    /// The exposition and its media type for a request's `Accept` header:
    /// OpenMetrics when the scraper prefers it (Prometheus asks for it first),
    /// else the 0.0.4 text format.
    pub fn render_for(&self, accept: Option<&str>) -> (&'static str, String) {
        if wants_openmetrics(accept.unwrap_or("")) {
            (OPENMETRICS_TEXT, self.render())
        } else {
            (PROMETHEUS_TEXT, self.render_prometheus())
        }
    }
}

/// Whether an `Accept` header prefers `application/openmetrics-text` to the
/// 0.0.4 text format (`text/plain`, `text/*`, `*/*`): its quality is the higher
/// of the two (OpenMetrics wins a tie). No header, or one naming neither: no.
fn wants_openmetrics(accept: &str) -> bool {
    let (mut openmetrics, mut text) = (0.0_f32, 0.0_f32);
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q =
            parts.filter_map(|p| p.trim().strip_prefix("q=")).find_map(|q| q.trim().parse::<f32>().ok()).unwrap_or(1.0);
        match media.as_str() {
            "application/openmetrics-text" => openmetrics = openmetrics.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    openmetrics > 0.0 && openmetrics >= text
}

/// OpenMetrics text (as prometheus-client writes it: `# HELP`, `# TYPE`,
/// optional `# UNIT`, then the samples of each family; `# EOF` last) to the
/// Prometheus text format 0.0.4.
fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            help = Some(rest);
            continue;
        }
        if let Some((name, kind)) = line.strip_prefix("# TYPE ").and_then(|rest| rest.split_once(' ')) {
            let (family, kind) = match kind {
                "counter" => (format!("{name}_total"), "counter"),
                "unknown" => (name.to_owned(), "untyped"),
                other => (name.to_owned(), other),
            };
            if let Some(text) = help.take().and_then(|h| h.strip_prefix(name)) {
                let _ = writeln!(out, "# HELP {family}{text}");
            }
            let _ = writeln!(out, "# TYPE {family} {kind}");
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(route: &Arc<str>, decision: &'static str, status: u16) -> RequestLabels {
        RequestLabels { route: Arc::clone(route), decision, status }
    }

    fn record(m: &Metrics, labels: RequestLabels) {
        m.record_request(labels, Duration::from_micros(300), Duration::from_micros(20));
    }

    fn value(text: &str, series: &str) -> u64 {
        let series = format!("{series} ");
        text.lines().find_map(|l| l.strip_prefix(&series)).map_or(0, |n| n.parse().unwrap())
    }

    fn count(m: &Metrics, route: &str, decision: &str, status: u16) -> u64 {
        value(
            &m.render(),
            &format!("rolegate_requests_total{{route=\"{route}\",decision=\"{decision}\",status=\"{status}\"}}"),
        )
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
            record(&a, labels(&users, "allow", 200));
        }
        record(&a, labels(&users, "deny_403", 403));
        record(&a, labels(&admin, "allow", 200));
        record(&a, labels(&other, "allow", 200));
        record(&b, labels(&users, "allow", 200));
        assert_eq!(count(&a, "users", "allow", 200), 4);
        assert_eq!(count(&a, "users", "deny_403", 403), 1);
        assert_eq!(count(&a, "admin", "allow", 200), 1);
        assert_eq!(count(&b, "users", "allow", 200), 1);
        assert_eq!(count(&b, "admin", "allow", 200), 0);
        // Many label sets share the table's slots.
        let routes: Vec<Arc<str>> = (0..200).map(|i| Arc::from(format!("r{i}"))).collect();
        for round in 0..3 {
            for r in &routes {
                record(&a, labels(r, "allow", 200 + round));
            }
        }
        for r in &routes {
            for round in 0..3 {
                assert_eq!(count(&a, r, "allow", 200 + round), 1, "{r}");
            }
        }
    }

    /// Durations land in their route's histograms (through the per-thread
    /// table as well as around it), with exactly the bounds written out.
    #[test]
    fn durations_carry_the_route_and_exact_bounds() {
        let m = Metrics::new();
        let (users, admin): (Arc<str>, Arc<str>) = (Arc::from("users"), Arc::from("admin"));
        for _ in 0..3 {
            m.record_request(labels(&users, "allow", 200), Duration::from_millis(3), Duration::from_micros(40));
        }
        m.record_request(labels(&users, "deny_403", 403), Duration::from_micros(30), Duration::from_micros(30));
        m.record_request(labels(&admin, "allow", 200), Duration::from_secs(20), Duration::from_micros(2));
        let text = m.render();
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_count{route="users"}"#), 4);
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_count{route="admin"}"#), 1);
        assert_eq!(value(&text, r#"rolegate_gateway_duration_seconds_count{route="users"}"#), 4);
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_bucket{le="0.0025",route="users"}"#), 1);
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_bucket{le="0.005",route="users"}"#), 4);
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_bucket{le="10.0",route="admin"}"#), 0);
        assert_eq!(value(&text, r#"rolegate_request_duration_seconds_bucket{le="+Inf",route="admin"}"#), 1);
        assert_eq!(value(&text, r#"rolegate_gateway_duration_seconds_bucket{le="0.00005",route="users"}"#), 4);
        // Every bound is one of the written-out decimals, as written: no float noise.
        let mut bounds: Vec<&str> = text.lines().filter_map(|l| l.split("le=\"").nth(1)?.split('"').next()).collect();
        bounds.sort_unstable();
        bounds.dedup();
        let mut all: Vec<f64> = REQUEST_BUCKETS.iter().chain(&GATEWAY_BUCKETS).copied().collect();
        all.sort_by(f64::total_cmp);
        all.dedup();
        assert_eq!(bounds.len(), all.len() + 1, "{bounds:?}");
        for b in bounds.iter().filter(|b| **b != "+Inf") {
            let v: f64 = b.parse().unwrap();
            assert!(REQUEST_BUCKETS.contains(&v) || GATEWAY_BUCKETS.contains(&v), "{b}");
            let digits = b.trim_start_matches(['0', '.']).trim_end_matches(".0").replace('.', "");
            assert!(digits.len() <= 2, "{b} is written with noise");
        }
    }

    /// The 0.0.4 text: counters named with `_total` in HELP and TYPE, every
    /// sample belongs to the family typed above it, no OpenMetrics-only lines.
    #[test]
    fn prometheus_text_format_is_the_classic_one() {
        let m = Metrics::new();
        record(&m, labels(&Arc::from("users"), "allow", 200));
        m.reloads.get_or_create(&ResultLabels { result: "applied" }).inc();
        m.open_connections.set(3);
        let text = m.render_prometheus();
        assert!(!text.contains("# EOF") && !text.contains("# UNIT"), "{text}");
        assert!(text.contains("# HELP rolegate_requests_total Requests by route, decision and status.\n"), "{text}");
        assert!(text.contains("# TYPE rolegate_requests_total counter\n"), "{text}");
        assert!(text.contains("# TYPE rolegate_request_duration_seconds histogram\n"), "{text}");
        assert!(text.contains("# TYPE rolegate_open_connections gauge\nrolegate_open_connections 3\n"), "{text}");
        assert!(text.contains("rolegate_reloads_total{result=\"applied\"} 1\n"), "{text}");
        let (mut family, mut kind) = (String::new(), String::new());
        let mut helped = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                helped.insert(rest.split(' ').next().unwrap().to_owned());
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (f, k) = rest.split_once(' ').unwrap();
                assert!(helped.contains(f), "HELP before TYPE for {f}");
                assert!(["counter", "gauge", "histogram", "summary", "untyped"].contains(&k), "{line}");
                (family, kind) = (f.to_owned(), k.to_owned());
            } else {
                assert!(!line.starts_with('#'), "{line}");
                let name = line.split(['{', ' ']).next().unwrap();
                let ok = match kind.as_str() {
                    "histogram" => ["_bucket", "_sum", "_count"].iter().any(|s| name == format!("{family}{s}")),
                    _ => name == family,
                };
                assert!(ok, "sample {name} under TYPE {family} {kind}");
            }
        }
    }

    #[test]
    fn the_scraper_gets_the_format_it_prefers() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert!(wants_openmetrics(prometheus));
        assert!(wants_openmetrics("application/openmetrics-text"));
        assert!(!wants_openmetrics(""));
        assert!(!wants_openmetrics("*/*"));
        assert!(!wants_openmetrics("text/plain;version=0.0.4"));
        assert!(!wants_openmetrics("text/plain, application/openmetrics-text;q=0.5"));
        assert!(!wants_openmetrics("application/openmetrics-text;q=0"));
        let m = Metrics::new();
        assert_eq!(m.render_for(None).0, PROMETHEUS_TEXT);
        assert_eq!(m.render_for(Some("text/plain")).0, PROMETHEUS_TEXT);
        let (kind, body) = m.render_for(Some(prometheus));
        assert_eq!(kind, OPENMETRICS_TEXT);
        assert!(body.ends_with("# EOF\n"));
    }
}
