//! Verification keys, loaded when a snapshot is compiled: PEM files, a JWKS
//! file, an HMAC secret from the environment. Each key carries the algorithms
//! its type allows, so a token can never pick a key of another family (no HS256
//! "signed" with an RSA public key).

use aws_lc_rs::signature::{self as sig, ParsedPublicKey, VerificationAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

/// A key an issuer's tokens may be verified with.
#[derive(Clone)]
pub struct VerifyKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
    /// Algorithms this key may verify (its type's, narrowed by a JWK `alg`).
    pub algorithms: Vec<Algorithm>,
    /// The public key parsed once per algorithm (aws-lc-rs), so verifying does
    /// not re-parse it every time. Empty for HMAC keys, which use jsonwebtoken.
    parsed: Vec<(Algorithm, ParsedPublicKey)>,
    /// The key's bytes as given (public key, or HMAC secret): what tells two keys apart.
    material: Box<[u8]>,
}

impl VerifyKey {
    /// `public` is the public key in the form aws-lc-rs parses (PKCS#1 or SPKI
    /// DER for RSA, the uncompressed point for EC, the raw key for Ed25519);
    /// `None` for HMAC secrets.
    fn new(kid: Option<String>, key: DecodingKey, algorithms: Vec<Algorithm>, public: Option<&[u8]>) -> VerifyKey {
        let parsed = match public {
            Some(public) => algorithms
                .iter()
                .filter_map(|&alg| Some((alg, ParsedPublicKey::new(aws_lc_algorithm(alg)?, public).ok()?)))
                .collect(),
            None => Vec::new(),
        };
        let material = match public {
            Some(public) => Box::from(public),
            None => Box::from(key.try_get_hmac_secret().unwrap_or_default()),
        };
        VerifyKey { kid, key, algorithms, parsed, material }
    }

    /// Whether `other` is the same key: same `kid`, algorithms and key bytes.
    pub fn same_key(&self, other: &VerifyKey) -> bool {
        self.kid == other.kid && self.algorithms == other.algorithms && self.material == other.material
    }

    /// Checks `signature` (raw bytes) over `message` with algorithm `alg`,
    /// which the caller has already checked is one of [`VerifyKey::algorithms`].
    /// The same algorithm parameters as jsonwebtoken's aws-lc-rs backend
    /// (RSA 2048–8192 bits, fixed-size ECDSA signatures).
    pub fn verify(&self, alg: Algorithm, message: &[u8], signature_b64: &str) -> Result<bool, BadSignatureEncoding> {
        match self.parsed.iter().find(|(a, _)| *a == alg) {
            Some((_, key)) => {
                use base64::Engine as _;
                let mut buf = [0u8; 1024];
                let n = base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode_slice(signature_b64, &mut buf)
                    .map_err(|_| BadSignatureEncoding)?;
                Ok(key.verify_sig(message, &buf[..n]).is_ok())
            }
            None => {
                jsonwebtoken::crypto::verify(signature_b64, message, &self.key, alg).map_err(|_| BadSignatureEncoding)
            }
        }
    }
}

/// The signature part of a token is not base64url (or absurdly long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BadSignatureEncoding;

/// The aws-lc-rs verification algorithm for a JWS algorithm (none for HMAC).
fn aws_lc_algorithm(alg: Algorithm) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
        Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
        Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
        Algorithm::EdDSA => &sig::ED25519,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => return None,
    })
}

/// DER of a PKCS#1 RSAPublicKey { n, e } (for JWK keys given as components).
fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn len(out: &mut Vec<u8>, n: usize) {
        if n < 0x80 {
            out.push(n as u8);
        } else {
            let bytes = n.to_be_bytes();
            let skip = bytes.iter().take_while(|&&b| b == 0).count();
            out.push(0x80 | (bytes.len() - skip) as u8);
            out.extend_from_slice(&bytes[skip..]);
        }
    }
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v.iter().take_while(|&&b| b == 0).count().min(v.len().saturating_sub(1))..];
        let pad = v.first().is_some_and(|&b| b & 0x80 != 0);
        out.push(0x02);
        len(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 16);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    len(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifyKey").field("kid", &self.kid).field("algorithms", &self.algorithms).finish()
    }
}

/// A JWS `alg` name: jsonwebtoken's names, and `Ed25519` (RFC 9864), which
/// is EdDSA over Ed25519.
pub fn parse_algorithm(name: &str) -> Option<Algorithm> {
    match name {
        "Ed25519" => Some(Algorithm::EdDSA),
        other => other.parse().ok(),
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
        let public = key.as_bytes().to_vec();
        return Ok(VerifyKey::new(kid, key, RSA_ALGS.to_vec(), Some(&public)));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        // The uncompressed point is 0x04 || X || Y: 65 bytes on P-256, 97 on P-384.
        let algorithms = match key.as_bytes().len() {
            65 => vec![Algorithm::ES256],
            97 => vec![Algorithm::ES384],
            n => return Err(format!("unsupported EC key ({n}-byte point; P-256 and P-384 are supported)")),
        };
        let public = key.as_bytes().to_vec();
        return Ok(VerifyKey::new(kid, key, algorithms, Some(&public)));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        let public = key.as_bytes().to_vec();
        return Ok(VerifyKey::new(kid, key, vec![Algorithm::EdDSA], Some(&public)));
    }
    Err("not a PEM public key (RSA, EC P-256/P-384 or Ed25519)".to_owned())
}

/// An HMAC secret (HS256/384/512); the bytes are used as given.
pub fn hmac(secret: &[u8]) -> VerifyKey {
    VerifyKey::new(None, DecodingKey::from_secret(secret), HMAC_ALGS.to_vec(), None)
}

/// The signing keys of a JWKS document. A key that cannot be used — not for
/// signatures (`use` other than `sig`), of an unknown `kty`, curve or `alg`,
/// or malformed — is skipped and named in the returned notes, never the whole
/// document (one exotic key must not take an issuer's other keys down); a
/// document that is not a JWKS at all is an error.
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
            Err(e) => notes.push(format!("JWKS key {label} skipped: {e}")),
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
    let b64 = |name: &str| -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(field(name)?)
            .map_err(|_| format!("\"{name}\" is not base64url"))
    };
    let (key, mut algorithms, public) = match s("kty") {
        Some("RSA") => {
            let (n, e) = (b64("n")?, b64("e")?);
            (DecodingKey::from_rsa_raw_components(&n, &e), RSA_ALGS.to_vec(), rsa_public_key_der(&n, &e))
        }
        Some("EC") => {
            let alg = match s("crv") {
                Some("P-256") => Algorithm::ES256,
                Some("P-384") => Algorithm::ES384,
                _ => return Ok(None),
            };
            let key = DecodingKey::from_ec_components(field("x")?, field("y")?).map_err(|e| e.to_string())?;
            let public = key.as_bytes().to_vec();
            (key, vec![alg], public)
        }
        Some("OKP") if s("crv") == Some("Ed25519") => {
            let key = DecodingKey::from_ed_components(field("x")?).map_err(|e| e.to_string())?;
            let public = key.as_bytes().to_vec();
            (key, vec![Algorithm::EdDSA], public)
        }
        _ => return Ok(None),
    };
    if let Some(alg) = s("alg") {
        let alg = parse_algorithm(alg).ok_or_else(|| format!("unknown alg {alg:?}"))?;
        if !algorithms.contains(&alg) {
            return Err(format!("alg {alg:?} does not fit the key type"));
        }
        algorithms = vec![alg];
    }
    Ok(Some(VerifyKey::new(kid, key, algorithms, Some(&public))))
}
