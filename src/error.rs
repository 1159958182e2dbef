//! The one mapping from a refused request to its status, `WWW-Authenticate`
//! header and JSON body (the SPEC's HTTP table). Exhaustive, no wildcard arm.

use bytes::Bytes;
use http::header::{HeaderValue, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use http_body_util::{Either, Full};

use crate::decide::Denial;
use crate::headers::X_REQUEST_ID;
use crate::normalize::RequestError;
use crate::upstream::UpstreamError;

/// The body of every gateway response: the upstream's, streamed, or our own.
pub type Body = Either<crate::upstream::UpstreamBody, Full<Bytes>>;

/// Why the gateway answered instead of the upstream.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("bad request: {0}")]
    BadRequest(#[from] RequestError),
    #[error("no route matches")]
    NoRoute,
    /// The request head is larger than `[server] max_header_bytes`: 431.
    #[error("the request head is larger than the server accepts")]
    HeadTooLarge,
    #[error("{0}")]
    Denied(#[from] Denial),
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) => StatusCode::BAD_REQUEST,
            GatewayError::NoRoute => StatusCode::NOT_FOUND,
            GatewayError::HeadTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            GatewayError::Denied(Denial::MissingToken | Denial::InvalidToken(_)) => StatusCode::UNAUTHORIZED,
            GatewayError::Denied(Denial::Forbidden { .. }) => StatusCode::FORBIDDEN,
            GatewayError::Denied(Denial::KeysUnavailable) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::Upstream(UpstreamError::Timeout(_)) => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::Upstream(UpstreamError::Connect(_) | UpstreamError::Failed(..)) => StatusCode::BAD_GATEWAY,
        }
    }

    /// Stable machine code: the JSON body's `error`, and the decision label.
    pub fn code(&self) -> &'static str {
        match self {
            GatewayError::BadRequest(_) => "bad_request",
            GatewayError::NoRoute => "no_route",
            GatewayError::HeadTooLarge => "request_head_too_large",
            GatewayError::Denied(Denial::MissingToken) => "missing_token",
            GatewayError::Denied(Denial::InvalidToken(_)) => "invalid_token",
            GatewayError::Denied(Denial::Forbidden { .. }) => "insufficient_scope",
            GatewayError::Denied(Denial::KeysUnavailable) => "keys_unavailable",
            GatewayError::Upstream(UpstreamError::Timeout(_)) => "upstream_timeout",
            GatewayError::Upstream(UpstreamError::Connect(_) | UpstreamError::Failed(..)) => "upstream_unavailable",
        }
    }

    /// The client-facing message: precise for the client's own mistakes, generic for upstream trouble.
    fn message(&self) -> String {
        match self {
            GatewayError::Upstream(UpstreamError::Timeout(_)) => "the upstream did not answer in time".to_owned(),
            GatewayError::Upstream(UpstreamError::Connect(_) | UpstreamError::Failed(..)) => {
                "the upstream could not be reached".to_owned()
            }
            GatewayError::Denied(Denial::Forbidden { missing_permissions, .. }) if !missing_permissions.is_empty() => {
                format!("the token lacks the required permissions: {}", missing_permissions.join(" "))
            }
            GatewayError::Denied(Denial::Forbidden { .. }) => {
                "the token does not meet the route's requirement".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// `WWW-Authenticate` per RFC 6750 §3, for 401 and 403.
    fn www_authenticate(&self) -> Option<String> {
        match self {
            GatewayError::Denied(Denial::MissingToken) => Some("Bearer realm=\"rolegate\"".to_owned()),
            GatewayError::Denied(Denial::InvalidToken(e)) => {
                Some(format!("Bearer error=\"invalid_token\", error_description=\"{}\"", quoted(&e.to_string())))
            }
            GatewayError::Denied(Denial::Forbidden { missing_permissions, .. }) => {
                Some(if missing_permissions.is_empty() {
                    "Bearer error=\"insufficient_scope\"".to_owned()
                } else {
                    format!("Bearer error=\"insufficient_scope\", scope=\"{}\"", quoted(&missing_permissions.join(" ")))
                })
            }
            GatewayError::BadRequest(_)
            | GatewayError::NoRoute
            | GatewayError::HeadTooLarge
            | GatewayError::Upstream(_)
            | GatewayError::Denied(Denial::KeysUnavailable) => None,
        }
    }

    /// The gRPC status code for this refusal (gRPC's own mapping of HTTP
    /// statuses, as the SPEC's table fixes it).
    pub fn grpc_status(&self) -> u8 {
        match self.status().as_u16() {
            400 => 3,              // INVALID_ARGUMENT
            401 => 16,             // UNAUTHENTICATED
            403 => 7,              // PERMISSION_DENIED
            404 => 12,             // UNIMPLEMENTED
            431 => 8,              // RESOURCE_EXHAUSTED
            429 | 502 | 503 => 14, // UNAVAILABLE
            504 => 4,              // DEADLINE_EXCEEDED
            _ => 2,                // UNKNOWN
        }
    }

    /// The refusal as a gRPC client understands it: a trailers-only answer
    /// (HTTP 200, `content-type: application/grpc`, `grpc-status`, and
    /// `grpc-message` with the reason the JSON body would give), for a request
    /// whose content type is gRPC's.
    pub fn grpc_response(&self, request_id: &HeaderValue) -> Response<Body> {
        let mut resp = Response::new(Either::Right(Full::new(Bytes::new())));
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        h.insert("grpc-status", HeaderValue::from(u16::from(self.grpc_status())));
        if let Ok(v) = HeaderValue::from_str(&grpc_percent_encode(&self.message())) {
            h.insert("grpc-message", v);
        }
        h.insert(X_REQUEST_ID.clone(), request_id.clone());
        if let GatewayError::Denied(Denial::KeysUnavailable) = self {
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }

    /// The complete response.
    pub fn response(&self, request_id: &HeaderValue) -> Response<Body> {
        let body =
            ErrorBody { error: self.code(), message: &self.message(), request_id: request_id.to_str().unwrap_or("") };
        // Serializing a struct of strings cannot fail; an empty body if it ever did.
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let mut resp = Response::new(Either::Right(Full::new(Bytes::from(body))));
        *resp.status_mut() = self.status();
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        h.insert(X_REQUEST_ID.clone(), request_id.clone());
        if let Some(v) = self.www_authenticate().and_then(|v| HeaderValue::from_str(&v).ok()) {
            h.insert(WWW_AUTHENTICATE, v);
        }
        if let GatewayError::Denied(Denial::KeysUnavailable) = self {
            // The key sets of an issuer without keys are fetched again every 5 s.
            h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        resp
    }
}

/// The JSON body of the gateway's own answers (fields in this order, as a
/// `serde_json` object with sorted keys would have them).
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    request_id: &'a str,
}

/// Whether a request's content type is gRPC's (`application/grpc`, `+proto`, `+json`, with parameters or not).
pub fn is_grpc(headers: &http::HeaderMap) -> bool {
    let Some(v) = headers.get(CONTENT_TYPE) else { return false };
    let v = v.as_bytes();
    let Some(rest) = v.get(..16).filter(|p| p.eq_ignore_ascii_case(b"application/grpc")).map(|_| &v[16..]) else {
        return false;
    };
    let subtype = rest.split(|b| *b == b';').next().unwrap_or_default().trim_ascii();
    subtype.is_empty() || subtype.eq_ignore_ascii_case(b"+proto") || subtype.eq_ignore_ascii_case(b"+json")
}

/// `grpc-message` encoding: bytes outside 0x20–0x7E, and `%`, as `%XX` (gRPC's HTTP/2 protocol).
fn grpc_percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if (0x20..=0x7e).contains(&b) && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Text safe inside an auth-param quoted-string (no `"`, `\` or control characters).
fn quoted(s: &str) -> String {
    s.chars().filter(|c| *c != '"' && *c != '\\' && !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::TokenError;

    fn www(e: &GatewayError) -> Option<String> {
        e.response(&HeaderValue::from_static("r1"))
            .headers()
            .get(WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_owned())
    }

    /// The body is exactly the JSON object of the three fields, for every kind
    /// of refusal (also with characters JSON must escape in the request id).
    #[test]
    fn bodies_are_the_json_objects() {
        use http_body_util::BodyExt as _;
        let errors = [
            GatewayError::BadRequest(RequestError::EncodedSlash),
            GatewayError::NoRoute,
            GatewayError::Denied(Denial::MissingToken),
            GatewayError::Denied(Denial::InvalidToken(TokenError::Malformed("the header is not base64url"))),
            GatewayError::Denied(Denial::Forbidden {
                missing_permissions: vec!["a:\"b\"".into()],
                reason: "x\ny".into(),
            }),
            GatewayError::Upstream(UpstreamError::Timeout("u".into())),
            GatewayError::Upstream(UpstreamError::Failed("u".into(), "why".into())),
            GatewayError::Denied(Denial::KeysUnavailable),
        ];
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for id in ["r1", "a\"b\\c/<>"] {
            let request_id = HeaderValue::from_str(id).unwrap();
            for e in &errors {
                let want = serde_json::json!({"error": e.code(), "message": e.message(), "request_id": id}).to_string();
                let body = rt.block_on(e.response(&request_id).into_body().collect()).unwrap().to_bytes();
                assert_eq!(std::str::from_utf8(&body).unwrap(), want);
            }
        }
    }

    #[test]
    fn grpc_refusals() {
        let id = HeaderValue::from_static("r1");
        for (e, code) in [
            (GatewayError::BadRequest(RequestError::EncodedSlash), "3"),
            (GatewayError::Denied(Denial::MissingToken), "16"),
            (GatewayError::Denied(Denial::Forbidden { missing_permissions: vec![], reason: String::new() }), "7"),
            (GatewayError::NoRoute, "12"),
            (GatewayError::Upstream(UpstreamError::Connect("u".into())), "14"),
            (GatewayError::Denied(Denial::KeysUnavailable), "14"),
            (GatewayError::Upstream(UpstreamError::Timeout("u".into())), "4"),
        ] {
            let r = e.grpc_response(&id);
            assert_eq!(r.status(), 200);
            assert_eq!(r.headers()["content-type"], "application/grpc");
            assert_eq!(r.headers()["grpc-status"], code, "{e}");
            assert!(r.headers().contains_key("grpc-message"));
        }
        assert_eq!(grpc_percent_encode("a b%c\u{e9}\n"), "a b%25c%C3%A9%0A");
        let ct = |v: &'static str| {
            let mut h = http::HeaderMap::new();
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
            is_grpc(&h)
        };
        assert!(ct("application/grpc") && ct("application/grpc+proto") && ct("Application/GRPC+json; charset=utf-8"));
        assert!(!ct("application/grpc-web") && !ct("application/json") && !ct("application/grpcx"));
    }

    #[test]
    fn pinned_mapping() {
        let e = GatewayError::Denied(Denial::MissingToken);
        assert_eq!(e.status(), 401);
        assert_eq!(www(&e).as_deref(), Some("Bearer realm=\"rolegate\""));
        let e = GatewayError::Denied(Denial::InvalidToken(TokenError::Expired));
        assert_eq!(e.status(), 401);
        assert_eq!(
            www(&e).as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"the token has expired\"")
        );
        let e = GatewayError::Denied(Denial::Forbidden {
            missing_permissions: vec!["a:b".into(), "c".into()],
            reason: String::new(),
        });
        assert_eq!(e.status(), 403);
        assert_eq!(www(&e).as_deref(), Some("Bearer error=\"insufficient_scope\", scope=\"a:b c\""));
        let e = GatewayError::NoRoute;
        assert_eq!((e.status().as_u16(), e.code()), (404, "no_route"));
        assert_eq!(www(&e), None);
        assert_eq!(GatewayError::BadRequest(RequestError::EncodedSlash).status(), 400);
        assert_eq!(GatewayError::Upstream(UpstreamError::Connect("u".into())).status(), 502);
        assert_eq!(GatewayError::Upstream(UpstreamError::Timeout("u".into())).status(), 504);
        let e = GatewayError::Denied(Denial::KeysUnavailable);
        let resp = e.response(&HeaderValue::from_static("r1"));
        assert_eq!((resp.status().as_u16(), e.code()), (503, "keys_unavailable"));
        assert_eq!(resp.headers().get(http::header::RETRY_AFTER).unwrap(), "5");
        assert_eq!(www(&e), None, "not the caller's token's fault");
    }
}
