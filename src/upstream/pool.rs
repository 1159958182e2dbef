//! Idle keep-alive connections, per worker thread and upstream. A connection
//! is taken for one request and put back only after a response that ended
//! exactly, with nothing after it; when it is taken again, whatever arrived
//! on it meanwhile (the upstream's close, or bytes nobody asked for: a late
//! second response, a body after a HEAD, 204 or 304) is looked for first.

use std::sync::Mutex;

use super::http1::Conn;

/// Idle connections kept per upstream and worker; more are closed.
const MAX_IDLE: usize = 1024;

/// One list of idle connections per worker.
pub(super) struct Pools(Box<[Mutex<Vec<Conn>>]>);

impl Pools {
    pub(super) fn new(workers: usize) -> Pools {
        Pools((0..workers).map(|_| Mutex::new(Vec::new())).collect())
    }

    /// The most recently parked idle connection of `worker`.
    pub(super) fn pop(&self, worker: usize) -> Option<Conn> {
        lock(&self.0[worker]).pop()
    }

    /// Keeps an idle connection for reuse, unless the list already holds [`MAX_IDLE`].
    pub(super) fn park(&self, worker: usize, conn: Conn) {
        let mut idle = lock(&self.0[worker]);
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }
}

/// A pool list; a panic while holding the lock leaves a plain Vec: still usable.
fn lock<T>(list: &Mutex<Vec<T>>) -> std::sync::MutexGuard<'_, Vec<T>> {
    list.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
