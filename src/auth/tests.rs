//! Attack and round-trip tests for bearer-token validation.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;
use crate::config::{KeyConfig, SecretRef};

const ISS: &str = "https://issuer.test";
const AUD: &str = "bordergate";
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-test-secret";

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "org": "acme",
        "jurisdiction": "DE", "purpose": "training",
        "iat": now(), "exp": now() + 600,
    })
}

fn with(mut c: Value, k: &str, v: Value) -> Value {
    c[k] = v;
    c
}

fn without(mut c: Value, k: &str) -> Value {
    c.as_object_mut().unwrap().remove(k);
    c
}

fn auth_cfg(keys: Vec<KeyConfig>, jwks: Option<PathBuf>) -> AuthConfig {
    AuthConfig {
        issuer: ISS.into(),
        audience: AUD.into(),
        leeway_secs: 30,
        keys,
        jwks,
        jwks_url: None,
        jwks_ca: None,
        jwks_refresh_min_secs: 60,
        jwks_refresh_max_secs: 3600,
        jwks_unknown_kid_cooldown_secs: 30,
        jwks_max_stale_secs: 86400,
        max_token_lifetime_secs: crate::config::DEFAULT_MAX_TOKEN_LIFETIME_SECS,
        jurisdiction_claim: crate::config::JurisdictionClaim::default(),
        s3_keys: None,
    }
}

fn key_cfg(
    kid: Option<&str>,
    alg: &str,
    secret: Option<SecretRef>,
    pk: Option<PathBuf>,
) -> KeyConfig {
    KeyConfig {
        kid: kid.map(String::from),
        alg: alg.into(),
        secret,
        generate_dev_secret: false,
        public_key: pk,
    }
}

/// A generated key pair: private PEM (PKCS#8) and public PEM (SPKI).
struct Pair {
    private: String,
    public: String,
}

fn keypair(alg: &'static rcgen::SignatureAlgorithm) -> Pair {
    let kp = rcgen::KeyPair::generate_for(alg).unwrap();
    Pair {
        private: kp.serialize_pem(),
        public: kp.public_key_pem(),
    }
}

fn rsa() -> &'static Pair {
    static K: OnceLock<Pair> = OnceLock::new();
    K.get_or_init(|| keypair(&rcgen::PKCS_RSA_SHA256))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn secret_file(dir: &Path) -> SecretRef {
    SecretRef::File(write(
        dir,
        "hs.secret",
        std::str::from_utf8(SECRET).unwrap(),
    ))
}

fn hs_auth(dir: &Path) -> Authenticator {
    Authenticator::from_config(&auth_cfg(
        vec![key_cfg(None, "HS256", Some(secret_file(dir)), None)],
        None,
    ))
    .unwrap()
}

fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    jsonwebtoken::encode(header, claims, key).unwrap()
}

fn hs(claims: &Value) -> String {
    sign(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn b64(v: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(v)
}

/// A token assembled by hand from a raw header, raw claims and raw signature bytes.
fn raw_token(header: &str, claims: &Value, sig: &[u8]) -> String {
    format!(
        "{}.{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes()),
        b64(sig)
    )
}

/// An HS256 token with a hand-written header, correctly signed with `SECRET`.
fn hs_raw(header: &str, claims: &Value) -> String {
    let msg = format!(
        "{}.{}",
        b64(header.as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let tag = aws_lc_rs::hmac::sign(&k, msg.as_bytes());
    format!("{msg}.{}", b64(tag.as_ref()))
}

fn bearer(t: &str) -> Vec<u8> {
    format!("Bearer {t}").into_bytes()
}

fn check(a: &Authenticator, token: &str) -> Result<Caller, AuthError> {
    a.authenticate(Some(&bearer(token)))
}

fn code(a: &Authenticator, token: &str) -> &'static str {
    match check(a, token) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.code(),
    }
}

#[test]
fn valid_hs256_token_yields_the_caller() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let c = check(&a, &hs(&claims())).unwrap();
    assert_eq!(c.sub, "alice");
    assert_eq!(c.org, "acme");
    assert_eq!(c.jurisdiction.as_str(), "DE");
    assert_eq!(c.purpose, "training");
    // audience as an array containing ours is fine
    let arr = with(claims(), "aud", json!(["other", AUD]));
    assert!(check(&a, &hs(&arr)).is_ok());
}

#[test]
fn mint_token_round_trips_with_a_generated_dev_secret() {
    let d = tempfile::tempdir().unwrap();
    let path = d.path().join("nested/dir/dev.secret");
    assert!(ensure_dev_secret(&path).unwrap());
    assert!(!ensure_dev_secret(&path).unwrap(), "must not overwrite");
    let mut k = key_cfg(
        Some("dev"),
        "HS256",
        Some(SecretRef::File(path.clone())),
        None,
    );
    k.generate_dev_secret = true;
    let a = Authenticator::from_config(&auth_cfg(vec![k], None)).unwrap();
    let secret = SecretRef::File(path).read().unwrap();
    assert_eq!(secret.len(), 64);
    let t = mint_token(
        &secret,
        ISS,
        AUD,
        "bob",
        "lab",
        "US",
        "inference",
        Duration::from_secs(60),
    )
    .unwrap();
    let c = check(&a, &t).unwrap();
    assert_eq!((c.sub.as_str(), c.jurisdiction.as_str()), ("bob", "US"));
    assert!(
        mint_token(
            &secret,
            ISS,
            AUD,
            "bob",
            "lab",
            "us",
            "inference",
            Duration::from_secs(60)
        )
        .is_err()
    );
    assert!(
        mint_token(
            &secret,
            ISS,
            AUD,
            "bob",
            "lab",
            "US",
            "spying",
            Duration::from_secs(60)
        )
        .is_err()
    );
    assert!(
        mint_token(
            b"short",
            ISS,
            AUD,
            "bob",
            "lab",
            "US",
            "inference",
            Duration::from_secs(60)
        )
        .is_err()
    );
}

#[cfg(unix)]
#[test]
fn dev_secret_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("s");
    ensure_dev_secret(&p).unwrap();
    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn alg_none_is_refused_in_any_case() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    for alg in ["none", "None", "NONE", "nOnE"] {
        let h = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        let t = raw_token(&h, &claims(), b"");
        assert_eq!(code(&a, &t), "bad-algorithm", "{alg}");
        let t = raw_token(&h, &claims(), b"sig");
        assert_eq!(code(&a, &t), "bad-algorithm", "{alg}");
    }
    // unknown algorithms too
    let t = raw_token(r#"{"alg":"HS1"}"#, &claims(), b"x");
    assert_eq!(code(&a, &t), "bad-algorithm");
    let t = raw_token(r#"{"alg":"hs256"}"#, &claims(), b"x");
    assert_eq!(code(&a, &t), "bad-algorithm");
}

#[test]
fn rs_public_key_is_never_an_hmac_secret() {
    let d = tempfile::tempdir().unwrap();
    let pk = write(d.path(), "rs.pem", &rsa().public);
    let a = Authenticator::from_config(&auth_cfg(
        vec![key_cfg(Some("rs"), "RS256", None, Some(pk))],
        None,
    ))
    .unwrap();
    let key = EncodingKey::from_secret(rsa().public.as_bytes());
    // without kid: no HS256 key exists
    let t = sign(&Header::new(Algorithm::HS256), &claims(), &key);
    assert_eq!(code(&a, &t), "bad-algorithm");
    // naming the RS key
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("rs".into());
    let t = sign(&h, &claims(), &key);
    assert_eq!(code(&a, &t), "bad-algorithm");
    // and a PEM configured as an HMAC secret is refused at load time
    let s = SecretRef::File(d.path().join("rs.pem"));
    let e =
        Authenticator::from_config(&auth_cfg(vec![key_cfg(None, "HS256", Some(s), None)], None))
            .unwrap_err();
    assert!(e.contains("PEM"), "{e}");
}

#[test]
fn asymmetric_keys_verify_and_reject_foreign_signatures() {
    let d = tempfile::tempdir().unwrap();
    let es = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let es384 = keypair(&rcgen::PKCS_ECDSA_P384_SHA384);
    let ed = keypair(&rcgen::PKCS_ED25519);
    let a = Authenticator::from_config(&auth_cfg(
        vec![
            key_cfg(
                Some("rs"),
                "RS256",
                None,
                Some(write(d.path(), "rs.pem", &rsa().public)),
            ),
            key_cfg(
                Some("ps"),
                "PS256",
                None,
                Some(write(d.path(), "ps.pem", &rsa().public)),
            ),
            key_cfg(
                Some("es"),
                "ES256",
                None,
                Some(write(d.path(), "es.pem", &es.public)),
            ),
            key_cfg(
                Some("es384"),
                "ES384",
                None,
                Some(write(d.path(), "es384.pem", &es384.public)),
            ),
            key_cfg(
                Some("ed"),
                "EdDSA",
                None,
                Some(write(d.path(), "ed.pem", &ed.public)),
            ),
        ],
        None,
    ))
    .unwrap();
    let rs_key = EncodingKey::from_rsa_pem(rsa().private.as_bytes()).unwrap();
    let es_key = EncodingKey::from_ec_pem(es.private.as_bytes()).unwrap();
    let es384_key = EncodingKey::from_ec_pem(es384.private.as_bytes()).unwrap();
    let ed_key = EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap();
    let cases = [
        (Algorithm::RS256, "rs", &rs_key),
        (Algorithm::PS256, "ps", &rs_key),
        (Algorithm::ES256, "es", &es_key),
        (Algorithm::ES384, "es384", &es384_key),
        (Algorithm::EdDSA, "ed", &ed_key),
    ];
    for (alg, kid, key) in cases {
        // with kid
        let mut h = Header::new(alg);
        h.kid = Some(kid.into());
        let t = sign(&h, &claims(), key);
        let v = a.verify(Some(&bearer(&t))).unwrap();
        assert_eq!(v.kid.as_deref(), Some(kid));
        // without kid: tried against the keys of that alg
        let t = sign(&Header::new(alg), &claims(), key);
        assert!(check(&a, &t).is_ok(), "{alg:?} without kid");
        // truncated and stripped signatures
        let (msg, sig) = t.rsplit_once('.').unwrap();
        let truncated = format!("{msg}.{}", &sig[..sig.len() - 4]);
        let c = code(&a, &truncated);
        assert!(c == "bad-signature" || c == "malformed", "{alg:?}: {c}");
        assert_eq!(code(&a, &format!("{msg}.")), "bad-signature", "{alg:?}");
        // a tampered payload
        let tampered = {
            let mut parts: Vec<&str> = t.split('.').collect();
            let other = b64(with(claims(), "jurisdiction", json!("US"))
                .to_string()
                .as_bytes());
            parts[1] = &other;
            parts.join(".")
        };
        assert_eq!(code(&a, &tampered), "bad-signature", "{alg:?}");
    }
    // wrong signer, same alg
    let other = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let t = sign(
        &Header::new(Algorithm::ES256),
        &claims(),
        &EncodingKey::from_ec_pem(other.private.as_bytes()).unwrap(),
    );
    assert_eq!(code(&a, &t), "bad-signature");
    // a key named by kid with another alg
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("ed".into());
    assert_eq!(code(&a, &sign(&h, &claims(), &es_key)), "bad-algorithm");
    // CVE-2022-21449: all-zero ECDSA signature
    let t = raw_token(r#"{"alg":"ES256","kid":"es"}"#, &claims(), &[0u8; 64]);
    assert_eq!(code(&a, &t), "bad-signature");
}

#[test]
fn time_claims_honour_the_leeway() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    assert_eq!(
        code(&a, &hs(&with(claims(), "exp", json!(now() - 100)))),
        "expired"
    );
    assert!(check(&a, &hs(&with(claims(), "exp", json!(now() - 10)))).is_ok());
    assert_eq!(
        code(&a, &hs(&with(claims(), "nbf", json!(now() + 100)))),
        "not-yet-valid"
    );
    assert!(check(&a, &hs(&with(claims(), "nbf", json!(now() + 10)))).is_ok());
    let c = code(&a, &hs(&with(claims(), "nbf", json!("later"))));
    assert_eq!(c, "invalid-claim");
    let c = code(&a, &hs(&with(claims(), "exp", json!("soon"))));
    assert!(c == "missing-claim" || c == "invalid-claim", "{c}");
}

#[test]
fn issuer_and_audience_must_match() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    assert_eq!(
        code(&a, &hs(&with(claims(), "iss", json!("https://evil.test")))),
        "wrong-issuer"
    );
    assert_eq!(
        code(&a, &hs(&with(claims(), "aud", json!("other")))),
        "wrong-audience"
    );
    assert_eq!(
        code(&a, &hs(&with(claims(), "aud", json!(["a", "b"])))),
        "wrong-audience"
    );
    assert_eq!(
        code(&a, &hs(&with(claims(), "iss", json!([ISS])))),
        "invalid-claim"
    );
}

#[test]
fn required_claims_must_be_present() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    for k in ["exp", "aud", "iss", "sub", "org", "jurisdiction", "purpose"] {
        assert_eq!(code(&a, &hs(&without(claims(), k))), "missing-claim", "{k}");
        assert_eq!(
            code(&a, &hs(&with(claims(), k, Value::Null))),
            "missing-claim",
            "{k}"
        );
    }
}

#[test]
fn claim_values_and_types_are_strict() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    for (k, v) in [
        ("jurisdiction", json!("de")),
        ("jurisdiction", json!("XZ")),
        ("jurisdiction", json!("DEU")),
        ("jurisdiction", json!(123)),
        ("jurisdiction", json!(["DE"])),
        ("purpose", json!("spying")),
        ("purpose", json!("Training")),
        ("purpose", json!(true)),
        ("sub", json!(42)),
        ("sub", json!("")),
        ("sub", json!("a\nb")),
        ("org", json!({"name": "acme"})),
        ("org", json!("x".repeat(300))),
        ("cnf", json!({"jkt": "abc"})),
        ("cnf", json!({"x5t#S256": "short"})),
    ] {
        assert_eq!(
            code(&a, &hs(&with(claims(), k, v.clone()))),
            "invalid-claim",
            "{k}: {v}"
        );
    }
    // a duplicated claim is ambiguous
    let body = claims().to_string();
    let dup = format!("{},\"jurisdiction\":\"US\"}}", &body[..body.len() - 1]);
    let h = b64(br#"{"alg":"HS256"}"#);
    let msg = format!("{h}.{}", b64(dup.as_bytes()));
    let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, SECRET);
    let t = format!(
        "{msg}.{}",
        b64(aws_lc_rs::hmac::sign(&k, msg.as_bytes()).as_ref())
    );
    assert!(check(&a, &t).is_err());
}

#[test]
fn kid_is_only_a_lookup_key() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path()); // one HS256 key without kid
    let mut h = Header::new(Algorithm::HS256);
    h.kid = Some("../../etc/passwd".into());
    assert_eq!(
        code(&a, &sign(&h, &claims(), &EncodingKey::from_secret(SECRET))),
        "unknown-key"
    );
    assert_eq!(
        code(&a, &hs_raw(r#"{"alg":"HS256","kid":7}"#, &claims())),
        "malformed"
    );
}

#[test]
fn key_pointing_and_critical_headers_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    for (h, name) in [
        (r#"{"alg":"HS256","jku":"https://evil.test/jwks"}"#, "jku"),
        (r#"{"alg":"HS256","x5u":"https://evil.test/cert"}"#, "x5u"),
        (r#"{"alg":"HS256","jwk":{"kty":"oct","k":"AAAA"}}"#, "jwk"),
        (r#"{"alg":"HS256","x5c":["MIIB"]}"#, "x5c"),
        (r#"{"alg":"HS256","crit":["exp"],"exp":1}"#, "crit"),
        (r#"{"alg":"HS256","b64":false,"crit":["b64"]}"#, "crit"),
        (r#"{"alg":"HS256","enc":"A128GCM"}"#, "enc"),
    ] {
        assert_eq!(
            check(&a, &hs_raw(h, &claims())).unwrap_err(),
            AuthError::ForbiddenHeader(name),
            "{h}"
        );
    }
    assert_eq!(
        code(
            &a,
            &hs_raw(r#"{"alg":"HS256","typ":"dpop+jwt"}"#, &claims())
        ),
        "bad-type"
    );
    assert!(check(&a, &hs_raw(r#"{"alg":"HS256","typ":"at+jwt"}"#, &claims())).is_ok());
    assert!(
        check(
            &a,
            &hs_raw(r#"{"alg":"HS256","typ":"JWT","cty":"x"}"#, &claims())
        )
        .is_ok()
    );
    assert_eq!(
        code(&a, &hs_raw(r#"{"alg":"HS256","alg":"HS256"}"#, &claims())),
        "malformed"
    );
    assert_eq!(code(&a, &hs_raw(r#"["HS256"]"#, &claims())), "malformed");
    // claims as an array (fields by position) are not a claims set
    let arr = json!([ISS, AUD, "alice", "acme", "DE", "training", now() + 600]);
    assert!(check(&a, &hs_raw(r#"{"alg":"HS256"}"#, &arr)).is_err());
}

#[test]
fn authorization_header_must_be_one_bearer_token() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let t = hs(&claims());
    assert_eq!(a.authenticate(None).unwrap_err(), AuthError::Missing);
    assert!(
        a.authenticate(Some(format!("bearer {t}").as_bytes()))
            .is_ok()
    );
    assert!(
        a.authenticate(Some(format!("BEARER {t}").as_bytes()))
            .is_ok()
    );
    for bad in [
        String::new(),
        "Bearer".into(),
        "Bearer ".into(),
        format!("Bearer  {t}"),
        format!("Bearer {t} {t}"),
        format!("Bearer {t},{t}"),
        format!("Bearer\t{t}"),
        format!("Basic {t}"),
        format!("Bearer{t}"),
        format!("Token {t}"),
        format!("Bearer {t}="),
        "Basic YWxpY2U6c2VjcmV0".into(),
    ] {
        let e = a.authenticate(Some(bad.as_bytes())).unwrap_err();
        assert_eq!(e.code(), "invalid-token", "{bad:?}");
        assert_eq!(e.rfc6750_error(), Some("invalid_request"));
    }
    for bad in ["a.b", "a.b.c.d", "a..c", "!!!.b.c"] {
        let e = a.authenticate(Some(&bearer(bad))).unwrap_err();
        assert!(
            matches!(e.code(), "malformed" | "invalid-token"),
            "{bad}: {e}"
        );
    }
    // two Authorization headers
    let mut hm = http::HeaderMap::new();
    hm.append("authorization", format!("Bearer {t}").parse().unwrap());
    assert!(a.authenticate_headers(&hm).is_ok());
    hm.append("authorization", format!("Bearer {t}").parse().unwrap());
    assert_eq!(
        a.authenticate_headers(&hm).unwrap_err().code(),
        "invalid-token"
    );
}

#[test]
fn oversized_tokens_are_refused_before_parsing() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let big = with(claims(), "pad", json!("x".repeat(9000)));
    assert_eq!(code(&a, &hs(&big)), "token-too-large");
    let a = hs_auth(d.path()).with_max_token_bytes(100);
    assert_eq!(code(&a, &hs(&claims())), "token-too-large");
}

#[test]
fn jwks_keys_verify_by_kid() {
    let d = tempfile::tempdir().unwrap();
    let es = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let ed = keypair(&rcgen::PKCS_ED25519);
    let rs_jwk = {
        let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_rsa_pem(rsa().private.as_bytes()).unwrap(),
            Algorithm::RS256,
        )
        .unwrap();
        j.common.key_id = Some("rs-1".into());
        j
    };
    let es_jwk = {
        let mut j = jsonwebtoken::jwk::Jwk::from_encoding_key(
            &EncodingKey::from_ec_pem(es.private.as_bytes()).unwrap(),
            Algorithm::ES256,
        )
        .unwrap();
        j.common.key_id = Some("es-1".into());
        j
    };
    // an OKP key built by hand from the raw public key, without `alg` (implied by the curve)
    let ed_raw = jsonwebtoken::DecodingKey::from_ed_pem(ed.public.as_bytes()).unwrap();
    let ed_jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": "ed-1",
        "x": b64(ed_raw.try_get_as_bytes().unwrap()),
    }))
    .unwrap();
    let set = jsonwebtoken::jwk::JwkSet {
        keys: vec![rs_jwk, es_jwk, ed_jwk],
    };
    let path = write(d.path(), "jwks.json", &serde_json::to_string(&set).unwrap());
    let a = Authenticator::from_config(&auth_cfg(vec![], Some(path))).unwrap();
    let mut h = Header::new(Algorithm::RS256);
    h.kid = Some("rs-1".into());
    let t = sign(
        &h,
        &claims(),
        &EncodingKey::from_rsa_pem(rsa().private.as_bytes()).unwrap(),
    );
    assert!(check(&a, &t).is_ok());
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("es-1".into());
    let t = sign(
        &h,
        &claims(),
        &EncodingKey::from_ec_pem(es.private.as_bytes()).unwrap(),
    );
    assert!(check(&a, &t).is_ok());
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = Some("ed-1".into());
    let t = sign(
        &h,
        &claims(),
        &EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap(),
    );
    assert!(check(&a, &t).is_ok());
    h.kid = Some("es-1".into());
    let t = sign(
        &h,
        &claims(),
        &EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap(),
    );
    assert_eq!(code(&a, &t), "bad-algorithm");
    h.kid = Some("nope".into());
    let t = sign(
        &h,
        &claims(),
        &EncodingKey::from_ed_pem(ed.private.as_bytes()).unwrap(),
    );
    assert_eq!(code(&a, &t), "unknown-key");
}

#[test]
fn unusable_jwks_and_keys_are_refused_at_load() {
    let d = tempfile::tempdir().unwrap();
    let oct = write(
        d.path(),
        "oct.json",
        r#"{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}"#,
    );
    let e = Authenticator::from_config(&auth_cfg(vec![], Some(oct))).unwrap_err();
    assert!(e.contains("symmetric"), "{e}");
    let enc = write(
        d.path(),
        "enc.json",
        r#"{"keys":[{"kty":"EC","crv":"P-256","use":"enc","x":"AA","y":"AA"}]}"#,
    );
    assert!(Authenticator::from_config(&auth_cfg(vec![], Some(enc))).is_err());
    // short secret
    let s = SecretRef::File(write(d.path(), "short", "tooshort"));
    let e =
        Authenticator::from_config(&auth_cfg(vec![key_cfg(None, "HS256", Some(s), None)], None))
            .unwrap_err();
    assert!(e.contains("shorter"), "{e}");
    // P-384 key configured for ES256
    let es384 = keypair(&rcgen::PKCS_ECDSA_P384_SHA384);
    let p = write(d.path(), "p384.pem", &es384.public);
    assert!(
        Authenticator::from_config(&auth_cfg(vec![key_cfg(None, "ES256", None, Some(p))], None))
            .is_err()
    );
    // an EC key configured for RS256
    let es = keypair(&rcgen::PKCS_ECDSA_P256_SHA256);
    let p = write(d.path(), "p256.pem", &es.public);
    assert!(
        Authenticator::from_config(&auth_cfg(vec![key_cfg(None, "RS256", None, Some(p))], None))
            .is_err()
    );
    // alg none or unknown in config
    let s = secret_file(d.path());
    assert!(
        Authenticator::from_config(&auth_cfg(
            vec![key_cfg(None, "none", Some(s.clone()), None)],
            None
        ))
        .is_err()
    );
    // duplicate kid
    let e = Authenticator::from_config(&auth_cfg(
        vec![
            key_cfg(Some("k"), "HS256", Some(s.clone()), None),
            key_cfg(Some("k"), "HS384", Some(s), None),
        ],
        None,
    ))
    .unwrap_err();
    assert!(e.contains("duplicate"), "{e}");
}

#[test]
fn certificate_binding_is_exposed_and_checked() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let cert = b"pretend DER certificate";
    let thumb = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, cert);
    let c = with(claims(), "cnf", json!({"x5t#S256": b64(thumb.as_ref())}));
    let v = a.verify(Some(&bearer(&hs(&c)))).unwrap();
    assert_eq!(
        v.cnf_x5t_s256.as_ref().map(|t| t.as_slice()),
        Some(thumb.as_ref())
    );
    assert!(v.check_certificate(Some(cert)).is_ok());
    assert_eq!(
        v.check_certificate(Some(b"other")).unwrap_err().code(),
        "certificate-mismatch"
    );
    assert!(v.check_certificate(None).is_err());
    let v = a.verify(Some(&bearer(&hs(&claims())))).unwrap();
    assert_eq!(v.cnf_x5t_s256, None);
    assert!(v.check_certificate(None).is_ok());
}

#[test]
fn durations_parse() {
    assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
    assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
    assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
    assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
    for bad in [
        "",
        "h",
        "1",
        "1x",
        "-1h",
        "1.5h",
        "0s",
        "1h30m",
        " 1h",
        "99999999999999999999d",
    ] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn a_verified_token_is_cached_until_its_expiry_and_only_successes_are() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let good = hs(&claims());
    let first = a.verify_shared(Some(&bearer(&good))).unwrap();
    let again = a.verify_shared(Some(&bearer(&good))).unwrap();
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second answer is the cached one"
    );
    assert_eq!(a.verified.len(), 1);

    // A refused token is never remembered, so it is refused again every time.
    let bad = hs(&with(claims(), "exp", json!(now() - 100)));
    assert_eq!(code(&a, &bad), "expired");
    assert_eq!(code(&a, &bad), "expired");
    assert_eq!(a.verified.len(), 1);

    // One byte changed in the signature: another key, verified (and refused) afresh.
    let mut forged = good.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    assert_ne!(code(&a, &forged), "ok");
}

#[test]
fn a_cached_token_past_its_expiry_and_leeway_is_not_served() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let t = hs(&claims());
    let key = cache::TokenCache::key(t.as_bytes());
    let ok = a.verify_shared(Some(&bearer(&t))).unwrap();
    let now = cache::unix_now();
    assert!(a.verified.get(&key, now).is_some());
    // exp = now + 600, leeway 30: served through exp + 30, gone the second after.
    assert!(a.verified.get(&key, now + 630).is_some());
    assert!(a.verified.get(&key, now + 631).is_none());
    assert_eq!(
        a.verified.len(),
        0,
        "an expired entry is dropped when found"
    );
    a.verified.put(key, ok, now - 1, 0);
    assert!(a.verified.get(&key, now).is_none());
}

#[test]
fn a_new_key_set_starts_with_an_empty_cache() {
    let d = tempfile::tempdir().unwrap();
    let a = hs_auth(d.path());
    let t = hs(&claims());
    assert!(check(&a, &t).is_ok());
    // The key set as a reload that removed the HS256 key would build it.
    let other = Authenticator::from_config(&auth_cfg(
        vec![key_cfg(
            None,
            "RS256",
            None,
            Some(write(d.path(), "rs.pem", &rsa().public)),
        )],
        None,
    ))
    .unwrap();
    assert_eq!(other.verified.len(), 0);
    assert!(
        check(&other, &t).is_err(),
        "the removed key's token is refused at once"
    );
}

/// An authenticator on a `jwks_url` of its own (sources are shared by settings) and
/// the Ed25519 keys `a` and `b` as JWKs.
fn remote_auth(name: &str) -> (Authenticator, [(Pair, Value); 2]) {
    let mut cfg = auth_cfg(vec![], None);
    cfg.jwks_url = Some(format!("https://idp.test/{name}/jwks"));
    let a = Authenticator::from_config(&cfg).unwrap();
    let jwk = |kid: &str| {
        let p = keypair(&rcgen::PKCS_ED25519);
        let raw = jsonwebtoken::DecodingKey::from_ed_pem(p.public.as_bytes()).unwrap();
        let j = json!({
            "kty": "OKP", "crv": "Ed25519", "use": "sig", "kid": kid,
            "x": b64(raw.try_get_as_bytes().unwrap()),
        });
        (p, j)
    };
    (a, [jwk("a"), jwk("b")])
}

fn ed_token(kid: Option<&str>, p: &Pair) -> String {
    let mut h = Header::new(Algorithm::EdDSA);
    h.kid = kid.map(str::to_string);
    sign(
        &h,
        &claims(),
        &EncodingKey::from_ed_pem(p.private.as_bytes()).unwrap(),
    )
}

#[test]
fn fetched_keys_verify_only_once_fetched_and_a_rotation_empties_the_cache() {
    let (auth, [(pa, ja), (pb, jb)]) = remote_auth("rotation");
    let r = auth.remote().unwrap();
    let ta = ed_token(Some("a"), &pa);
    assert_eq!(code(&auth, &ta), "keys-unavailable");
    assert!(auth.readiness().unwrap_err().contains("not fetched yet"));

    r.fetched(json!({"keys": [ja.clone()]}).to_string().as_bytes());
    auth.readiness().unwrap();
    assert!(check(&auth, &ta).is_ok());
    assert!(check(&auth, &ta).is_ok(), "a cache hit");
    let tb = ed_token(Some("b"), &pb);
    assert_eq!(code(&auth, &tb), "unknown-key");
    // Without a kid, every fetched key of the algorithm is tried.
    assert!(check(&auth, &ed_token(None, &pa)).is_ok());

    // The same set again keeps its generation, so the cache keeps serving.
    let g = r.generation();
    r.fetched(json!({"keys": [ja]}).to_string().as_bytes());
    assert_eq!(r.generation(), g);

    // Rotated: b in, a out. The cached verification of a no longer counts.
    r.fetched(json!({"keys": [jb]}).to_string().as_bytes());
    assert_ne!(r.generation(), g);
    assert!(check(&auth, &tb).is_ok());
    assert_eq!(code(&auth, &ta), "unknown-key");
}

#[test]
fn a_fetched_set_skips_keys_it_cannot_use_but_not_all_of_them() {
    let (auth, [(pa, ja), _]) = remote_auth("skips");
    let r = auth.remote().unwrap();
    let enc = json!({"kty": "RSA", "use": "enc", "alg": "RSA-OAEP", "kid": "enc-1",
                     "n": "AQAB", "e": "AQAB"});
    r.fetched(json!({"keys": [enc.clone(), ja]}).to_string().as_bytes());
    assert!(check(&auth, &ed_token(Some("a"), &pa)).is_ok());
    let only_enc = json!({"keys": [enc]}).to_string();
    let e = keys::remote_jwks(only_enc.as_bytes()).err().unwrap();
    assert!(e.contains("no usable signature key"), "{e}");
    let twice = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "x", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
                                {"kty": "OKP", "crv": "Ed25519", "kid": "x", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]})
    .to_string();
    let e = keys::remote_jwks(twice.as_bytes()).err().unwrap();
    assert!(e.contains("listed twice"), "{e}");
    let many = json!({"keys": vec![json!({"kty": "oct", "k": "AA"}); 101]}).to_string();
    let e = keys::remote_jwks(many.as_bytes()).err().unwrap();
    assert!(e.contains("at most 100"), "{e}");
}

#[test]
fn a_reload_that_only_changes_the_timings_keeps_the_fetched_keys() {
    let (auth, [(pa, ja), _]) = remote_auth("timings");
    auth.remote()
        .unwrap()
        .fetched(json!({"keys": [ja]}).to_string().as_bytes());
    let mut cfg = auth_cfg(vec![], None);
    cfg.jwks_url = Some("https://idp.test/timings/jwks".into());
    cfg.jwks_unknown_kid_cooldown_secs = 5;
    let next = Authenticator::from_config(&cfg).unwrap();
    assert!(check(&next, &ed_token(Some("a"), &pa)).is_ok());
    next.readiness().unwrap();
}
