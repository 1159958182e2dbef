//! The compiled route table: first match in file order on (method, host, path).
//!
//! Routes are indexed by the literal and `{param}` segments their patterns
//! start with; a lookup visits the index nodes along the path and, at each,
//! tests the routes that end there: when each of them asks only for a simple
//! [`Tail`] after the prefix (`*`, `**`, or nothing, as most routes do), by checking
//! the rest of the path directly; else through that node's `GlobSet` (whose
//! `matches_into` yields glob indices in file order). The lowest file
//! position whose path pattern, method and host all fit wins. Runs on the
//! normalized path only.

pub mod pattern;
pub mod requirement;

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use foldhash::HashMap;
use globset::{Candidate, GlobMatcher, GlobSet, GlobSetBuilder};
use http::Method;

use crate::auth::claims::{ClaimNames, ClaimPath, RoleClosure};
use crate::auth::Issuer;
use crate::upstream::Upstream;
pub use pattern::{IndexSegment, Pattern, Tail};
pub use requirement::{ClaimCheck, Requirement, TemplatePart};

/// Who may pass a route.
#[derive(Debug)]
pub enum Access {
    /// No token needed; any token is ignored.
    Public,
    /// A valid token whose identity meets the requirement (an empty one: any valid token).
    Protected(Requirement),
}

/// `enforce` (default) or `report` (log the denial, forward anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Enforce,
    Report,
}

/// One `[[routes]]` entry, compiled.
#[derive(Debug)]
pub struct Route {
    /// Position in the file (0-based), also the match priority.
    pub index: usize,
    pub name: Arc<str>,
    /// 1-based line of the route in routes.toml.
    pub line: usize,
    /// `None`: any method.
    pub methods: Option<Vec<Method>>,
    pub host: Option<GlobMatcher>,
    /// Shared with the previous snapshot when its text is unchanged.
    pub pattern: Arc<Pattern>,
    pub upstream: Arc<Upstream>,
    pub access: Access,
    pub mode: Mode,
    /// `Upgrade` protocols passed through on this route (never `h2c`).
    pub upgrades: Arc<[Box<str>]>,
    /// How the roles and permissions in effect here are read, when they may
    /// not be the identity's own (`None` on most routes: nothing to do).
    pub claim_names: Option<Box<RouteClaimNames>>,
}

/// A route's own `roles_claim` / `permissions_claim` (each replacing the
/// issuer's), or, without them, a route with a path parameter that an
/// issuer's claim path names: the roles and permissions in effect here are
/// read from the claims at decision time, with the request's parameters.
#[derive(Debug)]
pub struct RouteClaimNames {
    pub roles: Option<Vec<ClaimPath>>,
    pub permissions: Option<Vec<ClaimPath>>,
    /// `[roles]`, to expand the roles read here.
    pub closure: Arc<RoleClosure>,
}

impl RouteClaimNames {
    /// Whether the identity's own roles and permissions (read without
    /// parameters, with the issuer's names) may not be those in effect here.
    pub fn applies_to(&self, issuer: &Issuer) -> bool {
        self.roles.is_some() || self.permissions.is_some() || issuer.has_param_claims()
    }

    /// The claim names in effect for a token of `issuer` on this route.
    pub fn names<'a>(&'a self, issuer: &'a Issuer) -> ClaimNames<'a> {
        let own = issuer.claim_names();
        ClaimNames {
            roles: self.roles.as_deref().unwrap_or(own.roles),
            permissions: self.permissions.as_deref().unwrap_or(own.permissions),
            default_roles: own.default_roles,
        }
    }
}

impl Route {
    /// Whether the method and host fit (the path is checked separately).
    pub fn accepts(&self, method: &Method, host: Option<&str>) -> bool {
        if let Some(methods) = &self.methods {
            if !methods.contains(method) {
                return false;
            }
        }
        match (&self.host, host) {
            (None, _) => true,
            (Some(glob), Some(h)) => glob.is_match(h),
            (Some(_), None) => false,
        }
    }
}

impl Default for Node {
    fn default() -> Node {
        Node {
            children: HashMap::default(),
            param: None,
            first_below: u32::MAX,
            routes: Vec::new(),
            needs_globs: false,
            set: OnceLock::new(),
        }
    }
}

/// One node of the prefix index: the routes whose leading literal and
/// parameter segments ([`Pattern::index_prefix`]) end here, and the child
/// nodes by next segment: literal, or any one non-empty segment (`{name}`).
#[derive(Debug)]
struct Node {
    children: HashMap<Box<str>, Node>,
    /// The routes whose next segment is a parameter.
    param: Option<Box<Node>>,
    /// The first route (position) here or below: a lookup that has already
    /// found an earlier one skips this node.
    first_below: u32,
    /// Positions in `RouteTable::routes`, ascending (file order).
    routes: Vec<u32>,
    /// Some route here has no simple [`Tail`]: the glob set is needed.
    needs_globs: bool,
    /// The routes' globs as one set, and glob index → route position. Built on
    /// the first lookup that reaches this node (or by [`RouteTable::warm`]), so
    /// that a reload of a large table compiles no glob it does not need; taken
    /// over from the previous table when built from the same patterns.
    set: OnceLock<Option<(Arc<GlobSet>, Vec<u32>)>>,
}

impl Node {
    fn build_set(&self, routes: &[Route]) -> Option<(Arc<GlobSet>, Vec<u32>)> {
        let mut b = GlobSetBuilder::new();
        for &r in &self.routes {
            for g in routes[r as usize].pattern.compiled_globs() {
                b.add(g.clone());
            }
        }
        match b.build() {
            Ok(set) => Some((Arc::new(set), self.owners(routes))),
            Err(e) => {
                // Only a regex size limit can get here: those routes then match nothing (default deny).
                tracing::error!(error = %e, "cannot build a route glob set; its routes will not match");
                None
            }
        }
    }

    /// Glob index → route position, in the order `build_set` adds the globs.
    fn owners(&self, routes: &[Route]) -> Vec<u32> {
        let globs = |r: u32| routes[r as usize].pattern.compiled_globs().len();
        self.routes.iter().flat_map(|&r| std::iter::repeat_n(r, globs(r))).collect()
    }

    /// Takes over the glob sets that `old` (this node in the previous table)
    /// has built, wherever its patterns are the same ones in the same order: a
    /// glob set depends on nothing else. Then the same for the children.
    fn adopt(&self, routes: &[Route], old: &Node, old_routes: &[Route]) {
        if let Some(Some((set, _))) = old.set.get() {
            let same = self.routes.len() == old.routes.len()
                && self
                    .routes
                    .iter()
                    .zip(&old.routes)
                    .all(|(&a, &b)| routes[a as usize].pattern.source == old_routes[b as usize].pattern.source);
            if same {
                let _ = self.set.set(Some((Arc::clone(set), self.owners(routes))));
            }
        }
        for (segment, child) in &self.children {
            if let Some(old_child) = old.children.get(segment) {
                child.adopt(routes, old_child, old_routes);
            }
        }
        if let (Some(child), Some(old_child)) = (&self.param, &old.param) {
            child.adopt(routes, old_child, old_routes);
        }
    }

    /// The child nodes: by literal segment, then the parameter one.
    fn all_children(&self) -> impl Iterator<Item = &Node> {
        self.children.values().chain(self.param.as_deref())
    }

    /// Sets `first_below` here and below; returns it.
    fn settle(&mut self) -> u32 {
        let mut first = self.routes.first().copied().unwrap_or(u32::MAX);
        for child in self.children.values_mut() {
            first = first.min(child.settle());
        }
        if let Some(child) = self.param.as_deref_mut() {
            first = first.min(child.settle());
        }
        self.first_below = first;
        first
    }

    /// Lowers `best` to the first route of this node (in file order) that
    /// matches, if it comes before the current best. `rest` is what follows
    /// this node's literal prefix in the path.
    fn first_match(&self, table: &[Route], req: &mut Lookup<'_>, rest: &str, best: &mut Option<u32>) {
        if self.routes.first().is_none_or(|&first| best.is_some_and(|b| b <= first)) {
            return;
        }
        if !self.needs_globs {
            for &r in &self.routes {
                if best.is_some_and(|b| b <= r) {
                    return;
                }
                let route = &table[r as usize];
                if route.pattern.index_tail.is_some_and(|t| t.matches(rest)) && route.accepts(req.method, req.host) {
                    *best = Some(r);
                    return;
                }
            }
            return;
        }
        let Some((set, owners)) = self.set.get_or_init(|| self.build_set(table)) else {
            return;
        };
        let candidate = req.candidate.get_or_insert_with(|| Candidate::new(req.path));
        MATCHES.with(|m| {
            let mut hits = m.borrow_mut();
            set.matches_candidate_into(candidate, &mut hits);
            // Glob indices ascend with route position (file order).
            for &g in hits.iter() {
                let r = owners[g];
                if best.is_some_and(|b| b <= r) {
                    break;
                }
                if table[r as usize].accepts(req.method, req.host) {
                    *best = Some(r);
                    break;
                }
            }
        });
    }
}

struct Lookup<'a> {
    method: &'a Method,
    host: Option<&'a str>,
    path: &'a str,
    /// The path for globset, made when a node first needs it.
    candidate: Option<Candidate<'a>>,
}

/// Every route, indexed by the literal and parameter segments its pattern
/// starts with: a lookup walks the path's segments down the index (a segment
/// follows its literal child and, when not empty, the parameter child) and
/// tests only the routes met on the way, so its cost follows the path's depth
/// and the few routes sharing its prefix, not the table's size (an imported
/// OpenAPI table of `/repos/{owner}/{repo}/…` routes included).
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    root: Node,
}

thread_local! {
    static MATCHES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl RouteTable {
    /// Built by `config::compile` only; `routes` in file order.
    pub(crate) fn build(routes: Vec<Route>) -> Self {
        let mut root = Node::default();
        for (pos, route) in routes.iter().enumerate() {
            crate::pace::point();
            let mut node = &mut root;
            for seg in &route.pattern.index_prefix {
                node = match seg {
                    IndexSegment::Literal(s) => node.children.entry(Box::from(s.as_str())).or_default(),
                    IndexSegment::Param => node.param.get_or_insert_with(Default::default),
                };
            }
            node.routes.push(pos as u32);
            node.needs_globs |= route.pattern.index_tail.is_none();
        }
        root.settle();
        RouteTable { routes, root }
    }

    /// The first route (in file order) that matches. `host` is lower-case, without port.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Route> {
        // Every pattern starts with `/`, so no other path can match (and each
        // node's `rest` below is then empty or starts with `/`).
        if !path.starts_with('/') {
            return None;
        }
        let mut req = Lookup { method, host, path, candidate: None };
        let mut best = None;
        self.walk(&self.root, &mut req, path, &mut best);
        best.map(|r| &self.routes[r as usize])
    }

    /// Lowers `best` to the first match at `node` or below; `rest` is what
    /// follows the node's prefix in the path. Deep only as the index is.
    fn walk<'p>(&self, node: &Node, req: &mut Lookup<'p>, rest: &'p str, best: &mut Option<u32>) {
        if best.is_some_and(|b| b <= node.first_below) {
            return;
        }
        node.first_match(&self.routes, req, rest, best);
        let Some(after) = rest.strip_prefix('/') else { return };
        let segment = after.split_once('/').map_or(after, |(s, _)| s);
        let next = &after[segment.len()..];
        if let Some(child) = node.children.get(segment) {
            self.walk(child, req, next, best);
        }
        if let Some(child) = node.param.as_deref().filter(|_| !segment.is_empty()) {
            self.walk(child, req, next, best);
        }
    }

    /// Builds every glob set the index needs now rather than on first use. Called
    /// off the request path right after a snapshot starts serving, so that
    /// requests rarely pay for it; stops early once `wanted` says no. First
    /// takes over, from `previous` (the table this one replaced), every set
    /// built from the same patterns: a reload that changes a few routes
    /// rebuilds only their sets.
    pub fn warm(&self, previous: Option<&RouteTable>, wanted: impl Fn() -> bool) {
        if let Some(old) = previous {
            self.root.adopt(&self.routes, &old.root, &old.routes);
        }
        fn walk(node: &Node, routes: &[Route], wanted: &dyn Fn() -> bool) -> bool {
            if node.needs_globs {
                if !wanted() {
                    return false;
                }
                node.set.get_or_init(|| node.build_set(routes));
            }
            node.all_children().all(|c| walk(c, routes, wanted))
        }
        walk(&self.root, &self.routes, &wanted);
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::path::Path;
    use std::sync::Arc;

    use globset::GlobSet;

    use super::{Node, RouteTable};
    use crate::snapshot::Snapshot;

    fn built(node: &Node) -> usize {
        usize::from(node.set.get().is_some()) + node.all_children().map(built).sum::<usize>()
    }

    /// Ten public routes `/svcN/*.json` (whose tails need glob sets), with
    /// `/svc{changed}/*.json` replaced by `/svc{changed}/x/*.json`.
    fn snapshot(changed: Option<usize>, previous: Option<&Snapshot>) -> Snapshot {
        snapshot_of(changed, previous, "*.json")
    }

    fn snapshot_of(changed: Option<usize>, previous: Option<&Snapshot>, tail: &str) -> Snapshot {
        let mut text = String::from("[upstreams.default]\nurl = \"http://127.0.0.1:9\"\n");
        for i in 0..10 {
            let path = if changed == Some(i) { format!("/svc{i}/x/{tail}") } else { format!("/svc{i}/{tail}") };
            text.push_str(&format!("[[routes]]\nname = \"r{i}\"\npath = \"{path}\"\npublic = true\n"));
        }
        let path = Path::new("routes.toml");
        let file = crate::config::parse(path, &text).unwrap();
        crate::config::compile(file, path, &text, previous).unwrap()
    }

    fn set_of<'t>(table: &'t RouteTable, segments: &[&str]) -> Option<&'t Arc<GlobSet>> {
        let node = segments.iter().fold(&table.root, |n, s| &n.children[*s]);
        node.set.get().and_then(|s| s.as_ref()).map(|(set, _)| set)
    }

    #[test]
    fn warm_up_takes_over_the_glob_sets_of_unchanged_index_nodes() {
        let old = snapshot(None, None);
        old.routes.warm(None, || true);
        let new = snapshot(Some(3), Some(&old));
        new.routes.warm(Some(&old.routes), || false);
        for i in [0, 1, 2, 4, 9] {
            let seg = format!("svc{i}");
            let (a, b) = (set_of(&old.routes, &[&seg]).unwrap(), set_of(&new.routes, &[&seg]));
            assert!(b.is_some_and(|b| Arc::ptr_eq(a, b)), "{seg}: same patterns, same set");
        }
        assert!(set_of(&new.routes, &["svc3"]).is_none(), "svc3 no longer has routes of its own");
        assert!(set_of(&new.routes, &["svc3", "x"]).is_none(), "a new pattern: built on first use");
        // The adopted sets and the new one match as they should.
        let get = http::Method::GET;
        let name = |path: &str| new.routes.find(&get, None, path).map(|r| r.name.to_string());
        assert_eq!(name("/svc4/a.json").as_deref(), Some("r4"));
        assert_eq!(name("/svc3/x/a.json").as_deref(), Some("r3"));
        assert_eq!(name("/svc3/a.json"), None);
        assert_eq!(name("/svc9/a/b.json"), None);
    }

    #[test]
    fn simple_tails_need_no_glob_sets() {
        let snap = snapshot_of(Some(3), None, "*");
        snap.routes.warm(None, || true);
        assert_eq!(built(&snap.routes.root), 0, "every route is `/svcN/*`: nothing to build");
        let get = http::Method::GET;
        let name = |path: &str| snap.routes.find(&get, None, path).map(|r| r.name.to_string());
        assert_eq!(name("/svc4/a").as_deref(), Some("r4"));
        assert_eq!(name("/svc4/").as_deref(), Some("r4"));
        assert_eq!(name("/svc3/x/a").as_deref(), Some("r3"));
        assert_eq!(name("/svc3/a"), None);
        assert_eq!(name("/svc9/a/b"), None);
        assert_eq!(name("/svc9"), None);
        assert_eq!(built(&snap.routes.root), 0, "nor on lookups");
    }

    #[test]
    fn warm_up_stops_as_soon_as_it_is_no_longer_wanted() {
        let snap = snapshot(None, None);
        let table = &snap.routes;
        assert_eq!(built(&table.root), 0, "glob sets are built on first use or by warm()");
        let asked = Cell::new(0);
        table.warm(None, || {
            asked.set(asked.get() + 1);
            asked.get() <= 3
        });
        assert_eq!(built(&table.root), 3, "three nodes warmed, then it stopped");
        assert_eq!(asked.get(), 4);
        table.warm(None, || true);
        assert_eq!(built(&table.root), 10);
    }
}
