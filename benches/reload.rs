//! Reload latency for a 10-route and a 10,000-route table:
//! - compile: reading and compiling the file into a snapshot (`config::load`),
//!   from scratch, and with the serving snapshot as `previous` (as a reload does:
//!   unchanged path patterns are reused, unchanged pieces of the file are not
//!   parsed again) for the same file and for the file with one route edited;
//! - write → serving: from an atomic rename of the file to the new snapshot being
//!   the one requests load, through the file watcher (includes its debounce).
//!
//! `cargo bench --bench reload` (prints medians and maxima over a few runs).

mod common;

// The allocator the binary uses: a compile is mostly allocation, and the
// system allocator's frees made it ~30% slower than what `rolegate` does.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use rolegate::reload::{self, Reloader};

fn median(mut v: Vec<Duration>) -> (Duration, Duration) {
    v.sort();
    (v[v.len() / 2], *v.last().unwrap())
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let runs = if quick { 1 } else { 9 };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    for n in [10usize, 10_000] {
        let fx = common::fixture(n);
        let mut compile = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let snap = rolegate::config::load(&fx.config, None).unwrap();
            compile.push(t.elapsed());
            assert_eq!(snap.routes.len(), n);
        }
        let serving = rolegate::config::load(&fx.config, None).unwrap();
        let mut recompile = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let snap = rolegate::config::load(&fx.config, Some(&serving)).unwrap();
            recompile.push(t.elapsed());
            assert_eq!(snap.routes.len(), n);
        }
        // The middle route's permission changed (a route of the generated mix: "p{i}").
        let edited_path = fx.dir.path().join("edited.toml");
        let middle = format!("[\"p{}\"]", n / 2);
        let text = common::routes_toml(n).replacen(&middle, "[\"edited\"]", 1);
        assert_ne!(text, common::routes_toml(n));
        std::fs::write(&edited_path, text).unwrap();
        let mut edited = Vec::new();
        for _ in 0..runs {
            let t = Instant::now();
            let snap = rolegate::config::load(&edited_path, Some(&serving)).unwrap();
            edited.push(t.elapsed());
            assert_eq!(snap.routes.len(), n);
        }
        let shared = Arc::new(ArcSwap::from_pointee(rolegate::config::load(&fx.config, None).unwrap()));
        let reloader = Reloader::new(Arc::clone(&shared), fx.config.clone());
        let mut live = Vec::new();
        rt.block_on(async {
            let _watch = reload::watch(Arc::clone(&reloader)).unwrap();
            for i in 0..runs {
                let before = shared.load().generation;
                // A real change each time (a comment), written by atomic rename.
                let text = format!("{}\n# edit {i}\n", common::routes_toml(n));
                let tmp = fx.dir.path().join(".routes.toml.tmp");
                std::fs::write(&tmp, text).unwrap();
                let t = Instant::now();
                std::fs::rename(&tmp, &fx.config).unwrap();
                while shared.load().generation == before {
                    assert!(t.elapsed() < Duration::from_secs(30), "reload did not happen");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                live.push(t.elapsed());
            }
        });
        let (cm, cx) = median(compile);
        let (rm, rx) = median(recompile);
        let (em, ex) = median(edited);
        let (lm, lx) = median(live);
        println!(
            "reload/{n}_routes: compile median {cm:.1?} (max {cx:.1?}); with the previous table: same file {rm:.1?} (max {rx:.1?}), one route edited {em:.1?} (max {ex:.1?}); write → serving median {lm:.1?} (max {lx:.1?}, includes the {:?} debounce)",
            reload::DEBOUNCE
        );
    }
}
