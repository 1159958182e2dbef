//! Keys from a JWKS file: RSA (n/e), EC P-256 (x/y) and Ed25519 (OKP) keys
//! verify their tokens; keys not for signing or of unknown types are skipped.

mod support;

use rolegate::mint::{self, Signer};
use serde_json::json;
use support::*;

fn with_kid(mut jwk: serde_json::Value, kid: &str, extra: serde_json::Value) -> serde_json::Value {
    jwk["kid"] = json!(kid);
    for (k, v) in extra.as_object().unwrap() {
        jwk[k] = v.clone();
    }
    jwk
}

#[tokio::test]
async fn jwks_file_keys_verify_their_tokens() {
    let rsa = rolegate::keygen::rsa().unwrap();
    let ec = rolegate::keygen::ec_p256().unwrap();
    let ed = rolegate::keygen::ed25519().unwrap();
    let other = rolegate::keygen::rsa().unwrap();
    let jwks = json!({"keys": [
        with_kid(rsa.public_jwk.clone(), "r1", json!({"use": "sig", "alg": "RS256"})),
        with_kid(ec.public_jwk.clone(), "e1", json!({})),
        with_kid(ed.public_jwk.clone(), "d1", json!({})),
        with_kid(other.public_jwk.clone(), "enc1", json!({"use": "enc"})),
        {"kty": "oct", "kid": "s1", "k": "c2VjcmV0"},
    ]});
    let routes = STANDARD_ROUTES.replacen(
        "keys = [{ kid = \"k1\", pem_file = \"rsa.pub.pem\" }, { kid = \"e1\", pem_file = \"ec.pub.pem\" }]\nalgorithms = [\"RS256\", \"ES256\"]",
        "jwks_file = \"jwks.json\"\nalgorithms = [\"RS256\", \"PS256\", \"ES256\", \"EdDSA\"]",
        1,
    );
    assert_ne!(routes, STANDARD_ROUTES);
    // The file must exist before the gateway loads its table.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("jwks.json"), jwks.to_string()).unwrap();
    let routes = routes
        .replace("jwks_file = \"jwks.json\"", &format!("jwks_file = \"{}\"", dir.path().join("jwks.json").display()));
    let gw = TestGateway::with_routes(&routes).await;
    let warnings = &gw.shared.load().warnings;
    let skipped = warnings.iter().filter(|w| w.contains("skipped")).count();
    assert_eq!(skipped, 2, "the enc key and the oct key are skipped with a note: {warnings:?}");

    let c = claims(json!({"ts_roles": ["admin"]}));
    let sign = |pair: &rolegate::keygen::PemPair, kid: &str| {
        mint::sign(&Signer::Pem(pair.private_pem.clone().into_bytes()), &c, Some(kid), Some(600)).unwrap()
    };
    assert_eq!(gw.send("GET", "/admin/x", Some(&sign(&rsa, "r1"))).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&sign(&ec, "e1"))).await.status, 200);
    assert_eq!(gw.send("GET", "/admin/x", Some(&sign(&ed, "d1"))).await.status, 200);
    // The encryption key is not a signing key, and a token signed by it names it in vain.
    assert_eq!(gw.send("GET", "/admin/x", Some(&sign(&other, "enc1"))).await.status, 401);
    // A token signed by another key but claiming a trusted kid.
    assert_eq!(gw.send("GET", "/admin/x", Some(&sign(&other, "r1"))).await.status, 401);
    // A key's alg pins it: r1 is RS256 only, so a PS256 token naming r1 finds no key for its alg.
    let ps = {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(rsa.private_pem.as_bytes()).unwrap();
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::PS256);
        h.kid = Some("r1".into());
        let mut c = c.clone();
        c["exp"] = json!(rolegate::auth::now_secs() + 600);
        jsonwebtoken::encode(&h, &c, &key).unwrap()
    };
    let r = gw.send("GET", "/admin/x", Some(&ps)).await;
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").unwrap().contains("no key for the token's alg"), "{:?}", r.headers);
}
