//! Stage 4 of a request: verify the token and build the caller's identity.
//!
//! Order (each step can only narrow what the next one sees):
//! 1. shape: three base64url parts, bounded size; header and payload are JSON
//!    objects without duplicate keys;
//! 2. header: `alg` must be a known algorithm (never `none`), `crit` is refused,
//!    `jku`/`x5u`/`jwk`/`x5c` are ignored (keys come only from configuration);
//! 3. `iss` picks the issuer; the issuer's `algorithms` must allow `alg`;
//! 4. `kid` picks the key (no `kid`: every key of that issuer accepting `alg`),
//!    and the key's own type must accept `alg` (no HMAC with an RSA key);
//! 5. the signature, with jsonwebtoken's crypto (aws-lc-rs backend);
//! 6. registered claims: `exp` (required unless the issuer says otherwise),
//!    `nbf`, `aud` (required when the issuer has audiences), with leeway;
//!    a registered claim of the wrong JSON type makes the token invalid;
//! 7. roles and permissions from the issuer's claim names, expanded through `[roles]`.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

pub use super::identity::Identity;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::Algorithm;
use serde::de::{self, Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use super::claims::{self, ClaimNames, ClaimPath, RoleClosure};
use super::keys::VerifyKey;

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One trusted issuer, compiled.
#[derive(Debug)]
pub struct Issuer {
    pub name: String,
    pub audiences: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub keys: Vec<VerifyKey>,
    pub leeway_s: u64,
    /// Where the token's roles are (their values are united); a path naming
    /// a path parameter (`organization.{tenant}.roles`) gives roles only on
    /// routes with that parameter, read at decision time.
    pub roles_claims: Vec<ClaimPath>,
    pub permissions_claims: Vec<ClaimPath>,
    /// Roles of a token whose roles claim is absent ([`claims::Resolved::Absent`]).
    pub default_roles: Vec<String>,
    pub tenant_claim: String,
    pub require_exp: bool,
    /// `token_types`, lower-case without `application/`: the header `typ` must
    /// be one of them (RFC 9068 §4); empty: any or none.
    pub token_types: Vec<Box<str>>,
    /// Keys fetched from `jwks_url` / `discovery`, used besides `keys`.
    pub remote: Option<Arc<super::remote::RemoteKeys>>,
}

impl Issuer {
    /// The claim names of the roles and permissions.
    pub fn claim_names(&self) -> ClaimNames<'_> {
        ClaimNames {
            roles: &self.roles_claims,
            permissions: &self.permissions_claims,
            default_roles: &self.default_roles,
        }
    }

    /// Whether a roles or permissions claim path names a path parameter.
    pub fn has_param_claims(&self) -> bool {
        self.roles_claims.iter().chain(&self.permissions_claims).any(ClaimPath::has_params)
    }

    /// Whether the issuer has any key at all (a remote set may not be fetched yet).
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty() || self.remote.as_ref().is_some_and(|r| r.has_keys())
    }
}

/// A `typ` value as compared: lower-case, without an `application/` prefix
/// (RFC 7515 §4.1.9: `JWT` and `application/jwt` are the same type).
pub fn token_type(typ: &str) -> String {
    let lower = typ.trim().to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

/// The trusted issuers, by exact `iss` value.
#[derive(Debug, Default)]
pub struct Issuers {
    by_iss: HashMap<String, Arc<Issuer>>,
}

impl Issuers {
    pub fn new(list: Vec<Issuer>) -> Self {
        Issuers { by_iss: list.into_iter().map(|i| (i.name.clone(), Arc::new(i))).collect() }
    }

    pub fn get(&self, iss: &str) -> Option<&Arc<Issuer>> {
        self.by_iss.get(iss)
    }

    pub fn len(&self) -> usize {
        self.by_iss.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_iss.is_empty()
    }

    /// All issuers, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Issuer>> {
        self.by_iss.values()
    }
}

/// Why a token was refused. Each variant has a short, safe description for
/// `error_description` and logs; it never echoes token content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Empty,
    TooLarge,
    Malformed(&'static str),
    DuplicateKey(&'static str),
    AlgNone,
    UnsupportedAlg,
    AlgNotAllowed,
    CritHeader,
    MissingIssuer,
    UntrustedIssuer,
    UnknownKid,
    NoKeyForAlg,
    /// The issuer has no usable key at all (never fetched, or its IdP was
    /// down at start): the caller's token is not at fault (503).
    KeysUnavailable,
    WrongType,
    BadSignature,
    WrongClaimType(&'static str),
    MissingExp,
    Expired,
    NotYetValid,
    MissingAudience,
    WrongAudience,
}

impl TokenError {
    /// Stable machine code (metrics label, logs).
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Empty => "empty",
            TokenError::TooLarge => "too_large",
            TokenError::Malformed(_) => "malformed",
            TokenError::DuplicateKey(_) => "duplicate_key",
            TokenError::AlgNone => "alg_none",
            TokenError::UnsupportedAlg => "unsupported_alg",
            TokenError::AlgNotAllowed => "alg_not_allowed",
            TokenError::CritHeader => "crit_header",
            TokenError::MissingIssuer => "missing_iss",
            TokenError::UntrustedIssuer => "untrusted_issuer",
            TokenError::UnknownKid => "unknown_kid",
            TokenError::NoKeyForAlg => "no_key_for_alg",
            TokenError::KeysUnavailable => "keys_unavailable",
            TokenError::WrongType => "wrong_typ",
            TokenError::BadSignature => "bad_signature",
            TokenError::WrongClaimType(_) => "wrong_claim_type",
            TokenError::MissingExp => "missing_exp",
            TokenError::Expired => "expired",
            TokenError::NotYetValid => "not_yet_valid",
            TokenError::MissingAudience => "missing_aud",
            TokenError::WrongAudience => "wrong_aud",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenError::Empty => f.write_str("the bearer token is empty"),
            TokenError::TooLarge => write!(f, "the token is longer than {MAX_TOKEN_LEN} bytes"),
            TokenError::Malformed(what) => write!(f, "the token is malformed: {what}"),
            TokenError::DuplicateKey(part) => write!(f, "the token {part} has a duplicate key"),
            TokenError::AlgNone => f.write_str("unsigned tokens (alg none) are not accepted"),
            TokenError::UnsupportedAlg => f.write_str("the token's alg is not supported"),
            TokenError::AlgNotAllowed => f.write_str("the token's alg is not allowed for its issuer"),
            TokenError::CritHeader => f.write_str("the token has a crit header, which is not supported"),
            TokenError::MissingIssuer => f.write_str("the token has no iss claim"),
            TokenError::UntrustedIssuer => f.write_str("the token's issuer is not trusted"),
            TokenError::UnknownKid => f.write_str("the token's kid names no known key"),
            TokenError::NoKeyForAlg => f.write_str("the issuer has no key for the token's alg"),
            TokenError::KeysUnavailable => f.write_str("the token's issuer has no keys yet"),
            TokenError::WrongType => f.write_str("the token's typ is not one the issuer accepts"),
            TokenError::BadSignature => f.write_str("the token's signature is invalid"),
            TokenError::WrongClaimType(c) => write!(f, "the token's {c} claim has the wrong type"),
            TokenError::MissingExp => f.write_str("the token has no exp claim"),
            TokenError::Expired => f.write_str("the token has expired"),
            TokenError::NotYetValid => f.write_str("the token is not valid yet (nbf)"),
            TokenError::MissingAudience => f.write_str("the token has no aud claim"),
            TokenError::WrongAudience => f.write_str("the token's audience is not accepted"),
        }
    }
}

impl std::error::Error for TokenError {}

/// Verifies `token` against the trusted issuers at time `now` (seconds since
/// the epoch) and returns the caller's identity.
pub fn verify(token: &str, issuers: &Issuers, roles: &RoleClosure, now: u64) -> Result<Identity, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLarge);
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(sig64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("a JWS has three dot-separated parts"));
    };
    if sig64.is_empty() {
        return Err(TokenError::Malformed("the signature is empty"));
    }
    let header = decode_object(h64, "header")?;
    let alg = match header.get("alg") {
        Some(Value::String(a)) if a.eq_ignore_ascii_case("none") => return Err(TokenError::AlgNone),
        Some(Value::String(a)) => super::keys::parse_algorithm(a).ok_or(TokenError::UnsupportedAlg)?,
        Some(_) => return Err(TokenError::WrongClaimType("alg")),
        None => return Err(TokenError::Malformed("the header has no alg")),
    };
    if header.contains_key("crit") {
        return Err(TokenError::CritHeader);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(TokenError::WrongClaimType("kid")),
    };
    let claims = decode_object(p64, "payload")?;
    let issuer = match claims.get("iss") {
        None => return Err(TokenError::MissingIssuer),
        Some(Value::String(iss)) => issuers.get(iss).ok_or(TokenError::UntrustedIssuer)?,
        Some(_) => return Err(TokenError::WrongClaimType("iss")),
    };
    if !issuer.algorithms.contains(&alg) {
        return Err(TokenError::AlgNotAllowed);
    }
    if !issuer.token_types.is_empty() {
        let typ = match header.get("typ") {
            Some(Value::String(t)) => token_type(t),
            Some(_) => return Err(TokenError::WrongClaimType("typ")),
            None => return Err(TokenError::WrongType),
        };
        if !issuer.token_types.iter().any(|t| **t == *typ) {
            return Err(TokenError::WrongType);
        }
    }
    if !issuer.has_keys() {
        return Err(TokenError::KeysUnavailable);
    }
    let key_generation = check_signature(issuer, kid, alg, &token[..h64.len() + 1 + p64.len()], sig64)?;
    let expires_at = check_registered_claims(issuer, &claims, now)?;

    let mut id = identity_from_claims(claims, Arc::clone(issuer), roles, expires_at);
    id.key_generation = key_generation;
    Ok(id)
}

/// The identity that verified `claims` stand for: roles and permissions read
/// with the issuer's claim names (a path naming a path parameter gives none
/// here), `default_roles` when the roles claim is absent, expanded through
/// `[roles]`. Also used by `explain --claims`, which evaluates policy without a token.
pub fn identity_from_claims(
    claims: Map<String, Value>,
    issuer: Arc<Issuer>,
    roles: &RoleClosure,
    expires_at: Option<u64>,
) -> Identity {
    let (roles, permissions) = claims::effective(&claims, issuer.claim_names(), &[], roles);
    Identity { issuer, claims, roles, permissions, expires_at, key_generation: None, forwarded: OnceLock::new() }
}

/// The trusted issuer a token names (`iss`), without verifying anything.
pub fn issuer_of<'a>(token: &str, issuers: &'a Issuers) -> Option<&'a Arc<Issuer>> {
    let payload = token.split('.').nth(1)?;
    let claims = decode_object(payload, "payload").ok()?;
    issuers.get(claims.get("iss")?.as_str()?)
}

/// Checks the signature with the issuer's keys; `Ok(Some(generation))` when a
/// remote key verified it (the remote set's generation before its keys were
/// read, so a set replaced meanwhile only makes the entry look older).
fn check_signature(
    issuer: &Issuer,
    kid: Option<&str>,
    alg: Algorithm,
    message: &str,
    sig64: &str,
) -> Result<Option<u64>, TokenError> {
    let generation = issuer.remote.as_ref().map(|r| r.generation());
    let remote = issuer.remote.as_ref().map(|r| r.keys());
    let local = issuer.keys.iter().map(|k| (k, false));
    let all = local.chain(remote.iter().flat_map(|k| k.iter()).map(|k| (k, true)));
    let mut candidates = all.filter(|(k, _)| kid.is_none() || k.kid.as_deref() == kid).peekable();
    if candidates.peek().is_none() {
        return Err(TokenError::UnknownKid);
    }
    let mut tried = false;
    for (key, from_remote) in candidates.filter(|(k, _)| k.algorithms.contains(&alg)) {
        tried = true;
        match key.verify(alg, message.as_bytes(), sig64) {
            Ok(true) => return Ok(if from_remote { generation } else { None }),
            Ok(false) => {}
            Err(_) => return Err(TokenError::Malformed("the signature is not base64url")),
        }
    }
    Err(if tried { TokenError::BadSignature } else { TokenError::NoKeyForAlg })
}

/// Checks `exp`, `nbf`, `iat`, `aud`, `sub` types and values; returns `exp`.
fn check_registered_claims(issuer: &Issuer, claims: &Map<String, Value>, now: u64) -> Result<Option<u64>, TokenError> {
    let now = now as f64;
    let leeway = issuer.leeway_s as f64;
    let exp = numeric_date(claims, "exp")?;
    match exp {
        Some(exp) if now - leeway >= exp => return Err(TokenError::Expired),
        None if issuer.require_exp => return Err(TokenError::MissingExp),
        _ => {}
    }
    if let Some(nbf) = numeric_date(claims, "nbf")? {
        if now + leeway < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    numeric_date(claims, "iat")?;
    if claims.get("sub").is_some_and(|s| !s.is_string()) {
        return Err(TokenError::WrongClaimType("sub"));
    }
    let aud_ok = |a: &str| issuer.audiences.iter().any(|x| x == a);
    match claims.get("aud") {
        None if issuer.audiences.is_empty() => {}
        None => return Err(TokenError::MissingAudience),
        Some(Value::String(a)) => {
            if !issuer.audiences.is_empty() && !aud_ok(a) {
                return Err(TokenError::WrongAudience);
            }
        }
        Some(Value::Array(list)) => {
            let mut any = false;
            for a in list {
                let a = a.as_str().ok_or(TokenError::WrongClaimType("aud"))?;
                any |= aud_ok(a);
            }
            if !issuer.audiences.is_empty() && !any {
                return Err(TokenError::WrongAudience);
            }
        }
        Some(_) => return Err(TokenError::WrongClaimType("aud")),
    }
    Ok(exp.map(|e| e.max(0.0) as u64))
}

fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<f64>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            n.as_f64().filter(|f| f.is_finite()).map(Some).ok_or(TokenError::WrongClaimType(name))
        }
        Some(_) => Err(TokenError::WrongClaimType(name)),
    }
}

/// base64url (no padding, no whitespace) → a JSON object without duplicate keys.
fn decode_object(b64: &str, part: &'static str) -> Result<Map<String, Value>, TokenError> {
    let bytes = URL_SAFE_NO_PAD.decode(b64).map_err(|_| {
        TokenError::Malformed(if part == "header" {
            "the header is not base64url"
        } else {
            "the payload is not base64url"
        })
    })?;
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let obj = StrictObject::deserialize(&mut de).and_then(|o| de.end().map(|()| o));
    match obj {
        Ok(o) => Ok(o.0),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(TokenError::DuplicateKey(part)),
        Err(_) => Err(TokenError::Malformed(if part == "header" {
            "the header is not a JSON object"
        } else {
            "the payload is not a JSON object"
        })),
    }
}

const DUPLICATE: &str = "duplicate key";

/// A JSON object whose top-level keys are unique: a token with two `exp` or
/// two `alg` is ambiguous (parsers disagree on which wins), so it is refused.
struct StrictObject(Map<String, Value>);

impl<'de> Deserialize<'de> for StrictObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StrictObject;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<StrictObject, A::Error> {
                let mut map = Map::new();
                while let Some(key) = access.next_key::<String>()? {
                    if map.contains_key(&key) {
                        return Err(de::Error::custom(DUPLICATE));
                    }
                    let value: Value = access.next_value()?;
                    map.insert(key, value);
                }
                Ok(StrictObject(map))
            }
        }
        d.deserialize_map(V)
    }
}
