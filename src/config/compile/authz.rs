//! `[authz]`: the decision API's listener, trusted peers, Envoy path prefix and dialect.

use std::net::SocketAddr;

use ipnet::IpNet;

use crate::config::file::{DialectSpec, RoutesFile};
use crate::snapshot::{AuthzSettings, Dialect, ServerSettings};

use super::Compiler;

/// Loopback, IPv4 and IPv6: the peers trusted when `trusted_peers` is not given.
fn loopback() -> Vec<IpNet> {
    ["127.0.0.0/8", "::1/128"].iter().filter_map(|n| n.parse().ok()).collect()
}

pub(super) fn compile_authz(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    server: Option<&ServerSettings>,
) -> Option<AuthzSettings> {
    let spec = file.authz.as_ref()?;
    let listen = match spec.listen.get_ref().parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err(
                Some(&spec.listen),
                format!("[authz] listen = {:?} is not an IP:port address", spec.listen.get_ref()),
            );
            None
        }
    };
    // Its own listener: a check on the proxy listener would be proxied, and
    // the admin listener answers no checks.
    if let (Some(l), Some(s)) = (listen, server) {
        let taken = [("[server] listen", Some(s.listen)), ("[server] admin_listen", s.admin_listen)];
        for (key, addr) in taken {
            if addr.is_some_and(|a| a == l && l.port() != 0) {
                c.err(
                    Some(&spec.listen),
                    format!("[authz] listen {l} is {key}: the decision API needs a listener of its own"),
                );
            }
        }
    }
    let trusted_peers = match &spec.trusted_peers {
        None => loopback(),
        Some(peers) => {
            let mut nets = Vec::new();
            for p in peers {
                match p.get_ref().parse::<IpNet>().or_else(|_| p.get_ref().parse::<std::net::IpAddr>().map(IpNet::from))
                {
                    Ok(n) => nets.push(n),
                    Err(_) => {
                        c.err(Some(p), format!("[authz] trusted_peers: {:?} is not a CIDR or IP address", p.get_ref()))
                    }
                }
            }
            if peers.is_empty() {
                c.warnings.push("[authz] trusted_peers is empty: every check is refused (400)".to_owned());
            }
            nets
        }
    };
    let prefix = spec.envoy_path_prefix.get_ref();
    let valid_prefix = prefix.len() > 1
        && prefix.starts_with('/')
        && !prefix.ends_with('/')
        && prefix.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'?' | b'#' | b'%' | b'\\'));
    if !valid_prefix {
        c.err(
            Some(&spec.envoy_path_prefix),
            format!(
                "[authz] envoy_path_prefix = {prefix:?}: a path such as \"/ext_authz\" (starting with /, not ending with /, without ?, #, % or \\)"
            ),
        );
    }
    let dialect = match spec.dialect {
        DialectSpec::Auto => Dialect::Auto,
        DialectSpec::Nginx => Dialect::Nginx,
        DialectSpec::Forwarded => Dialect::Forwarded,
        DialectSpec::Envoy => Dialect::Envoy,
    };
    Some(AuthzSettings { listen: listen?, trusted_peers, envoy_path_prefix: prefix.as_str().into(), dialect })
}
