//! Listeners and connections: accept on a bound `TcpListener`, hand each
//! request to [`Gateway::handle`], and shut down gracefully.
//!
//! A plain-TCP connection is served by the lean server (`server/lean.rs`)
//! until a request it does not take arrives, then by hyper's HTTP/1 server
//! for the rest of its life; a TLS connection by hyper-util's auto builder
//! (HTTP/1.1, or HTTP/2 when ALPN picks it).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::gateway::{Gateway, Writer};
use crate::headers::ClientConn;
use crate::sock::Listener;

mod lean;

pub use crate::body::RequestBody;

/// Drives one connection until it ends; on shutdown, or once it has been idle
/// for the idle timeout, asks it to finish gracefully (in-flight requests
/// complete). A macro because hyper's and hyper-util's connection types share
/// no trait for `graceful_shutdown`.
/// The HTTP/2 server settings of `[server]`, for h2c (hyper's builder) and
/// for HTTP/2 over TLS (hyper-util's auto builder): a macro, as the two
/// builders share no trait.
macro_rules! h2_settings {
    ($h2:expr, $opts:expr) => {
        $h2.timer(TokioTimer::new())
            .max_concurrent_streams($opts.h2_max_concurrent_streams)
            .max_header_list_size($opts.h2_max_header_list_size)
            // h2's own guards against streams reset before they are served,
            // and against streams the server itself has to reset.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
    };
}

macro_rules! drive {
    ($conn:expr, $stop:expr, $activity:expr, $idle:expr, $peer:expr) => {{
        let mut conn = std::pin::pin!($conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = stopped($stop) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            () = idle($activity, $idle) => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
            // Rapid reset (CVE-2023-44487): a client resetting streams faster
            // than `[server] h2_max_resets` allows is disconnected at once.
            () = $activity.flooded.notified() => {
                tracing::warn!(peer = %$peer, "HTTP/2 client reset streams too fast; connection closed");
                Ok(())
            }
        };
        if let Err(e) = result {
            tracing::debug!(error = %e, peer = %$peer, "connection ended with an error");
        }
    }};
}

/// Connection settings, from `[server]`.
#[derive(Clone)]
pub struct ServeOptions {
    pub header_read_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// TLS termination (`[server] tls`); plain HTTP when `None`.
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub max_header_bytes: usize,
    pub max_headers: usize,
    pub idle_timeout: Duration,
    /// Shared by every worker: one permit per open client connection.
    pub connections: Arc<tokio::sync::Semaphore>,
    /// `[server] h2c`: a plain connection that starts with the HTTP/2 preface is served as HTTP/2.
    pub h2c: bool,
    pub h2_max_concurrent_streams: u32,
    pub h2_max_header_list_size: u32,
    pub h2_max_resets: u32,
}

impl ServeOptions {
    /// Options from the snapshot's `[server]` settings (TLS is set by the caller).
    pub fn from_settings(s: &crate::snapshot::ServerSettings) -> ServeOptions {
        ServeOptions {
            header_read_timeout: s.header_read_timeout,
            shutdown_timeout: s.shutdown_timeout,
            tls: None,
            max_header_bytes: s.max_header_bytes,
            idle_timeout: s.idle_timeout,
            max_headers: s.max_headers,
            connections: Arc::new(tokio::sync::Semaphore::new(s.max_connections)),
            h2c: s.h2c,
            h2_max_concurrent_streams: s.h2_max_concurrent_streams,
            h2_max_header_list_size: s.h2_max_header_list_size,
            h2_max_resets: s.h2_max_resets,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("header_read_timeout", &self.header_read_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Serves `listener` until `shutdown` completes; then stops accepting and
/// lets in-flight requests finish for at most `shutdown_timeout`.
pub async fn serve(listener: TcpListener, gateway: Gateway, opts: ServeOptions, shutdown: impl Future<Output = ()>) {
    match listener.into_std().and_then(Listener::new) {
        Ok(listener) => {
            serve_until_drained(listener, gateway, opts, shutdown).await;
        }
        Err(e) => tracing::error!(error = %e, "cannot register the listener"),
    }
}

/// [`serve`], returning whether every connection finished in time. Logs its
/// shutdown at debug level, naming the listener and the thread
/// ([`serve_workers`] logs it once for all its workers, at info level).
async fn serve_until_drained(
    listener: Listener,
    gateway: Gateway,
    opts: ServeOptions,
    shutdown: impl Future<Output = ()>,
) -> bool {
    let gateway = Arc::new(gateway);
    let addr = listener.local_addr().map_or_else(|_| "-".to_owned(), |a| a.to_string());
    let nodelay_inherited = nodelay_on_listener(listener.get_ref());
    let worker = std::thread::current().name().unwrap_or("-").to_owned();
    // HTTP/1.1 (and 1.0) on plain TCP. hyper's http1 builder directly, rather
    // than the auto (h1/h2 sniffing) builder: measured cheaper per request.
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes)
        .max_headers(opts.max_headers);
    let builder = Arc::new(builder);
    let limits = Arc::new(lean::Limits {
        max_header_bytes: opts.max_header_bytes,
        max_headers: opts.max_headers,
        header_read_timeout: opts.header_read_timeout,
        idle_timeout: opts.idle_timeout,
        h2c: opts.h2c,
    });
    // On TLS, ALPN may pick h2: the auto builder serves either.
    let mut auto_builder = auto::Builder::new(TokioExecutor::new());
    auto_builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes)
        .max_headers(opts.max_headers);
    h2_settings!(auto_builder.http2(), opts);
    let auto_builder = Arc::new(auto_builder);
    // h2c with prior knowledge on the plain listener.
    let mut h2_builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2_settings!(h2_builder, opts);
    let h2_builder = Arc::new(h2_builder);
    let max_resets = opts.h2_max_resets;
    // Graceful shutdown: each connection task watches `stop` and holds a `drain`
    // sender; when every sender is gone, every connection has finished.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let (drain_tx, mut drain_rx) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // EMFILE and friends: back off a little instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over the connection limit: close at once rather than queue (the client may retry).
        let Ok(permit) = Arc::clone(&opts.connections).try_acquire_owned() else {
            tracing::warn!(%peer, "connection limit reached; connection closed");
            drop(stream);
            continue;
        };
        if !nodelay_inherited {
            let _ = stream.set_nodelay(true);
        }
        let gw = Arc::clone(&gateway);
        let open = gateway.metrics().open_connections.clone();
        open.inc();
        let client = Arc::new(ClientConn::new(peer, opts.tls.is_some()));
        let idle_timeout = opts.idle_timeout;
        let (mut stop, drain) = (stop_rx.clone(), drain_tx.clone());
        match &opts.tls {
            None => {
                let (builder, limits, h2_builder) =
                    (Arc::clone(&builder), Arc::clone(&limits), Arc::clone(&h2_builder));
                // Boxed before it is spawned: the task is then moved as a pointer,
                // not copied (kilobytes, several times) on every accept.
                tokio::spawn(Box::pin(async move {
                    // The lean server takes plain requests; hyper, from the first other one on.
                    match lean::serve(stream, &gw, &client, &limits, &stop).await {
                        // hyper's connection states are boxed: rare here, they would
                        // otherwise make every connection's task (allocated, and
                        // copied, on each accept) kilobytes larger.
                        lean::End::Handover(io) => {
                            Box::pin(async {
                                let activity = Arc::new(Activity::new(max_resets));
                                let service = hyper_service(gw, client, Arc::clone(&activity));
                                // With upgrades: a WebSocket (or other Upgrade) on an allowed route is passed through.
                                let conn = builder.serve_connection(TokioIo::new(io), service).with_upgrades();
                                drive!(conn, &mut stop, &activity, idle_timeout, peer);
                            })
                            .await;
                        }
                        lean::End::H2c(io) => {
                            Box::pin(async {
                                let activity = Arc::new(Activity::new(max_resets));
                                let service = hyper_service(gw, client, Arc::clone(&activity));
                                let conn = h2_builder.serve_connection(TokioIo::new(io), service);
                                drive!(conn, &mut stop, &activity, idle_timeout, peer);
                            })
                            .await;
                        }
                        lean::End::Closed => {}
                    }
                    open.dec();
                    drop((permit, drain));
                }));
            }
            Some(acceptor) => {
                let stream = match tokio::net::TcpStream::from_std(stream) {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, %peer, "cannot register the connection");
                        open.dec();
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let auto_builder = Arc::clone(&auto_builder);
                let handshake_timeout = opts.header_read_timeout;
                tokio::spawn(Box::pin(async move {
                    // The handshake counts against the header timeout (slow TLS clients too).
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let activity = Arc::new(Activity::new(max_resets));
                            let service = hyper_service(gw, client, Arc::clone(&activity));
                            // HTTP/2 when the client chose h2 by ALPN, HTTP/1.1 otherwise.
                            let conn =
                                auto_builder.serve_connection_with_upgrades(TokioIo::new(tls), service).into_owned();
                            drive!(conn, &mut stop, &activity, idle_timeout, peer);
                        }
                        Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                    open.dec();
                    drop((permit, drain));
                }));
            }
        }
    }
    drop(listener);
    tracing::debug!(listener = %addr, worker, "shutting down: waiting for in-flight requests");
    let _ = stop_tx.send(true);
    drop(drain_tx);
    match tokio::time::timeout(opts.shutdown_timeout, drain_rx.recv()).await {
        Ok(_) => {
            tracing::debug!(listener = %addr, worker, "all connections closed");
            true
        }
        Err(_) => {
            tracing::debug!(listener = %addr, worker, "shutdown deadline passed with requests still in flight");
            false
        }
    }
}

/// hyper's service for one connection: each request to [`Gateway::handle`].
fn hyper_service(
    gw: Arc<Gateway>,
    client: Arc<ClientConn>,
    seen: Arc<Activity>,
) -> impl hyper::service::Service<
    http::Request<Incoming>,
    Response = http::Response<crate::error::Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<crate::error::Body>, Infallible>> + Send,
> + Clone {
    service_fn(move |req: http::Request<Incoming>| {
        let gw = Arc::clone(&gw);
        let client = Arc::clone(&client);
        let seen = Arc::clone(&seen);
        async move {
            // Ends the request in `seen` however the future ends: dropped
            // before it completes, it was reset by the client (HTTP/2) or the
            // client went away, and it counts against the reset limit.
            let mut request = seen.begin();
            let resp = gw.handle(req.map(RequestBody::Hyper), &client, Writer::Hyper).await;
            // hyper writes the header map: no response may carry its fields elsewhere.
            debug_assert!(!matches!(resp.body(), http_body_util::Either::Left(b) if b.has_fields()));
            request.completed = true;
            Ok::<_, Infallible>(resp)
        }
    })
}

/// The window over which client stream resets are counted (`[server] h2_max_resets`).
pub const RESET_WINDOW: Duration = Duration::from_secs(10);

/// When a connection last started or finished a request, how many it is
/// handling now (for the keep-alive idle timeout), and how many of its
/// requests were dropped unfinished lately (for the rapid-reset limit).
#[derive(Debug)]
struct Activity {
    last: std::sync::atomic::AtomicU64,
    in_flight: std::sync::atomic::AtomicUsize,
    /// Requests dropped unfinished in the current window, and when it began.
    resets: std::sync::Mutex<(u32, u64)>,
    max_resets: u32,
    /// Told once the resets pass `max_resets` within [`RESET_WINDOW`].
    flooded: tokio::sync::Notify,
}

impl Activity {
    fn new(max_resets: u32) -> Activity {
        Activity {
            last: std::sync::atomic::AtomicU64::new(millis()),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            resets: std::sync::Mutex::new((0, millis())),
            max_resets,
            flooded: tokio::sync::Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        InFlight { activity: Arc::clone(self), completed: false }
    }

    fn reset(&self) {
        let now = millis();
        let mut resets = self.resets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if now.saturating_sub(resets.1) >= RESET_WINDOW.as_millis() as u64 {
            *resets = (0, now);
        }
        resets.0 += 1;
        if resets.0 > self.max_resets {
            self.flooded.notify_one();
        }
    }
}

/// One request of a connection served by hyper, until its future ends.
struct InFlight {
    activity: Arc<Activity>,
    completed: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.activity.last.store(millis(), std::sync::atomic::Ordering::Relaxed);
        self.activity.in_flight.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if !self.completed {
            self.activity.reset();
        }
    }
}

/// Milliseconds on a process-wide monotonic clock.
fn millis() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START.get_or_init(std::time::Instant::now).elapsed().as_millis() as u64
}

/// Resolves once the connection has had no request in flight for `timeout`
/// (checked a few times per timeout, not per request).
async fn idle(activity: &Activity, timeout: Duration) {
    let tick = (timeout / 4).max(Duration::from_millis(25));
    let limit = timeout.as_millis() as u64;
    loop {
        tokio::time::sleep(tick).await;
        let idle_for = millis().saturating_sub(activity.last.load(std::sync::atomic::Ordering::Relaxed));
        if activity.in_flight.load(std::sync::atomic::Ordering::Relaxed) == 0 && idle_for >= limit {
            return;
        }
    }
}

/// Resolves once shutdown has begun (the guard of the watch value is not kept).
pub(crate) async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Serves one listening socket with `workers` threads, each running its own
/// single-threaded tokio runtime that accepts from the shared socket and keeps
/// every connection it accepts (nginx's worker model: no cross-thread wake-ups
/// or work stealing on the request path). Returns when `shutdown` turns true
/// and every worker has drained.
pub fn serve_workers(
    listener: std::net::TcpListener,
    gateway: Gateway,
    opts: ServeOptions,
    workers: usize,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> std::io::Result<()> {
    let pool = Pool { thread: "rolegate-worker", prefix: "", work: "requests" };
    let timeout = opts.shutdown_timeout;
    run_workers(listener, workers, pool, timeout, shutdown, move |index, socket, stop| {
        crate::upstream::set_worker_index(index);
        async move { Ok(serve_until_drained(Listener::new(socket)?, gateway, opts, stop).await) }
    })
}

/// A pool of workers as its threads and log lines name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pool {
    /// Thread names: `{thread}-{index}`.
    pub thread: &'static str,
    /// Put before each of the pool's log lines (`""`, or `"authz: "`).
    pub prefix: &'static str,
    /// What its connections have in flight (`"requests"`, `"checks"`).
    pub work: &'static str,
}

/// Resolves once shutdown has begun: a worker's cue to stop accepting.
pub(crate) type Stop = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// Runs `workers` threads, each with its own single-threaded tokio runtime,
/// serving `listener` (a clone each) with the future `serve` makes from the
/// worker's index, its socket (non-blocking, to be registered on its runtime)
/// and its [`Stop`]; that future says whether the worker drained in time
/// (`Err`: the socket could not be registered). The first worker to see the
/// stop says so, once for the listener; returns when every worker is done.
pub(crate) fn run_workers<S, F>(
    listener: std::net::TcpListener,
    workers: usize,
    pool: Pool,
    timeout: Duration,
    shutdown: tokio::sync::watch::Receiver<bool>,
    serve: S,
) -> std::io::Result<()>
where
    S: FnOnce(usize, std::net::TcpListener, Stop) -> F + Clone + Send + 'static,
    F: Future<Output = std::io::Result<bool>>,
{
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let workers = workers.max(1);
    let announced = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut threads = Vec::with_capacity(workers);
    for index in 0..workers {
        let socket = listener.try_clone()?;
        let serve = serve.clone();
        let mut stop = shutdown.clone();
        let announced = Arc::clone(&announced);
        let thread = std::thread::Builder::new().name(format!("{}-{index}", pool.thread)).spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "{}cannot start a worker runtime", pool.prefix);
                    return true;
                }
            };
            let stop: Stop = Box::pin(async move {
                let _ = stop.wait_for(|s| *s).await;
                if !announced.swap(true, std::sync::atomic::Ordering::Relaxed) {
                    tracing::info!(
                        listener = %addr,
                        workers,
                        "{}shutting down: no new connections; waiting for in-flight {}",
                        pool.prefix,
                        pool.work
                    );
                }
            });
            rt.block_on(serve(index, socket, stop)).unwrap_or_else(|e| {
                tracing::error!(error = %e, "{}cannot register the listener", pool.prefix);
                true
            })
        })?;
        threads.push(thread);
    }
    drop(listener);
    let mut drained = true;
    for t in threads {
        drained &= t.join().unwrap_or(false);
    }
    if drained {
        tracing::info!(listener = %addr, "{}all connections closed", pool.prefix);
    } else {
        tracing::warn!(listener = %addr, ?timeout, "{}shutdown deadline passed with {} still in flight", pool.prefix, pool.work);
    }
    Ok(())
}

/// Sets `TCP_NODELAY` on a listening socket, where the sockets it accepts
/// inherit it (Linux): one system call for the listener instead of one per
/// accepted connection. Whether they do is checked in the tests below.
fn nodelay_on_listener(listener: &impl std::os::fd::AsFd) -> bool {
    cfg!(target_os = "linux") && socket2::SockRef::from(listener).set_tcp_nodelay(true).is_ok()
}

/// Binds a listening socket with a deep accept queue (load tests open many
/// connections at once; the OS default of 128 drops SYNs under bursts).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// The worker count for `[server] workers = 0`: one per CPU this process may run on.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Resolves on SIGTERM or Ctrl-C. The SIGTERM handler is installed when this
/// is called (inside a tokio runtime), not when first polled, so a signal sent
/// right after start-up is never lost to the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        {
            match term {
                Some(mut term) => {
                    tokio::select! {
                        _ = term.recv() => {},
                        _ = tokio::signal::ctrl_c() => {},
                    }
                }
                None => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Connections are served without Nagle's delay: on Linux through the
    /// listener (its accepted sockets inherit the option), elsewhere per connection.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let inherited = nodelay_on_listener(&listener);
        assert_eq!(inherited, cfg!(target_os = "linux"));
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert_eq!(accepted.nodelay().unwrap(), inherited);
    }
}
