//! The real binary, for the tests that run it (`tests/cli.rs`,
//! `tests/operator.rs`): run a command to its end, or start `run` / `demo`
//! and read its stdout and stderr lines as they come, under deadlines.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use super::*;

pub const BIN: &str = env!("CARGO_BIN_EXE_rolegate");

pub fn rolegate(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(BIN).args(args).env("RUST_LOG", "warn").output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn write_table(dir: &Path, upstream: &str, admin_role: &str) -> std::path::PathBuf {
    write_keys(dir);
    let text = binary_routes("admin_listen = \"127.0.0.1:0\"", upstream, admin_role);
    let path = dir.join("routes.toml");
    // Write then rename: a reader never sees a half-written file.
    let tmp = dir.join(".routes.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

/// Starts the binary and waits (with a deadline) for its `listening on ADDR` line.
/// A child process that is killed (and reaped) if a test fails before it exits.
pub struct Proc(Option<Child>);

impl Proc {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.0.as_ref().expect("running").id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    /// Waits (off the async runtime) for the process to exit.
    pub async fn exit_status(mut self) -> std::process::ExitStatus {
        let mut child = self.0.take().expect("running");
        tokio::task::spawn_blocking(move || child.wait().unwrap()).await.unwrap()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Stdout and stderr lines arrive on one channel.
pub fn spawn(args: &[&str]) -> (Proc, SocketAddr, mpsc::Receiver<String>) {
    spawn_logging(args, "warn")
}

pub fn spawn_logging(args: &[&str], rust_log: &str) -> (Proc, SocketAddr, mpsc::Receiver<String>) {
    let (proc, addr, rx, _) = spawn_keeping_lines(args, rust_log);
    (proc, addr, rx)
}

/// [`spawn_logging`], also returning the lines read before the listening line
/// (stdout and stderr are read apart: a log line written after it may come first).
pub fn spawn_keeping_lines(args: &[&str], rust_log: &str) -> (Proc, SocketAddr, mpsc::Receiver<String>, Vec<String>) {
    let mut proc = Proc(Some(
        Command::new(BIN)
            .args(args)
            .env("RUST_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let child = proc.0.as_mut().expect("just spawned");
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let pump = |reader: Box<dyn std::io::Read + Send>, tx: mpsc::Sender<String>| {
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    };
    pump(Box::new(stdout), tx.clone());
    pump(Box::new(stderr), tx);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut before = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no listening line in time ({e}); the binary printed {before:#?}"));
        if let Some(addr) = line.strip_prefix("listening on ") {
            return (proc, addr.parse().unwrap(), rx, before);
        }
        before.push(line);
    }
}

pub async fn get(addr: SocketAddr, path: &str, token: &str) -> u16 {
    let req = http::Request::get(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    send(req).await.status.as_u16()
}

/// Reads lines until one `matches` (10 s at most): (that line, every line before it).
pub fn wait_for_line(lines: &mpsc::Receiver<String>, matches: impl Fn(&str) -> bool) -> (String, Vec<String>) {
    let end = std::time::Instant::now() + Duration::from_secs(10);
    let mut before = Vec::new();
    loop {
        let left = end.saturating_duration_since(std::time::Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("no such line in time; got {before:#?}"));
        if matches(&line) {
            return (line, before);
        }
        before.push(line);
    }
}

/// The address of the `admin listening on ADDR` line.
pub fn admin_address(lines: &mpsc::Receiver<String>) -> SocketAddr {
    let (line, _) = wait_for_line(lines, |l| l.starts_with("admin listening on "));
    line["admin listening on ".len()..].parse().unwrap()
}

/// `GET http://addr{path}` with an optional `Accept`, answered within 2 s or `None`.
pub async fn get_within_2s(addr: SocketAddr, path: &str, accept: Option<&str>) -> Option<Reply> {
    let mut req = http::Request::get(format!("http://{addr}{path}"));
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::new())).unwrap();
    tokio::time::timeout(Duration::from_secs(2), send(req)).await.ok()
}

/// A minimal HTTP server on 127.0.0.1 (a thread per connection) answering
/// every request with 200 and `body`, or 503 while `body` is `None`; it
/// stops accepting when dropped.
pub struct FixedServer {
    pub addr: SocketAddr,
    pub body: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FixedServer {
    pub fn start(body: Option<String>) -> FixedServer {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let body = std::sync::Arc::new(std::sync::Mutex::new(body));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (b, s) = (std::sync::Arc::clone(&body), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let b = std::sync::Arc::clone(&b);
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let (status, text) = match b.lock().unwrap().clone() {
                        Some(text) => ("200 OK", text),
                        None => ("503 Service Unavailable", "down".to_owned()),
                    };
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                });
            }
        });
        FixedServer { addr, body, stop }
    }
}

impl Drop for FixedServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
