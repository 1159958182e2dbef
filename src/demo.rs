//! `rolegate demo`: the example `routes.toml` (embedded at build time) served
//! in front of a built-in echo upstream, with an ephemeral signing key, and
//! ready-to-paste `curl` lines showing allow and deny.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use serde_json::json;
use tokio::net::TcpListener;

use crate::config::{self, file::KeySpec};
use crate::echo::Echo;
use crate::gateway::Gateway;
use crate::mint::{self, Signer};
use crate::server::{self, ServeOptions};

/// The example route table shipped with rolegate.
pub const EXAMPLE_ROUTES: &str = include_str!("../routes.toml");

/// Starts the demo and serves until SIGTERM / Ctrl-C.
pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let echo =
        Echo::start(TcpListener::bind("127.0.0.1:0").await.map_err(|e| e.to_string())?).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("rolegate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let keys = crate::keygen::rsa()?;
    let pub_path = dir.join("idp.pub.pem");
    std::fs::write(&pub_path, &keys.public_pem).map_err(|e| e.to_string())?;

    let path = PathBuf::from("routes.toml (embedded)");
    let mut file = config::parse(&path, EXAMPLE_ROUTES).map_err(|e| e.to_string())?;
    file.server.listen = listen.to_string();
    if let Some(up) = file.upstreams.get_mut("default") {
        *up.get_mut().url.get_mut() = format!("http://{}", echo.addr);
    }
    let issuer = file.issuers.first_mut().ok_or("the example has no issuer")?.get_mut();
    let iss = issuer.issuer.clone();
    let aud = issuer.audiences.as_ref().and_then(|a| a.first().cloned()).unwrap_or_default();
    issuer.keys = Some(vec![toml::Spanned::new(
        0..0,
        KeySpec { kid: Some("demo".to_owned()), pem_file: pub_path.display().to_string() },
    )]);
    let snapshot = config::compile(file, &path, EXAMPLE_ROUTES, None).map_err(|e| e.to_string())?;
    let opts = ServeOptions::from_settings(&snapshot.server);
    let listener = TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let bound = listener.local_addr().map_err(|e| e.to_string())?;

    let signer = Signer::Pem(keys.private_pem.into_bytes());
    let token = |sub: &str, roles: &[&str], ttl: i64| {
        let claims = json!({"iss": iss, "aud": aud, "sub": sub, "tid": "acme", "ts_roles": roles});
        mint::sign(&signer, &claims, Some("demo"), Some(ttl))
    };
    let reader = token("reader-1", &["reader"], 3600)?;
    let manager = token("manager-1", &["manager"], 3600)?;
    let admin = token("admin-1", &["admin"], 3600)?;
    let expired = token("reader-1", &["reader"], -3600)?;
    // Before anything is printed: a Ctrl-C or SIGTERM right after must stop us cleanly.
    let stop = server::shutdown_signal();
    let base = format!("http://{bound}");
    println!("rolegate demo: gateway on {base}, echo upstream on {}, route table: the example routes.toml", echo.addr);
    println!("listening on {bound}");
    println!();
    println!("# a reader may read users (200):");
    println!("curl -i -H 'Authorization: Bearer {reader}' {base}/v1/users/7");
    println!("# ... but not delete them (403 insufficient_scope):");
    println!("curl -i -X DELETE -H 'Authorization: Bearer {reader}' {base}/v1/users/7");
    println!("# a manager may (200):");
    println!("curl -i -X DELETE -H 'Authorization: Bearer {manager}' {base}/v1/users/7");
    println!("# no token (401):");
    println!("curl -i {base}/v1/users/7");
    println!("# an expired token (401 invalid_token):");
    println!("curl -i -H 'Authorization: Bearer {expired}' {base}/v1/users/7");
    println!("# an admin of tenant acme (200), and of another tenant (403):");
    println!("curl -i -H 'Authorization: Bearer {admin}' {base}/v1/tenants/acme/settings");
    println!("curl -i -H 'Authorization: Bearer {admin}' {base}/v1/tenants/globex/settings");
    println!("# public docs need no token (200); unknown paths are denied (404):");
    println!("curl -i {base}/docs/intro");
    println!("curl -i -H 'Authorization: Bearer {admin}' {base}/v2/anything");
    println!();
    println!("Ctrl-C to stop.");
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    server::serve(listener, Gateway::new(shared), opts, stop).await;
    drop(echo);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
