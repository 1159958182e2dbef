//! The compiled route table: first match in file order on (method, host, path).
//!
//! All route globs sit in one `GlobSet`; `matches_into` yields glob indices in
//! ascending order, which is file order, so the first candidate whose method and
//! host also fit is the route. Runs on the normalized path only.

pub mod pattern;

use std::cell::RefCell;
use std::sync::Arc;

use globset::{GlobMatcher, GlobSet};
use http::Method;

use crate::decide::Requirement;
use crate::forward::Upstream;
pub use pattern::Pattern;

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
    pub pattern: Pattern,
    pub upstream: Arc<Upstream>,
    pub access: Access,
    pub mode: Mode,
}

impl Route {
    fn accepts(&self, method: &Method, host: Option<&str>) -> bool {
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

/// Every route, plus the set that matches all their path globs at once.
#[derive(Debug)]
pub struct RouteTable {
    routes: Vec<Route>,
    set: GlobSet,
    /// glob index in `set` → route index.
    glob_route: Vec<u32>,
}

thread_local! {
    static MATCHES: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

impl RouteTable {
    /// Built by `config::compile` only.
    pub(crate) fn new(routes: Vec<Route>, set: GlobSet, glob_route: Vec<u32>) -> Self {
        RouteTable { routes, set, glob_route }
    }

    /// The first route (in file order) that matches. `host` is lower-case, without port.
    pub fn find(&self, method: &Method, host: Option<&str>, path: &str) -> Option<&Route> {
        MATCHES.with(|m| {
            let mut hits = m.borrow_mut();
            self.set.matches_into(path, &mut hits);
            hits.iter().map(|&g| &self.routes[self.glob_route[g] as usize]).find(|route| route.accepts(method, host))
        })
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
