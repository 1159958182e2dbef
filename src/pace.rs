//! Pacing for a reload's compile, which shares the CPU with the requests.
//!
//! The compile of a large table runs on its own thread at normal priority, so
//! that it finishes fast even on a saturated core. Left alone, the scheduler
//! lets it run for a whole time slice (milliseconds) at a time, and every
//! request in flight waits that long at each of its turns on the CPU. Paced,
//! it offers the CPU to the other threads (`sched_yield`) after every [`TURN`]
//! of work, so requests wait about that long at most while it runs; after
//! [`FOR_AT_MOST`] it stops offering, so that a compile on a saturated core
//! still goes live soon.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// Work done between two offers of the CPU.
pub const TURN: Duration = Duration::from_micros(200);

/// How long into a compile it is paced.
pub const FOR_AT_MOST: Duration = Duration::from_millis(70);

thread_local! {
    /// (when pacing started, when this thread last offered the CPU); `None`: not paced.
    static PACE: Cell<Option<(Instant, Instant)>> = const { Cell::new(None) };
}

/// Runs `work` on this thread with pacing on.
pub fn paced<T>(work: impl FnOnce() -> T) -> T {
    struct Off;
    impl Drop for Off {
        fn drop(&mut self) {
            PACE.set(None);
        }
    }
    let now = Instant::now();
    PACE.set(Some((now, now)));
    let _off = Off;
    work()
}

/// Called between units of a compile's work: when pacing is on and a turn
/// has passed, offers the CPU to any other thread that wants it.
pub fn point() {
    let Some((started, last)) = PACE.get() else { return };
    let now = Instant::now();
    if now - last < TURN {
        return;
    }
    if now - started >= FOR_AT_MOST {
        PACE.set(None);
        return;
    }
    std::thread::yield_now();
    PACE.set(Some((started, Instant::now())));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_is_on_inside_paced_only_even_after_a_panic() {
        assert!(PACE.get().is_none());
        paced(|| assert!(PACE.get().is_some()));
        assert!(PACE.get().is_none());
        let _ = std::panic::catch_unwind(|| paced(|| panic!("compile failed")));
        assert!(PACE.get().is_none());
    }

    #[test]
    fn pacing_stops_after_its_time() {
        let before = Instant::now();
        paced(|| {
            while PACE.get().is_some() {
                point();
                assert!(before.elapsed() < FOR_AT_MOST * 20, "pacing did not stop");
            }
        });
        assert!(before.elapsed() >= FOR_AT_MOST, "pacing stopped early");
    }
}
