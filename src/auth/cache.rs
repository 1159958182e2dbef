//! The verified-token cache: a token that verified once is not verified again
//! until it expires, so a cache hit costs a hash and a comparison instead of a
//! signature check and two JSON parses.
//!
//! Correctness: the cache belongs to one snapshot, so a reload (new keys, new
//! issuers, new roles) starts with an empty cache; an entry is used only while
//! `now` is before the token's `exp` (minus the issuer's leeway, as in `verify`);
//! only tokens that verified are stored, never failures.
//!
//! Side channels: lookups hash the presented token with a per-process random
//! seed (foldhash), and compare the full token only against entries of the same
//! hash, so timing reveals nothing about a cached token to someone who does not
//! already hold it. Memory is bounded: each entry weighs one unit plus one per
//! KiB of token, and the total weight is the configured `token_cache` size.

use std::sync::Arc;

use quick_cache::sync::Cache;
use quick_cache::Weighter;

use super::Identity;

#[derive(Clone, Copy, Debug, Default)]
struct TokenWeight;

impl Weighter<Box<[u8]>, Arc<Identity>> for TokenWeight {
    fn weight(&self, token: &Box<[u8]>, _: &Arc<Identity>) -> u64 {
        1 + (token.len() as u64 >> 10)
    }
}

/// Verified identities by token.
pub struct TokenCache {
    inner: Cache<Box<[u8]>, Arc<Identity>, TokenWeight>,
}

impl std::fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCache").field("len", &self.inner.len()).field("capacity", &self.inner.capacity()).finish()
    }
}

impl TokenCache {
    /// A cache of about `capacity` typical (≤ 1 KiB) tokens.
    pub fn new(capacity: usize) -> Self {
        TokenCache { inner: Cache::with_weighter(capacity, capacity as u64, TokenWeight) }
    }

    /// The identity of a token verified before, while it is still unexpired at
    /// `now` and the remote key set that verified it has lost no key since.
    pub fn get(&self, token: &[u8], now: u64) -> Option<Arc<Identity>> {
        let id = self.inner.get(token)?;
        let expired = id.expires_at.is_some_and(|exp| now.saturating_sub(id.issuer.leeway_s) >= exp);
        let key_gone = id.key_generation.is_some_and(|g| id.issuer.remote.as_ref().is_none_or(|r| r.generation() != g));
        if expired || key_gone {
            self.inner.remove(token);
            return None;
        }
        Some(id)
    }

    pub fn insert(&self, token: &[u8], identity: Arc<Identity>) {
        self.inner.insert(Box::from(token), identity);
    }

    pub fn len(&self) -> usize {
        self.inner.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Issuer;

    fn identity(exp: Option<u64>, leeway_s: u64) -> Arc<Identity> {
        let issuer = Arc::new(Issuer {
            name: "i".into(),
            audiences: vec![],
            algorithms: vec![],
            keys: vec![],
            leeway_s,
            roles_claims: vec![],
            permissions_claims: vec![],
            default_roles: vec![],
            tenant_claim: "tid".into(),
            require_exp: true,
            token_types: vec![],
            remote: None,
        });
        Arc::new(Identity {
            issuer,
            claims: Default::default(),
            roles: vec![],
            permissions: vec![],
            expires_at: exp,
            key_generation: None,
            forwarded: Default::default(),
        })
    }

    #[test]
    fn entries_expire_with_the_token() {
        let cache = TokenCache::new(10);
        cache.insert(b"a.b.c", identity(Some(1000), 30));
        assert!(cache.get(b"a.b.c", 900).is_some());
        assert!(cache.get(b"a.b.c", 1029).is_some(), "within leeway");
        assert!(cache.get(b"a.b.c", 1030).is_none(), "expired (exp + leeway)");
        assert!(cache.get(b"a.b.c", 900).is_none(), "an expired entry is removed");
        assert!(cache.get(b"x.y.z", 0).is_none());
    }

    #[test]
    fn size_is_bounded() {
        let cache = TokenCache::new(100);
        for i in 0..10_000 {
            cache.insert(format!("token-{i}").as_bytes(), identity(None, 0));
        }
        assert!(cache.len() <= 110, "{}", cache.len());
        // Large tokens weigh more.
        let big = "x".repeat(8 * 1024);
        let cache = TokenCache::new(100);
        for i in 0..100 {
            cache.insert(format!("{big}{i}").as_bytes(), identity(None, 0));
        }
        assert!(cache.len() <= 15, "{}", cache.len());
    }
}
