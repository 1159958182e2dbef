//! Authentication stages: `extract` the bearer token from the headers, then
//! `verify` it against the snapshot's issuers into an [`Identity`].

pub mod cache;
pub mod claims;
pub mod extract;
pub mod identity;
pub mod keys;
pub mod remote;
pub mod verify;

pub use extract::extract;
use std::sync::Arc;

pub use cache::TokenCache;
pub use identity::{Caller, ForwardedHeader, Identity, IdentitySource, RouteRoles};
pub use verify::{identity_from_claims, issuer_of, verify, Issuer, Issuers, TokenError};

use claims::RoleClosure;

/// [`verify`] through the snapshot's token cache: a hit skips the signature
/// and the JSON; a miss verifies and, on success, stores the identity.
pub fn verify_cached(
    token: &[u8],
    issuers: &Issuers,
    roles: &RoleClosure,
    cache: Option<&TokenCache>,
    now: u64,
) -> Result<Arc<Identity>, TokenError> {
    if let Some(id) = cache.and_then(|c| c.get(token, now)) {
        return Ok(id);
    }
    let id = Arc::new(verify(token_text(token), issuers, roles, now)?);
    if let Some(c) = cache {
        c.insert(token, Arc::clone(&id));
    }
    Ok(id)
}

/// The token as text. A token that is not UTF-8 (a header value with
/// obs-text) is malformed: it becomes one that fails as such.
fn token_text(token: &[u8]) -> &str {
    std::str::from_utf8(token).unwrap_or("\u{0}")
}

/// [`verify_cached`], and when the token names a `kid` its issuer's remote key
/// set does not have, one (rate-limited, shared) refetch of that set and a
/// second try: how a key rotation at the identity provider is followed.
pub async fn verify_or_refetch(
    token: &[u8],
    issuers: &Issuers,
    roles: &RoleClosure,
    cache: Option<&TokenCache>,
    now: u64,
) -> Result<Arc<Identity>, TokenError> {
    match verify_cached(token, issuers, roles, cache, now) {
        // An issuer without keys (its IdP down at start) or without this kid (a
        // rotation): one rate-limited fetch, then a second try.
        Err(e @ (TokenError::UnknownKid | TokenError::KeysUnavailable)) => {
            let remote = issuer_of(token_text(token), issuers).and_then(|i| i.remote.clone());
            match remote {
                // Boxed: rare, and a large future that every request would otherwise carry.
                Some(remote) if Box::pin(remote.refetch_for_unknown_kid()).await => {
                    verify_cached(token, issuers, roles, cache, now)
                }
                _ => Err(e),
            }
        }
        other => other,
    }
}

/// Now, in seconds since the epoch (the unit of `exp` and `nbf`).
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
