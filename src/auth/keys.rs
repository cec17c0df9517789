//! Verification keys: shared secrets, PEM public keys and JWK sets (a file, or a document
//! fetched from the identity provider), each key bound to one algorithm.

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, Validation};

use crate::config::{AuthConfig, KeyConfig, SecretRef};

/// Shortest HMAC secret accepted (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;
/// Largest key or JWKS file read.
const MAX_KEY_FILE_BYTES: u64 = 1024 * 1024;
/// Most keys accepted in a fetched JWK set.
const MAX_FETCHED_KEYS: usize = 100;

/// One verification key with the single algorithm it may verify.
pub(crate) struct Key {
    pub kid: Option<String>,
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// Every algorithm a key may carry.
pub(crate) const ALGORITHMS: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Builds the validation rules for one key: signature by `alg` only, `exp`, `iss`,
/// `aud` and `sub` required, `nbf` checked when present.
pub(crate) fn validation(cfg: &AuthConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = cfg.leeway_secs.min(300);
    v.validate_exp = true;
    v.validate_nbf = true;
    v.validate_aud = true;
    v.reject_tokens_expiring_in_less_than = 0;
    v.set_issuer(&[cfg.issuer.as_str()]);
    v.set_audience(&[cfg.audience.as_str()]);
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    v
}

/// Parses an algorithm name exactly as RFC 7518 spells it; `none` is never one.
pub(crate) fn parse_alg(s: &str) -> Result<Algorithm, String> {
    Algorithm::from_str(s).map_err(|_| {
        format!(
            "unknown or unsupported algorithm `{}` (use HS256, HS384, HS512, RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA)",
            s.escape_default()
        )
    })
}

fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))?;
    if meta.len() > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{what} `{}` is larger than {MAX_KEY_FILE_BYTES} bytes",
            path.display()
        ));
    }
    std::fs::read(path).map_err(|e| format!("cannot read {what} `{}`: {e}", path.display()))
}

fn describe(k: &KeyConfig) -> String {
    match &k.kid {
        Some(kid) => format!("key `{kid}`"),
        None => format!("{} key", k.alg),
    }
}

/// Loads one configured key.
pub(crate) fn load_key(k: &KeyConfig) -> Result<Key, String> {
    let alg = parse_alg(&k.alg).map_err(|e| format!("{}: {e}", describe(k)))?;
    let decoding = match alg.family() {
        AlgorithmFamily::Hmac => {
            let secret = k
                .secret
                .as_ref()
                .ok_or_else(|| format!("{}: alg `{}` needs a `secret`", describe(k), k.alg))?;
            if k.generate_dev_secret {
                match secret {
                    SecretRef::File(p) => {
                        super::ensure_dev_secret(p).map_err(|e| {
                            format!("cannot create dev secret `{}`: {e}", p.display())
                        })?;
                    }
                    SecretRef::Env(_) => {
                        return Err(format!(
                            "{}: `generate_dev_secret` needs `secret: {{file: …}}`",
                            describe(k)
                        ));
                    }
                }
            }
            let bytes = secret.read()?;
            if bytes.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "{}: secret is shorter than {MIN_SECRET_BYTES} bytes",
                    describe(k)
                ));
            }
            if bytes.starts_with(b"-----BEGIN") {
                return Err(format!(
                    "{}: secret looks like a PEM key; a public key is never an HMAC secret",
                    describe(k)
                ));
            }
            if k.public_key.is_some() {
                return Err(format!(
                    "{}: alg `{}` takes a `secret`, not a `public_key`",
                    describe(k),
                    k.alg
                ));
            }
            DecodingKey::from_secret(&bytes)
        }
        family => {
            if k.secret.is_some() || k.generate_dev_secret {
                return Err(format!(
                    "{}: alg `{}` takes a `public_key`, not a `secret`",
                    describe(k),
                    k.alg
                ));
            }
            let path = k
                .public_key
                .as_ref()
                .ok_or_else(|| format!("{}: alg `{}` needs a `public_key`", describe(k), k.alg))?;
            let pem = read_small(path, "public key")?;
            let key = match family {
                AlgorithmFamily::Rsa => DecodingKey::from_rsa_pem(&pem),
                AlgorithmFamily::Ec => DecodingKey::from_ec_pem(&pem),
                _ => DecodingKey::from_ed_pem(&pem),
            };
            let key = key.map_err(|e| {
                format!(
                    "{}: `{}` is not a PEM {} public key: {e}",
                    describe(k),
                    path.display(),
                    k.alg
                )
            })?;
            check_key_matches(&key, alg)
                .map_err(|e| format!("{}: `{}`: {e}", describe(k), path.display()))?;
            key
        }
    };
    Ok(Key {
        kid: k.kid.clone(),
        alg,
        decoding,
    })
}

/// Checks at load time that a public key can verify `alg`, so a wrong curve or a
/// private key given as public fails at start-up, not on the first request.
fn check_key_matches(key: &DecodingKey, alg: Algorithm) -> Result<(), String> {
    use aws_lc_rs::signature as sig;
    if key.family() != alg.family() {
        return Err(format!("key type does not match alg `{alg:?}`"));
    }
    let Ok(bytes) = key.try_get_as_bytes() else {
        return Ok(()); // RSA modulus/exponent from a JWK, checked by its length below
    };
    let ok = match alg {
        Algorithm::ES256 => bytes.len() == 65 && bytes.first() == Some(&4),
        Algorithm::ES384 => bytes.len() == 97 && bytes.first() == Some(&4),
        Algorithm::EdDSA => bytes.len() == 32,
        _ => {
            let pk = aws_lc_rs::rsa::PublicKey::from_der(bytes)
                .map_err(|_| "not an RSA public key".to_string())?;
            let comps = sig::RsaPublicKeyComponents::<Vec<u8>>::from(&pk);
            let bits = significant_bits(&comps.n);
            if bits < 2048 {
                return Err(format!(
                    "RSA key has {bits} bits; at least 2048 are required"
                ));
            }
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("key is not a public key for alg `{alg:?}`"))
    }
}

fn significant_bits(n: &[u8]) -> usize {
    let n: Vec<u8> = n.iter().copied().skip_while(|b| *b == 0).collect();
    match n.first() {
        Some(b) => (n.len() - 1) * 8 + (8 - b.leading_zeros() as usize),
        None => 0,
    }
}

/// Loads every key of a JWKS file. Each key must be a public signature key with an
/// algorithm (`alg`, or implied by an EC/OKP curve); symmetric keys are refused.
pub(crate) fn load_jwks(path: &Path) -> Result<Vec<Key>, String> {
    let bytes = read_small(path, "JWKS file")?;
    let set: JwkSet = serde_json::from_slice(&bytes)
        .map_err(|e| format!("JWKS file `{}` is not a valid JWK set: {e}", path.display()))?;
    let mut keys = Vec::with_capacity(set.keys.len());
    for (i, jwk) in set.keys.iter().enumerate() {
        let key = jwk_key(jwk)
            .map_err(|e| format!("JWKS file `{}` {}: {e}", path.display(), jwk_name(jwk, i)))?;
        keys.push(key);
    }
    Ok(keys)
}

fn jwk_name(jwk: &Jwk, i: usize) -> String {
    match &jwk.common.key_id {
        Some(kid) => format!("key `{}`", kid.escape_default()),
        None => format!("key #{}", i + 1),
    }
}

/// A JWK set fetched from an identity provider: its keys, and a note for each entry
/// skipped. Identity providers publish keys the gateway has no use for beside their
/// signing keys (`use: enc`, `RSA-OAEP`, other curves): those are skipped rather than
/// failing the set, but a set of which no key is usable, or that names a `kid` twice,
/// is refused.
pub(crate) fn remote_jwks(bytes: &[u8]) -> Result<(Vec<Key>, Vec<String>), String> {
    #[derive(serde::Deserialize)]
    struct Doc {
        keys: Vec<serde_json::Value>,
    }
    let doc: Doc =
        serde_json::from_slice(bytes).map_err(|e| format!("not a valid JWK set: {e}"))?;
    // A token without `kid` is tried against every key of its algorithm.
    if doc.keys.len() > MAX_FETCHED_KEYS {
        return Err(format!(
            "the set lists {} keys; at most {MAX_FETCHED_KEYS} are accepted",
            doc.keys.len()
        ));
    }
    let mut keys: Vec<Key> = Vec::with_capacity(doc.keys.len());
    let mut skipped = Vec::new();
    for (i, v) in doc.keys.into_iter().enumerate() {
        let key = serde_json::from_value::<Jwk>(v)
            .map_err(|e| format!("key #{}: {e}", i + 1))
            .and_then(|jwk| jwk_key(&jwk).map_err(|e| format!("{}: {e}", jwk_name(&jwk, i))));
        match key {
            Ok(k) => {
                if let Some(kid) = &k.kid
                    && keys.iter().any(|o| o.kid.as_ref() == Some(kid))
                {
                    return Err(format!("key id `{}` is listed twice", kid.escape_default()));
                }
                keys.push(k);
            }
            Err(e) => skipped.push(e),
        }
    }
    if keys.is_empty() && !skipped.is_empty() {
        return Err(format!(
            "no usable signature key in the set ({})",
            skipped.join("; ")
        ));
    }
    Ok((keys, skipped))
}

fn jwk_key(jwk: &Jwk) -> Result<Key, String> {
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("`use` is not `sig`".into()),
    }
    let implied = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => Some(Algorithm::ES256),
            EllipticCurve::P384 => Some(Algorithm::ES384),
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::OctetKeyPair(p) => match p.curve {
            EllipticCurve::Ed25519 => Some(Algorithm::EdDSA),
            _ => return Err("unsupported curve".into()),
        },
        AlgorithmParameters::RSA(_) => None,
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric (`oct`) keys are not accepted from a JWKS".into());
        }
        _ => return Err("unsupported key type".into()),
    };
    let alg = match (&jwk.common.key_algorithm, implied) {
        (Some(a), implied) => {
            let a = parse_alg(&a.to_string())?;
            if implied.is_some_and(|i| i != a) {
                return Err(format!("`alg` `{a:?}` does not match the key's curve"));
            }
            a
        }
        (None, Some(i)) => i,
        (None, None) => return Err("RSA key without `alg`".into()),
    };
    let decoding = DecodingKey::from_jwk(jwk).map_err(|e| format!("invalid key: {e}"))?;
    check_key_matches(&decoding, alg)?;
    if let AlgorithmParameters::RSA(p) = &jwk.algorithm {
        let n = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &p.n)
            .map_err(|_| "RSA modulus is not base64url".to_string())?;
        let bits = significant_bits(&n);
        if bits < 2048 {
            return Err(format!(
                "RSA key has {bits} bits; at least 2048 are required"
            ));
        }
    }
    Ok(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        decoding,
    })
}
