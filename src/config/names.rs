//! Names a route table uses that nothing defines: "did you mean" for an
//! unknown upstream, and the `check` warnings about role and permission names
//! that no `[roles]` entry defines or grants (typos such as `admn`).

use std::collections::BTreeMap;
use std::path::Path;

use toml::Spanned;

use super::file::RoleSpec;
use crate::routes::Requirement;
use crate::routes::{Access, Route};

/// ` (did you mean "x"?)` when one of `candidates` is close enough to
/// `unknown` to be a likely typo, else nothing.
pub(super) fn did_you_mean<'a>(unknown: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    closest(unknown, candidates).map_or_else(String::new, |c| format!(" (did you mean {c:?}?)"))
}

/// The candidate closest to `unknown` by edit distance, when it is within a
/// third of the name's length (at least 1), ignoring case.
fn closest<'a>(unknown: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = unknown.to_lowercase();
    let (best, distance) = candidates
        .into_iter()
        .filter(|c| *c != unknown)
        .map(|c| (c, strsim::damerau_levenshtein(&lower, &c.to_lowercase())))
        .min_by_key(|&(_, d)| d)?;
    (distance <= (unknown.chars().count() / 3).max(1)).then_some(best)
}

/// Where a name is first used, and by how many routes in all.
struct Use<'r> {
    name: &'r str,
    route: &'r Route,
    routes: usize,
}

/// Warnings for the names in route requirements that `[roles]` does not know,
/// when the table has a `[roles]` section (without one, every name comes from
/// tokens and there is nothing to check against):
/// - a role that no `[roles]` entry defines (the likely typo);
/// - a permission that no `[roles]` entry grants, when some entry grants
///   permissions at all (then the table maps roles to permissions, and such a
///   permission passes only for tokens that carry it themselves, as service
///   accounts do).
///
/// One warning per name, at the first route using it, in file order.
pub(super) fn undefined_in_roles(
    file: &Path,
    roles: &BTreeMap<String, Spanned<RoleSpec>>,
    routes: &[Route],
) -> Vec<String> {
    if roles.is_empty() {
        return Vec::new();
    }
    let granted: Vec<&str> = {
        let mut g: Vec<&str> =
            roles.values().flat_map(|r| r.get_ref().permissions.iter().map(String::as_str)).collect();
        g.sort_unstable();
        g.dedup();
        g
    };
    let (mut role_uses, mut permission_uses) = (Vec::<Use<'_>>::new(), Vec::<Use<'_>>::new());
    fn note<'r>(uses: &mut Vec<Use<'r>>, name: &'r str, route: &'r Route) {
        match uses.iter_mut().find(|u| u.name == name) {
            Some(u) if std::ptr::eq(u.route, route) => {}
            Some(u) => u.routes += 1,
            None => uses.push(Use { name, route, routes: 1 }),
        }
    }
    fn walk<'r>(req: &'r Requirement, route: &'r Route, roles: &mut Vec<Use<'r>>, perms: &mut Vec<Use<'r>>) {
        for r in req.all_roles.iter().chain(&req.any_roles) {
            note(roles, r, route);
        }
        for p in req.all_permissions.iter().chain(&req.any_permissions) {
            note(perms, p, route);
        }
        for alt in &req.any_of {
            walk(alt, route, roles, perms);
        }
    }
    for route in routes {
        if let Access::Protected(req) = &route.access {
            walk(req, route, &mut role_uses, &mut permission_uses);
        }
    }
    let also = |u: &Use<'_>| match u.routes {
        1 => String::new(),
        2 => "; also used by 1 other route".to_owned(),
        n => format!("; also used by {} other routes", n - 1),
    };
    let at = |u: &Use<'_>| format!("{}:{}: route {:?}", file.display(), u.route.line, &*u.route.name);
    let mut warnings = Vec::new();
    for u in role_uses.iter().filter(|u| !roles.contains_key(u.name)) {
        let hint = match closest(u.name, roles.keys().map(String::as_str)) {
            Some(c) => format!(" (did you mean {c:?}?)"),
            None => "; only tokens that carry it themselves have it".to_owned(),
        };
        warnings.push(format!("{}: role {:?} is not defined in [roles]{hint}{}", at(u), u.name, also(u)));
    }
    if !granted.is_empty() {
        for u in permission_uses.iter().filter(|u| granted.binary_search(&u.name).is_err()) {
            warnings.push(format!(
                "{}: permission {:?} is not granted by any [roles] entry; tokens must carry it directly{}{}",
                at(u),
                u.name,
                did_you_mean(u.name, granted.iter().copied()),
                also(u)
            ));
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::closest;

    #[test]
    fn suggests_close_names_only() {
        let roles = ["admin", "reader", "manager"];
        assert_eq!(closest("admn", roles), Some("admin"));
        assert_eq!(closest("Reader", roles), Some("reader"));
        assert_eq!(closest("readers", roles), Some("reader"));
        assert_eq!(closest("owner", roles), None);
        assert_eq!(closest("x", roles), None);
        assert_eq!(closest("read:usr", ["read:user", "delete:user"]), Some("read:user"));
        assert_eq!(closest("defualt", ["default", "billing"]), Some("default"));
        assert_eq!(closest("admin", ["admin"]), None, "the name itself is no suggestion");
    }
}
