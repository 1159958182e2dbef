//! Fresh key pairs as PEM, for `rolegate demo` and for tests (test keys are
//! made per run, never committed).

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

/// A private key (PKCS#8 PEM) and its public key (SPKI PEM, and as a JWK without `kid`).
#[derive(Debug, Clone)]
pub struct PemPair {
    pub private_pem: String,
    pub public_pem: String,
    pub public_jwk: serde_json::Value,
}

fn b64u(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Wraps DER bytes in a PEM block with 64-column lines.
pub fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pair(private: &[u8], public: &[u8], public_jwk: serde_json::Value) -> PemPair {
    PemPair { private_pem: pem("PRIVATE KEY", private), public_pem: pem("PUBLIC KEY", public), public_jwk }
}

/// RSA-2048 (RS256/PS256).
pub fn rsa() -> Result<PemPair, String> {
    let kp = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|e| e.to_string())?;
    let private: Pkcs8V1Der<'_> = kp.as_der().map_err(|e| e.to_string())?;
    let public: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(|e| e.to_string())?;
    let c = aws_lc_rs::rsa::PublicKeyComponents::<Vec<u8>>::from(kp.public_key());
    let jwk = serde_json::json!({"kty": "RSA", "n": b64u(&c.n), "e": b64u(&c.e)});
    Ok(pair(private.as_ref(), public.as_ref(), jwk))
}

/// EC P-256 (ES256).
pub fn ec_p256() -> Result<PemPair, String> {
    let kp = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).map_err(|e| e.to_string())?;
    let private = kp.to_pkcs8v1().map_err(|e| e.to_string())?;
    let public: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(|e| e.to_string())?;
    // The raw public key is the uncompressed point 0x04 || X || Y.
    let point = kp.public_key().as_ref();
    let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64u(&point[1..33]), "y": b64u(&point[33..65])});
    Ok(pair(private.as_ref(), public.as_ref(), jwk))
}

/// Ed25519 (EdDSA).
pub fn ed25519() -> Result<PemPair, String> {
    let kp = Ed25519KeyPair::generate().map_err(|e| e.to_string())?;
    let private: Pkcs8V1Der<'_> = kp.as_der().map_err(|e| e.to_string())?;
    let public: PublicKeyX509Der<'_> = kp.public_key().as_der().map_err(|e| e.to_string())?;
    let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64u(kp.public_key().as_ref())});
    Ok(pair(private.as_ref(), public.as_ref(), jwk))
}
