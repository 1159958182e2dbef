//! Route lookup never panics, and agrees with the plain first-match definition.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn snapshot() -> &'static rolegate::snapshot::Snapshot {
    static SNAP: OnceLock<rolegate::snapshot::Snapshot> = OnceLock::new();
    SNAP.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("rolegate-fuzz-routes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut text = String::from("[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n");
        for p in [
            "/**",
            "/a/**",
            "/a/*/c",
            "/a/{x}/d/**",
            "/v1/{a,b}/x",
            "/t/{tenant}/**",
            "/f?o",
            "/lit",
            "/lit/",
            "/z/**/y",
            "/s/*",
            "/p/{id}",
            "/a/b",
            // Parameters inside the index prefix.
            "/{x}/{y}/z",
            "/r/{o}/{r}/i",
            "/r/me/{r}/i",
            "/r/{o}/{r}/*",
        ] {
            for m in ["", "methods = [\"POST\"]\n"] {
                text.push_str(&format!("[[routes]]\npath = \"{p}\"\npublic = true\n{m}"));
            }
        }
        std::fs::write(dir.join("routes.toml"), text).unwrap();
        rolegate::config::load(&dir.join("routes.toml"), None).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let Ok(t) = rolegate::normalize::normalize(raw, None) else { return };
    let snap = snapshot();
    for method in [http::Method::GET, http::Method::POST] {
        let found = snap.routes.find(&method, None, t.path()).map(|r| r.index);
        let candidate = globset::Candidate::new(t.path());
        let reference = snap
            .routes
            .routes()
            .iter()
            .find(|r| r.accepts(&method, None) && r.pattern.is_match(&candidate))
            .map(|r| r.index);
        assert_eq!(found, reference, "{}", t.path());
    }
});
