//! Shared by the benchmarks: realistic route tables of any size, written with
//! fresh keys into a temporary directory.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::PathBuf;

pub const ISS: &str = "https://idp.bench";

/// A table of `n` routes mixing literals, `*`, `**` and `{param}`; the last
/// route is `/v1/users/*` (GET, `users:read`), so lookups of `/v1/users/123`
/// walk past every other candidate.
pub fn routes_toml(n: usize) -> String {
    let mut t = String::from(
        r#"[server]
listen = "127.0.0.1:0"
[upstreams.default]
url = "http://127.0.0.1:9"
[[issuers]]
issuer = "https://idp.bench"
audiences = ["bench"]
keys = [{ kid = "rsa", pem_file = "rsa.pub.pem" }, { kid = "ec", pem_file = "ec.pub.pem" }]
algorithms = ["RS256", "ES256"]
roles_claim = "ts_roles"
permissions_claim = "ts_permissions"
[roles.reader]
permissions = ["users:read"]
"#,
    );
    for i in 0..n.saturating_sub(1) {
        let path = match i % 5 {
            0 => format!("/api/svc{i}/items"),
            1 => format!("/api/svc{i}/items/*"),
            2 => format!("/api/svc{i}/**"),
            3 => format!("/t/{{tenant}}/svc{i}/{{id}}"),
            _ => format!("/v{}/svc{i}/{{id}}/sub/*", i % 3),
        };
        let _ = write!(t, "\n[[routes]]\nname = \"r{i}\"\nmethods = [\"GET\", \"POST\"]\npath = \"{path}\"\nall_permissions = [\"p{i}\"]\n");
    }
    t.push_str("\n[[routes]]\nname = \"users\"\nmethods = [\"GET\"]\npath = \"/v1/users/*\"\nall_permissions = [\"users:read\"]\n");
    t
}

/// Keys and a routes file of `n` routes in a new temporary directory.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub rsa: rolegate::keygen::PemPair,
    pub ec: rolegate::keygen::PemPair,
}

pub fn fixture(n: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let rsa = rolegate::keygen::rsa().unwrap();
    let ec = rolegate::keygen::ec_p256().unwrap();
    std::fs::write(dir.path().join("rsa.pub.pem"), &rsa.public_pem).unwrap();
    std::fs::write(dir.path().join("ec.pub.pem"), &ec.public_pem).unwrap();
    let config = dir.path().join("routes.toml");
    std::fs::write(&config, routes_toml(n)).unwrap();
    Fixture { dir, config, rsa, ec }
}

/// [`fixture`] with the key pairs read from `dir` (`rsa.key`, `rsa.pub.pem`,
/// `ec.key`, `ec.pub.pem`) instead of generated.
pub fn fixture_with_keys(n: usize, dir: &std::path::Path) -> Fixture {
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    let pair = |private: &str, public: &str| rolegate::keygen::PemPair {
        private_pem: read(private),
        public_pem: read(public),
        public_jwk: serde_json::Value::Null,
    };
    let (rsa, ec) = (pair("rsa.key", "rsa.pub.pem"), pair("ec.key", "ec.pub.pem"));
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("rsa.pub.pem"), &rsa.public_pem).unwrap();
    std::fs::write(tmp.path().join("ec.pub.pem"), &ec.public_pem).unwrap();
    let config = tmp.path().join("routes.toml");
    std::fs::write(&config, routes_toml(n)).unwrap();
    Fixture { dir: tmp, config, rsa, ec }
}
