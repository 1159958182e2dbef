//! `rolegate mint`: sign a test token. The algorithm follows the key: RS256
//! for RSA, ES256/ES384 for EC P-256/P-384, EdDSA for Ed25519, HS256 for a secret.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Map, Value};

/// What to sign with.
#[derive(Debug, Clone)]
pub enum Signer {
    /// A private key in PEM (PKCS#8, or PKCS#1 for RSA).
    Pem(Vec<u8>),
    /// An HMAC secret (HS256).
    Secret(Vec<u8>),
}

/// Signs `claims` (a JSON object). When `ttl` is given, `iat` and `exp` are
/// set from now unless the claims already have them (a negative TTL makes an
/// expired token, handy for tests).
pub fn sign(signer: &Signer, claims: &Value, kid: Option<&str>, ttl: Option<i64>) -> Result<String, String> {
    let mut claims: Map<String, Value> =
        claims.as_object().cloned().ok_or_else(|| "claims must be a JSON object".to_owned())?;
    if let Some(ttl) = ttl {
        let now = crate::auth::now_secs() as i64;
        claims.entry("iat").or_insert_with(|| Value::from(now));
        claims.entry("exp").or_insert_with(|| Value::from(now + ttl));
    }
    let claims = Value::Object(claims);
    let candidates: Vec<(Algorithm, EncodingKey)> = match signer {
        Signer::Secret(s) => vec![(Algorithm::HS256, EncodingKey::from_secret(s))],
        Signer::Pem(pem) => {
            if let Some(kind) = public_key_kind(pem) {
                return Err(format!(
                    "this is a public key ({kind}); signing needs the private key of the pair \
                     (the file `openssl genpkey` wrote, e.g. keys/idp.key, not keys/idp.pub.pem)"
                ));
            }
            let mut c = Vec::new();
            if let Ok(k) = EncodingKey::from_rsa_pem(pem) {
                c.push((Algorithm::RS256, k));
            }
            if let Ok(k) = EncodingKey::from_ec_pem(pem) {
                c.push((Algorithm::ES256, k.clone()));
                c.push((Algorithm::ES384, k));
            }
            if let Ok(k) = EncodingKey::from_ed_pem(pem) {
                c.push((Algorithm::EdDSA, k));
            }
            c
        }
    };
    let mut last_err = "the key is not a PEM private key (RSA, EC P-256/P-384 or Ed25519)".to_owned();
    for (alg, key) in candidates {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        match jsonwebtoken::encode(&header, &claims, &key) {
            Ok(t) => return Ok(t),
            Err(e) => last_err = format!("signing failed: {e}"),
        }
    }
    Err(last_err)
}

/// The kind of a PEM public key or certificate (`RSA`, `EC P-256`, …), or
/// `None` when `pem` is something else (jsonwebtoken would take an RSA public
/// key for a signing key, and fail only when signing, with no word of why).
fn public_key_kind(pem: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(pem).ok()?;
    if !text.contains("PUBLIC KEY-----") && !text.contains("CERTIFICATE-----") {
        return None;
    }
    let kind = match crate::auth::keys::from_pem(None, pem).ok()?.algorithms.first()? {
        Algorithm::ES256 => "EC P-256",
        Algorithm::ES384 => "EC P-384",
        Algorithm::EdDSA => "Ed25519",
        _ => "RSA",
    };
    Some(if text.contains("CERTIFICATE-----") { format!("a certificate's {kind} key") } else { kind.to_owned() })
}

/// Parses a TTL such as `90`, `30s`, `15m`, `1h`, `2d` (optionally negative).
pub fn parse_ttl(s: &str) -> Result<i64, String> {
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (num, unit) = body.split_at(body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len()));
    let n: i64 = num.parse().map_err(|_| format!("bad TTL {s:?} (examples: 30s, 15m, 1h, 2d)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("bad TTL unit in {s:?} (s, m, h, d)")),
    };
    let secs = n * mult;
    Ok(if neg { -secs } else { secs })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("90"), Ok(90));
        assert_eq!(parse_ttl("1h"), Ok(3600));
        assert_eq!(parse_ttl("-5m"), Ok(-300));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
    }

    #[test]
    fn signs_with_each_key_type() {
        let claims = serde_json::json!({"sub": "a"});
        for (pair, alg) in [
            (crate::keygen::rsa().unwrap(), "RS256"),
            (crate::keygen::ec_p256().unwrap(), "ES256"),
            (crate::keygen::ed25519().unwrap(), "EdDSA"),
        ] {
            let t = sign(&Signer::Pem(pair.private_pem.into_bytes()), &claims, Some("k"), Some(60)).unwrap();
            let h = jsonwebtoken::decode_header(&t).unwrap();
            assert_eq!(format!("{:?}", h.alg), alg);
            assert_eq!(h.kid.as_deref(), Some("k"));
        }
    }

    /// A public key is refused with its kind named (jsonwebtoken took an RSA
    /// public key and failed only when signing, with "UnexpectedError").
    #[test]
    fn a_public_key_is_refused_naming_its_kind() {
        let claims = serde_json::json!({"sub": "a"});
        for (pair, kind) in [
            (crate::keygen::rsa().unwrap(), "(RSA)"),
            (crate::keygen::ec_p256().unwrap(), "(EC P-256)"),
            (crate::keygen::ed25519().unwrap(), "(Ed25519)"),
        ] {
            let err = sign(&Signer::Pem(pair.public_pem.into_bytes()), &claims, None, Some(60)).unwrap_err();
            assert!(err.contains("public key") && err.contains(kind) && err.contains("private key"), "{err}");
        }
    }
}
