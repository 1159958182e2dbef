//! Reloading the route table: build a complete new snapshot off the request
//! path and swap it in atomically; on any error keep serving the old one.
//! The only writer of the snapshot slot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::{self, ConfigErrors};
use crate::snapshot::Shared;

/// Reloads `path` into `shared`. Returns the new generation, or the errors
/// (the old snapshot stays in place).
pub fn reload(shared: &Shared, path: &Path) -> Result<u64, ConfigErrors> {
    let current = shared.load_full();
    match config::load(path, Some(&current)) {
        Ok(next) => {
            if next.server != current.server {
                tracing::warn!("[server] changed; listeners and server settings apply only after a restart");
            }
            for w in &next.warnings {
                tracing::warn!("{w}");
            }
            let generation = next.generation;
            shared.store(Arc::new(next));
            tracing::info!(generation, routes = shared.load().routes.len(), "route table reloaded");
            Ok(generation)
        }
        Err(errors) => {
            tracing::error!(%errors, "reload refused; the previous route table keeps serving");
            Err(errors)
        }
    }
}

/// Reloads on every SIGHUP, forever.
pub async fn on_sighup(shared: Shared, path: PathBuf) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reload by signal is off");
            return;
        };
        while hup.recv().await.is_some() {
            let (s, p) = (shared.clone(), path.clone());
            // Compiling may read key files and build large glob sets: keep it off the reactor.
            let _ = tokio::task::spawn_blocking(move || reload(&s, &p)).await;
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (shared, path);
    }
}
