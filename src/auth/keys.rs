//! Verification keys, loaded when a snapshot is compiled: PEM files, a JWKS
//! file, an HMAC secret from the environment. Each key carries the algorithms
//! its type allows, so a token can never pick a key of another family (no HS256
//! "signed" with an RSA public key).

use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// A key an issuer's tokens may be verified with.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Algorithms this key may verify (its type's, narrowed by a JWK `alg`).
    pub algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

const RSA_ALGS: &[Algorithm] =
    &[Algorithm::RS256, Algorithm::RS384, Algorithm::RS512, Algorithm::PS256, Algorithm::PS384, Algorithm::PS512];
const HMAC_ALGS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// A public key from PEM (SPKI `PUBLIC KEY`, PKCS#1 `RSA PUBLIC KEY`, or a
/// `CERTIFICATE`): RSA, EC P-256/P-384 or Ed25519, recognised from the key itself.
pub fn from_pem(kid: Option<String>, pem: &[u8]) -> Result<VerifyKey, String> {
    // jsonwebtoken would read a private key's inner bit string as if it were a
    // public key; refuse it plainly instead.
    if std::str::from_utf8(pem).is_ok_and(|s| s.contains("PRIVATE KEY-----")) {
        return Err("this is a private key; give the public key (openssl pkey -pubout)".to_owned());
    }
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(VerifyKey { kid, key, algorithms: RSA_ALGS.to_vec() });
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The uncompressed point is 0x04 || X || Y: 65 bytes on P-256, 97 on P-384.
        let algorithms = match key.as_bytes().len() {
            65 => vec![Algorithm::ES256],
            97 => vec![Algorithm::ES384],
            n => return Err(format!("unsupported EC key ({n}-byte point; P-256 and P-384 are supported)")),
        };
        return Ok(VerifyKey { kid, key, algorithms });
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(VerifyKey { kid, key, algorithms: vec![Algorithm::EdDSA] });
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".to_owned())
}

/// An HMAC secret (HS256/384/512); the bytes are used as given.
pub fn hmac(secret: &[u8]) -> VerifyKey {
    VerifyKey { kid: None, key: DecodingKey::from_secret(secret), algorithms: HMAC_ALGS.to_vec() }
}

/// The signing keys of a JWKS document. Keys that are not for signatures
/// (`use` other than `sig`) or of an unsupported type are skipped and named
/// in the returned notes; a malformed document is an error.
pub fn from_jwks(text: &str) -> Result<(Vec<VerifyKey>, Vec<String>), String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("JWKS is not valid JSON: {e}"))?;
    let keys = doc.get("keys").and_then(Value::as_array).ok_or_else(|| "JWKS has no \"keys\" array".to_owned())?;
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for (i, jwk) in keys.iter().enumerate() {
        let kid = jwk.get("kid").and_then(Value::as_str).map(str::to_owned);
        let label = kid.clone().unwrap_or_else(|| format!("#{i}"));
        match jwk_to_key(jwk, kid) {
            Ok(Some(k)) => out.push(k),
            Ok(None) => notes.push(format!("JWKS key {label} skipped (not a signing key of a supported type)")),
            Err(e) => return Err(format!("JWKS key {label}: {e}")),
        }
    }
    Ok((out, notes))
}

fn jwk_to_key(jwk: &Value, kid: Option<String>) -> Result<Option<VerifyKey>, String> {
    let s = |name: &str| jwk.get(name).and_then(Value::as_str);
    if s("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    let field = |name: &str| s(name).ok_or_else(|| format!("missing \"{name}\""));
    let (key, mut algorithms) = match s("kty") {
        Some("RSA") => {
            (DecodingKey::from_rsa_components(field("n")?, field("e")?).map_err(|e| e.to_string())?, RSA_ALGS.to_vec())
        }
        Some("EC") => {
            let alg = match s("crv") {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                _ => return Ok(None),
            };
            (DecodingKey::from_ec_components(field("x")?, field("y")?).map_err(|e| e.to_string())?, vec![alg])
        }
        Some("OKP") if s("crv") == Some("Ed25519") => {
            (DecodingKey::from_ed_components(field("x")?).map_err(|e| e.to_string())?, vec![Algorithm::EdDSA])
        }
        _ => return Ok(None),
    };
    if let Some(alg) = s("alg") {
        let alg: Algorithm = alg.parse().map_err(|_| format!("unknown alg {alg:?}"))?;
        if !algorithms.contains(&alg) {
            return Err(format!("alg {alg:?} does not fit the key type"));
        }
        algorithms = vec![alg];
    }
    Ok(Some(VerifyKey { kid, key, algorithms }))
}
