//! `rolegate run`: load, bind, serve; signals and reloads.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;
use clap::Args;

use super::print_error;
use crate::config::{self, LoadOptions};
use crate::gateway::Gateway;
use crate::reload;
use crate::server::{self, ServeOptions};
use crate::snapshot::Snapshot;

#[derive(Debug, Default, Args)]
pub(super) struct RunArgs {
    /// Serve on ADDR instead of `[server] listen` (e.g. 0.0.0.0:8080 in a container).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Forward to URL (`http://host:port` of your API) instead of `[upstreams.default] url`.
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
}

/// After this long at start-up without keys for some issuer, say so (nothing waits for it).
const STARTUP_KEY_WARNING: Duration = Duration::from_secs(10);

/// `rolegate run`: load (exit 1 on errors, before binding), bind, serve with
/// worker threads; this thread handles signals (SIGHUP reload, SIGTERM stop).
///
/// Start-up, in order: the table is loaded (with `--listen` / `--upstream`
/// applied, and again on every reload); the gateway's listener is bound and
/// serves at once (`listening on ADDR`); the admin listener is bound and
/// answers at once (`admin listening on ADDR`: `/healthz` 200, `/readyz` 503
/// until every issuer with remote keys has some); the decision API's listener
/// (`[authz] listen`) is bound and served by worker threads of its own
/// (`authz listening on ADDR`); remote key sets are fetched
/// in the background. Nothing waits for the keys: until an issuer's first
/// fetch succeeds, its tokens are refused.
pub(super) fn run(path: &Path, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let options =
        LoadOptions { listen: args.listen, default_upstream: args.upstream.clone(), ..LoadOptions::default() };
    let snapshot = match config::load_with(path, None, &options) {
        Ok(s) => s,
        Err(errors) => {
            print_error(&errors);
            super::check::print_key_hints(path, &errors.to_string(), false);
            return Ok(ExitCode::FAILURE);
        }
    };
    for w in &snapshot.warnings {
        tracing::warn!("{w}");
    }
    let listener =
        server::bind(snapshot.server.listen).with_context(|| format!("cannot listen on {}", snapshot.server.listen))?;
    let bound = listener.local_addr()?;
    // TLS: the certificate sits in a slot that reloads refill, so renewals need no restart.
    let cert_slot = snapshot.tls_key.as_ref().map(|k| crate::tls::CertSlot::new((**k).clone()));
    let tls = match &cert_slot {
        Some(slot) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(Arc::clone(slot)).map_err(|e| anyhow!("TLS: {e}"))?,
        )),
        None => None,
    };
    let opts = ServeOptions { tls, ..ServeOptions::from_settings(&snapshot.server) };
    let workers = match snapshot.server.workers {
        0 => server::default_workers(),
        n => n,
    };
    log_startup(path, &snapshot);
    tracing::info!(listener = %bound, workers, tls = cert_slot.is_some(), "gateway listening");
    snapshot.routes.warm(None, || true);
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stop_rx_authz = stop_rx.clone();
    let mut authz_thread = None;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let gateway = Gateway::with_metrics(Arc::clone(&shared), Arc::clone(&metrics));
    let serving = std::thread::Builder::new()
        .name("rolegate-serve".into())
        .spawn(move || server::serve_workers(listener, gateway, opts, workers, stop_rx))?;
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reloader =
        reload::Reloader::with_options(Arc::clone(&shared), path.to_path_buf(), Some(Arc::clone(&metrics)), options);
    // Signal handlers first: a SIGTERM or SIGHUP right after the line below must not be lost.
    let (terminated, hangups) = {
        let _rt = signals.enter();
        (server::shutdown_signal(), reload::on_sighup(Arc::clone(&reloader)))
    };
    // Scripts and tests read the bound address from this line.
    println!("listening on {bound}");
    if let Some(slot) = cert_slot {
        reloader.serve_certificate_into(slot);
    }
    let admin = crate::admin::Admin::new(Arc::clone(&reloader), Arc::clone(&metrics));
    // The decision API: its own listener, served from the same snapshot slot
    // and metrics as the proxy, by worker threads of its own.
    let authz_listener = match shared.load().authz.clone() {
        Some(settings) => {
            let l = server::bind(settings.listen)
                .with_context(|| format!("cannot listen on {} (authz)", settings.listen))?;
            let authz_addr = l.local_addr()?;
            Some((l, authz_addr, settings))
        }
        None => None,
    };
    let admin_listener = match shared.load().server.admin_listen {
        Some(addr) => {
            let l = server::bind(addr).with_context(|| format!("cannot listen on {addr} (admin)"))?;
            l.set_nonblocking(true)?;
            let admin_addr = l.local_addr()?;
            Some((l, admin_addr))
        }
        None => None,
    };
    signals
        .block_on(async {
            // The admin endpoints answer from the moment the line saying so is printed.
            if let Some((l, admin_addr)) = admin_listener {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => {
                        drop(tokio::spawn(crate::admin::serve(l, Arc::clone(&admin))));
                        tracing::info!(listener = %admin_addr, "admin listening (/healthz, /readyz, /config, /metrics)");
                        println!("admin listening on {admin_addr}");
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serve the admin endpoints"),
                }
            }
            if let Some((l, authz_addr, settings)) = authz_listener {
                let authz = crate::authz::Authz::new(Gateway::with_metrics(Arc::clone(&shared), Arc::clone(&metrics)), settings);
                let opts = ServeOptions::from_settings(&shared.load().server);
                let stop = stop_rx_authz;
                match std::thread::Builder::new()
                    .name("rolegate-authz".into())
                    .spawn(move || crate::authz::serve_workers(l, authz, opts, workers, stop))
                {
                    Ok(t) => {
                        authz_thread = Some(t);
                        tracing::info!(listener = %authz_addr, workers, "authz listening (decision API)");
                        println!("authz listening on {authz_addr}");
                    }
                    Err(e) => tracing::error!(error = %e, "cannot serve the decision API"),
                }
            }
            // Remote key sets: fetched in the background; /readyz is 503 until they are there.
            let snap = shared.load_full();
            snap.start_remote_keys(&tokio::runtime::Handle::current(), Some(&metrics));
            if !snap.remote_keys_ready() {
                let shared = Arc::clone(&shared);
                drop(tokio::spawn(async move {
                    tokio::time::sleep(STARTUP_KEY_WARNING).await;
                    let snap = shared.load();
                    let waiting: Vec<&str> = snap
                        .issuers
                        .iter()
                        .filter(|i| i.remote.as_ref().is_some_and(|r| !r.has_keys()))
                        .map(|i| i.name.as_str())
                        .collect();
                    if !waiting.is_empty() {
                        tracing::warn!(
                            issuers = ?waiting,
                            "no keys yet {STARTUP_KEY_WARNING:?} after start-up; their tokens are refused and /readyz is 503 until a fetch succeeds"
                        );
                    }
                }));
            }
            drop(snap);
            tokio::spawn(hangups);
            let _watch = match reload::watch(Arc::clone(&reloader)) {
                Ok(handle) => Some(handle),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch the route table's files; reload with SIGHUP");
                    None
                }
            };
            terminated.await;
            tracing::info!("stop requested");
            admin.set_stopping();
            let _ = stop_tx.send(true);
            // Keep this runtime (admin endpoints: /readyz now 503) alive while workers drain
            // (the decision API's as well as the proxy's).
            tokio::task::spawn_blocking(move || {
                if let Some(t) = authz_thread {
                    match t.join() {
                        Ok(Err(e)) => tracing::error!(error = %e, "the decision API stopped with an error"),
                        Err(_) => tracing::error!("a decision API thread panicked"),
                        Ok(Ok(())) => {}
                    }
                }
                serving.join()
            })
            .await
        })
        .map_err(|e| anyhow!("waiting for the workers: {e}"))?
        .map_err(|_| anyhow!("a worker thread panicked"))??;
    Ok(ExitCode::SUCCESS)
}

/// The start-up log: the table and where it came from, each upstream, each
/// issuer with where its keys come from and how many it has now.
fn log_startup(path: &Path, snapshot: &Snapshot) {
    tracing::info!(
        config = %path.display(),
        routes = snapshot.routes.len(),
        issuers = snapshot.issuers.len(),
        "route table loaded"
    );
    for (name, upstream) in &snapshot.upstreams {
        tracing::info!(name = %name, url = %upstream.url, "upstream");
    }
    let sources = key_sources(path);
    let mut issuers: Vec<_> = snapshot.issuers.iter().collect();
    issuers.sort_by(|a, b| a.name.cmp(&b.name));
    for issuer in issuers {
        let source = sources.iter().find(|(iss, _)| *iss == issuer.name).map_or("-", |(_, s)| s.as_str());
        match &issuer.remote {
            Some(_) => tracing::info!(
                issuer = %issuer.name,
                source,
                keys = issuer.keys.len(),
                "issuer (remote keys: fetched in the background)"
            ),
            None => tracing::info!(issuer = %issuer.name, source, keys = issuer.keys.len(), "issuer"),
        }
    }
}

/// Each issuer's key sources as written in the table (`keys keys/a.pem`,
/// `jwks_url https://…`, …), read again from the file (start-up only).
fn key_sources(path: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let Ok(file) = config::parse(path, &text) else { return Vec::new() };
    file.issuers
        .iter()
        .map(|spec| {
            let s = spec.get_ref();
            let mut parts = Vec::new();
            if let Some(keys) = &s.keys {
                let files: Vec<&str> = keys.iter().map(|k| k.get_ref().pem_file.as_str()).collect();
                parts.push(format!("keys {}", files.join(", ")));
            }
            if let Some(f) = &s.jwks_file {
                parts.push(format!("jwks_file {}", f.get_ref()));
            }
            if let Some(v) = &s.secret_env {
                parts.push(format!("secret_env {}", v.get_ref()));
            }
            if let Some(u) = &s.jwks_url {
                parts.push(format!("jwks_url {}", u.get_ref()));
            }
            if let Some(u) = &s.discovery {
                parts.push(format!("discovery {}", u.get_ref()));
            }
            (s.issuer.clone(), parts.join(" + "))
        })
        .collect()
}
