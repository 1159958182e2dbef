//! Header rewriting, both ways: hop-by-hop removal (RFC 9110 §7.6.1),
//! `X-Forwarded-*`, request ids, and the identity headers of `[forward]`.
//!
//! What reaches the upstream is the request that was authorized, and nothing
//! a client added to change it (SPEC "What reaches the upstream"): client
//! headers in the identity namespace (`[forward] strip`), header names with
//! `_` (`[server] underscore_headers`), method- and URL-override headers, and
//! the forwarding headers that carry a path or an address are removed or
//! replaced by the gateway's own values, all in [`upstream_request`].

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::header::{self, HeaderName, HeaderValue};
use http::HeaderMap;
use ipnet::IpNet;

use crate::auth::identity::list_value;
use crate::auth::{Caller, ForwardedHeader, IdentitySource};
use crate::h1::hop;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_PATH: HeaderName = HeaderName::from_static("x-forwarded-path");
static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
/// Header names with a rule of their own, as bits: found in one pass over a
/// message's names ([`special`]), so that a rule costs nothing when its
/// header is absent (most messages have none of them). The hop-by-hop
/// fields' bits are `h1::hop`'s; these take the bits above them.
mod bit {
    use crate::h1::hop::FREE;
    pub use crate::h1::hop::{ALL as HOP_BY_HOP, CONNECTION, TE};
    /// The client's expectation is the gateway's to meet (hyper's server
    /// answers `100 Continue`): never passed on.
    pub const EXPECT: u32 = FREE;
    pub const X_FORWARDED_URI: u32 = FREE << 1;
    pub const X_FORWARDED_PATH: u32 = FREE << 2;
    pub const X_FORWARDED_PREFIX: u32 = FREE << 3;
    pub const X_REAL_IP: u32 = FREE << 4;
    pub const FORWARDED: u32 = FREE << 5;
    pub const PATH_AND_ADDRESS: u32 = X_FORWARDED_URI | X_FORWARDED_PATH | X_FORWARDED_PREFIX | X_REAL_IP;
}

/// The headers removed by their bit: the hop-by-hop ones, and `Expect`.
fn hop_by_hop_names() -> impl Iterator<Item = (u32, &'static HeaderName)> {
    hop::names().into_iter().chain([(bit::EXPECT, &header::EXPECT)])
}

/// The bit of a (lower-case) header name with a rule of its own; 0 for the rest.
fn special(name: &str) -> u32 {
    hop::bit(name)
        | match name.len() {
            6 if name == "expect" => bit::EXPECT,
            9 if name == "x-real-ip" => bit::X_REAL_IP,
            9 if name == "forwarded" => bit::FORWARDED,
            15 if name == "x-forwarded-uri" => bit::X_FORWARDED_URI,
            16 if name == "x-forwarded-path" => bit::X_FORWARDED_PATH,
            18 if name == "x-forwarded-prefix" => bit::X_FORWARDED_PREFIX,
            _ => 0,
        }
}

/// Client headers that tell a framework to run another method or serve another
/// path than the request line's (Express, Rails, Laravel, Symfony, Spring, IIS
/// honour some of them): removed from every request unless `[forward]
/// keep_client_headers` names them.
pub const OVERRIDE_HEADERS: [&str; 6] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    "x-original-url",
    "x-rewrite-url",
    "x-original-uri",
];

/// Forwarding headers that carry a path or an address: handled like
/// `X-Forwarded-For` (the gateway's own value), see [`upstream_request`].
pub const PATH_AND_ADDRESS_HEADERS: [&str; 4] =
    ["x-forwarded-uri", "x-forwarded-path", "x-forwarded-prefix", "x-real-ip"];

/// Headers the gateway sets itself: a client's copy spelled with `_` (which a
/// CGI-style upstream would read as the same variable) is always removed.
const GATEWAY_SET: [&str; 6] =
    ["x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "forwarded", "x-request-id", "host"];

/// Removes hop-by-hop headers: the fixed list and every header the
/// `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let present = headers.keys().fold(0, |bits, name| bits | special(name.as_str()));
    remove_hop_by_hop(headers, present & !bit::EXPECT);
}

/// Removes the hop-by-hop headers whose bits are in `present` (and, with
/// `Connection`, the headers it names, but `Host`).
fn remove_hop_by_hop(headers: &mut HeaderMap, present: u32) {
    if present & bit::CONNECTION != 0 {
        for name in hop::connection_named(headers.get_all(header::CONNECTION).iter().map(HeaderValue::as_bytes)) {
            headers.remove(name);
        }
    }
    for (b, name) in hop_by_hop_names() {
        if present & b != 0 {
            headers.remove(name);
        }
    }
}

/// The protocols an Upgrade request or a 101 response names (`Upgrade:
/// websocket` with `Connection: upgrade`) that are in `allowed`, as the value
/// to pass on; `None` when it is no upgrade or names none of them. `h2c` is
/// never allowed: an upgrade to cleartext HTTP/2 would let the client talk to
/// the upstream past the gateway for the rest of the connection.
pub fn upgrade_request(headers: &HeaderMap, allowed: &[Box<str>]) -> Option<HeaderValue> {
    // Most messages have no `Upgrade`: that one lookup is all they cost.
    let mut values = headers.get_all(header::UPGRADE).iter().peekable();
    values.peek()?;
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if !connection_upgrade {
        return None;
    }
    let granted: Vec<&str> = values
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| {
            let name = p.split('/').next().unwrap_or_default();
            !name.eq_ignore_ascii_case("h2c") && allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
        })
        .collect();
    if granted.is_empty() {
        return None;
    }
    HeaderValue::from_str(&granted.join(", ")).ok()
}

/// Restores `Upgrade` and `Connection: upgrade` (removed with the hop-by-hop headers).
pub fn set_upgrade(headers: &mut HeaderMap, protocol: &HeaderValue) {
    headers.insert(header::UPGRADE, protocol.clone());
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
}

/// `[forward]` (and `[server] underscore_headers`), compiled.
#[derive(Debug, Clone, Default)]
pub struct ForwardPlan {
    /// Keep the client's Authorization header for the upstream.
    pub authorization: bool,
    pub identity: Vec<(HeaderName, IdentitySource)>,
    /// Client header names in the identity namespace, removed on every route.
    pub strip: Vec<NamePattern>,
    /// The identity headers `strip` does not cover (their client copies are removed by name).
    pub identity_unstripped: Vec<HeaderName>,
    /// Override and path-carrying headers a client may still send (`keep_client_headers`).
    pub keep: Vec<HeaderName>,
    pub underscores: Underscores,
}

/// `[server] underscore_headers`: client header names containing `_`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Underscores {
    #[default]
    Drop,
    Reject,
    Allow,
}

/// A pattern on header names (lower-case, `_` read as `-`): a `[forward]
/// strip` glob. Most are a prefix and a `*` (`x-auth-*`), checked without a
/// glob matcher.
#[derive(Debug, Clone)]
pub enum NamePattern {
    Exact(Box<str>),
    Prefix(Box<str>),
    Glob(globset::GlobMatcher),
}

impl NamePattern {
    /// The pattern for a glob (already lower-case).
    pub fn new(glob: &str) -> Result<NamePattern, String> {
        let special = |c: char| matches!(c, '*' | '?' | '[' | ']' | '{' | '}' | '\\');
        if !glob.contains(special) {
            return Ok(NamePattern::Exact(glob.into()));
        }
        if let Some(prefix) = glob.strip_suffix('*').filter(|p| !p.contains(special)) {
            return Ok(NamePattern::Prefix(prefix.into()));
        }
        globset::Glob::new(glob).map(|g| NamePattern::Glob(g.compile_matcher())).map_err(|e| e.to_string())
    }

    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::Exact(n) => **n == *name,
            NamePattern::Prefix(p) => name.starts_with(&**p),
            NamePattern::Glob(g) => g.is_match(name),
        }
    }

    /// The default `strip` pattern of an identity header: its family, the name
    /// without its last `-` word (`x-auth-subject` → `x-auth-*`); a name of one
    /// or two words (`x-user`) is its own family (`x-user`, `x-user-*`).
    pub fn family(identity_header: &str) -> Vec<NamePattern> {
        match identity_header.rsplit_once('-') {
            Some((stem, _)) if stem.contains('-') => vec![NamePattern::Prefix(format!("{stem}-").into())],
            _ => vec![
                NamePattern::Exact(identity_header.into()),
                NamePattern::Prefix(format!("{identity_header}-").into()),
            ],
        }
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NamePattern::Exact(n) => f.write_str(n),
            NamePattern::Prefix(p) => write!(f, "{p}*"),
            NamePattern::Glob(g) => f.write_str(g.glob().glob()),
        }
    }
}

/// The first client header name containing `_`, for `underscore_headers = "reject"`.
pub fn underscore_name(headers: &HeaderMap) -> Option<&HeaderName> {
    headers.keys().find(|n| n.as_str().as_bytes().contains(&b'_'))
}

/// Whether a client header must not reach the upstream: an underscore name
/// (unless allowed), a name in the identity namespace, an override header, or
/// an underscore spelling of a header the gateway sets, of `Content-Length`
/// or of a hop-by-hop header (a CGI-style upstream reads `Transfer_Encoding`
/// as `Transfer-Encoding`: the framing it sees must be the gateway's). `name`
/// is lower-case.
fn removed_client_header(name: &str, plan: &ForwardPlan) -> bool {
    let underscore = name.as_bytes().contains(&b'_');
    if underscore && plan.underscores != Underscores::Allow {
        return true;
    }
    let dashed;
    let name = if underscore {
        dashed = name.replace('_', "-");
        dashed.as_str()
    } else {
        name
    };
    if plan.strip.iter().any(|p| p.matches(name)) {
        return true;
    }
    if !name.starts_with("x-") && !underscore {
        return false;
    }
    let kept = || plan.keep.iter().any(|k| k.as_str() == name);
    (OVERRIDE_HEADERS.contains(&name) && !kept())
        || (underscore
            && (GATEWAY_SET.contains(&name)
                || PATH_AND_ADDRESS_HEADERS.contains(&name)
                || name == "content-length"
                || special(name) & (bit::HOP_BY_HOP | bit::EXPECT) != 0))
}

/// The client end of one connection, prepared once per connection.
#[derive(Debug, Clone)]
pub struct ClientConn {
    pub addr: SocketAddr,
    /// The client's IP as a header value (for `X-Forwarded-For`).
    pub ip_header: HeaderValue,
    pub tls: bool,
}

impl ClientConn {
    pub fn new(addr: SocketAddr, tls: bool) -> Self {
        let ip = match addr.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 @ IpAddr::V4(_) => v4,
        };
        let mut text = Vec::with_capacity(15);
        crate::sock::write_ip(&mut text, ip);
        let ip_header = HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientConn { addr, ip_header, tls }
    }
}

/// Who sent this request, as far as header rewriting is concerned.
#[derive(Debug, Clone, Copy)]
pub struct Peer<'a> {
    pub conn: &'a ClientConn,
    /// The peer is a trusted proxy: append to its `X-Forwarded-*` instead of replacing them.
    pub trusted: bool,
}

/// Whether `ip` is in any of the trusted proxy networks.
pub fn is_trusted(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    };
    nets.iter().any(|n| n.contains(&ip))
}

/// Rewrites the client's request headers into the upstream's. `target` is
/// the authorized path and query (for `X-Forwarded-Uri` / `-Path`). Returns
/// whether the client's `TE` listed `trailers` (`TE` itself is hop-by-hop;
/// an HTTP/2 upstream is told `te: trailers`, the one value HTTP/2 allows).
#[must_use]
pub fn upstream_request(
    headers: &mut HeaderMap,
    plan: &ForwardPlan,
    peer: Peer<'_>,
    host: Option<&HeaderValue>,
    request_id: &HeaderValue,
    caller: Option<Caller<'_>>,
    target: &crate::normalize::Target,
) -> bool {
    // One pass over the names finds the headers with a rule of their own and
    // the client headers that must go (most requests have neither: no
    // allocation, no lookup then).
    let mut present = 0;
    let mut removed: Vec<HeaderName> = Vec::new();
    for name in headers.keys() {
        let b = special(name.as_str());
        present |= b;
        if b == 0 && removed_client_header(name.as_str(), plan) {
            removed.push(name.clone());
        }
    }
    let trailers = present & bit::TE != 0
        && headers.get_all(header::TE).iter().any(|v| crate::h1::lists_token(v.as_bytes(), b"trailers"));
    remove_hop_by_hop(headers, present & (bit::HOP_BY_HOP | bit::EXPECT));
    for name in removed {
        headers.remove(name);
    }
    // Identity headers `strip` does not cover (those it covers went above).
    for name in &plan.identity_unstripped {
        headers.remove(name);
    }
    if !plan.authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if present & bit::PATH_AND_ADDRESS != 0 {
        path_and_address_headers(headers, plan, peer, target);
    }
    let proto = HeaderValue::from_static(if peer.conn.tls { "https" } else { "http" });
    let ip = peer.conn.ip_header.clone();
    if peer.trusted {
        let xff = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(prev) if !prev.trim().is_empty() => {
                let joined = format!("{prev}, {}", peer.conn.ip_header.to_str().unwrap_or("unknown"));
                HeaderValue::from_str(&joined).unwrap_or(ip)
            }
            _ => ip,
        };
        headers.insert(X_FORWARDED_FOR.clone(), xff);
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO.clone(), proto);
        }
        if !headers.contains_key(&X_FORWARDED_HOST) {
            if let Some(h) = host {
                headers.insert(X_FORWARDED_HOST.clone(), h.clone());
            }
        }
    } else {
        if present & bit::FORWARDED != 0 {
            headers.remove(&FORWARDED);
        }
        headers.insert(X_FORWARDED_FOR.clone(), ip);
        headers.insert(X_FORWARDED_PROTO.clone(), proto);
        match host {
            Some(h) => headers.insert(X_FORWARDED_HOST.clone(), h.clone()),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    if let Some(caller) = caller {
        identity_headers(plan, caller, headers);
    }
    trailers
}

/// Sets the `[forward] headers` of `identity` in `out` (a header whose source
/// is empty for this caller is not set): the upstream's identity headers, and
/// the same values in a decision-API answer for the proxy in front to copy.
/// The values are made once per identity ([`crate::auth::Identity::forwarded`]),
/// but `$roles` and `$permissions` on a route whose roles are not the
/// identity's own (`organization.{tenant}.roles`): those are made from the
/// roles in effect there, for each request.
pub fn identity_headers(plan: &ForwardPlan, caller: Caller<'_>, out: &mut HeaderMap) {
    if plan.identity.is_empty() {
        return;
    }
    let identity = caller.identity;
    // Made once per identity; used only when made from this same plan
    // (the token cache belongs to one snapshot, so it always is: checked
    // anyway, as it costs a few comparisons).
    let make = || -> Box<[ForwardedHeader]> {
        plan.identity
            .iter()
            .map(|(name, source)| ForwardedHeader {
                name: name.clone(),
                source: source.clone(),
                value: identity.header_value(source),
            })
            .collect()
    };
    let made = identity.forwarded.get_or_init(make);
    let same_plan = made.len() == plan.identity.len()
        && made.iter().zip(&plan.identity).all(|(m, (name, source))| m.name == name && m.source == *source);
    let fresh;
    let values = if same_plan {
        made
    } else {
        fresh = make();
        &fresh
    };
    for m in values.iter() {
        let on_route;
        let value = match (caller.route_roles, &m.source) {
            (Some(r), IdentitySource::Roles) => {
                on_route = list_value(&r.roles);
                on_route.as_ref()
            }
            (Some(r), IdentitySource::Permissions) => {
                on_route = list_value(&r.permissions);
                on_route.as_ref()
            }
            _ => m.value.as_ref(),
        };
        if let Some(v) = value {
            out.insert(m.name.clone(), v.clone());
        }
    }
}

/// `X-Forwarded-Uri`, `X-Forwarded-Path`, `X-Forwarded-Prefix`, `X-Real-IP`,
/// when the client sent them (and `keep_client_headers` does not name them):
/// the URI and the path become the authorized ones, from any peer (the
/// upstream must act on the path that was authorized); the prefix and the
/// address are a trusted proxy's to give and are removed, or for the address
/// replaced by the peer's, from anyone else.
fn path_and_address_headers(
    headers: &mut HeaderMap,
    plan: &ForwardPlan,
    peer: Peer<'_>,
    target: &crate::normalize::Target,
) {
    let kept = |name: &HeaderName| plan.keep.contains(name);
    if headers.contains_key(&X_FORWARDED_URI) && !kept(&X_FORWARDED_URI) {
        if let Ok(v) = HeaderValue::from_str(target.path_and_query()) {
            headers.insert(X_FORWARDED_URI.clone(), v);
        } else {
            headers.remove(&X_FORWARDED_URI);
        }
    }
    if headers.contains_key(&X_FORWARDED_PATH) && !kept(&X_FORWARDED_PATH) {
        if let Ok(v) = HeaderValue::from_str(target.path()) {
            headers.insert(X_FORWARDED_PATH.clone(), v);
        } else {
            headers.remove(&X_FORWARDED_PATH);
        }
    }
    if !peer.trusted {
        if headers.contains_key(&X_FORWARDED_PREFIX) && !kept(&X_FORWARDED_PREFIX) {
            headers.remove(&X_FORWARDED_PREFIX);
        }
        if headers.contains_key(&X_REAL_IP) && !kept(&X_REAL_IP) {
            headers.insert(X_REAL_IP.clone(), peer.conn.ip_header.clone());
        }
    }
}

/// Rewrites the upstream's response headers for the client.
pub fn client_response(headers: &mut HeaderMap, request_id: &HeaderValue) {
    strip_hop_by_hop(headers);
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
}

/// [`client_response`] for a response whose fields are passed as they were
/// received (hop-by-hop ones left out when they were read), with no name twice:
/// the same fields in the same order as the rewritten map would give, the
/// upstream's `x-request-id` replaced in place, else the gateway's last.
pub fn client_response_fields<'a>(
    fields: impl Iterator<Item = (&'a HeaderName, &'a [u8])> + Clone,
    request_id: &'a HeaderValue,
) -> impl Iterator<Item = (&'a HeaderName, &'a [u8])> {
    let id = request_id.as_bytes();
    let has_id = fields.clone().any(|(name, _)| *name == X_REQUEST_ID);
    fields
        .map(move |(name, value)| (name, if *name == X_REQUEST_ID { id } else { value }))
        .chain((!has_id).then_some((&X_REQUEST_ID, id)))
}

/// The client's `x-request-id` when it is reasonable (1–128 visible ASCII
/// characters), else a new one: a per-process random prefix and a counter.
pub fn request_id(headers: &HeaderMap) -> HeaderValue {
    if let Some(v) = headers.get(&X_REQUEST_ID) {
        let b = v.as_bytes();
        if !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_graphic()) {
            return v.clone();
        }
    }
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // 16 hex digits of prefix, 8 of counter (wrapping), without the formatting machinery.
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0u8; 24];
    for (i, b) in buf[..16].iter_mut().enumerate() {
        *b = HEX[((prefix >> (60 - 4 * i)) & 15) as usize];
    }
    for (i, b) in buf[16..].iter_mut().enumerate() {
        *b = HEX[((n >> (28 - 4 * i)) & 15) as usize];
    }
    // Ids are written one after another into a per-thread block and each is a
    // slice of it: one allocation per 512 ids rather than two per id (its
    // copy, and the shared handle its first clone would make).
    thread_local! {
        static BLOCK: std::cell::RefCell<bytes::BytesMut> = std::cell::RefCell::new(bytes::BytesMut::new());
    }
    let id = BLOCK.with_borrow_mut(|block| {
        if block.capacity() < buf.len() {
            *block = bytes::BytesMut::with_capacity(buf.len() * 512);
        }
        block.extend_from_slice(&buf);
        block.split().freeze()
    });
    HeaderValue::from_maybe_shared(id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_named_headers_are_stripped_but_not_host() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("x-secret, host, keep-alive"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        strip_hop_by_hop(&mut h);
        assert!(h.get("x-secret").is_none());
        assert!(h.get(header::TE).is_none());
        assert_eq!(h.get(header::HOST).unwrap(), "a");
    }

    /// The plain definition: remove every fixed hop-by-hop name, `Upgrade`,
    /// and every name `Connection` lists (but `Host`).
    fn strip_reference(h: &mut HeaderMap) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|b| *b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok())
            .filter(|n| n != header::HOST)
            .collect();
        // `Upgrade` named here too, so that the check holds even if the list loses it.
        let fixed = hop_by_hop_names().map(|(_, n)| n).filter(|n| *n != header::EXPECT);
        let http2_settings = HeaderName::from_static("http2-settings");
        for name in named.iter().chain(fixed).chain([&header::UPGRADE, &http2_settings]) {
            h.remove(name);
        }
    }

    /// `Connection` values for the generated messages: options, names, a host, empty items.
    const CONNECTION_VALUES: [&str; 6] =
        ["keep-alive", "close", "Upgrade", "x-a, Keep-Alive", "X-B,host , te", " , ,x-a"];

    proptest::proptest! {
        #[test]
        fn stripping_equals_the_plain_definition(
            picks in proptest::collection::vec((0usize..16, 0usize..6), 0..10),
        ) {
            const NAMES: [&str; 16] = ["connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade", "host", "x-a",
                "content-type", "authorization", "x-b", "http2-settings", "expect"];
            let mut h = HeaderMap::new();
            for (name, value) in picks {
                let value = if name == 0 { CONNECTION_VALUES[value] } else { "v" };
                h.append(HeaderName::from_static(NAMES[name]), HeaderValue::from_static(value));
            }
            let mut want = h.clone();
            strip_reference(&mut want);
            strip_hop_by_hop(&mut h);
            proptest::prop_assert_eq!(h, want);
        }

        /// Leaving the hop-by-hop fields out as a response is read
        /// (`HopByHop`) gives the map that stripping the whole map gives; and
        /// fields kept as received (no name twice) give the client the fields of
        /// that map, rewritten, in its order.
        #[test]
        fn fields_kept_as_received_are_the_rewritten_map(
            picks in proptest::collection::vec((0usize..16, 0usize..6), 0..10),
        ) {
            use crate::h1::head::{header_map, Field, Fields};
            use crate::h1::hop::HopByHop;
            const NAMES: [&str; 16] = ["connection", "keep-alive", "proxy-connection", "x-request-id",
                "server", "te", "trailer", "transfer-encoding", "upgrade", "host", "x-a",
                "content-type", "set-cookie", "x-b", "http2-settings", "expect"];
            let (mut wire, mut fields) = (Vec::new(), Vec::<Field>::new());
            for (name, value) in picks {
                let value = if name == 0 { CONNECTION_VALUES[value] } else { ["v", "w x"][value % 2] };
                let start = wire.len() + NAMES[name].len() + 2;
                wire.extend_from_slice(format!("{}: {value}\r\n", NAMES[name]).as_bytes());
                fields.push((HeaderName::from_static(NAMES[name]), start..start + value.len()));
            }
            let head = bytes::Bytes::from(wire);
            let id = HeaderValue::from_static("the-id");
            let mut whole = header_map(&head, &mut fields.clone(), 1, |_| false).unwrap();
            client_response(&mut whole, &id);
            let hop = HopByHop::of(fields.iter().map(|(name, value)| (name, &head[value.clone()])));
            let kept: Vec<Field> = fields.into_iter().filter(|(name, _)| !hop.drops(name)).collect();
            let mut map = header_map(&head, &mut kept.clone(), 1, |_| false).unwrap();
            client_response(&mut map, &id);
            proptest::prop_assert_eq!(&map, &whole);
            let twice = kept.iter().enumerate().any(|(i, (name, _))| kept[..i].iter().any(|(n, _)| n == name));
            if !twice {
                let received = Fields::new(head.clone(), kept);
                let got: Vec<(&HeaderName, &[u8])> = client_response_fields(received.iter(), &id).collect();
                let want: Vec<(&HeaderName, &[u8])> = map.iter().map(|(name, value)| (name, value.as_bytes())).collect();
                proptest::prop_assert_eq!(got, want);
            }
        }
    }

    /// Identity headers made once per identity are the ones made fresh, and a
    /// different plan (other names or sources) never gets another plan's values.
    #[test]
    fn identity_headers_are_made_once_per_identity_and_plan() {
        let issuer = std::sync::Arc::new(crate::auth::Issuer {
            name: "i".into(),
            audiences: vec![],
            algorithms: vec![],
            keys: vec![],
            leeway_s: 0,
            roles_claims: vec![],
            permissions_claims: vec![],
            default_roles: vec![],
            tenant_claim: "tid".into(),
            require_exp: false,
            token_types: vec![],
            remote: None,
        });
        let claims = serde_json::json!({"sub": "alice", "tid": "acme"}).as_object().unwrap().clone();
        let id = crate::auth::verify::identity_from_claims(
            claims,
            issuer,
            &crate::auth::claims::RoleClosure::build(&Default::default()),
            None,
        );
        let id =
            crate::auth::Identity { roles: vec!["admin".into(), "ops".into()], permissions: vec!["p:1".into()], ..id };
        let conn = ClientConn::new("127.0.0.1:1".parse().unwrap(), false);
        let peer = Peer { conn: &conn, trusted: false };
        let plan = |pairs: &[(&'static str, IdentitySource)]| ForwardPlan {
            authorization: true,
            identity: pairs.iter().map(|(n, s)| (HeaderName::from_static(n), s.clone())).collect(),
            ..ForwardPlan::default()
        };
        let send_as = |plan: &ForwardPlan, route_roles: Option<&crate::auth::RouteRoles>| {
            let mut h = HeaderMap::new();
            h.insert("x-user", HeaderValue::from_static("forged"));
            let target = crate::normalize::normalize("/x", None).unwrap();
            let caller = Caller { identity: &id, route_roles };
            let _ = upstream_request(&mut h, plan, peer, None, &HeaderValue::from_static("r"), Some(caller), &target);
            ["x-user", "x-roles", "x-tenant"].map(|n| h.get(n).map(|v| v.to_str().unwrap().to_owned()))
        };
        let send = |plan: &ForwardPlan| send_as(plan, None);
        let first = plan(&[("x-user", IdentitySource::Claim("sub".into())), ("x-roles", IdentitySource::Roles)]);
        let want = [Some("alice".to_owned()), Some("admin,ops".to_owned()), None];
        assert_eq!(send(&first), want);
        assert_eq!(send(&first), want, "from the values made the first time");
        // Same names, other sources; then another name: never the first plan's values.
        let other = plan(&[("x-user", IdentitySource::Claim("tid".into())), ("x-roles", IdentitySource::Permissions)]);
        assert_eq!(send(&other), [Some("acme".to_owned()), Some("p:1".to_owned()), None]);
        let third = plan(&[("x-tenant", IdentitySource::Claim("$tenant".into()))]);
        // (x-user is no identity header of this plan: the client's passes.)
        assert_eq!(send(&third), [Some("forged".to_owned()), None, Some("acme".to_owned())]);
        assert_eq!(send(&first), want);
        // On a route whose roles are not the identity's own (a tenant's): those
        // roles, made for the request; the claims, and the identity's own values, stay.
        let tenant = crate::auth::RouteRoles { roles: vec!["reader".into()], permissions: vec![] };
        assert_eq!(send_as(&first, Some(&tenant)), [Some("alice".to_owned()), Some("reader".to_owned()), None]);
        let none = crate::auth::RouteRoles { roles: vec![], permissions: vec![] };
        assert_eq!(send_as(&first, Some(&none)), [Some("alice".to_owned()), None, None], "no roles there: no header");
        assert_eq!(send(&first), want);
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("abc-1"));
        assert_eq!(request_id(&h), "abc-1");
        h.insert(&X_REQUEST_ID, HeaderValue::from_static("has space"));
        let generated = request_id(&h);
        assert_ne!(generated, "has space");
        assert_ne!(request_id(&HeaderMap::new()), request_id(&HeaderMap::new()));
    }

    /// Generated ids share blocks: held together, across several blocks,
    /// each keeps its own text.
    #[test]
    fn generated_ids_stay_distinct_while_held() {
        let ids: Vec<HeaderValue> = (0..2_000).map(|_| request_id(&HeaderMap::new())).collect();
        let texts: std::collections::HashSet<&[u8]> = ids.iter().map(HeaderValue::as_bytes).collect();
        assert_eq!(texts.len(), ids.len());
        assert!(ids.iter().all(|id| id.len() == 24 && id.as_bytes().iter().all(u8::is_ascii_hexdigit)));
        let counters: Vec<u32> =
            ids.iter().map(|id| u32::from_str_radix(id.to_str().unwrap().get(16..).unwrap(), 16).unwrap()).collect();
        assert!(counters.windows(2).all(|w| w[1] > w[0]), "ids in the order they were made");
    }

    #[test]
    fn trusted_nets() {
        let nets: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        assert!(is_trusted(&nets, "10.1.2.3".parse().unwrap()));
        assert!(is_trusted(&nets, "::ffff:10.1.2.3".parse().unwrap()));
        assert!(!is_trusted(&nets, "11.1.2.3".parse().unwrap()));
    }
}
