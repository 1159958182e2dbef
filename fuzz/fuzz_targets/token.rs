//! The Authorization parser and the token verifier never panic on any input,
//! and never accept a token that the trusted key did not sign.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static rolegate::snapshot::Snapshot {
    static SNAP: OnceLock<rolegate::snapshot::Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rolegate-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pair = rolegate::keygen::ec_p256().unwrap();
        std::fs::write(dir.join("k.pem"), pair.public_pem).unwrap();
        let text = "[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n[[issuers]]\nissuer = \"i\"\nkeys = [{ kid = \"k\", pem_file = \"k.pem\" }]\nalgorithms = [\"ES256\", \"RS256\", \"HS256\"]\n";
        std::fs::write(dir.join("routes.toml"), text).unwrap();
        rolegate::config::load(&dir.join("routes.toml"), None).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let snap = snapshot();
    if let Ok(value) = http::HeaderValue::from_bytes(data) {
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        if let Ok(Some(token)) = rolegate::auth::extract(&headers) {
            // The fuzzer cannot produce a valid ES256 signature for a fresh random key.
            assert!(rolegate::auth::verify_cached(token, &snap.issuers, &snap.roles, None, 1_000).is_err());
        }
    }
});
