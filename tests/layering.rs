//! The modules of `src/` depend on each other in one direction only: from
//! the entry points down to plain data, in the order `src/lib.rs` writes
//! down. Each file's references to other modules of the crate (`crate::x` in
//! `use` lines and in paths, outside comments and test modules) must name a
//! module below its own. Also: only `decide` makes an `upstream::Destination`
//! (so nothing is forwarded that was not decided).

use std::path::{Path, PathBuf};

/// Top to bottom: a module may use only those after it.
const ORDER: &[&str] = &[
    // entry points and tools
    "cli",
    "demo",
    "admin",
    "openapi",
    "mint",
    "reload",
    "config",
    // serving
    "authz",
    "server",
    "gateway",
    "error",
    "snapshot",
    // the stages of a request
    "headers",
    "decide",
    "routes",
    "auth",
    "normalize",
    // connections and exchanges
    "upstream",
    // wire codecs, message types and plain helpers
    "h1",
    "body",
    "logging",
    "metrics",
    "tls",
    "sock",
    "pace",
    "keygen",
    "echo",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/auth/verify.rs` → `auth`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The crate modules a file's code names, with the line of each.
fn references(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // Test modules are last in a file and may use anything.
        if line.starts_with("#[cfg(test)]") {
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        for (i, _) in code.match_indices("crate::") {
            if i > 0 && code.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue; // `rolegate_crate::`, not ours
            }
            let rest = &code[i + "crate::".len()..];
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a, b::c};`
                for part in group.split(['}', ',']) {
                    let m: String =
                        part.trim().chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                    if !m.is_empty() {
                        out.push((n + 1, m));
                    }
                }
            } else if !name.is_empty() {
                out.push((n + 1, name));
            }
        }
    }
    out
}

#[test]
fn modules_depend_on_the_ones_below_them_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    all.sort();
    let rank = |m: &str| ORDER.iter().position(|o| *o == m);
    let mut violations = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for file in &all {
        let Some(module) = module_of(&src, file) else { continue };
        seen.insert(module.clone());
        let Some(own) = rank(&module) else {
            violations.push(format!("{}: module {module} is not in the order of tests/layering.rs", file.display()));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        for (line, used) in references(&text) {
            if used == module || used == "self" || used == "super" {
                continue;
            }
            match rank(&used) {
                Some(r) if r > own => {}
                Some(_) => violations.push(format!(
                    "{}:{line}: {module} uses {used}, which stands above it",
                    file.strip_prefix(&src).unwrap().display()
                )),
                None => violations.push(format!("{}:{line}: unknown module {used}", file.display())),
            }
        }
    }
    assert!(violations.is_empty(), "dependencies that run up:\n{}", violations.join("\n"));
    // Every module of the order exists (the list stays true as files move).
    for m in ORDER {
        assert!(seen.contains(*m), "tests/layering.rs names {m}, which src/ does not have");
    }
    // The crate docs write the same order down.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let written: Vec<&str> = ORDER.iter().copied().filter(|m| lib.contains(&format!("`{m}`"))).collect();
    assert_eq!(written, ORDER, "src/lib.rs's module docs name every module of the order, in order");
    let positions: Vec<usize> = ORDER.iter().map(|m| lib.find(&format!("`{m}`")).unwrap()).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "src/lib.rs lists the modules in the order of this test");
}

#[test]
fn only_decide_makes_a_destination() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let makers: Vec<String> = all
        .iter()
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("Destination::new("))
        .map(|f| f.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert_eq!(makers, ["decide.rs"], "upstream::Destination is made by decide::Permit only");
}

#[test]
fn the_reference_scanner_finds_what_it_should() {
    let text = "use crate::auth::{self, Identity};\nuse crate::{h1, routes::Route};\nlet x = crate::metrics::Metrics::new(); // crate::gateway\n#[cfg(test)]\nuse crate::cli;";
    let found: Vec<String> = references(text).into_iter().map(|(_, m)| m).collect();
    assert_eq!(found, ["auth", "h1", "routes", "metrics"]);
}
