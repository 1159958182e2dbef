//! `[roles.NAME]`: the role closure, with unknown includes and cycles refused.

use std::collections::HashMap;

use crate::auth::claims::RoleClosure;
use crate::config::file::RoutesFile;

use super::Compiler;

pub(super) fn compile_roles(c: &mut Compiler<'_>, file: &RoutesFile) -> RoleClosure {
    let mut defs: HashMap<String, (Vec<String>, Vec<String>)> = HashMap::new();
    for (name, spec) in &file.roles {
        let s = spec.get_ref();
        for inc in &s.includes {
            if !file.roles.contains_key(inc.get_ref()) {
                c.err(Some(inc), format!("role {name:?} includes unknown role {:?}", inc.get_ref()));
            }
        }
        defs.insert(name.clone(), (s.permissions.clone(), s.includes.iter().map(|i| i.get_ref().clone()).collect()));
    }
    // Cycle detection: depth-first search with colours.
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = on stack, 2 = done
    fn visit<'a>(
        n: &'a str,
        defs: &'a HashMap<String, (Vec<String>, Vec<String>)>,
        state: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match state.get(n) {
            Some(2) => return None,
            Some(_) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle: Vec<String> = path[start..].iter().map(|s| s.to_string()).collect();
                cycle.push(n.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        state.insert(n, 1);
        path.push(n);
        if let Some((_, incs)) = defs.get(n) {
            for i in incs {
                if let Some(cycle) = visit(i, defs, state, path) {
                    return Some(cycle);
                }
            }
        }
        path.pop();
        state.insert(n, 2);
        None
    }
    for name in file.roles.keys() {
        let mut path = Vec::new();
        if let Some(cycle) = visit(name, &defs, &mut state, &mut path) {
            let at = file.roles.get(&cycle[0]);
            c.err(at, format!("role cycle: {}", cycle.join(" -> ")));
            break;
        }
    }
    RoleClosure::build(&defs)
}
