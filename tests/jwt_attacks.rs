//! Every JWT attack we know, each refused with 401 invalid_token and a precise
//! reason, and never forwarded.

mod support;

use serde_json::{json, Value};
use support::*;

/// Signs header+payload JSON text with the configured RSA key (RS256), for tokens
/// the minting library would refuse to make (duplicate keys, odd types, crit...).
fn rs256_raw(header: &str, payload: &str) -> String {
    let k = keys();
    let pem = k.rsa.private_pem.as_bytes();
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).unwrap();
    let msg = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = jsonwebtoken::crypto::sign(msg.as_bytes(), &key, jsonwebtoken::Algorithm::RS256).unwrap();
    format!("{msg}.{sig}")
}

fn payload(extra: Value) -> String {
    let mut c = claims(json!({"ts_roles": ["admin"], "exp": 4_102_444_800u64}));
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c.to_string()
}

async fn expect_401(gw: &TestGateway, token: &str, reason_contains: &str) {
    let r = gw.send("GET", "/admin/x", Some(token)).await;
    assert_eq!(r.status, 401, "token should be refused ({reason_contains}): {:?}", r.body);
    let www = r.header("www-authenticate").unwrap_or_default().to_owned();
    assert!(www.starts_with("Bearer error=\"invalid_token\""), "{www}");
    assert!(www.contains(reason_contains), "expected {reason_contains:?} in {www}");
    assert!(gw.upstream_saw().is_empty(), "a refused token must never reach the upstream");
}

#[tokio::test]
async fn sanity_the_raw_signer_makes_valid_tokens() {
    let gw = TestGateway::start().await;
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1"}"#, &payload(json!({})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200);
}

#[tokio::test]
async fn alg_none_in_every_spelling() {
    let gw = TestGateway::start().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let t = format!("{}.{}.", b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()), b64(payload(json!({})).as_bytes()));
        expect_401(&gw, &t, "").await;
        let t =
            format!("{}.{}.AAAA", b64(format!(r#"{{"alg":"{alg}"}}"#).as_bytes()), b64(payload(json!({})).as_bytes()));
        expect_401(&gw, &t, "alg none").await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key() {
    let gw = TestGateway::start().await;
    let c = claims(json!({"ts_roles": ["admin"]}));
    let t = hs256(&c, keys().rsa.public_pem.as_bytes());
    // HS256 is not in the issuer's algorithms, and no HMAC key exists for it anyway.
    expect_401(&gw, &t, "alg is not allowed").await;
    // Even on an issuer that allows HS256, the RSA public key is never an HMAC secret.
    let t = hs256(&json!({"iss": "https://hs.test", "roles": ["admin"]}), keys().rsa.public_pem.as_bytes());
    expect_401(&gw, &t, "signature is invalid").await;
}

#[tokio::test]
async fn header_alg_differs_from_signature() {
    let gw = TestGateway::start().await;
    // Header claims ES256 with kid e1 (the EC key), but the signature is RS256.
    let t = rs256_raw(r#"{"alg":"ES256","kid":"e1"}"#, &payload(json!({})));
    expect_401(&gw, &t, "signature is invalid").await;
    // Header claims ES256 with kid k1: the RSA key does not accept ES256.
    let t = rs256_raw(r#"{"alg":"ES256","kid":"k1"}"#, &payload(json!({})));
    expect_401(&gw, &t, "no key for the token's alg").await;
}

#[tokio::test]
async fn expired_and_not_yet_valid() {
    let gw = TestGateway::start().await;
    let now = rolegate::auth::now_secs() as i64;
    expect_401(&gw, &rs256(&claims(json!({"exp": now - 60, "ts_roles": ["admin"]}))), "expired").await;
    expect_401(&gw, &rs256(&claims(json!({"nbf": now + 600, "ts_roles": ["admin"]}))), "not valid yet").await;
    // Within leeway (5 s): accepted.
    let ok = rs256(&claims(json!({"nbf": now + 2, "ts_roles": ["admin"]})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&ok)).await.status, 200);
}

#[tokio::test]
async fn missing_exp_is_refused() {
    let gw = TestGateway::start().await;
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1"}"#, &claims(json!({"ts_roles": ["admin"]})).to_string());
    expect_401(&gw, &t, "no exp").await;
}

#[tokio::test]
async fn wrong_or_missing_issuer_and_audience() {
    let gw = TestGateway::start().await;
    expect_401(&gw, &rs256(&claims(json!({"iss": "https://evil.test"}))), "issuer is not trusted").await;
    expect_401(&gw, &rs256(&claims(json!({"iss": "https://idp.test/"}))), "issuer is not trusted").await;
    expect_401(&gw, &rs256(&claims(json!({"iss": null}))), "no iss").await;
    expect_401(&gw, &rs256(&claims(json!({"aud": "other-api"}))), "audience").await;
    expect_401(&gw, &rs256(&claims(json!({"aud": ["a", "b"]}))), "audience").await;
    expect_401(&gw, &rs256(&claims(json!({"aud": null}))), "no aud").await;
    // An array containing the audience is fine.
    let ok = rs256(&claims(json!({"aud": ["x", "orders-api"], "ts_roles": ["admin"]})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&ok)).await.status, 200);
}

#[tokio::test]
async fn unknown_kid_and_untrusted_key_with_trusted_kid() {
    let gw = TestGateway::start().await;
    let c = claims(json!({"ts_roles": ["admin"]}));
    expect_401(&gw, &rs256_kid(&c, Some("nope")), "kid").await;
    // An attacker's key, claiming the trusted kid.
    expect_401(&gw, &rogue(&c, Some("k1")), "signature is invalid").await;
    // ... or no kid at all.
    expect_401(&gw, &rogue(&c, None), "signature is invalid").await;
    // kid injection strings are just unknown kids.
    for kid in ["../../dev/null", "' OR '1'='1", "k1\u{0}", "/etc/passwd"] {
        expect_401(&gw, &rs256_kid(&c, Some(kid)), "kid").await;
    }
}

#[tokio::test]
async fn token_without_kid_tries_the_issuers_keys_of_its_alg() {
    let gw = TestGateway::start().await;
    let t = rs256_kid(&claims(json!({"ts_roles": ["admin"]})), None);
    assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200);
}

#[tokio::test]
async fn tampered_payload() {
    let gw = TestGateway::start().await;
    let t = rs256(&claims(json!({"ts_roles": ["reader"]})));
    let parts: Vec<&str> = t.split('.').collect();
    let forged = b64(claims(json!({"ts_roles": ["admin"], "exp": 4_102_444_800u64})).to_string().as_bytes());
    let t = format!("{}.{}.{}", parts[0], forged, parts[2]);
    expect_401(&gw, &t, "signature is invalid").await;
}

#[tokio::test]
async fn embedded_keys_in_the_header_are_ignored() {
    let gw = TestGateway::start().await;
    let c = claims(json!({"ts_roles": ["admin"]}));
    // Signed by the attacker, pointing at the attacker's key by every header means.
    let attacker = rogue(&c, Some("k1"));
    let parts: Vec<&str> = attacker.split('.').collect();
    for extra in [
        r#""jku":"https://evil.test/jwks.json""#,
        r#""x5u":"https://evil.test/cert.pem""#,
        r#""jwk":{"kty":"RSA","n":"AQAB","e":"AQAB"}"#,
        r#""x5c":["MIIB"]"#,
    ] {
        let header = format!(r#"{{"alg":"RS256","kid":"k1",{extra}}}"#);
        let t = format!("{}.{}.{}", b64(header.as_bytes()), parts[1], parts[2]);
        expect_401(&gw, &t, "signature is invalid").await;
    }
    // And a token signed by the trusted key with a jku header is still fine (ignored, not refused).
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1","jku":"https://evil.test/jwks.json"}"#, &payload(json!({})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200);
}

#[tokio::test]
async fn crit_header_is_refused() {
    let gw = TestGateway::start().await;
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1","crit":["exp"]}"#, &payload(json!({})));
    expect_401(&gw, &t, "crit").await;
}

#[tokio::test]
async fn registered_claims_of_the_wrong_type() {
    let gw = TestGateway::start().await;
    let h = r#"{"alg":"RS256","kid":"k1"}"#;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"exp": "4102444800"}))), "exp claim has the wrong type").await;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"nbf": "0"}))), "nbf claim has the wrong type").await;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"aud": 5}))), "aud claim has the wrong type").await;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"aud": ["orders-api", 5]}))), "aud claim has the wrong type").await;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"iss": ["https://idp.test"]}))), "iss claim has the wrong type")
        .await;
    expect_401(&gw, &rs256_raw(h, &payload(json!({"sub": 42}))), "sub claim has the wrong type").await;
    expect_401(&gw, &rs256_raw(r#"{"alg":"RS256","kid":7}"#, &payload(json!({}))), "kid claim has the wrong type")
        .await;
}

#[tokio::test]
async fn duplicate_keys_are_refused() {
    let gw = TestGateway::start().await;
    let p = payload(json!({}));
    let dup_payload = format!(r#"{{"exp":1,{}"#, &p[1..]);
    expect_401(&gw, &rs256_raw(r#"{"alg":"RS256","kid":"k1"}"#, &dup_payload), "duplicate key").await;
    let dup_header = r#"{"alg":"HS256","alg":"RS256","kid":"k1"}"#;
    expect_401(&gw, &rs256_raw(dup_header, &p), "duplicate key").await;
}

#[tokio::test]
async fn malformed_tokens() {
    let gw = TestGateway::start().await;
    let good = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let parts: Vec<&str> = good.split('.').collect();
    let cases = [
        (format!("{}.{}", parts[0], parts[1]), "three dot-separated parts"),
        (format!("{good}.x"), "three dot-separated parts"),
        (format!("{}=.{}.{}", parts[0], parts[1], parts[2]), "not base64url"),
        (format!("{}.{}.{}==", parts[0], parts[1], parts[2]), "not base64url"),
        (format!("{}.{}+.{}", parts[0], parts[1], parts[2]), "not base64url"),
        (format!("{}.{}.", parts[0], parts[1]), "signature is empty"),
        (format!("{}.{}.{}", b64(b"[1,2]"), parts[1], parts[2]), "not a JSON object"),
        (format!("{}.{}.{}", parts[0], b64(b"not json"), parts[2]), "not a JSON object"),
        ("a".repeat(20_000), "longer than"),
        (format!("{}.{}.{}", b64(br#"{"kid":"k1"}"#), parts[1], parts[2]), "no alg"),
        (format!("{}.{}.{}", b64(br#"{"alg":"RS999"}"#), parts[1], parts[2]), "alg is not supported"),
        (format!("{}.{}.{}", b64(br#"{"alg":"rs256"}"#), parts[1], parts[2]), "alg is not supported"),
    ];
    for (token, reason) in cases {
        expect_401(&gw, &token, reason).await;
    }
}

#[tokio::test]
async fn nested_jwt_is_not_unwrapped() {
    let gw = TestGateway::start().await;
    // A JWS whose payload is itself a JWT (cty: JWT) is not a claims object: refused.
    let inner = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1","cty":"JWT"}"#, &serde_json::to_string(&inner).unwrap());
    expect_401(&gw, &t, "not a JSON object").await;
}

#[tokio::test]
async fn whitespace_inside_the_token() {
    let gw = TestGateway::start().await;
    let good = rs256(&claims(json!({"ts_roles": ["admin"]})));
    let (a, b) = good.split_at(20);
    expect_401(&gw, &format!("{a} {b}"), "").await;
}

/// `token_types = ["at+jwt"]` (RFC 9068 §4): the header `typ` must be one of
/// them, case-insensitively, with or without `application/`; an ID token
/// (`typ: JWT`) or a token without `typ` cannot stand in for an access token.
#[tokio::test]
async fn token_types_keep_id_tokens_out() {
    let routes = STANDARD_ROUTES.replacen("leeway_s = 5\n", "leeway_s = 5\ntoken_types = [\"at+jwt\"]\n", 1);
    let gw = TestGateway::with_routes(&routes).await;
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt", "Application/At+JWT"] {
        let t = rs256_raw(&format!(r#"{{"alg":"RS256","kid":"k1","typ":"{typ}"}}"#), &payload(json!({})));
        assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200, "{typ}");
    }
    let seen = gw.upstream_saw().len();
    for header in [
        r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#,
        r#"{"alg":"RS256","kid":"k1"}"#,
        r#"{"alg":"RS256","kid":"k1","typ":"at+jwt2"}"#,
    ] {
        let r = gw.send("GET", "/admin/x", Some(&rs256_raw(header, &payload(json!({}))))).await;
        assert_eq!(r.status, 401, "{header}");
        assert!(r.header("www-authenticate").unwrap().contains("typ is not one the issuer accepts"), "{header}");
    }
    let r = gw
        .send("GET", "/admin/x", Some(&rs256_raw(r#"{"alg":"RS256","kid":"k1","typ":5}"#, &payload(json!({})))))
        .await;
    assert_eq!(r.status, 401);
    assert_eq!(gw.upstream_saw().len(), seen, "refused tokens never reach the upstream");
    // Issuers without `token_types` take any typ, as before.
    let gw = TestGateway::start().await;
    let t = rs256_raw(r#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#, &payload(json!({})));
    assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200);
}

/// RFC 9864's fully specified `"alg": "Ed25519"` is EdDSA over Ed25519: in the
/// token header, in a JWK and in `algorithms`.
#[tokio::test]
async fn ed25519_is_the_fully_specified_name_of_eddsa_over_ed25519() {
    use aws_lc_rs::signature::Ed25519KeyPair;
    let pair = rolegate::keygen::ed25519().unwrap();
    let der = {
        use base64::Engine as _;
        let body: String = pair.private_pem.lines().filter(|l| !l.starts_with("-----")).collect();
        base64::engine::general_purpose::STANDARD.decode(body).unwrap()
    };
    let kp = Ed25519KeyPair::from_pkcs8(&der).unwrap();
    let sign = |header: &str| {
        let msg = format!("{}.{}", b64(header.as_bytes()), b64(payload(json!({})).as_bytes()));
        format!("{msg}.{}", b64(kp.sign(msg.as_bytes()).as_ref()))
    };
    let mut jwk = pair.public_jwk.clone();
    jwk["kid"] = json!("ed");
    jwk["alg"] = json!("Ed25519");
    let routes = STANDARD_ROUTES.replacen(
        "keys = [{ kid = \"k1\", pem_file = \"rsa.pub.pem\" }, { kid = \"e1\", pem_file = \"ec.pub.pem\" }]\nalgorithms = [\"RS256\", \"ES256\"]",
        "jwks_file = \"ed.jwks.json\"\nalgorithms = [\"Ed25519\"]",
        1,
    );
    let jwks = json!({"keys": [jwk]}).to_string();
    let gw = TestGateway::with_routes_and_files(&routes, &[("ed.jwks.json", &jwks)]).await;
    for alg in ["Ed25519", "EdDSA"] {
        let t = sign(&format!(r#"{{"alg":"{alg}","kid":"ed"}}"#));
        assert_eq!(gw.send("GET", "/admin/x", Some(&t)).await.status, 200, "{alg}");
    }
    let r = gw.send("GET", "/admin/x", Some(&rs256(&claims(json!({"ts_roles": ["admin"]}))))).await;
    assert_eq!(r.status, 401, "RS256 is not among this issuer's algorithms");
}
