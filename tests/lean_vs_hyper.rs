//! The gateway serves plain requests with its own lean HTTP/1.1 server and
//! leaves everything else to hyper's. Differential property: for generated
//! request heads — odd targets, odd header names and values, repeats,
//! `Connection` lists, tokens — the lean server and hyper's give the same
//! answer and forward the same request. The hyper side is the same head plus
//! `Expect: 100-continue`, which the lean server always hands over (and which,
//! the gateway's to meet, never reaches the upstream).

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn method() -> impl Strategy<Value = String> {
    prop_oneof![
        10 => Just("GET".to_owned()),
        1 => Just("HEAD".to_owned()),
        1 => Just("DELETE".to_owned()),
        1 => Just("OPTIONS".to_owned()),
        1 => Just("get".to_owned()),
        1 => Just("PURGE".to_owned()),
        1 => Just("G@T".to_owned()),
    ]
}

fn target() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        4 => Just("docs".to_owned()),
        4 => Just("v1".to_owned()),
        4 => Just("users".to_owned()),
        4 => Just("7".to_owned()),
        1 => Just("..".to_owned()),
        1 => Just(".".to_owned()),
        1 => Just("%2e%2e".to_owned()),
        1 => Just("%2F".to_owned()),
        1 => Just("%41".to_owned()),
        1 => Just("a;b".to_owned()),
        1 => Just("é".to_owned()),
        1 => Just("".to_owned()),
        4 => "[a-z0-9_~-]{1,4}",
    ];
    (
        prop_oneof![
            6 => Just(String::new()),
            1 => Just("http://gw.test".to_owned()),
            1 => Just("http://elsewhere.test".to_owned()),
        ],
        prop_oneof![Just("docs"), Just("v1/users"), Just("v1/users/7"), Just("admin"), Just("x")],
        prop::collection::vec(segment, 0..4),
        prop_oneof![4 => Just(String::new()), 2 => Just("?q=1&r=%2F".to_owned()), 1 => Just("#frag".to_owned())],
    )
        .prop_map(|(authority, start, segments, tail)| {
            let rest: String = segments.iter().map(|s| format!("/{s}")).collect();
            format!("{authority}/{start}{rest}{tail}")
        })
}

fn header_line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just("Accept: */*".to_owned()),
        3 => Just("accept:   text/plain  ".to_owned()),
        3 => Just("X-Custom: a\tb".to_owned()),
        3 => Just("X-Obs: caf\u{e9}".to_owned()),
        3 => Just("X-Empty:".to_owned()),
        3 => Just("Connection: keep-alive".to_owned()),
        3 => Just("Connection: x-custom, keep-alive".to_owned()),
        3 => Just("Keep-Alive: timeout=5".to_owned()),
        3 => Just("X-Forwarded-For: 10.9.8.7".to_owned()),
        3 => Just("Forwarded: for=10.9.8.7".to_owned()),
        3 => Just("X-Auth-Subject: forged".to_owned()),
        1 => Just("Bad Name: x".to_owned()),
        1 => Just("X-Ctl: a\u{1}b".to_owned()),
        1 => Just(" Leading: space".to_owned()),
    ]
}

fn authorization(token: String) -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(format!("Authorization: Bearer {token}\r\n")),
        2 => Just(format!("authorization: bearer {token}\r\n")),
        2 => Just(String::new()),
        1 => Just("Authorization: Bearer not.a.token\r\n".to_owned()),
        1 => Just("Authorization: Basic dXNlcjpwYXNz\r\n".to_owned()),
        1 => Just(format!("Authorization: Bearer {token}\r\nAuthorization: Bearer {token}\r\n")),
    ]
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just("Host: gw.test\r\n".to_owned()),
        1 => Just("Host: GW.test:8080\r\n".to_owned()),
        1 => Just("Host: other.test\r\n".to_owned()),
        1 => Just(String::new()),
        1 => Just("Host: gw.test\r\nHost: other.test\r\n".to_owned()),
    ]
}

fn head(token: String) -> impl Strategy<Value = String> {
    (method(), target(), host(), authorization(token), prop::collection::vec(header_line(), 0..4)).prop_map(
        |(method, target, host, authorization, lines)| {
            let mut head = format!("{method} {target} HTTP/1.1\r\n{host}{authorization}");
            for line in lines {
                head.push_str(&line);
                head.push_str("\r\n");
            }
            head.push_str("X-Request-Id: same-id\r\nConnection: close\r\n");
            head
        },
    )
}

/// Sends one request on a fresh connection and reads until the gateway closes it.
async fn exchange(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await.expect("closed in time");
    String::from_utf8_lossy(&buf).into_owned()
}

fn without_date(text: &str) -> String {
    text.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("date:")).collect::<Vec<_>>().join("\r\n")
}

#[test]
fn the_lean_server_and_hyper_answer_and_forward_alike() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gw = rt.block_on(TestGateway::start());
    let token = rs256(&claims(serde_json::json!({ "ts_permissions": ["read:user"] })));
    // A fixed seed: the same 300 requests on every run.
    let config = ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() };
    let rng = proptest::test_runner::TestRng::deterministic_rng(proptest::test_runner::RngAlgorithm::ChaCha);
    let mut runner = proptest::test_runner::TestRunner::new_with_rng(config, rng);
    let (lean_served, allowed) = (std::cell::Cell::new(0), std::cell::Cell::new(0));
    runner
        .run(&head(token), |head| {
            let lean_request = format!("{head}\r\n");
            let hyper_request = format!("{head}Expect: 100-continue\r\n\r\n");
            let (lean, lean_saw, hyper, hyper_saw) = rt.block_on(async {
                let before = gw.upstream_saw().len();
                let lean = exchange(gw.addr, &lean_request).await;
                let lean_saw = gw.upstream_saw()[before..].to_vec();
                let before = gw.upstream_saw().len();
                let hyper = exchange(gw.addr, &hyper_request).await;
                (lean, lean_saw, hyper, gw.upstream_saw()[before..].to_vec())
            });
            if !lean.starts_with("HTTP/1.1 400") {
                lean_served.set(lean_served.get() + 1);
            }
            if !lean_saw.is_empty() {
                allowed.set(allowed.get() + 1);
            }
            prop_assert_eq!(without_date(&lean), without_date(&hyper), "request:\n{}", head);
            let seen = |saw: &[rolegate::echo::Seen]| format!("{saw:?}");
            prop_assert_eq!(seen(&lean_saw), seen(&hyper_saw), "request:\n{}", head);
            Ok(())
        })
        .unwrap();
    // The comparison means something only if many heads were valid requests
    // (the rest are 400s: hyper's, or the gateway's for ambiguous targets).
    let (served, allowed) = (lean_served.get(), allowed.get());
    assert!(served > 150 && allowed > 50, "of 300 generated requests, {served} were not 400s and {allowed} forwarded");
}
