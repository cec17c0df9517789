//! ID tokens of the admin sign-in (OpenID Connect Core §3.1.3.7): signed by a key of the
//! provider's JWKS (fetched, cached and rotated by [`super::remote`]), from the configured
//! issuer, for this client (`aud`, `azp`), unexpired, and carrying the sign-in's `nonce`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{AlgorithmFamily, Validation};
use serde_json::{Map, Value};

use super::remote::{self, KeySet, Settings};
use super::{AuthError, error, parse_header};

/// Seconds of clock skew tolerated between the gateway and the provider.
const LEEWAY_SECS: u64 = 60;
/// How long a sign-in waits for the provider's keys (first fetch, or a new `kid`).
const KEY_WAIT: Duration = Duration::from_secs(5);

/// Checks the ID tokens of one provider for one client.
pub struct IdTokenVerifier {
    source: Arc<remote::Source>,
    issuer: String,
    client_id: String,
}

impl std::fmt::Debug for IdTokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdTokenVerifier")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl IdTokenVerifier {
    /// A verifier on the keys of `jwks_uri` (an `https://` URL, verified with `ca` or the
    /// Mozilla roots); their fetch starts now.
    pub fn new(
        jwks_uri: &str,
        ca: Option<PathBuf>,
        issuer: &str,
        client_id: &str,
    ) -> Result<IdTokenVerifier, String> {
        super::install_jwt_crypto_provider();
        let source = remote::source(Settings::for_url(jwks_uri, ca)?)?;
        Ok(IdTokenVerifier {
            source,
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
        })
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str, nonce: &str) -> Result<Map<String, Value>, AuthError> {
        let header = parse_header(token)?;
        if header.alg.family() == AlgorithmFamily::Hmac {
            return Err(AuthError::BadAlgorithm(
                "an ID token must be signed with one of the provider's public keys",
            ));
        }
        let (set, i) = self.key(header.kid.as_deref(), header.alg).await?;
        let key = set.keys.get(i).ok_or(AuthError::UnknownKey)?;
        if key.alg != header.alg {
            return Err(AuthError::BadAlgorithm("not the algorithm of the key"));
        }
        let mut v = Validation::new(header.alg);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = true;
        v.reject_tokens_expiring_in_less_than = 0;
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_audience(&[self.client_id.as_str()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, &v)
            .map_err(|e| error::from_jwt(&e))?;
        let claims = data.claims;
        check_claims(&claims, &self.client_id, nonce)?;
        Ok(claims)
    }

    /// The set and index of the key for this `kid` (or, without one, the first key of
    /// `alg`): waits a little for a first fetch, and asks for a fresh set when the `kid`
    /// is new (at most once per cool-down).
    async fn key(
        &self,
        kid: Option<&str>,
        alg: jsonwebtoken::Algorithm,
    ) -> Result<(Arc<KeySet>, usize), AuthError> {
        let deadline = tokio::time::Instant::now() + KEY_WAIT;
        loop {
            let why = match self.source.current() {
                Ok(set) => {
                    let i = match kid {
                        Some(kid) => set.by_kid.get(kid).copied(),
                        None => set.keys.iter().position(|k| k.alg == alg),
                    };
                    match i {
                        Some(i) => return Ok((set, i)),
                        None => AuthError::UnknownKey,
                    }
                }
                Err(e) => e,
            };
            self.source.ask_refresh();
            if tokio::time::Instant::now() >= deadline {
                return Err(why);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The checks jsonwebtoken does not make: `nonce`, `azp`, `iat`.
fn check_claims(
    claims: &Map<String, Value>,
    client_id: &str,
    nonce: &str,
) -> Result<(), AuthError> {
    match claims.get("nonce") {
        None | Some(Value::Null) => return Err(AuthError::MissingClaim("nonce")),
        Some(Value::String(n)) if equal(n.as_bytes(), nonce.as_bytes()) => {}
        Some(_) => return Err(AuthError::InvalidClaim("nonce")),
    }
    let audiences = match claims.get("aud") {
        Some(Value::Array(a)) => a.len(),
        _ => 1,
    };
    match claims.get("azp") {
        Some(Value::String(a)) if a == client_id => {}
        None if audiences == 1 => {}
        None => return Err(AuthError::MissingClaim("azp")),
        Some(_) => return Err(AuthError::InvalidClaim("azp")),
    }
    let now = crate::auth::cache::unix_now();
    match claims.get("iat").and_then(Value::as_f64) {
        Some(iat) if iat.is_finite() && iat <= (now + LEEWAY_SECS) as f64 => Ok(()),
        Some(_) => Err(AuthError::IssuedInFuture),
        None => Err(AuthError::MissingClaim("iat")),
    }
}

/// Compares two strings in time that depends on their lengths only.
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn nonce_azp_and_iat_are_checked() {
        let now = crate::auth::cache::unix_now();
        let ok = json!({"nonce": "n1", "aud": "bg", "iat": now});
        check_claims(&claims(ok), "bg", "n1").unwrap();
        let cases = [
            (
                json!({"aud": "bg", "iat": now}),
                AuthError::MissingClaim("nonce"),
            ),
            (
                json!({"nonce": "n2", "aud": "bg", "iat": now}),
                AuthError::InvalidClaim("nonce"),
            ),
            (
                json!({"nonce": 7, "aud": "bg", "iat": now}),
                AuthError::InvalidClaim("nonce"),
            ),
            (
                json!({"nonce": "n1", "aud": ["bg", "other"], "iat": now}),
                AuthError::MissingClaim("azp"),
            ),
            (
                json!({"nonce": "n1", "aud": "bg", "azp": "other", "iat": now}),
                AuthError::InvalidClaim("azp"),
            ),
            (
                json!({"nonce": "n1", "aud": "bg"}),
                AuthError::MissingClaim("iat"),
            ),
            (
                json!({"nonce": "n1", "aud": "bg", "iat": now + 3600}),
                AuthError::IssuedInFuture,
            ),
        ];
        for (c, want) in cases {
            assert_eq!(
                check_claims(&claims(c.clone()), "bg", "n1"),
                Err(want),
                "{c}"
            );
        }
        let two = json!({"nonce": "n1", "aud": ["bg", "other"], "azp": "bg", "iat": now});
        check_claims(&claims(two), "bg", "n1").unwrap();
    }

    #[test]
    fn equal_compares_whole_strings() {
        assert!(equal(b"abc", b"abc"));
        assert!(!equal(b"abc", b"abd"));
        assert!(!equal(b"abc", b"ab"));
    }
}
