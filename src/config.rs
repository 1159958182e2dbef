//! Loading `routes.toml`: read → parse (`file`) → compile (`compile`) into a
//! [`Snapshot`]. Runs at start-up, on reload and in `check`; never on the
//! request path.

pub mod compile;
pub mod error;
pub mod file;

use std::path::{Path, PathBuf};

pub use compile::compile;
pub use error::{ConfigError, ConfigErrors, Locator};
pub use file::RoutesFile;

use crate::snapshot::Snapshot;

/// The config path: `--config`, else `ROLEGATE_CONFIG`, else `./routes.toml`
/// (clap applies the first two; this is the last resort).
pub fn default_path() -> PathBuf {
    PathBuf::from("routes.toml")
}

/// Reads and compiles `path`. `previous` lets unchanged upstreams keep their pools.
pub fn load(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let file = parse(path, &text)?;
    compile(file, path, &text, previous)
}

/// Parses the text of a routes file (syntax, types, unknown keys).
pub fn parse(path: &Path, text: &str) -> Result<RoutesFile, ConfigErrors> {
    toml::from_str::<RoutesFile>(text).map_err(|e| {
        let loc = Locator::new(path, text);
        ConfigErrors(vec![loc.error(e.span().map(|s| s.start), e.message().trim_end().to_owned())])
    })
}
