//! Loading `routes.toml`: read → parse (`file`) → compile (`compile`) into a
//! [`Snapshot`]. Runs at start-up, on reload and in `check`; never on the
//! request path.

pub mod compile;
pub mod error;
pub mod file;
mod names;

use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use compile::{compile, compile_with};
pub use error::{ConfigError, ConfigErrors, Locator};
pub use file::RoutesFile;

use crate::snapshot::Snapshot;

/// The config path: `--config`, else `ROLEGATE_CONFIG`, else `./routes.toml`
/// (clap applies the first two; this is the last resort).
pub fn default_path() -> PathBuf {
    PathBuf::from("routes.toml")
}

/// How a table is loaded, besides its text: [`load_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOptions {
    /// Compile without key material: no `keys` PEM file, `jwks_file` or
    /// `[server] tls` file is read and no `secret_env` is looked up; issuers
    /// are left without those keys (remote keys are never fetched by a load
    /// anyway). For the commands that only inspect the table (`check
    /// --skip-keys`, `routes`, `explain --claims`, `diff`); never for serving.
    pub skip_keys: bool,
    /// Replaces `[server] listen` (`run --listen`).
    pub listen: Option<std::net::SocketAddr>,
    /// Replaces the URL of `[upstreams.default]`, which it adds when the table
    /// has none (`run --upstream`).
    pub default_upstream: Option<String>,
}

impl LoadOptions {
    /// Applies the overrides to a parsed file.
    fn apply(&self, file: &mut RoutesFile) {
        if let Some(addr) = self.listen {
            file.server.listen = addr.to_string();
        }
        if let Some(url) = &self.default_upstream {
            match file.upstreams.get_mut("default") {
                Some(up) => *up.get_mut().url.get_mut() = url.clone(),
                None => {
                    // Parsed, so that the defaults of the other keys are the file's.
                    let spec = format!("url = {}", toml::Value::String(url.clone()));
                    if let Ok(up) = toml::from_str::<file::UpstreamSpec>(&spec) {
                        file.upstreams.insert("default".to_owned(), toml::Spanned::new(0..0, up));
                    }
                }
            }
        }
    }
}

/// Reads and compiles `path`. `previous` lets unchanged upstreams keep their
/// pools and compiled patterns be reused.
pub fn load(path: &Path, previous: Option<&Snapshot>) -> Result<Snapshot, ConfigErrors> {
    load_with(path, previous, &LoadOptions::default())
}

/// [`load`] with overrides, or without key material ([`LoadOptions`]).
pub fn load_with(path: &Path, previous: Option<&Snapshot>, options: &LoadOptions) -> Result<Snapshot, ConfigErrors> {
    load_reusing(path, previous, None, options).map(|(snapshot, _)| snapshot)
}

/// [`load_with`], taking the routes of the pieces of a large file that are
/// unchanged since `pieces` (the last load's) from there; also returns this
/// load's pieces, for the next (the reloader keeps them).
pub fn load_reusing(
    path: &Path,
    previous: Option<&Snapshot>,
    pieces: Option<&ParsedPieces>,
    options: &LoadOptions,
) -> Result<(Snapshot, ParsedPieces), ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            line: 0,
            col: 0,
            message: format!("cannot read: {e}"),
        }])
    })?;
    let (mut file, pieces) = parse_reusing(path, &text, pieces)?;
    options.apply(&mut file);
    let snapshot = compile_with(file, path, &text, previous, options)?;
    Ok((snapshot, pieces))
}

/// Parses the text of a routes file (syntax, types, unknown keys).
pub fn parse(path: &Path, text: &str) -> Result<RoutesFile, ConfigErrors> {
    parse_reusing(path, text, None).map(|(file, _)| file)
}

/// [`parse`], taking the routes of each piece whose text is in `previous` from
/// there; also returns the pieces of this text, for the next reload.
fn parse_reusing(
    path: &Path,
    text: &str,
    previous: Option<&ParsedPieces>,
) -> Result<(RoutesFile, ParsedPieces), ConfigErrors> {
    if let Some(parsed) = parse_in_pieces(text, previous) {
        return Ok(parsed);
    }
    let file = toml::from_str::<RoutesFile>(text).map_err(|e| {
        let loc = Locator::new(path, text);
        let message = e.message().trim_end();
        let message = match did_you_mean(message) {
            Some(suggestion) => format!("{message} (did you mean `{suggestion}`?)"),
            None => message.to_owned(),
        };
        ConfigErrors(vec![loc.error(e.span().map(|s| s.start), message)])
    })?;
    Ok((file, ParsedPieces::default()))
}

/// Routes per piece when a large file is parsed in pieces.
const ROUTES_PER_PIECE: usize = 64;

/// The route tables of one piece of a large file (after the first piece).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MoreRoutes {
    routes: Vec<toml::Spanned<file::RouteSpec>>,
}

/// The pieces after the first of a large file parsed in pieces: each piece's
/// exact text → its routes, with spans counted from the piece's start. Kept
/// in the snapshot, so that a reload parses only the pieces whose text changed
/// (the routes of a piece depend on its text alone).
#[derive(Default)]
pub struct ParsedPieces(foldhash::HashMap<Box<str>, Arc<[toml::Spanned<file::RouteSpec>]>>);

impl ParsedPieces {
    /// How many pieces (none for a file parsed whole).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ParsedPieces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ParsedPieces({} pieces)", self.len())
    }
}

/// A large route table parsed in pieces of [`ROUTES_PER_PIECE`] routes: the
/// TOML parser's intermediate vectors then stay small and warm in cache (10,000
/// routes: 16 → 10.5 ms, and 28 → 12–20 ms when its memory is cold, as on a
/// reload). A piece starts at a line that is exactly `[[routes]]`. In a file
/// without multi-line strings such a line can only be that header (inside an
/// array or inline table it is a syntax error); the first piece holds at least
/// one such header, so `routes` there is an array of tables; a later piece may
/// hold nothing but `[[routes]]` tables ([`MoreRoutes`] denies other keys), and
/// its sub-tables (`[routes.claims]`, `[[routes.any_of]]`) belong to its own
/// last route, as in the whole file. So the pieces give the routes the whole
/// file gives, with spans moved by each piece's offset. `None` (parse the whole
/// file instead, which also gives any error its message and line): a small
/// file, a multi-line string anywhere, or a piece that does not parse alone.
/// A piece whose exact text is in `previous` is not parsed again: its routes
/// are taken from there (10,000 routes, one edited: 26 → 11 ms per reload).
fn parse_in_pieces(text: &str, previous: Option<&ParsedPieces>) -> Option<(RoutesFile, ParsedPieces)> {
    if text.len() < 64 * 1024 || text.contains("\"\"\"") || text.contains("'''") {
        return None;
    }
    let (mut cuts, mut headers, mut pos) = (Vec::new(), 0, 0);
    for line in text.split_inclusive('\n') {
        if line.trim_end_matches(['\n', '\r']) == "[[routes]]" {
            if headers > 0 && headers % ROUTES_PER_PIECE == 0 {
                cuts.push(pos);
            }
            headers += 1;
        }
        pos += line.len();
    }
    let first = *cuts.first()?;
    let mut file: RoutesFile = toml::from_str(&text[..first]).ok()?;
    let mut pieces = ParsedPieces(foldhash::HashMap::with_capacity_and_hasher(cuts.len(), Default::default()));
    let ends = cuts.iter().skip(1).copied().chain([text.len()]);
    for (start, end) in cuts.iter().copied().zip(ends) {
        crate::pace::point();
        let piece = &text[start..end];
        let routes = match previous.and_then(|p| p.0.get(piece)) {
            Some(routes) => Arc::clone(routes),
            None => Arc::from(toml::from_str::<MoreRoutes>(piece).ok()?.routes),
        };
        file.routes.extend(routes.iter().map(|r| file::moved(r.clone(), start, |r| r.moved(start))));
        pieces.0.insert(Box::from(piece), routes);
    }
    Some((file, pieces))
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
    use super::{did_you_mean, parse, parse_in_pieces, RoutesFile, ROUTES_PER_PIECE};
    use std::sync::Arc;

    /// A table of `n` routes using every route key, both sub-table forms,
    /// comments and strings that mention `[[routes]]`, and a header with
    /// spaces (not a cut point); `tail` is appended.
    fn big_table(n: usize, newline: &str, tail: &str) -> String {
        let mut t = String::from(
            "# [[routes]] below are matched in order\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [upstreams.default]\nurl = \"http://127.0.0.1:9\"\n[upstreams.other]\nurl = \"http://127.0.0.1:10\"\n\
             [roles.reader]\npermissions = [\"r\"]\n[defaults]\ntoken_cache = 5\n",
        );
        for i in 0..n {
            let route = match i % 6 {
                0 => format!("[[routes]]\nname = \"r{i} [[routes]]\"\nmethods = [\"GET\", \"post\"]\npath = \"/a{i}/*\"\nall_permissions = [\"p{i}\"]\n"),
                1 => format!("[[routes]]\npath = \"/t/{{tenant}}/b{i}\"\nhost = \"*.example.com\"\nupstream = \"other\"\nclaims = {{ tid = \"{{tenant}}\", n = 3, ok = true }}\n"),
                2 => format!("[[routes]]\npath = \"/c{i}/**\"\nany_of = [{{ any_roles = [\"x\"] }}, {{ claims = {{ lvl = 2 }}, any_of = [{{ all_roles = [\"y\"] }}] }}]\n"),
                3 => format!("[[routes]]\npath = \"/d{i}\"\nmode = \"report\"\n[routes.claims]\nsub = \"u{i}\"\n# [[routes]] in a comment\n"),
                4 => format!("[[ routes ]]\npath = \"/e{i}\"\npublic = true\n"),
                _ => format!("[[routes]]\npath = \"/f{i}/{{id}}\"\nany_permissions = [\"q\"]\n[[routes.any_of]]\nall_permissions = [\"z\"]\n[routes.any_of.claims]\nid = \"{{id}}\"\n"),
            };
            t.push_str(&route);
            t.push('\n');
        }
        t.push_str(tail);
        t.replace('\n', newline)
    }

    fn whole(text: &str) -> Result<RoutesFile, String> {
        toml::from_str::<RoutesFile>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn a_large_table_parsed_in_pieces_equals_the_whole_parse_spans_included() {
        for newline in ["\n", "\r\n"] {
            let text = big_table(1500, newline, "");
            assert!(text.len() > 64 * 1024);
            let (pieces, _) = parse_in_pieces(&text, None).expect("cut into pieces");
            let whole = whole(&text).unwrap();
            assert_eq!(pieces.routes.len(), 1500);
            assert_eq!(format!("{pieces:?}"), format!("{whole:?}"));
        }
    }

    #[test]
    fn a_reparse_takes_unchanged_pieces_from_the_previous_one_and_still_equals_the_whole_parse() {
        let text = big_table(1500, "\n", "");
        let (_, first) = parse_in_pieces(&text, None).unwrap();
        let cut_points = text.lines().filter(|l| *l == "[[routes]]").count();
        assert_eq!(first.0.len(), cut_points.div_ceil(ROUTES_PER_PIECE) - 1, "one entry per piece after the first");
        // One route changed in the middle, and a line added near the top, which moves every later span.
        let edited = text.replacen("path = \"/d705\"", "path = \"/d705/x\"", 1).replacen(
            "[defaults]",
            "# a new comment\n[defaults]",
            1,
        );
        assert_ne!(edited, text);
        let (pieces, second) = parse_in_pieces(&edited, Some(&first)).unwrap();
        assert_eq!(format!("{pieces:?}"), format!("{:?}", whole(&edited).unwrap()));
        let reused = second.0.iter().filter(|(k, v)| first.0.get(*k).is_some_and(|old| Arc::ptr_eq(old, v))).count();
        assert_eq!(reused, second.0.len() - 1, "all pieces but the edited one are reused");
        // A previous parse of other text changes nothing.
        let (again, _) = parse_in_pieces(&text, Some(&second)).unwrap();
        assert_eq!(format!("{again:?}"), format!("{:?}", whole(&text).unwrap()));
    }

    #[test]
    fn anything_the_pieces_cannot_vouch_for_is_parsed_whole() {
        let path = std::path::Path::new("routes.toml");
        // Valid, but a top-level table after the routes: parsed whole, same result.
        let text = big_table(1500, "\n", "[forward]\nauthorization = false\n");
        assert!(parse_in_pieces(&text, None).is_none());
        assert!(!parse(path, &text).unwrap().forward.authorization);
        // A table defined twice (once in the first piece, once in the last): the whole file's error.
        let text = big_table(1500, "\n", "[defaults]\ntoken_cache = 6\n");
        assert!(parse_in_pieces(&text, None).is_none());
        let err = parse(path, &text).unwrap_err().to_string();
        let whole_err = toml::from_str::<RoutesFile>(&text).unwrap_err();
        assert!(err.contains(whole_err.message().trim_end()) && err.contains("routes.toml:"), "{err}");
        // A multi-line string anywhere: never cut.
        let text =
            big_table(1500, "\n", "").replacen("name = \"r0 [[routes]]\"", "name = \"\"\"r0\n[[routes]]\n\"\"\"", 1);
        assert!(parse_in_pieces(&text, None).is_none());
        assert_eq!(parse(path, &text).unwrap().routes[0].get_ref().name.as_deref(), Some("r0\n[[routes]]\n"));
        // A syntax error in a later piece: the whole file's message and line.
        let text = big_table(1500, "\n", "[[routes]]\npath = \"/broken\n");
        assert!(parse_in_pieces(&text, None).is_none());
        let err = parse(path, &text).unwrap_err();
        let line = text.lines().count();
        assert!(err.to_string().contains(&format!("routes.toml:{line}:")), "{err}");
    }

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
