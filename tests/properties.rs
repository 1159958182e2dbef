//! Properties of the normalizer and the route table, over generated paths:
//! normalizing twice changes nothing; an accepted path never has `.`/`..`
//! segments, `//`, or an encoded slash; and the path the gateway forwards
//! matches the route that authorized it.

mod support;

use globset::Candidate;
use http::Method;
use proptest::prelude::*;
use rolegate::normalize::normalize;

/// Path-ish strings rich in the characters that matter.
fn raw_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_owned()),
        Just("//".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("%2e".to_owned()),
        Just("%2E%2e".to_owned()),
        Just("%2f".to_owned()),
        Just("%5C".to_owned()),
        Just("\\\\".to_owned()),
        Just(";".to_owned()),
        Just("%00".to_owned()),
        Just("%41".to_owned()),
        Just("%c3%a9".to_owned()),
        Just("%ff".to_owned()),
        Just("%zz".to_owned()),
        Just("admin".to_owned()),
        Just("v1".to_owned()),
        Just("users".to_owned()),
        "[a-z0-9_~-]{1,4}",
    ];
    proptest::collection::vec(piece, 0..12).prop_map(|parts| format!("/{}", parts.concat()))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    #[test]
    fn normalizing_twice_changes_nothing(p in raw_path()) {
        if let Ok(once) = normalize(&p, None) {
            let twice = normalize(once.path(), None).expect("a normalized path is accepted again");
            prop_assert_eq!(once.path(), twice.path());
        }
    }

    #[test]
    fn accepted_paths_have_no_dot_segments_or_ambiguities(p in raw_path()) {
        if let Ok(t) = normalize(&p, None) {
            let path = t.path();
            prop_assert!(path.starts_with('/'));
            prop_assert!(!path.contains("//"), "{}", path);
            for seg in path.split('/') {
                prop_assert!(seg != "." && seg != "..", "{} has a dot segment", path);
            }
            let lower = path.to_ascii_lowercase();
            prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !path.contains('\\'), "{}", path);
            prop_assert!(!lower.contains("%2e"), "{} keeps an encoded dot", path);
        }
    }
}

/// The forwarded path is the authorized path: for any accepted request path,
/// the route found for it matches that exact (normalized) path, and no earlier
/// route does.
#[test]
fn the_route_found_matches_the_forwarded_path() {
    let dir = tempfile::tempdir().unwrap();
    support::write_keys(dir.path());
    let path = dir.path().join("routes.toml");
    let text = support::STANDARD_ROUTES.replace("{upstream}", "127.0.0.1:9");
    std::fs::write(&path, text).unwrap();
    let snap = rolegate::config::load(&path, None).unwrap();
    let mut runner =
        proptest::test_runner::TestRunner::new(ProptestConfig { cases: 4000, ..ProptestConfig::default() });
    runner
        .run(&raw_path(), |p| {
            if let Ok(t) = normalize(&p, None) {
                let forwarded = t.path_and_query();
                if let Some(route) = snap.routes.find(&Method::GET, None, t.path()) {
                    prop_assert!(
                        route.pattern.is_match(&Candidate::new(forwarded)),
                        "{} does not match {}",
                        forwarded,
                        route.pattern.source
                    );
                    for earlier in &snap.routes.routes()[..route.index] {
                        prop_assert!(
                            !(earlier.accepts(&Method::GET, None)
                                && earlier.pattern.is_match(&Candidate::new(t.path()))),
                            "an earlier route {} also matches {}",
                            earlier.pattern.source,
                            t.path()
                        );
                    }
                }
            }
            Ok(())
        })
        .unwrap();
}
