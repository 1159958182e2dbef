//! The normalizer never panics; what it accepts is canonical (normalizing it
//! again changes nothing) and free of dot segments, `//` and encoded slashes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else { return };
    let (path, query) = match raw.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw, None),
    };
    if let Ok(t) = rolegate::normalize::normalize(path, query) {
        let again = rolegate::normalize::normalize(t.path(), None).expect("canonical paths are accepted");
        assert_eq!(again.path(), t.path());
        assert!(!t.path().contains("//"));
        assert!(t.path().split('/').all(|s| s != "." && s != ".."));
        let lower = t.path().to_ascii_lowercase();
        assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
    }
});
