//! Authentication stages: `extract` the bearer token from the headers, then
//! `verify` it against the snapshot's issuers into an [`Identity`].

pub mod cache;
pub mod claims;
pub mod extract;
pub mod keys;
pub mod verify;

pub use extract::extract;
use std::sync::Arc;

pub use cache::TokenCache;
pub use verify::{identity_from_claims, verify, Identity, Issuer, Issuers, TokenError};

use claims::RoleClosure;

/// [`verify`] through the snapshot's token cache: a hit skips the signature
/// and the JSON; a miss verifies and, on success, stores the identity.
pub fn verify_cached(
    token: &str,
    issuers: &Issuers,
    roles: &RoleClosure,
    cache: Option<&TokenCache>,
    now: u64,
) -> Result<Arc<Identity>, TokenError> {
    if let Some(id) = cache.and_then(|c| c.get(token, now)) {
        return Ok(id);
    }
    let id = Arc::new(verify(token, issuers, roles, now)?);
    if let Some(c) = cache {
        c.insert(token, Arc::clone(&id));
    }
    Ok(id)
}
