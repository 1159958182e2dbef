//! The decision API in tests: rolegate's authz listener beside a
//! [`TestGateway`] (the same snapshot slot, metrics and echo upstream),
//! checks sent to it directly, and real nginx and Caddy started in front of
//! it with the configurations of `deploy/authz/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::Full;
use rolegate::authz::{self, Authz};
use rolegate::gateway::Gateway;
use rolegate::server::ServeOptions;
use tokio::net::TcpListener;

use super::{send, Reply, TestGateway, STANDARD_ROUTES};

/// The standard table with `[authz]` (port 0; `extra` lines go into it).
pub fn authz_routes(extra: &str) -> String {
    format!("{STANDARD_ROUTES}\n[authz]\nlisten = \"127.0.0.1:0\"\n{extra}\n")
}

/// A running decision endpoint; stops on drop.
pub struct AuthzServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<bool>>,
}

impl Drop for AuthzServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl AuthzServer {
    /// Serves `gw`'s table's `[authz]` on a port of its own.
    pub async fn start(gw: &TestGateway) -> AuthzServer {
        let snap = gw.shared.load();
        let settings = snap.authz.clone().expect("the test table has [authz]");
        let authz = Authz::new(Gateway::with_metrics(gw.shared.clone(), gw.metrics.clone()), settings);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let opts = ServeOptions {
            header_read_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            ..ServeOptions::from_settings(&snap.server)
        };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(authz::serve(listener, authz, opts, async {
            let _ = stopped.await;
        }));
        AuthzServer { addr, stop: Some(stop), task: Some(task) }
    }

    /// Sends one check: `target` is the check's own request target.
    pub async fn check(&self, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.addr, method, target, headers).await
    }
}

/// A request to `addr` with exactly these headers (a `host` among them replaces the URI's).
pub async fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b =
        Request::builder().method(Method::from_bytes(method.as_bytes()).unwrap()).uri(format!("http://{addr}{target}"));
    for (n, v) in headers {
        b = b.header(*n, *v);
    }
    send(b.body(Full::new(Bytes::new())).unwrap()).await
}

/// A proxy in front (nginx or Caddy), started for one test; killed on drop.
pub struct Front {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Front {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Front {
    /// What the proxy logged (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The program's path, looked up on `PATH` and in the sbin directories
/// (Debian installs nginx in `/usr/sbin`, outside a user's `PATH`). When it is
/// not there: under `CI`, a failure (`.ci/run` installs it); elsewhere a
/// `SKIPPED` line and `None`.
pub fn installed(program: &str) -> Option<PathBuf> {
    find_program(program, std::env::var_os("CI").is_some())
}

/// [`installed`], with whether this is CI given.
pub fn find_program(program: &str, ci: bool) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain(["/usr/sbin", "/usr/local/sbin", "/sbin"].map(PathBuf::from));
    for dir in dirs {
        let candidate = dir.join(program);
        if candidate.is_file() {
            return Some(candidate);
        }
    }
    if ci {
        panic!("{program} is not installed: bash .ci/run should have installed it (apt-get install -y nginx caddy)");
    }
    println!("SKIPPED: {program} not installed (bash .ci/run installs it)");
    None
}

/// A port free a moment ago on 127.0.0.1 (for a program that binds it itself).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A snippet of `deploy/authz/` with its example addresses replaced (each must be in it).
fn snippet(file: &str, replacements: &[(&str, String)]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/authz").join(file);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in replacements {
        assert!(text.contains(from), "{} no longer contains {from:?}", path.display());
        text = text.replace(from, to);
    }
    text
}

/// Waits (10 s at most) until the proxy accepts connections; fails with its log if it exits.
async fn wait_ready(front: &mut Front) {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if tokio::net::TcpStream::connect(front.addr).await.is_ok() {
            return;
        }
        if let Some(status) = front.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
            panic!("{} exited ({status}) during start-up:\n{}", front.name, front.log());
        }
        assert!(Instant::now() < end, "{} not listening on {} after 10 s:\n{}", front.name, front.addr, front.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// nginx with `deploy/authz/nginx.conf`, in front of `api`, asking `authz`.
pub async fn nginx(authz: SocketAddr, api: SocketAddr) -> Option<Front> {
    let program = installed("nginx")?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
    let port = free_port();
    let http = snippet(
        "nginx.conf",
        &[
            ("127.0.0.1:9191", authz.to_string()),
            ("127.0.0.1:9000", api.to_string()),
            ("listen 80;", format!("listen 127.0.0.1:{port};")),
        ],
    );
    // One process (no workers to outlive it), everything inside the temp dir.
    let conf = format!(
        "master_process off;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/error.log info;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n access_log off;\n client_body_temp_path {d}/tmp/body;\n proxy_temp_path {d}/tmp/proxy;\n \
         fastcgi_temp_path {d}/tmp/fastcgi;\n uwsgi_temp_path {d}/tmp/uwsgi;\n scgi_temp_path {d}/tmp/scgi;\n{http}\n}}\n"
    );
    let conf_path = dir.path().join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("error.log");
    let child = Command::new(program)
        .args(["-p", &d, "-e", &format!("{d}/error.log"), "-c"])
        .arg(&conf_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("stderr.log")).unwrap())
        .spawn()
        .unwrap();
    let mut front = Front { name: "nginx", addr: ([127, 0, 0, 1], port).into(), child: Some(child), log, _dir: dir };
    wait_ready(&mut front).await;
    Some(front)
}

/// Caddy with `deploy/authz/Caddyfile`, in front of `api`, asking `authz`.
pub async fn caddy(authz: SocketAddr, api: SocketAddr) -> Option<Front> {
    let program = installed("caddy")?;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let port = free_port();
    let site = snippet(
        "Caddyfile",
        &[
            ("127.0.0.1:9191", authz.to_string()),
            ("127.0.0.1:9000", api.to_string()),
            // Any Host (routes match on it), on loopback only.
            ("api.example.com {", format!("http://:{port} {{\n\tbind 127.0.0.1")),
        ],
    );
    let conf = format!("{{\n\tadmin off\n\tauto_https off\n\tstorage file_system {d}/data\n}}\n{site}");
    let conf_path = dir.path().join("Caddyfile");
    std::fs::write(&conf_path, conf).unwrap();
    let log = dir.path().join("caddy.log");
    let child = Command::new(program)
        .args(["run", "--adapter", "caddyfile", "--config"])
        .arg(&conf_path)
        .env("HOME", &d)
        .env("XDG_DATA_HOME", format!("{d}/data"))
        .env("XDG_CONFIG_HOME", format!("{d}/config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut front = Front { name: "caddy", addr: ([127, 0, 0, 1], port).into(), child: Some(child), log, _dir: dir };
    wait_ready(&mut front).await;
    Some(front)
}

/// The value of one series of `/metrics` (0 when it has none yet).
pub fn metric(gw: &TestGateway, series: &str) -> f64 {
    gw.metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |v| v.parse().unwrap())
}
