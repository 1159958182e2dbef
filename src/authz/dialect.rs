//! Reading a check: which proxy asks, and the original method, URI and host
//! it names, in that proxy's own headers. Pure.
//!
//! | dialect | method | URI | host |
//! |---|---|---|---|
//! | `nginx` (`auth_request`, ingress-nginx) | `X-Original-Method` | `X-Original-URI`, or the path of `X-Original-URL` | the authority of `X-Original-URL`, else `X-Forwarded-Host`, else `Host` |
//! | `forwarded` (Caddy, Traefik) | `X-Forwarded-Method` | `X-Forwarded-Uri` | `X-Forwarded-Host`, else `Host` |
//! | `envoy` (`ext_authz` HTTP service) | the check's own | the check's own target after the prefix | `Host` (Envoy copies the original's) |
//!
//! Whichever dialect is read, every header present that names the original
//! method, URI or host must name the same one: a proxy passes a client's
//! copy of another proxy's header through (nginx a client's
//! `X-Forwarded-Uri`, Caddy a client's `X-Original-URI`), and such a check is
//! refused (400) rather than decided on either value. So is a check naming
//! no original method or URI, or more than one value of such a header.

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Uri};

use crate::normalize::RequestError;
use crate::snapshot::{AuthzSettings, Dialect};

static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_FORWARDED_METHOD: HeaderName = HeaderName::from_static("x-forwarded-method");
static X_FORWARDED_URI: HeaderName = HeaderName::from_static("x-forwarded-uri");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// The request a check asks about.
#[derive(Debug)]
pub(crate) struct Original {
    /// Nginx, Forwarded or Envoy (never Auto): the headers it was read from.
    pub dialect: Dialect,
    pub method: Method,
    /// Origin-form path and query, as the proxy sent it (not yet normalized).
    pub uri: Uri,
    /// The original `Host`, when it is not the check's own `Host` header.
    pub host: Option<HeaderValue>,
}

/// The one value of a header: `None` when absent, refused when repeated.
fn one<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Result<Option<&'h HeaderValue>, RequestError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(RequestError::ConflictingOriginal);
    }
    Ok(first)
}

/// Every value present must be the same (by `same`); the first of them.
fn agree<T: Copy>(values: &[Option<T>], same: impl Fn(T, T) -> bool) -> Result<Option<T>, RequestError> {
    let mut present = values.iter().flatten().copied();
    let Some(first) = present.next() else { return Ok(None) };
    if present.all(|v| same(first, v)) {
        Ok(Some(first))
    } else {
        Err(RequestError::ConflictingOriginal)
    }
}

/// A host as routes match it: lower-case, without port.
fn host_key(h: &[u8]) -> Vec<u8> {
    let without_port = match h.iter().rposition(|b| *b == b':') {
        Some(i) if !h[i..].contains(&b']') => &h[..i],
        _ => h,
    };
    without_port.to_ascii_lowercase()
}

/// The path and query of an `X-Original-URL` (`http://host/p?q`), and its authority.
fn split_url(url: &HeaderValue) -> Result<(&[u8], &[u8]), RequestError> {
    let b = url.as_bytes();
    let rest = [&b"http://"[..], b"https://"]
        .iter()
        .find_map(|s| (b.len() > s.len() && b[..s.len()].eq_ignore_ascii_case(s)).then(|| &b[s.len()..]))
        .ok_or(RequestError::BadOriginal)?;
    let end = rest.iter().position(|c| matches!(c, b'/' | b'?' | b'#')).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(end);
    if authority.is_empty() || authority.contains(&b'@') {
        return Err(RequestError::BadOriginal);
    }
    match target.first() {
        Some(b'/') => Ok((target, authority)),
        // `http://host` and `http://host?q` ask about `/`.
        None => Ok((b"/", authority)),
        Some(_) => Err(RequestError::BadOriginal),
    }
}

/// The target of an Envoy check: what follows `prefix` when a `/` does.
fn envoy_target<'t>(target: &'t Uri, prefix: &str) -> Option<&'t str> {
    let pq = target.path_and_query()?.as_str();
    let rest = pq.strip_prefix(prefix)?;
    rest.starts_with('/').then_some(rest)
}

/// An origin-form URI from the bytes a proxy sent (`/p?q`; nothing else).
fn origin_form(raw: &[u8]) -> Result<Uri, RequestError> {
    if raw.first() != Some(&b'/') {
        return Err(RequestError::BadOriginal);
    }
    let uri = Uri::from_maybe_shared(Bytes::copy_from_slice(raw)).map_err(|_| RequestError::BadOriginal)?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(RequestError::BadOriginal);
    }
    Ok(uri)
}

/// The original request of a check with this method, target and headers
/// (the check's peer is trusted: see `authz::Authz::check`).
pub(crate) fn read(
    method: &Method,
    target: &Uri,
    headers: &HeaderMap,
    settings: &AuthzSettings,
) -> Result<Original, RequestError> {
    let x_original_method = one(headers, &X_ORIGINAL_METHOD)?;
    let x_forwarded_method = one(headers, &X_FORWARDED_METHOD)?;
    let x_original_uri = one(headers, &X_ORIGINAL_URI)?;
    let x_original_url = one(headers, &X_ORIGINAL_URL)?;
    let x_forwarded_uri = one(headers, &X_FORWARDED_URI)?;
    let x_forwarded_host = one(headers, &X_FORWARDED_HOST)?;
    let url = x_original_url.map(split_url).transpose()?;

    let envoy = match settings.dialect {
        Dialect::Auto | Dialect::Envoy => envoy_target(target, &settings.envoy_path_prefix),
        Dialect::Nginx | Dialect::Forwarded => None,
    };
    let dialect = match (settings.dialect, envoy) {
        (_, Some(_)) => Dialect::Envoy,
        (Dialect::Envoy, None) => return Err(RequestError::MissingOriginal),
        (Dialect::Nginx, None) => Dialect::Nginx,
        (Dialect::Forwarded, None) => Dialect::Forwarded,
        (Dialect::Auto, None) if x_original_uri.is_some() || url.is_some() => Dialect::Nginx,
        (Dialect::Auto, None) if x_forwarded_uri.is_some() => Dialect::Forwarded,
        (Dialect::Auto, None) => return Err(RequestError::MissingOriginal),
    };
    let own_host = match dialect {
        Dialect::Envoy => one(headers, &HOST)?.map(HeaderValue::as_bytes),
        Dialect::Auto | Dialect::Nginx | Dialect::Forwarded => None,
    };

    // Every header that names the original method, URI or host must name the
    // same one, whatever the dialect read.
    let method_value = agree(
        &[
            x_original_method.map(HeaderValue::as_bytes),
            x_forwarded_method.map(HeaderValue::as_bytes),
            envoy.map(|_| method.as_str().as_bytes()),
        ],
        |a, b| a == b,
    )?;
    let uri_value = agree(
        &[
            x_original_uri.map(HeaderValue::as_bytes),
            url.map(|(target, _)| target),
            x_forwarded_uri.map(HeaderValue::as_bytes),
            envoy.map(str::as_bytes),
        ],
        |a, b| a == b,
    )?;
    agree(&[url.map(|(_, authority)| authority), x_forwarded_host.map(HeaderValue::as_bytes), own_host], |a, b| {
        host_key(a) == host_key(b)
    })?;

    // The dialect's own headers must be there (a client's copy of another
    // dialect's cannot stand in for them).
    let (method_value, uri_value) = match dialect {
        Dialect::Nginx => (
            x_original_method.map(HeaderValue::as_bytes),
            x_original_uri.map(HeaderValue::as_bytes).or(url.map(|(t, _)| t)),
        ),
        Dialect::Forwarded => {
            (x_forwarded_method.map(HeaderValue::as_bytes), x_forwarded_uri.map(HeaderValue::as_bytes))
        }
        Dialect::Auto | Dialect::Envoy => (method_value, uri_value),
    };
    let (Some(method_value), Some(uri_value)) = (method_value, uri_value) else {
        return Err(RequestError::MissingOriginal);
    };
    let method = Method::from_bytes(method_value).map_err(|_| RequestError::BadOriginal)?;
    let uri = origin_form(uri_value)?;
    let host = match dialect {
        Dialect::Envoy => None,
        Dialect::Auto | Dialect::Nginx | Dialect::Forwarded => match (url, x_forwarded_host) {
            (Some((_, authority)), _) => Some(authority),
            (None, Some(h)) => Some(h.as_bytes()),
            (None, None) => None,
        },
    };
    let host = match host {
        Some(h) if h.contains(&b',') || http::uri::Authority::try_from(h).is_err() => {
            return Err(RequestError::BadOriginal)
        }
        Some(h) => Some(HeaderValue::from_bytes(h).map_err(|_| RequestError::BadOriginal)?),
        None => None,
    };
    Ok(Original { dialect, method, uri, host })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dialect: Dialect) -> AuthzSettings {
        AuthzSettings {
            listen: "127.0.0.1:0".parse().unwrap(),
            trusted_peers: Vec::new(),
            envoy_path_prefix: "/ext_authz".into(),
            dialect,
        }
    }

    fn check(dialect: Dialect, method: &str, target: &str, pairs: &[(&str, &str)]) -> Result<Original, RequestError> {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(HeaderName::from_bytes(n.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        read(&Method::from_bytes(method.as_bytes()).unwrap(), &target.parse().unwrap(), &h, &settings(dialect))
    }

    fn summary(o: &Original) -> (&'static str, String, String, Option<String>) {
        (
            o.dialect.name(),
            o.method.to_string(),
            o.uri.to_string(),
            o.host.as_ref().map(|h| h.to_str().unwrap().to_owned()),
        )
    }

    fn ok(
        dialect: Dialect,
        method: &str,
        target: &str,
        pairs: &[(&str, &str)],
    ) -> (&'static str, String, String, Option<String>) {
        summary(&check(dialect, method, target, pairs).unwrap_or_else(|e| panic!("{target} {pairs:?}: {e}")))
    }

    fn s(x: &str) -> String {
        x.to_owned()
    }

    #[test]
    fn each_dialect_is_read_from_its_own_headers() {
        let nginx = [("x-original-method", "DELETE"), ("x-original-uri", "/v1/users/7?x=1"), ("host", "api.test")];
        assert_eq!(ok(Dialect::Auto, "GET", "/check", &nginx), ("nginx", s("DELETE"), s("/v1/users/7?x=1"), None));
        assert_eq!(ok(Dialect::Nginx, "GET", "/check", &nginx).0, "nginx");
        // ingress-nginx: the full URL, whose authority is the host.
        let ingress =
            [("x-original-method", "GET"), ("x-original-url", "https://API.test:8443/a/b?q"), ("host", "authz.svc")];
        assert_eq!(ok(Dialect::Auto, "GET", "/", &ingress), ("nginx", s("GET"), s("/a/b?q"), Some(s("API.test:8443"))));
        let bare = [("x-original-method", "GET"), ("x-original-url", "http://api.test")];
        assert_eq!(ok(Dialect::Auto, "GET", "/", &bare).2, "/");
        let forwarded = [
            ("x-forwarded-method", "POST"),
            ("x-forwarded-uri", "/v1/orders"),
            ("x-forwarded-host", "api.test"),
            ("x-forwarded-proto", "https"),
            ("host", "127.0.0.1:9191"),
        ];
        assert_eq!(
            ok(Dialect::Auto, "GET", "/", &forwarded),
            ("forwarded", s("POST"), s("/v1/orders"), Some(s("api.test")))
        );
        assert_eq!(ok(Dialect::Forwarded, "GET", "/", &forwarded).0, "forwarded");
        // Envoy: its own request line after the prefix; Host is the original's.
        let envoy = [("host", "api.test"), ("authorization", "Bearer x")];
        assert_eq!(
            ok(Dialect::Auto, "PUT", "/ext_authz/v1/a%2e/b?c=d", &envoy),
            ("envoy", s("PUT"), s("/v1/a%2e/b?c=d"), None)
        );
        assert_eq!(ok(Dialect::Envoy, "GET", "/ext_authz/", &envoy).2, "/");
    }

    #[test]
    fn a_check_without_its_dialects_headers_is_refused() {
        let e = |d, m: &str, t: &str, p: &[(&str, &str)]| check(d, m, t, p).unwrap_err();
        assert_eq!(e(Dialect::Auto, "GET", "/check", &[("host", "a")]), RequestError::MissingOriginal);
        // The prefix must be followed by a `/`.
        assert_eq!(e(Dialect::Auto, "GET", "/ext_authzv1/a", &[]), RequestError::MissingOriginal);
        assert_eq!(e(Dialect::Auto, "GET", "/ext_authz", &[]), RequestError::MissingOriginal);
        // A method without a URI, a URI without a method.
        assert_eq!(e(Dialect::Auto, "GET", "/", &[("x-original-uri", "/a")]), RequestError::MissingOriginal);
        assert_eq!(e(Dialect::Auto, "GET", "/", &[("x-forwarded-uri", "/a")]), RequestError::MissingOriginal);
        // A fixed dialect reads only its own headers.
        let nginx = [("x-original-method", "GET"), ("x-original-uri", "/a")];
        let forwarded = [("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a")];
        assert_eq!(e(Dialect::Forwarded, "GET", "/", &nginx), RequestError::MissingOriginal);
        assert_eq!(e(Dialect::Nginx, "GET", "/", &forwarded), RequestError::MissingOriginal);
        assert_eq!(e(Dialect::Envoy, "GET", "/", &nginx), RequestError::MissingOriginal);
        assert_eq!(e(Dialect::Nginx, "GET", "/ext_authz/a", &[]), RequestError::MissingOriginal);
    }

    #[test]
    fn two_different_methods_uris_or_hosts_are_refused_in_every_dialect() {
        type Check<'a> = (&'a str, &'a str, &'a [(&'a str, &'a str)]);
        let conflicts: &[Check<'_>] = &[
            // nginx passes a client's X-Forwarded-Uri / -Method through.
            ("GET", "/", &[("x-original-method", "GET"), ("x-original-uri", "/docs/a"), ("x-forwarded-uri", "/admin")]),
            ("GET", "/", &[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-forwarded-method", "DELETE")]),
            // Caddy passes a client's X-Original-URI / -Method / -URL through.
            ("GET", "/", &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/admin"), ("x-original-uri", "/docs")]),
            ("GET", "/", &[("x-forwarded-method", "DELETE"), ("x-forwarded-uri", "/a"), ("x-original-method", "GET")]),
            ("GET", "/", &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a"), ("x-original-url", "http://h/b")]),
            // The URI and the URL of one check.
            ("GET", "/", &[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-url", "http://h/b")]),
            // Envoy copies a client's headers of the other dialects.
            ("GET", "/ext_authz/admin", &[("x-original-uri", "/docs")]),
            ("GET", "/ext_authz/admin", &[("x-forwarded-uri", "/docs")]),
            ("DELETE", "/ext_authz/a", &[("x-forwarded-method", "GET")]),
            ("GET", "/ext_authz/a", &[("host", "api.test"), ("x-forwarded-host", "vip.test")]),
            // Hosts: the URL's against X-Forwarded-Host.
            (
                "GET",
                "/",
                &[("x-original-method", "GET"), ("x-original-url", "http://a.test/x"), ("x-forwarded-host", "b.test")],
            ),
            // One header twice, even with the same value.
            ("GET", "/", &[("x-original-method", "GET"), ("x-original-uri", "/a"), ("x-original-uri", "/a")]),
            (
                "GET",
                "/",
                &[
                    ("x-forwarded-method", "GET"),
                    ("x-forwarded-uri", "/a"),
                    ("x-forwarded-host", "a"),
                    ("x-forwarded-host", "a"),
                ],
            ),
            ("GET", "/ext_authz/a", &[("host", "a"), ("host", "b")]),
            // An empty copy is a value too.
            ("GET", "/", &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a"), ("x-original-uri", "")]),
        ];
        for dialect in [Dialect::Auto, Dialect::Nginx, Dialect::Forwarded, Dialect::Envoy] {
            for (method, target, pairs) in conflicts {
                let got = check(dialect, method, target, pairs);
                assert!(
                    matches!(got, Err(RequestError::ConflictingOriginal | RequestError::MissingOriginal)),
                    "{dialect:?} {method} {target} {pairs:?}: {got:?}"
                );
            }
        }
        // In the dialect that reads them, every one is a conflict (not a missing header).
        for (method, target, pairs) in conflicts {
            assert_eq!(
                check(Dialect::Auto, method, target, pairs).unwrap_err(),
                RequestError::ConflictingOriginal,
                "{pairs:?}"
            );
        }
    }

    #[test]
    fn the_same_request_named_twice_is_no_conflict() {
        // Authelia's nginx snippet sends X-Original-URL and X-Forwarded-Uri alike.
        let both = [
            ("x-original-method", "GET"),
            ("x-original-url", "https://api.test/a?b"),
            ("x-forwarded-uri", "/a?b"),
            ("x-forwarded-method", "GET"),
            ("x-forwarded-host", "API.TEST:443"),
        ];
        assert_eq!(ok(Dialect::Auto, "GET", "/", &both), ("nginx", s("GET"), s("/a?b"), Some(s("api.test"))));
        let envoy = [("host", "api.test:80"), ("x-forwarded-host", "api.test")];
        assert_eq!(ok(Dialect::Auto, "GET", "/ext_authz/a", &envoy).0, "envoy");
    }

    #[test]
    fn malformed_originals_are_refused() {
        let bad: &[&[(&str, &str)]] = &[
            &[("x-original-method", "GE T"), ("x-original-uri", "/a")],
            &[("x-original-method", ""), ("x-original-uri", "/a")],
            &[("x-original-method", "GET"), ("x-original-uri", "a")],
            &[("x-original-method", "GET"), ("x-original-uri", "*")],
            &[("x-original-method", "GET"), ("x-original-uri", "http://h/a")],
            &[("x-original-method", "GET"), ("x-original-uri", "//h/a x")],
            &[("x-original-method", "GET"), ("x-original-url", "/a")],
            &[("x-original-method", "GET"), ("x-original-url", "ftp://h/a")],
            &[("x-original-method", "GET"), ("x-original-url", "http:///a")],
            &[("x-original-method", "GET"), ("x-original-url", "http://u@h/a")],
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a"), ("x-forwarded-host", "a.test, b.test")],
            &[("x-forwarded-method", "GET"), ("x-forwarded-uri", "/a"), ("x-forwarded-host", "a b")],
        ];
        for pairs in bad {
            assert_eq!(check(Dialect::Auto, "GET", "/", pairs).unwrap_err(), RequestError::BadOriginal, "{pairs:?}");
        }
    }

    #[test]
    fn the_uri_is_passed_on_raw_for_the_normalizer() {
        // Normalizing is the gateway's stage; the dialect keeps every byte.
        for raw in ["/docs/../admin", "/docs/%2e%2e/admin", "/a%2Fb", "//admin", "/docs/%252e%252e/admin", "/a;b"] {
            let pairs = [("x-forwarded-method", "GET"), ("x-forwarded-uri", raw)];
            assert_eq!(ok(Dialect::Auto, "GET", "/", &pairs).2, raw);
            assert_eq!(ok(Dialect::Auto, "GET", &format!("/ext_authz{raw}"), &[]).2, raw);
        }
    }
}
