//! `/metrics`: valid Prometheus text whose counters follow allowed and denied requests.

mod support;

use std::collections::HashMap;

use serde_json::json;
use support::*;

/// Parses the text exposition into `series → value`, checking every line's shape.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty() || line.starts_with("# HELP ") || line.starts_with("# TYPE ") || line == "# EOF",
                "{line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        assert!(
            series[..name_end].chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        out.insert(series.to_owned(), value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}")));
    }
    assert!(text.trim_end().ends_with("# EOF"), "OpenMetrics text ends with # EOF");
    out
}

#[tokio::test]
async fn counters_follow_decisions() {
    let gw = TestGateway::start().await;
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let expired = rs256(&claims(json!({"exp": 1000, "ts_roles": ["reader"]})));
    for _ in 0..3 {
        assert_eq!(gw.send("GET", "/v1/users/1", Some(&reader)).await.status, 200);
    }
    assert_eq!(gw.send("DELETE", "/v1/users/1", Some(&reader)).await.status, 403);
    assert_eq!(gw.send("GET", "/v1/users/1", Some(&expired)).await.status, 401);
    assert_eq!(gw.send("GET", "/nope", Some(&reader)).await.status, 404);
    let m = parse(&gw.metrics.render());
    let get = |k: &str| m.get(k).copied().unwrap_or_else(|| panic!("missing {k} in {m:#?}"));
    assert_eq!(get(r#"rolegate_requests_total{route="read users",decision="allow",status="200"}"#), 3.0);
    assert_eq!(get(r#"rolegate_requests_total{route="delete users",decision="deny_403",status="403"}"#), 1.0);
    assert_eq!(get(r#"rolegate_requests_total{route="read users",decision="deny_401",status="401"}"#), 1.0);
    assert_eq!(get(r#"rolegate_requests_total{route="(none)",decision="no_route",status="404"}"#), 1.0);
    assert_eq!(get(r#"rolegate_token_failures_total{reason="expired"}"#), 1.0);
    // Durations by route: the 401 was on "read users" too.
    assert_eq!(get(r#"rolegate_request_duration_seconds_count{route="read users"}"#), 4.0);
    assert_eq!(get(r#"rolegate_request_duration_seconds_count{route="delete users"}"#), 1.0);
    assert_eq!(get(r#"rolegate_gateway_duration_seconds_count{route="(none)"}"#), 1.0);
    assert!(get("rolegate_open_connections") >= 0.0);
}
