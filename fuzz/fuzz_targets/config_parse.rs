//! Parsing and compiling any routes.toml text never panics: it loads or it
//! yields errors.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("/nonexistent/routes.toml");
    if let Ok(file) = rolegate::config::parse(path, text) {
        let _ = rolegate::config::compile(file, path, text, None);
    }
});
