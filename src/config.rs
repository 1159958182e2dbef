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
        let message = e.message().trim_end();
        let message = match did_you_mean(message) {
            Some(suggestion) => format!("{message} (did you mean `{suggestion}`?)"),
            None => message.to_owned(),
        };
        ConfigErrors(vec![loc.error(e.span().map(|s| s.start), message)])
    })
}

/// For serde's "unknown field `X`, expected one of `a`, `b`" and "unknown
/// variant `X`, expected `a` or `b`": the expected name closest to `X`, when
/// it is close enough to be a likely typo.
fn did_you_mean(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `").or_else(|| message.strip_prefix("unknown variant `"))?;
    let (unknown, expected) = rest.split_once('`')?;
    let expected = expected.split_once("expected")?.1;
    let candidates = expected.split('`').skip(1).step_by(2);
    let (best, distance) = candidates
        .map(|c| (c, strsim::damerau_levenshtein(&unknown.to_ascii_lowercase(), c)))
        .min_by_key(|&(_, d)| d)?;
    (distance <= (unknown.len() / 3).max(1) || best.contains(unknown) && unknown.len() >= 3).then_some(best)
}

#[cfg(test)]
mod tests {
    use super::did_you_mean;

    #[test]
    fn suggests_the_closest_expected_name_for_typos_only() {
        let field = "unknown field `upsteam`, expected one of `name`, `methods`, `upstream`, `public`";
        assert_eq!(did_you_mean(field), Some("upstream"));
        let field = "unknown field `Methods`, expected one of `name`, `methods`";
        assert_eq!(did_you_mean(field), Some("methods"));
        let table = "unknown field `serer`, expected one of `server`, `upstreams`, `issuers`";
        assert_eq!(did_you_mean(table), Some("server"));
        let variant = "unknown variant `deni`, expected `deny` or `authenticate`";
        assert_eq!(did_you_mean(variant), Some("deny"));
        let prefix = "unknown field `permission`, expected one of `all_permissions`, `any_permissions`";
        assert_eq!(did_you_mean(prefix), Some("all_permissions"));
        let unrelated = "unknown field `colour`, expected one of `name`, `methods`, `upstream`";
        assert_eq!(did_you_mean(unrelated), None);
        assert_eq!(did_you_mean("invalid type: integer `1`, expected a string"), None);
    }
}
