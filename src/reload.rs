//! Reloading the route table: build a complete new snapshot off the request
//! path and swap it in atomically; on any error keep serving the old one.
//! The only writer of the snapshot slot.
//!
//! Triggers: SIGHUP (always reloads) and a file watcher on the directories of
//! `routes.toml` and of every key file it names. Watching directories rather
//! than files catches editors that save by rename, delete-and-recreate, and
//! Kubernetes ConfigMap updates (which swap a `..data` symlink). Bursts of
//! events are debounced into one reload; a reload whose inputs hash the same as
//! the serving snapshot's changes nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config::{self, ConfigErrors};
use crate::metrics::{Metrics, ResultLabels};
use crate::snapshot::{Shared, Snapshot};

/// Quiet time after the last file event before reloading.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A new snapshot of this generation is serving.
    Applied(u64),
    /// The inputs are byte-for-byte what is already serving.
    Unchanged,
    /// The file is invalid; the old snapshot keeps serving.
    Refused(ConfigErrors),
}

/// Counters and the last error, for `/config` and logs.
#[derive(Debug, Clone, Default)]
pub struct ReloadStatus {
    pub applied: u64,
    pub unchanged: u64,
    pub refused: u64,
    pub last_applied_at: Option<SystemTime>,
    /// When and why the last refused reload was refused (kept after later
    /// reloads: compare with `last_attempt` and the serving table's time).
    pub last_error: Option<(SystemTime, String)>,
    /// When the last reload was tried, and its outcome (`applied`, `unchanged`, `refused`).
    pub last_attempt: Option<(SystemTime, &'static str)>,
}

/// Reloads one routes file into one snapshot slot.
#[derive(Debug)]
pub struct Reloader {
    shared: Shared,
    path: PathBuf,
    status: Mutex<ReloadStatus>,
    metrics: Option<Arc<Metrics>>,
    /// The TLS certificate being served, refreshed from each applied snapshot.
    cert_slot: std::sync::OnceLock<Arc<crate::tls::CertSlot>>,
    /// The overrides every reload applies too (`run --listen`, `--upstream`).
    options: config::LoadOptions,
    /// The routes file's pieces as the last load parsed them: a reload parses
    /// only the pieces whose text changed (`config::load_reusing`).
    pieces: Mutex<config::ParsedPieces>,
}

impl Reloader {
    pub fn new(shared: Shared, path: PathBuf) -> Arc<Reloader> {
        Self::with_options(shared, path, None, config::LoadOptions::default())
    }

    /// A reloader that also counts its outcomes in `metrics`.
    pub fn with_metrics(shared: Shared, path: PathBuf, metrics: Arc<Metrics>) -> Arc<Reloader> {
        Self::with_options(shared, path, Some(metrics), config::LoadOptions::default())
    }

    /// A reloader that loads with `options` (the overrides the serving table was loaded with).
    pub fn with_options(
        shared: Shared,
        path: PathBuf,
        metrics: Option<Arc<Metrics>>,
        options: config::LoadOptions,
    ) -> Arc<Reloader> {
        Arc::new(Reloader {
            shared,
            path,
            status: Mutex::new(ReloadStatus::default()),
            metrics,
            cert_slot: std::sync::OnceLock::new(),
            options,
            pieces: Mutex::new(config::ParsedPieces::default()),
        })
    }

    /// From now on, each applied snapshot's `[server] tls` certificate replaces
    /// the one `slot` serves (new handshakes use it; open connections go on).
    pub fn serve_certificate_into(&self, slot: Arc<crate::tls::CertSlot>) {
        let _ = self.cert_slot.set(slot);
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn shared(&self) -> &Shared {
        &self.shared
    }

    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Whether the last reload tried was refused.
    fn last_refused(&self) -> bool {
        self.status.lock().is_ok_and(|s| s.last_attempt.is_some_and(|(_, outcome)| outcome == "refused"))
    }

    /// How many pieces the last load parsed the routes file in (0: parsed whole).
    pub fn parsed_pieces(&self) -> usize {
        self.pieces.lock().map_or(0, |p| p.len())
    }

    /// Compiles the file and swaps it in when valid. `force` applies it even
    /// when its inputs are unchanged (SIGHUP). Blocking: call off the reactor.
    pub fn reload(&self, force: bool) -> Outcome {
        let started = std::time::Instant::now();
        let current = self.shared.load_full();
        let loaded = {
            let pieces = self.pieces.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            config::load_reusing(&self.path, Some(&current), Some(&pieces), &self.options)
        };
        let loaded = loaded.map(|(next, pieces)| {
            *self.pieces.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = pieces;
            next
        });
        let outcome = match loaded {
            Ok(next) if !force && next.fingerprint == current.fingerprint => Outcome::Unchanged,
            Ok(next) => {
                if next.server != current.server {
                    tracing::warn!("[server] changed; listeners and server settings apply only after a restart");
                }
                if next.authz != current.authz {
                    tracing::warn!("[authz] changed; the decision API's settings apply only after a restart");
                }
                for w in &next.warnings {
                    tracing::warn!("{w}");
                }
                if let (Some(slot), Some(key)) = (self.cert_slot.get(), &next.tls_key) {
                    slot.replace((**key).clone());
                }
                let generation = next.generation;
                let routes = next.routes.len();
                self.shared.store(Arc::new(next));
                // From the start of reading the file to the new table serving.
                let took_ms = started.elapsed().as_millis() as u64;
                tracing::info!(generation, routes, took_ms, "route table reloaded");
                retire(Arc::clone(&current));
                Outcome::Applied(generation)
            }
            Err(errors) => Outcome::Refused(errors),
        };
        if let Some(m) = &self.metrics {
            let result = match &outcome {
                Outcome::Applied(_) => "applied",
                Outcome::Unchanged => "unchanged",
                Outcome::Refused(_) => "refused",
            };
            m.reloads.get_or_create(&ResultLabels { result }).inc();
        }
        if let Ok(mut s) = self.status.lock() {
            let result = match &outcome {
                Outcome::Applied(_) => "applied",
                Outcome::Unchanged => "unchanged",
                Outcome::Refused(_) => "refused",
            };
            s.last_attempt = Some((SystemTime::now(), result));
            match &outcome {
                Outcome::Applied(_) => {
                    s.applied += 1;
                    s.last_applied_at = Some(SystemTime::now());
                }
                Outcome::Unchanged => s.unchanged += 1,
                Outcome::Refused(e) => {
                    s.refused += 1;
                    s.last_error = Some((SystemTime::now(), e.to_string()));
                }
            }
        }
        // Logged after the status is updated, so that whoever reads the log line finds it on /config.
        if let Outcome::Refused(errors) = &outcome {
            tracing::error!(%errors, "reload refused; the previous route table keeps serving");
        }
        outcome
    }

    /// [`Reloader::reload`] on the blocking pool (at normal priority: the new
    /// table goes live within ~90 ms even on a saturated core), then the new
    /// snapshot's route index warmed up on a lowest-priority thread: requests
    /// run first and the warm-up takes the CPU they leave. A warm-up stops when
    /// its table is replaced before it is done (it would only keep that table
    /// in memory).
    pub async fn reload_async(self: &Arc<Self>, force: bool) -> Outcome {
        let me = Arc::clone(self);
        let replaced = self.shared.load_full();
        let outcome = tokio::task::spawn_blocking(move || crate::pace::paced(|| me.reload(force)))
            .await
            .unwrap_or(Outcome::Unchanged);
        if let Outcome::Applied(generation) = outcome {
            let snap = self.shared.load_full();
            snap.start_remote_keys(&tokio::runtime::Handle::current(), self.metrics.as_ref());
            let shared = Arc::clone(&self.shared);
            drop(in_background(move || {
                snap.routes.warm(Some(&replaced.routes), || shared.load().generation == generation)
            }));
        }
        outcome
    }
}

/// Runs `work` on a new thread at the lowest scheduling priority: `SCHED_IDLE`
/// (it runs only when no other thread wants the CPU, and a worker that wakes up
/// takes the CPU back at once), or nice 19 where that is refused. On Linux both
/// apply to this thread alone. Measured with a 10,000-route table reloaded
/// under full load on one core: at normal priority p99 went from 1.1 ms to
/// 37 ms; at nice 19, a warm-up still took the core for a few milliseconds at
/// a time (p99 ~4.6 ms for as long as it ran); see README "Performance".
fn in_background<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name("rolegate-reload".to_owned()).spawn(move || {
        lowest_priority();
        let _ = tx.send(work());
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a reload thread");
    }
    rx
}

/// Puts the calling thread under `SCHED_IDLE` (Linux), else at nice 19.
fn lowest_priority() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use thread_priority::{NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy};
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        let me = thread_priority::thread_native_id();
        match thread_priority::set_thread_priority_and_policy(me, ThreadPriority::Min, idle) {
            Ok(()) => return,
            Err(e) => tracing::debug!(error = ?e, "no SCHED_IDLE for the reload thread; nice 19 instead"),
        }
    }
    if let Err(e) = rustix::process::setpriority_process(None, 19) {
        tracing::debug!(error = %e, "cannot lower the reload thread's priority");
    }
}

/// Frees a replaced snapshot on a background thread once the requests still
/// using it are done. Otherwise the last request holding it would free it (a
/// 10,000-route table with its compiled globs takes tens of milliseconds to
/// free) on a worker, in front of the requests queued behind it.
fn retire(old: Arc<Snapshot>) {
    drop(in_background(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        // `old` here, `current` in `reload` (released as it returns), and in-flight requests.
        while Arc::strong_count(&old) > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(old);
    }));
}

/// Reloads on every SIGHUP, forever. The handler is installed when this is
/// called (inside a tokio runtime), so no SIGHUP after start-up is missed.
pub fn on_sighup(reloader: Arc<Reloader>) -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    async move {
        #[cfg(unix)]
        {
            let Ok(mut hup) = hup else {
                tracing::warn!("cannot listen for SIGHUP; reload by signal is off");
                return;
            };
            while hup.recv().await.is_some() {
                reloader.reload_async(true).await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = reloader;
        }
    }
}

/// A running file watcher; it stops when dropped.
pub struct WatchHandle {
    task: tokio::task::JoinHandle<()>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The directories to watch for a snapshot's inputs.
fn watch_dirs(inputs: &[PathBuf]) -> BTreeSet<PathBuf> {
    inputs
        .iter()
        .map(|p| match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect()
}

/// Whether a file event in a watched directory may change one of `inputs`:
/// it names one of their file names, or a name starting with `..` (the
/// kubelet's `..data` link and its timestamped directories), or no file at
/// all (the watcher lost events and asks for a rescan). Reads (our own
/// included) change nothing; nor do writes to other files in the same
/// directory, such as a log written next to `routes.toml`: they neither wake
/// the reloader nor hold its debounce open.
fn may_change(event: &notify::Event, inputs: &[PathBuf]) -> bool {
    if event.kind.is_access() {
        return false;
    }
    if event.paths.is_empty() || event.need_rescan() {
        return true;
    }
    event.paths.iter().filter_map(|p| p.file_name()).any(|name| {
        name.as_encoded_bytes().starts_with(b"..") || inputs.iter().any(|input| input.file_name() == Some(name))
    })
}

/// Watches the inputs of the serving snapshot and reloads when they change.
/// Must be called inside a tokio runtime.
pub fn watch(reloader: Arc<Reloader>) -> notify::Result<WatchHandle> {
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let watching = Arc::clone(&reloader);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // After a refused reload, the file that fixes it may be one the
        // serving table does not name yet (a key file the edit added).
        let relevant = match &event {
            Ok(e) => may_change(e, &watching.shared.load().inputs) || watching.last_refused(),
            Err(_) => true,
        };
        if relevant {
            let _ = tx.send(());
        }
    })?;
    let mut watched = BTreeSet::new();
    for dir in watch_dirs(&reloader.shared.load().inputs) {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        watched.insert(dir);
    }
    let task = tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait for a quiet period, absorbing the rest of the burst.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reloader.reload_async(false).await;
            // A reload may name new key files: watch their directories too.
            for dir in watch_dirs(&reloader.shared.load().inputs) {
                if !watched.contains(&dir) {
                    match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                        Ok(()) => {
                            watched.insert(dir);
                        }
                        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory"),
                    }
                }
            }
        }
    });
    Ok(WatchHandle { task })
}
