//! Criterion benchmarks of the request stages: normalize, route lookup at
//! 10 / 1,000 / 10,000 routes and on the table imported from GitHub's
//! OpenAPI description (1,223 operations), token verification (cached and
//! not), decide.
//! `cargo bench --bench hot_path`

mod common;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use http::Method;
use rolegate::auth::{self, TokenCache};
use rolegate::decide::{self, Auth};
use rolegate::mint::{self, Signer};
use rolegate::normalize;
use serde_json::json;

fn bench(c: &mut Criterion) {
    c.bench_function("normalize/plain", |b| b.iter(|| normalize::normalize(black_box("/v1/users/123"), None)));
    c.bench_function("normalize/dots_and_escapes", |b| {
        b.iter(|| normalize::normalize(black_box("/v1//x/../users/%31%32%33/./"), Some("a=b")))
    });

    for n in [10usize, 1_000, 10_000] {
        let fx = common::fixture(n);
        let snap = rolegate::config::load(&fx.config, None).unwrap();
        c.bench_function(&format!("find/{n}_routes/hit_last"), |b| {
            b.iter(|| snap.routes.find(&Method::GET, None, black_box("/v1/users/123")).is_some())
        });
        c.bench_function(&format!("find/{n}_routes/miss"), |b| {
            b.iter(|| snap.routes.find(&Method::GET, None, black_box("/nothing/here/at/all")).is_none())
        });
    }

    // The table `import openapi` makes of GitHub's REST API: every operation's
    // example path, looked up in turn (the mean per lookup).
    let gz = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/openapi/github-api.json.gz")).unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut text).unwrap();
    let doc = rolegate::openapi::Document::parse(&text, std::path::Path::new("github-api.json")).unwrap();
    let imported = rolegate::openapi::import(&doc, &rolegate::openapi::ImportOptions::default()).unwrap();
    let requests: Vec<(Method, String)> =
        imported.routes.iter().map(|r| (r.method.parse().unwrap(), r.example_path.clone())).collect();
    let table = &imported.table.routes;
    c.bench_function("find/github_openapi_1223_routes/each_operation", |b| {
        let mut i = 0;
        b.iter(|| {
            let (method, path) = &requests[i % requests.len()];
            i += 1;
            table.find(method, None, black_box(path)).is_some()
        })
    });

    let fx = common::fixture(10);
    let snap = rolegate::config::load(&fx.config, None).unwrap();
    let claims = json!({"iss": common::ISS, "aud": "bench", "sub": "u", "ts_roles": ["reader"],
                        "ts_permissions": ["a:1", "b:2", "c:3", "d:4", "e:5", "users:read", "f:6", "g:7"]});
    let rs =
        mint::sign(&Signer::Pem(fx.rsa.private_pem.clone().into_bytes()), &claims, Some("rsa"), Some(3600)).unwrap();
    let es = mint::sign(&Signer::Pem(fx.ec.private_pem.clone().into_bytes()), &claims, Some("ec"), Some(3600)).unwrap();
    let now = rolegate::auth::now_secs();
    c.bench_function("verify/rs256_uncached", |b| {
        b.iter(|| auth::verify(black_box(&rs), &snap.issuers, &snap.roles, now).unwrap())
    });
    c.bench_function("verify/es256_uncached", |b| {
        b.iter(|| auth::verify(black_box(&es), &snap.issuers, &snap.roles, now).unwrap())
    });
    let cache = TokenCache::new(1000);
    c.bench_function("verify/rs256_cached", |b| {
        b.iter(|| auth::verify_cached(black_box(rs.as_bytes()), &snap.issuers, &snap.roles, Some(&cache), now).unwrap())
    });

    let route = snap.routes.find(&Method::GET, None, "/v1/users/123").unwrap();
    let id = Arc::new(auth::verify(&rs, &snap.issuers, &snap.roles, now).unwrap());
    c.bench_function("decide/all_permissions", |b| {
        b.iter(|| decide::evaluate(route, black_box("/v1/users/123"), &Auth::Valid(Arc::clone(&id))).is_ok())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
