//! Hot reload: edits by rename, in place, and by ConfigMap symlink swap are
//! picked up by the watcher; invalid files change nothing; a reload storm under
//! keep-alive traffic drops nothing.

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rolegate::reload::{self, Outcome, Reloader};
use serde_json::json;
use support::*;

const DEADLINE: Duration = Duration::from_secs(10);

fn admin_token() -> String {
    rs256(&claims(json!({"ts_roles": ["admin"]})))
}

fn ops_token() -> String {
    rs256(&claims(json!({"ts_roles": ["ops"]})))
}

/// The gateway's current table with the admin route requiring `role`.
fn table_with_admin_role(gw: &TestGateway, role: &str) -> String {
    let text = std::fs::read_to_string(&gw.config).unwrap();
    let marker = "name = \"admin\"\npath = \"/admin/**\"\nall_roles = [";
    let start = text.find(marker).expect("admin route") + marker.len();
    let end = start + text[start..].find(']').unwrap();
    format!("{}\"{role}\"{}", &text[..start], &text[end..])
}

async fn status_of(gw: &TestGateway, token: &str) -> u16 {
    gw.send("GET", "/admin/x", Some(token)).await.status.as_u16()
}

async fn eventually(gw: &TestGateway, token: &str, want: u16) -> bool {
    wait_until(DEADLINE, || async { status_of(gw, token).await == want }).await
}

#[tokio::test]
async fn atomic_rename_is_picked_up() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    assert_eq!(status_of(&gw, &ops_token()).await, 403);
    let tmp = gw.dir.path().join(".routes.toml.swp");
    std::fs::write(&tmp, table_with_admin_role(&gw, "ops")).unwrap();
    std::fs::rename(&tmp, &gw.config).unwrap();
    assert!(eventually(&gw, &ops_token(), 200).await, "rename not picked up");
    assert_eq!(status_of(&gw, &admin_token()).await, 403);
    assert!(reloader.status().applied >= 1);
}

#[tokio::test]
async fn in_place_write_is_picked_up() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    std::fs::write(&gw.config, table_with_admin_role(&gw, "ops")).unwrap();
    assert!(eventually(&gw, &ops_token(), 200).await, "in-place write not picked up");
}

#[tokio::test]
async fn invalid_file_keeps_the_old_table_and_reports_the_line() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    let generation = gw.shared.load().generation;
    let full = table_with_admin_role(&gw, "ops");
    let broken = table_with_admin_role(&gw, "ops").replace("path = \"/admin/**\"", "path = \"/admin/**x\"");
    std::fs::write(&gw.config, broken).unwrap();
    assert!(wait_until(DEADLINE, || async { reloader.status().refused >= 1 }).await, "the refusal was not recorded");
    let status = reloader.status();
    let (_, message) = status.last_error.expect("last error kept");
    assert!(message.contains("routes.toml:") && message.contains("'**' must be a whole segment"), "{message}");
    assert_eq!(gw.shared.load().generation, generation);
    assert_eq!(status_of(&gw, &admin_token()).await, 200);
    assert_eq!(status_of(&gw, &ops_token()).await, 403);
    // Half-written files are refused the same way, then the complete write applies.
    std::fs::write(&gw.config, &full[..full.len() / 2]).unwrap();
    std::fs::write(&gw.config, &full).unwrap();
    assert!(eventually(&gw, &ops_token(), 200).await);
}

#[tokio::test]
async fn unchanged_inputs_do_not_swap_the_snapshot() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    assert_eq!(reloader.reload(false), Outcome::Unchanged);
    let generation = gw.shared.load().generation;
    assert!(matches!(reloader.reload(true), Outcome::Applied(g) if g == generation + 1));
}

#[tokio::test]
async fn key_file_rotation_is_picked_up() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    assert_eq!(status_of(&gw, &admin_token()).await, 200);
    // Replace the RSA public key with another one: tokens of the old key stop verifying.
    let other = rolegate::keygen::rsa().unwrap();
    std::fs::write(gw.dir.path().join("rsa.pub.pem"), &other.public_pem).unwrap();
    assert!(eventually(&gw, &admin_token(), 401).await, "key change not picked up");
}

/// Appends to a file next to `routes.toml` every 20 ms (a log written beside
/// the table, as `rolegate run 2>> rolegate.log` does) until dropped.
struct BusyFile {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BusyFile {
    fn beside(gw: &TestGateway) -> BusyFile {
        use std::io::Write as _;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let path = gw.dir.path().join("rolegate.log");
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut log = std::fs::OpenOptions::new().create(true).append(true).open(path).unwrap();
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                log.write_all(b"{\"message\":\"access\"}\n").unwrap();
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        BusyFile { stop, thread: Some(thread) }
    }
}

impl Drop for BusyFile {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.take().map(|t| t.join());
    }
}

#[tokio::test]
async fn a_file_written_beside_the_table_does_not_hold_an_edit_back() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    let _log = BusyFile::beside(&gw);
    // Its writes come faster than the debounce's quiet time: were they
    // events for the reloader, the edit would wait for the writes to stop.
    std::fs::write(&gw.config, table_with_admin_role(&gw, "ops")).unwrap();
    assert!(eventually(&gw, &ops_token(), 200).await, "edit held back by writes to another file");
    let applied = reloader.status().applied;
    // Nor do they start reloads of their own: none in a window of four
    // debounce periods of writes (an observation window, not a wait for
    // something to happen).
    let attempts = |s: reload::ReloadStatus| s.applied + s.unchanged + s.refused;
    let before = attempts(reloader.status());
    tokio::time::sleep(reload::DEBOUNCE * 4).await;
    assert_eq!(attempts(reloader.status()), before, "writes to another file caused reloads");
    assert_eq!(reloader.status().applied, applied);
}

#[tokio::test]
async fn after_a_refused_edit_the_key_file_it_names_is_picked_up() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    let text = std::fs::read_to_string(&gw.config).unwrap().replacen("\"rsa.pub.pem\"", "\"rsa2.pub.pem\"", 1);
    std::fs::write(&gw.config, text).unwrap();
    assert!(
        wait_until(DEADLINE, || async { reloader.status().refused >= 1 }).await,
        "an edit naming a missing key file was not refused"
    );
    // The serving table does not name rsa2.pub.pem; creating it must still reload.
    std::fs::copy(gw.dir.path().join("rsa.pub.pem"), gw.dir.path().join("rsa2.pub.pem")).unwrap();
    assert!(
        wait_until(DEADLINE, || async { reloader.status().applied >= 1 }).await,
        "the key file that fixes the refused edit was not picked up"
    );
    assert_eq!(status_of(&gw, &admin_token()).await, 200);
}

fn symlink(target: &str, link: &Path) {
    std::os::unix::fs::symlink(target, link).unwrap();
}

#[tokio::test]
async fn configmap_symlink_swap_is_picked_up() {
    let gw = TestGateway::start().await;
    // The layout the kubelet makes: files are links through `..data` to a timestamped directory.
    let cm = gw.dir.path().join("cm");
    let v1 = cm.join("..2026_11_22_v1");
    std::fs::create_dir_all(&v1).unwrap();
    write_keys(&v1);
    std::fs::write(v1.join("routes.toml"), std::fs::read_to_string(&gw.config).unwrap()).unwrap();
    symlink("..2026_11_22_v1", &cm.join("..data"));
    for f in ["routes.toml", "rsa.pub.pem", "ec.pub.pem"] {
        symlink(&format!("..data/{f}"), &cm.join(f));
    }
    let reloader = Reloader::new(Arc::clone(&gw.shared), cm.join("routes.toml"));
    assert!(matches!(reloader.reload(true), Outcome::Applied(_)));
    let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
    assert_eq!(status_of(&gw, &ops_token()).await, 403);

    // An update: a new directory, a new `..data_tmp` link renamed over `..data`.
    let v2 = cm.join("..2026_11_22_v2");
    std::fs::create_dir_all(&v2).unwrap();
    write_keys(&v2);
    std::fs::write(v2.join("routes.toml"), table_with_admin_role(&gw, "ops")).unwrap();
    symlink("..2026_11_22_v2", &cm.join("..data_tmp"));
    std::fs::rename(cm.join("..data_tmp"), cm.join("..data")).unwrap();
    std::fs::remove_dir_all(&v1).unwrap();
    assert!(eventually(&gw, &ops_token(), 200).await, "ConfigMap swap not picked up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_storm_under_keep_alive_load_drops_nothing() {
    let gw = Arc::new(TestGateway::start().await);
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let tables = [table_with_admin_role(&gw, "ops"), table_with_admin_role(&gw, "admin")];
    let reader = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (gw, reader, stop) = (Arc::clone(&gw), reader.clone(), Arc::clone(&stop));
        clients.push(tokio::spawn(async move {
            // One keep-alive connection per client task.
            let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http::<http_body_util::Full<bytes::Bytes>>();
            let (mut ok, mut other) = (0u32, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let req = http::Request::get(gw.url("/v1/users/7"))
                    .header("authorization", format!("Bearer {reader}"))
                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                    .unwrap();
                match client.request(req).await {
                    Ok(r) if r.status() == 200 => {
                        http_body_util::BodyExt::collect(r.into_body()).await.unwrap();
                        ok += 1;
                    }
                    Ok(r) => other.push(format!("status {}", r.status())),
                    Err(e) => other.push(format!("error {e}")),
                }
            }
            (ok, other)
        }));
    }
    let first = gw.shared.load().generation;
    const RELOADS: u64 = 40;
    for i in 0..RELOADS {
        std::fs::write(&gw.config, &tables[(i % 2) as usize]).unwrap();
        assert!(matches!(reloader.reload_async(false).await, Outcome::Applied(_)));
        tokio::task::yield_now().await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (ok, other) = c.await.unwrap();
        assert!(other.is_empty(), "unexpected responses during the storm: {other:?}");
        total += ok;
    }
    assert_eq!(gw.shared.load().generation, first + RELOADS);
    assert!(total > 0);
    println!("storm: {RELOADS} reloads, {total} requests, all 200, no connection errors");
}

#[tokio::test]
async fn unchanged_upstreams_keep_their_pool_across_reloads() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let before = Arc::clone(&gw.shared.load().upstreams["default"]);
    std::fs::write(&gw.config, table_with_admin_role(&gw, "ops")).unwrap();
    assert!(matches!(reloader.reload(false), Outcome::Applied(_)));
    assert!(Arc::ptr_eq(&before, &gw.shared.load().upstreams["default"]), "same settings: same upstream and pool");
    // A changed timeout makes a new upstream (and pool).
    let text = std::fs::read_to_string(&gw.config).unwrap().replace("timeout_ms = 5000", "timeout_ms = 6000");
    std::fs::write(&gw.config, text).unwrap();
    assert!(matches!(reloader.reload(false), Outcome::Applied(_)));
    assert!(!Arc::ptr_eq(&before, &gw.shared.load().upstreams["default"]));
}

#[tokio::test]
async fn unchanged_path_patterns_are_reused_and_changed_ones_compiled() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    let pattern_of = |name: &str| {
        let snap = gw.shared.load();
        let route = snap.routes.routes().iter().find(|r| &*r.name == name).expect("route");
        Arc::clone(&route.pattern)
    };
    let (users, admin) = (pattern_of("read users"), pattern_of("admin"));
    let text = std::fs::read_to_string(&gw.config).unwrap().replace("path = \"/admin/**\"", "path = \"/staff/**\"");
    std::fs::write(&gw.config, text).unwrap();
    assert!(matches!(reloader.reload(false), Outcome::Applied(_)));
    assert!(Arc::ptr_eq(&users, &pattern_of("read users")), "same text: the compiled pattern is shared");
    let staff = pattern_of("admin");
    assert!(!Arc::ptr_eq(&admin, &staff));
    assert_eq!(staff.source, "/staff/**");
    // The new pattern is the one requests meet: /admin is no longer a route, /staff is.
    assert_eq!(gw.send("GET", "/admin/x", Some(&admin_token())).await.status, 404);
    assert_eq!(gw.send("GET", "/staff/x", Some(&admin_token())).await.status, 200);
    assert_eq!(gw.send("GET", "/staff/x", Some(&ops_token())).await.status, 403);
}

#[tokio::test]
async fn a_large_table_reparsed_from_its_unchanged_pieces_enforces_the_edited_route() {
    let gw = TestGateway::start().await;
    let reloader = Reloader::new(Arc::clone(&gw.shared), gw.config.clone());
    // 1,500 more routes, one of them, in the middle, for /middle/**.
    let base = std::fs::read_to_string(&gw.config).unwrap();
    let table = |role: &str| {
        let mut t = base.clone();
        for i in 0..1500 {
            let (path, needs) =
                if i == 750 { ("/middle/**".to_owned(), role) } else { (format!("/filler{i}/*"), "admin") };
            t.push_str(&format!("\n[[routes]]\nname = \"r{i}\"\npath = \"{path}\"\nall_roles = [\"{needs}\"]\n"));
        }
        t
    };
    for (generation, role) in ["admin", "ops", "admin"].into_iter().enumerate() {
        std::fs::write(&gw.config, table(role)).unwrap();
        assert!(matches!(reloader.reload(false), Outcome::Applied(_)), "edit {generation}");
        assert!(reloader.parsed_pieces() > 10, "the table was parsed in pieces");
        let (yes, no) = if role == "ops" { (ops_token(), admin_token()) } else { (admin_token(), ops_token()) };
        assert_eq!(gw.send("GET", "/middle/x", Some(&yes)).await.status, 200, "edit {generation}: {role} may");
        assert_eq!(gw.send("GET", "/middle/x", Some(&no)).await.status, 403, "edit {generation}: only {role} may");
    }
}
