//! Hop-by-hop (connection-specific) header fields, RFC 9110 §7.6.1 and RFC
//! 9113 §8.2.2: the fixed list, and every field a message's `Connection`
//! header names. They belong to one connection and never cross the gateway,
//! either way: `headers` removes them from what goes upstream and from a
//! response's header map, and an HTTP/1.1 response is read without them
//! ([`HopByHop`]). `Upgrade` is restored for an allowed upgrade;
//! `HTTP2-Settings` belongs to the `h2c` upgrade, which is never passed on.
//! `Trailer` is not one (RFC 9110 §6.6.2): it names the trailer fields a
//! chunked message carries, and passes with them.

use http::header::{self, HeaderName};

pub const CONNECTION: u32 = 1;
pub const KEEP_ALIVE: u32 = 1 << 1;
pub const PROXY_CONNECTION: u32 = 1 << 2;
pub const PROXY_AUTHENTICATE: u32 = 1 << 3;
pub const PROXY_AUTHORIZATION: u32 = 1 << 4;
pub const TE: u32 = 1 << 5;
pub const TRANSFER_ENCODING: u32 = 1 << 6;
pub const UPGRADE: u32 = 1 << 7;
pub const HTTP2_SETTINGS: u32 = 1 << 8;
/// Every bit of the fixed list.
pub const ALL: u32 = (1 << 9) - 1;
/// The lowest bit this list leaves for other rules on names (`headers` uses them).
pub const FREE: u32 = 1 << 9;

static KEEP_ALIVE_NAME: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION_NAME: HeaderName = HeaderName::from_static("proxy-connection");
static HTTP2_SETTINGS_NAME: HeaderName = HeaderName::from_static("http2-settings");

/// The bit of a (lower-case) header name on the fixed list; 0 for any other.
#[inline]
pub fn bit(name: &str) -> u32 {
    match name.len() {
        2 if name == "te" => TE,
        7 if name == "upgrade" => UPGRADE,
        10 if name == "connection" => CONNECTION,
        10 if name == "keep-alive" => KEEP_ALIVE,
        14 if name == "http2-settings" => HTTP2_SETTINGS,
        16 if name == "proxy-connection" => PROXY_CONNECTION,
        17 if name == "transfer-encoding" => TRANSFER_ENCODING,
        18 if name == "proxy-authenticate" => PROXY_AUTHENTICATE,
        19 if name == "proxy-authorization" => PROXY_AUTHORIZATION,
        _ => 0,
    }
}

/// The name of each bit, in bit order.
pub fn names() -> [(u32, &'static HeaderName); 9] {
    [
        (CONNECTION, &header::CONNECTION),
        (KEEP_ALIVE, &KEEP_ALIVE_NAME),
        (PROXY_CONNECTION, &PROXY_CONNECTION_NAME),
        (PROXY_AUTHENTICATE, &header::PROXY_AUTHENTICATE),
        (PROXY_AUTHORIZATION, &header::PROXY_AUTHORIZATION),
        (TE, &header::TE),
        (TRANSFER_ENCODING, &header::TRANSFER_ENCODING),
        (UPGRADE, &header::UPGRADE),
        (HTTP2_SETTINGS, &HTTP2_SETTINGS_NAME),
    ]
}

/// The header names `Connection` values list, to be removed with it: all but
/// `close` and `keep-alive` (options, or already on the fixed list) and
/// `Host` (no allocation when nothing else is named).
pub fn connection_named<'a>(values: impl Iterator<Item = &'a [u8]>) -> Vec<HeaderName> {
    let option = |t: &[u8]| t.eq_ignore_ascii_case(b"close") || t.eq_ignore_ascii_case(b"keep-alive");
    values
        // Most values are one option alone: not taken apart.
        .filter(|v| !option(v))
        .flat_map(|v| v.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|t| !t.is_empty() && !option(t))
        .filter_map(|t| HeaderName::from_bytes(t).ok())
        .filter(|n| n != header::HOST)
        .collect()
}

/// The hop-by-hop fields of a message read off the wire, known before it
/// has a header map (so that they are never put in one, and the other
/// fields keep their order): what `headers::strip_hop_by_hop` would remove.
pub struct HopByHop {
    /// The names `Connection` lists (empty in the common case).
    named: Vec<HeaderName>,
}

impl HopByHop {
    pub fn of<'a>(fields: impl Iterator<Item = (&'a HeaderName, &'a [u8])>) -> HopByHop {
        let connection = fields.filter(|(name, _)| **name == header::CONNECTION).map(|(_, value)| value);
        HopByHop { named: connection_named(connection) }
    }

    pub fn drops(&self, name: &HeaderName) -> bool {
        bit(name.as_str()) != 0 || self.named.contains(name)
    }
}
