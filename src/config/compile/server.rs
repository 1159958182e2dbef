//! `[server]` and `[upstreams.NAME]`: addresses, limits, trusted proxies, and the upstreams (an unchanged one keeps its connection pool across a reload).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::config::file::{ProtocolSpec, RoutesFile};
use crate::snapshot::{ServerSettings, Snapshot};
use crate::upstream::{Protocol, Upstream};

use super::Compiler;

pub(super) fn compile_server(c: &mut Compiler<'_>, file: &RoutesFile) -> Option<ServerSettings> {
    let s = &file.server;
    let listen = parse_addr(c, "listen", &s.listen);
    let admin_listen = s.admin_listen.as_deref().map(|a| parse_addr(c, "admin_listen", a));
    let tls = s.tls.as_ref().map(|t| (c.resolve(&t.cert), c.resolve(&t.key)));
    let mut trusted = Vec::new();
    for p in &s.trusted_proxies {
        match p.get_ref().parse::<IpNet>().or_else(|_| p.get_ref().parse::<std::net::IpAddr>().map(IpNet::from)) {
            Ok(n) => trusted.push(n),
            Err(_) => c.err(Some(p), format!("trusted_proxies: {:?} is not a CIDR or IP address", p.get_ref())),
        }
    }
    Some(ServerSettings {
        listen: listen?,
        admin_listen: match admin_listen {
            Some(a) => Some(a?),
            None => None,
        },
        trusted_proxies: trusted,
        shutdown_timeout: Duration::from_millis(s.shutdown_timeout_ms),
        header_read_timeout: Duration::from_millis(s.header_read_timeout_ms.max(1)),
        workers: s.workers,
        // hyper needs room for at least one read buffer (8 KiB).
        max_header_bytes: s.max_header_bytes.max(8192),
        h2c: s.h2c,
        h2_max_concurrent_streams: s.h2_max_concurrent_streams.max(1),
        h2_max_header_list_size: s
            .h2_max_header_list_size
            .unwrap_or(u32::try_from(s.max_header_bytes.max(8192)).unwrap_or(u32::MAX))
            .max(1024),
        h2_max_resets: s.h2_max_resets.max(1),
        max_headers: s.max_headers.max(1),
        max_connections: s.max_connections.max(1),
        idle_timeout: Duration::from_millis(s.idle_timeout_ms.max(100)),
        tls,
    })
}

pub(super) fn parse_addr(c: &mut Compiler<'_>, key: &str, value: &str) -> Option<SocketAddr> {
    match value.parse() {
        Ok(a) => Some(a),
        Err(_) => {
            c.err::<()>(None, format!("[server] {key} = {value:?} is not an IP:port address"));
            None
        }
    }
}

pub(super) fn compile_upstreams(
    c: &mut Compiler<'_>,
    file: &RoutesFile,
    previous: Option<&Snapshot>,
) -> BTreeMap<String, Arc<Upstream>> {
    let mut out = BTreeMap::new();
    for (name, spec) in &file.upstreams {
        let s = spec.get_ref();
        let (ct, to) = (Duration::from_millis(s.connect_timeout_ms), Duration::from_millis(s.timeout_ms));
        let ca_file = s.ca_file.as_deref().map(|f| c.resolve(f));
        if let Some(ca) = &ca_file {
            if let Err(e) = c.read(ca) {
                c.err(Some(&s.url), format!("[upstreams.{name}] cannot read ca_file {}: {e}", ca.display()));
                continue;
            }
        }
        let protocol = s.protocol.as_ref().map(|p| match p.get_ref() {
            ProtocolSpec::Http1 => Protocol::Http1,
            ProtocolSpec::H2c => Protocol::H2c,
            ProtocolSpec::H2 => Protocol::H2,
            ProtocolSpec::Auto => Protocol::Auto,
        });
        if let Some(old) = previous
            .and_then(|p| p.upstreams.get(name))
            .filter(|u| u.same_settings(s.url.get_ref(), ct, to, ca_file.as_deref(), protocol))
        {
            out.insert(name.clone(), Arc::clone(old));
            continue;
        }
        match Upstream::new(name, s.url.get_ref(), ct, to, ca_file.as_deref(), protocol) {
            Ok(u) => {
                out.insert(name.clone(), Arc::new(u));
            }
            Err(e) => c.err(Some(&s.url), format!("[upstreams.{name}] {e}")),
        }
    }
    out
}
