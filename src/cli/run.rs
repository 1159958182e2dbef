//! `rolegate run`: load, bind, serve; signals and reloads.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use arc_swap::ArcSwap;

use crate::config;
use crate::gateway::Gateway;
use crate::reload;
use crate::server::{self, ServeOptions};

/// How long `run` waits for remote key sets at start-up.
const STARTUP_KEY_WAIT: Duration = Duration::from_secs(10);

/// `rolegate run`: load (exit 1 on errors, before binding), bind, serve with
/// worker threads; this thread handles signals (SIGHUP reload, SIGTERM stop).
pub(super) fn run(path: &Path) -> anyhow::Result<ExitCode> {
    let snapshot = match config::load(path, None) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
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
    tracing::info!(routes = snapshot.routes.len(), issuers = snapshot.issuers.len(), workers, "route table loaded");
    snapshot.routes.warm(None, || true);
    let shared = Arc::new(ArcSwap::from_pointee(snapshot));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let gateway = Gateway::with_metrics(Arc::clone(&shared), Arc::clone(&metrics));
    let serving = std::thread::Builder::new()
        .name("rolegate-serve".into())
        .spawn(move || server::serve_workers(listener, gateway, opts, workers, stop_rx))?;
    let signals = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let reloader = reload::Reloader::with_metrics(Arc::clone(&shared), path.to_path_buf(), Arc::clone(&metrics));
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
    let admin_listener = match shared.load().server.admin_listen {
        Some(addr) => {
            let l = server::bind(addr).with_context(|| format!("cannot listen on {addr} (admin)"))?;
            l.set_nonblocking(true)?;
            println!("admin listening on {}", l.local_addr()?);
            Some(l)
        }
        None => None,
    };
    signals
        .block_on(async {
            // Remote key sets: fetched in the background; wait a bounded time for them.
            let snap = shared.load_full();
            snap.start_remote_keys(&tokio::runtime::Handle::current(), Some(&metrics));
            let deadline = tokio::time::Instant::now() + STARTUP_KEY_WAIT;
            while !snap.remote_keys_ready() && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            if !snap.remote_keys_ready() {
                tracing::warn!("some issuers have no keys yet; their tokens get 401 until a fetch succeeds");
            }
            drop(snap);
            if let Some(l) = admin_listener {
                match tokio::net::TcpListener::from_std(l) {
                    Ok(l) => drop(tokio::spawn(crate::admin::serve(l, Arc::clone(&admin)))),
                    Err(e) => tracing::error!(error = %e, "cannot serve the admin endpoints"),
                }
            }
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
            // Keep this runtime (admin endpoints: /readyz now 503) alive while workers drain.
            tokio::task::spawn_blocking(move || serving.join()).await
        })
        .map_err(|e| anyhow!("waiting for the workers: {e}"))?
        .map_err(|_| anyhow!("a worker thread panicked"))??;
    Ok(ExitCode::SUCCESS)
}
