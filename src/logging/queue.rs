//! The log queue: every log line (tracing's, and the access log's fast path)
//! is appended to one buffer, and the log thread writes what gathered to
//! stderr in one `write` at a time.
//!
//! Under load the log thread wakes at most once per [`GATHER`]: a line that
//! finds the buffer empty wakes it, and it then waits that long for more
//! before writing, so a write carries hundreds of lines (few system calls,
//! whole file blocks for the kernel to fill rather than partial ones to zero,
//! no context switch per line). Idle, it sleeps until the next line. Never
//! lossy: past [`MAX_PENDING`] bytes, loggers wait for the log thread.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How long the log thread gathers lines after the first one it wakes for.
pub const GATHER: Duration = Duration::from_millis(10);
/// Lines written at once, without waiting out [`GATHER`], once this much is pending.
const HIGH_WATER: usize = 256 * 1024;
/// Pending bytes past which loggers wait (a few thousand lines).
const MAX_PENDING: usize = 4 << 20;
/// How long dropping the guard waits for the queued lines to be written
/// (stderr may be a pipe nobody reads: the process still exits).
const FINAL_WRITE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The log thread waits for a first line.
    idle: bool,
    /// The guard was dropped: write what is left and end.
    closed: bool,
    /// The log thread has written everything and ended.
    done: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The log thread waits here: for a first line, then for [`GATHER`] or [`HIGH_WATER`].
    lines: Condvar,
    /// Loggers wait here while [`MAX_PENDING`] bytes are pending; the guard,
    /// for the log thread to end.
    room: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A handle that appends whole lines to the queue (cheap to clone).
#[derive(Clone)]
pub struct Queue(Arc<Shared>);

/// Ends the log thread when dropped, after it has written every queued line.
pub struct Guard {
    queue: Queue,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Queue {
    /// A queue and the thread that writes it to `out`.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(Queue, Guard)> {
        let queue = Queue(Arc::new(Shared {
            state: Mutex::new(State::default()),
            lines: Condvar::new(),
            room: Condvar::new(),
        }));
        let writer = queue.clone();
        let thread = std::thread::Builder::new().name("rolegate-log".into()).spawn(move || writer.run(out))?;
        Ok((queue.clone(), Guard { queue, thread: Some(thread) }))
    }

    /// Appends `line` (one or more whole lines).
    pub fn append(&self, line: &[u8]) {
        let shared = &self.0;
        let mut state = shared.lock();
        while state.pending.len() >= MAX_PENDING && !state.closed {
            state = shared.room.wait(state).unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.pending.len();
        state.pending.extend_from_slice(line);
        // Wake the log thread for a first line, and once enough is pending to
        // write without waiting out the gathering time.
        let wake = (before == 0 && state.idle) || (before < HIGH_WATER && state.pending.len() >= HIGH_WATER);
        drop(state);
        if wake {
            shared.lines.notify_one();
        }
    }

    /// The log thread: waits for lines, gathers, writes, until closed.
    fn run(self, mut out: impl Write) {
        let shared = &self.0;
        let mut batch = Vec::new();
        loop {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.closed {
                state.idle = true;
                state = shared.lines.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
            state.idle = false;
            if state.pending.is_empty() {
                // Closed, and everything written.
                state.done = true;
                drop(state);
                shared.room.notify_all();
                return;
            }
            if !state.closed && state.pending.len() < HIGH_WATER {
                state = shared
                    .lines
                    .wait_timeout_while(state, GATHER, |s| !s.closed && s.pending.len() < HIGH_WATER)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            std::mem::swap(&mut batch, &mut state.pending);
            drop(state);
            shared.room.notify_all();
            // Nothing to do about a failed write to stderr but go on.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > 2 * MAX_PENDING {
                batch = Vec::new();
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let shared = &self.queue.0;
        shared.lock().closed = true;
        shared.lines.notify_one();
        shared.room.notify_all();
        let state = shared.lock();
        let (state, _) =
            shared.room.wait_timeout_while(state, FINAL_WRITE, |s| !s.done).unwrap_or_else(PoisonError::into_inner);
        let done = state.done;
        drop(state);
        // A log thread stuck in a write is left behind, not waited for.
        if let (true, Some(thread)) = (done, self.thread.take()) {
            let _ = thread.join();
        }
    }
}

/// What tracing's formatter writes an event into: each event comes in one
/// `write_all` of its whole line.
impl Write for Queue {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.append(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Queue {
    type Writer = Queue;

    fn make_writer(&'a self) -> Queue {
        self.clone()
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A writer a test can read while another thread writes to it.
    #[derive(Clone, Default)]
    pub(in crate::logging) struct Sink(pub(in crate::logging) Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines from several threads arrive whole and each once; the guard
    /// writes what is still queued before it returns; more than the queue
    /// holds makes loggers wait, never lose lines.
    #[test]
    fn every_line_arrives_whole_once() {
        let sink = Sink::default();
        let (queue, guard) = Queue::start(sink.clone()).unwrap();
        let line_len = 300;
        let per_thread = MAX_PENDING / line_len; // four threads: four times what the queue holds
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let queue = queue.clone();
                std::thread::spawn(move || {
                    for i in 0..per_thread {
                        let mut line = format!("{t} {i} ").into_bytes();
                        line.resize(line_len - 1, b'x');
                        line.push(b'\n');
                        queue.append(&line);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        drop(guard);
        let written = sink.0.lock().unwrap().clone();
        let lines: Vec<&[u8]> = written.split(|b| *b == b'\n').filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 4 * per_thread);
        let mut seen = std::collections::HashSet::new();
        for line in lines {
            assert_eq!(line.len(), line_len - 1, "a line was cut or joined");
            let mut words = line.split(|b| *b == b' ');
            let key = (words.next().unwrap().to_vec(), words.next().unwrap().to_vec());
            assert!(seen.insert(key), "a line came twice");
        }
    }

    /// A writer that never returns (stderr a pipe nobody reads) holds the
    /// guard up for [`FINAL_WRITE`] at most: the process can still exit.
    #[test]
    fn a_stuck_writer_does_not_hold_up_the_exit() {
        struct Stuck(std::sync::mpsc::Receiver<()>);
        impl Write for Stuck {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                let _ = self.0.recv(); // until the test ends
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let (release, stuck) = std::sync::mpsc::channel();
        let (queue, guard) = Queue::start(Stuck(stuck)).unwrap();
        queue.append(b"a line nobody reads\n");
        let (dropped, returned) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(guard);
            let _ = dropped.send(());
        });
        // A deadline far past FINAL_WRITE: a loaded machine still makes it.
        let ended = returned.recv_timeout(Duration::from_secs(60));
        drop(release);
        assert!(ended.is_ok(), "dropping the guard waited for a write that never returns");
    }

    /// A single line is written without another one to push it out: after
    /// the gathering time, not held back until the next line or the end.
    #[test]
    fn a_lone_line_is_written_soon() {
        let sink = Sink::default();
        let (queue, _guard) = Queue::start(sink.clone()).unwrap();
        queue.append(b"only line\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while sink.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(&sink.0.lock().unwrap()[..], b"only line\n");
    }
}
