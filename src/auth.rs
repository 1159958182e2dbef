//! Authentication stages: `extract` the bearer token from the headers, then
//! `verify` it against the snapshot's issuers into an [`Identity`].

pub mod claims;
pub mod extract;
pub mod keys;
pub mod verify;

pub use extract::extract;
pub use verify::{identity_from_claims, verify, Identity, Issuer, Issuers, TokenError};
