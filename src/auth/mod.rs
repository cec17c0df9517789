//! Bearer-token validation: keys and JWKS, the checks, and the `Caller` it yields.
//!
//! Every key carries exactly one algorithm; the token header's `alg` must be that
//! algorithm, `kid` is only a lookup key, and headers that point at other keys
//! (`jku`, `x5u`, `jwk`, `x5c`) or demand unknown processing (`crit`) are refused.
//! Keys and validation rules are built once in [`Authenticator::from_config`]; keys
//! from the identity provider's `jwks_url` are fetched and refreshed by [`remote`].

mod cache;
mod dev;
mod error;
mod id_token;
mod keys;
mod lifetime;
mod remote;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::config::AuthConfig;
use crate::model::{Caller, Country, check_purpose};

pub(crate) use cache::unix_now;
pub use dev::{MintError, ensure_dev_secret, mint_token, mint_token_with_role, parse_duration};
pub use error::AuthError;
pub use id_token::IdTokenVerifier;
pub(crate) use id_token::equal as constant_time_eq;
pub use keys::MIN_SECRET_BYTES;
pub(crate) use keys::parse_alg;
pub use remote::check_url as check_jwks_url;
pub(crate) use remote::{chain as error_chain, https_client};

use keys::Key;

/// Largest token accepted unless [`Authenticator::with_max_token_bytes`] says otherwise.
pub const DEFAULT_MAX_TOKEN_BYTES: usize = 8192;
/// Longest `sub` or `org` accepted.
const MAX_ID_BYTES: usize = 256;

/// A validated token: the caller and what else the token asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub caller: Caller,
    /// SHA-256 thumbprint of the client certificate the token is bound to
    /// (`cnf` `x5t#S256`, RFC 8705); when set, the connection must present that
    /// certificate — see [`Authenticated::check_certificate`].
    pub cnf_x5t_s256: Option<[u8; 32]>,
    /// The `kid` of the key that verified the token.
    pub kid: Option<String>,
    /// The `role` claim (e.g. `compliance-officer` for the admin listener's audit endpoints).
    pub role: Option<String>,
}

impl Authenticated {
    /// Checks the RFC 8705 certificate binding against the client certificate (DER) of the
    /// connection. Unbound tokens pass; a bound token without a matching certificate fails.
    pub fn check_certificate(&self, client_cert_der: Option<&[u8]>) -> Result<(), AuthError> {
        let Some(want) = &self.cnf_x5t_s256 else {
            return Ok(());
        };
        let Some(der) = client_cert_der else {
            return Err(AuthError::CertificateMismatch);
        };
        let got = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        // Both values are public; a plain comparison leaks nothing secret.
        if got.as_ref() == want.as_slice() {
            Ok(())
        } else {
            Err(AuthError::CertificateMismatch)
        }
    }
}

/// Validates bearer tokens against the configured keys.
pub struct Authenticator {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
    /// Keys from `jwks_url`, shared with other snapshots of the same settings; a `kid`
    /// is looked up in the configured keys first.
    remote: Option<Arc<remote::Source>>,
    /// The validation rules of each algorithm.
    validations: HashMap<Algorithm, Validation>,
    max_token_bytes: usize,
    /// Seconds past `exp` a token is still accepted (`auth.leeway_secs`).
    leeway_secs: u64,
    /// Tokens this key set verified; dropped with the authenticator on reload.
    verified: cache::TokenCache,
    /// When tokens were issued and for how long: see [`lifetime::Lifetime`].
    lifetime: lifetime::Lifetime,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("keys", &self.keys.len())
            .field("jwks_url", &self.remote.is_some())
            .field("max_token_bytes", &self.max_token_bytes)
            .finish()
    }
}

impl Authenticator {
    /// Loads every key (secrets, PEM public keys, the JWKS file) and builds its
    /// validation rules; with a `jwks_url`, joins (or starts) the source that fetches
    /// its keys. Fails on any unusable key or duplicate `kid`.
    pub fn from_config(cfg: &AuthConfig) -> Result<Authenticator, String> {
        install_jwt_crypto_provider();
        if cfg.leeway_secs > 300 {
            return Err(format!(
                "auth leeway `{}` s is more than the 300 s allowed",
                cfg.leeway_secs
            ));
        }
        let mut keys = Vec::new();
        for k in &cfg.keys {
            keys.push(keys::load_key(k)?);
        }
        if let Some(path) = &cfg.jwks {
            keys.extend(keys::load_jwks(path)?);
        }
        let remote = match remote::Settings::of(cfg)? {
            Some(s) => Some(remote::source(s)?),
            None => None,
        };
        if keys.is_empty() && remote.is_none() {
            return Err("`auth` has no keys: no token could ever be valid".into());
        }
        let mut by_kid = HashMap::new();
        for (i, k) in keys.iter().enumerate() {
            if let Some(kid) = &k.kid
                && by_kid.insert(kid.clone(), i).is_some()
            {
                return Err(format!("duplicate key id `{kid}`"));
            }
        }
        let validations = keys::ALGORITHMS
            .iter()
            .map(|a| (*a, keys::validation(cfg, *a)))
            .collect();
        Ok(Authenticator {
            keys,
            by_kid,
            remote,
            validations,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            leeway_secs: cfg.leeway_secs.min(300),
            verified: cache::TokenCache::new(cache::CAPACITY),
            lifetime: lifetime::Lifetime::of(cfg),
        })
    }

    /// Whether tokens can be verified: always with configured keys only; with a
    /// `jwks_url`, once its keys are fetched and while they are not stale (else why not).
    pub fn readiness(&self) -> Result<(), String> {
        match &self.remote {
            Some(r) => r.readiness(),
            None => Ok(()),
        }
    }

    /// The source of the `jwks_url` keys, for tests to play fetches.
    #[cfg(test)]
    pub(crate) fn remote(&self) -> Option<&remote::Source> {
        self.remote.as_deref()
    }

    /// Sets the largest token accepted (`limits.max_token_bytes`).
    pub fn with_max_token_bytes(mut self, n: usize) -> Self {
        self.max_token_bytes = n;
        self
    }

    /// Validates the value of an `Authorization` header.
    pub fn authenticate(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        self.verify(authorization).map(|a| a.caller)
    }

    /// Validates every `Authorization` header of a request: more than one is refused.
    pub fn authenticate_headers(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<Authenticated, AuthError> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let first = values.next();
        if values.next().is_some() {
            return Err(AuthError::Invalid(
                "more than one authorization header".into(),
            ));
        }
        self.verify(first.map(|v| v.as_bytes()))
    }

    /// Validates the value of an `Authorization` header and returns the caller with
    /// the token's certificate binding. A token verified before, and not expired since,
    /// is answered from the cache without touching a key (see [`cache`]).
    pub fn verify(&self, authorization: Option<&[u8]>) -> Result<Authenticated, AuthError> {
        self.verify_shared(authorization).map(Arc::unwrap_or_clone)
    }

    /// [`Authenticator::verify`], sharing the cached result.
    pub fn verify_shared(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Authenticated>, AuthError> {
        let value = authorization.ok_or(AuthError::Missing)?;
        // A hit is byte for byte a token that passed every check below, so only the
        // size and the scheme are looked at before the lookup.
        let raw = bearer_bytes(value, self.max_token_bytes)?;
        let key = cache::TokenCache::key(raw);
        let now = cache::unix_now();
        if let Some((hit, generation)) = self.verified.get(&key, now)
            && (generation == 0
                || self.remote.as_ref().and_then(|r| r.generation()) == Some(generation))
        {
            return Ok(hit);
        }
        let token = bearer_token(value, self.max_token_bytes)?;
        let (auth, exp, generation) = self.verify_uncached(token)?;
        let auth = Arc::new(auth);
        if let Some(exp) = exp {
            self.verified.put(
                key,
                Arc::clone(&auth),
                exp.saturating_add(self.leeway_secs),
                generation,
            );
        }
        Ok(auth)
    }

    /// Full verification of one token: header, key, signature, claims. Returns the
    /// token's `exp` (unix seconds) and the generation of the key set that verified it
    /// (0: the configured keys) for the cache.
    fn verify_uncached(&self, token: &str) -> Result<(Authenticated, Option<u64>, u64), AuthError> {
        let header = parse_header(token)?;
        let tagged = |r: Result<(Authenticated, Option<u64>), AuthError>, generation| {
            r.map(|(a, exp)| (a, exp, generation))
        };

        let mut last = AuthError::BadAlgorithm("no key for this algorithm");
        if let Some(kid) = &header.kid {
            if let Some(i) = self.by_kid.get(kid.as_str()) {
                return tagged(self.verify_with(token, &self.keys[*i], header.alg), 0);
            }
            let Some(remote) = &self.remote else {
                return Err(AuthError::UnknownKey);
            };
            let set = remote.current().inspect_err(|_| remote.ask_refresh())?;
            let Some(i) = set.by_kid.get(kid.as_str()) else {
                // Perhaps a key the identity provider has just added.
                remote.ask_refresh();
                return Err(AuthError::UnknownKey);
            };
            return tagged(
                self.verify_with(token, &set.keys[*i], header.alg),
                set.generation,
            );
        }
        for key in self.keys.iter().filter(|k| k.alg == header.alg) {
            match self.verify_with(token, key, header.alg) {
                Err(AuthError::BadSignature) => last = AuthError::BadSignature,
                other => return tagged(other, 0),
            }
        }
        if let Some(remote) = &self.remote {
            let set = remote.current().inspect_err(|_| remote.ask_refresh())?;
            for key in set.keys.iter().filter(|k| k.alg == header.alg) {
                match self.verify_with(token, key, header.alg) {
                    Err(AuthError::BadSignature) => last = AuthError::BadSignature,
                    other => return tagged(other, set.generation),
                }
            }
        }
        Err(last)
    }

    fn verify_with(
        &self,
        token: &str,
        key: &Key,
        alg: Algorithm,
    ) -> Result<(Authenticated, Option<u64>), AuthError> {
        if key.alg != alg {
            return Err(AuthError::BadAlgorithm("not the algorithm of the key"));
        }
        let validation = self
            .validations
            .get(&key.alg)
            .ok_or(AuthError::BadAlgorithm("not the algorithm of the key"))?;
        let data = jsonwebtoken::decode::<ObjectOnly<Claims>>(token, &key.decoding, validation)
            .map_err(|e| error::from_jwt(&e))?;
        let ObjectOnly(c) = data.claims;
        self.lifetime.check(c.iat, c.exp)?;
        let sub = identifier(c.sub, "sub")?;
        let org = identifier(c.org, "org")?;
        let jurisdiction = c
            .jurisdiction
            .ok_or(AuthError::MissingClaim("jurisdiction"))?;
        let jurisdiction =
            Country::parse(&jurisdiction).map_err(|_| AuthError::InvalidClaim("jurisdiction"))?;
        let purpose = c.purpose.ok_or(AuthError::MissingClaim("purpose"))?;
        check_purpose(&purpose).map_err(|_| AuthError::InvalidClaim("purpose"))?;
        let role = c.role.map(|r| identifier(Some(r), "role")).transpose()?;
        let cnf_x5t_s256 = match c.cnf.and_then(|c| c.x5t_s256) {
            None => None,
            Some(t) => {
                let raw = URL_SAFE_NO_PAD
                    .decode(t.as_bytes())
                    .map_err(|_| AuthError::InvalidClaim("cnf"))?;
                Some(
                    <[u8; 32]>::try_from(raw.as_slice())
                        .map_err(|_| AuthError::InvalidClaim("cnf"))?,
                )
            }
        };
        // jsonwebtoken has checked `exp` (required) as a number; a fractional one is
        // cached to its whole second, which only ends the entry earlier.
        let exp = c
            .exp
            .filter(|e| e.is_finite() && *e >= 0.0)
            .map(|e| e as u64);
        Ok((
            Authenticated {
                caller: Caller {
                    sub,
                    org,
                    jurisdiction,
                    purpose,
                    claimed_jurisdiction: None,
                },
                cnf_x5t_s256,
                kid: key.kid.clone(),
                role,
            },
            exp,
        ))
    }
}

/// Makes jsonwebtoken use aws-lc-rs explicitly (idempotent), so no feature
/// unification elsewhere in the build can leave it without a provider.
fn install_jwt_crypto_provider() {
    // Err only means a provider is installed already.
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}

/// A non-empty identifier claim without control characters.
fn identifier(v: Option<String>, name: &'static str) -> Result<String, AuthError> {
    let v = v.ok_or(AuthError::MissingClaim(name))?;
    if v.is_empty() || v.len() > MAX_ID_BYTES || v.chars().any(char::is_control) {
        return Err(AuthError::InvalidClaim(name));
    }
    Ok(v)
}

/// The bytes after exactly `Bearer ` (scheme case-insensitive, one space), size-checked.
fn bearer_bytes(value: &[u8], max: usize) -> Result<&[u8], AuthError> {
    const SCHEME: &[u8] = b"bearer";
    if value.len() > max + SCHEME.len() + 1 {
        return Err(AuthError::TooLarge(max));
    }
    let scheme_ok = value.len() > SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && value[SCHEME.len()] == b' ';
    if !scheme_ok {
        return Err(AuthError::Invalid("expected `Bearer <token>`".into()));
    }
    Ok(&value[SCHEME.len() + 1..])
}

/// Extracts the token from exactly `Bearer <token>` (scheme case-insensitive, one space).
fn bearer_token(value: &[u8], max: usize) -> Result<&str, AuthError> {
    let token = bearer_bytes(value, max)?;
    if token.is_empty() {
        return Err(AuthError::Invalid("empty bearer token".into()));
    }
    if !token
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(AuthError::Invalid(
            "bearer token has characters outside base64url and `.`".into(),
        ));
    }
    // Only ASCII is left.
    std::str::from_utf8(token).map_err(|_| AuthError::Malformed("not ASCII"))
}

/// The header fields the gateway looks at; others are ignored unless named in `crit`.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<IgnoredAny>,
    #[serde(default)]
    jku: Option<IgnoredAny>,
    #[serde(default)]
    x5u: Option<IgnoredAny>,
    #[serde(default)]
    jwk: Option<IgnoredAny>,
    #[serde(default)]
    x5c: Option<IgnoredAny>,
    #[serde(default)]
    enc: Option<IgnoredAny>,
    #[serde(default)]
    zip: Option<IgnoredAny>,
    #[serde(default)]
    b64: Option<IgnoredAny>,
}

struct Header {
    alg: Algorithm,
    kid: Option<String>,
}

/// Checks the token's shape and header before any key is touched.
fn parse_header(token: &str) -> Result<Header, AuthError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated parts"));
    };
    if h.is_empty() || p.is_empty() {
        return Err(AuthError::Malformed("empty header or payload"));
    }
    let raw = URL_SAFE_NO_PAD
        .decode(h.as_bytes())
        .map_err(|_| AuthError::Malformed("header is not base64url"))?;
    let ObjectOnly(hdr): ObjectOnly<RawHeader<'_>> = serde_json::from_slice(&raw)
        .map_err(|_| AuthError::Malformed("header is not a JSON object of the expected types"))?;
    for (present, name) in [
        (hdr.jku.is_some(), "jku"),
        (hdr.x5u.is_some(), "x5u"),
        (hdr.jwk.is_some(), "jwk"),
        (hdr.x5c.is_some(), "x5c"),
        (hdr.crit.is_some(), "crit"),
        (hdr.enc.is_some(), "enc"),
        (hdr.zip.is_some(), "zip"),
        (hdr.b64.is_some(), "b64"),
    ] {
        if present {
            return Err(AuthError::ForbiddenHeader(name));
        }
    }
    if let Some(typ) = &hdr.typ {
        let t = typ.strip_prefix("application/").unwrap_or(typ);
        if !(t.eq_ignore_ascii_case("jwt") || t.eq_ignore_ascii_case("at+jwt")) {
            return Err(AuthError::BadType);
        }
    }
    if hdr.alg.eq_ignore_ascii_case("none") {
        return Err(AuthError::BadAlgorithm("`none`"));
    }
    let alg =
        keys::parse_alg(&hdr.alg).map_err(|_| AuthError::BadAlgorithm("unknown algorithm"))?;
    Ok(Header {
        alg,
        kid: hdr.kid.map(Cow::into_owned),
    })
}

/// The claims the gateway reads. Absent or null is "missing"; a wrong JSON type
/// fails deserialisation and is an invalid claim.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    org: Option<String>,
    #[serde(default)]
    jurisdiction: Option<String>,
    #[serde(default)]
    purpose: Option<String>,
    /// Type check only: the issuer must be one string (its value is checked by jsonwebtoken).
    #[serde(default)]
    #[allow(dead_code)]
    iss: Option<String>,
    #[serde(default)]
    cnf: Option<Confirmation>,
    /// Issued at (NumericDate): bounded by [`lifetime::Lifetime`].
    #[serde(default)]
    iat: Option<f64>,
    /// Expiry (NumericDate; checked by jsonwebtoken), read to bound the lifetime and
    /// for how long the verified token may be cached.
    #[serde(default)]
    exp: Option<f64>,
    /// What the caller may do beyond fetching data (admin listener).
    #[serde(default)]
    role: Option<String>,
}

/// RFC 7800 confirmation; only the RFC 8705 certificate thumbprint is understood,
/// so a token bound any other way is refused.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Confirmation {
    #[serde(rename = "x5t#S256", default)]
    x5t_s256: Option<String>,
}

/// Deserialises `T` from a JSON object only: derived structs would also accept an
/// array (fields by position), which a JOSE header or claims set never is.
struct ObjectOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for ObjectOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData))
            .map(ObjectOnly)
    }
}
