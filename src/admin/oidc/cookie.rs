//! The sign-in's cookies: the sign-in in progress (its `state`, `nonce` and PKCE verifier)
//! and the officer's session. Each is a short-lived HS256 token under its own key derived
//! from `admin.oidc.session_secret`, so every replica with that secret accepts what any of
//! them issued and none keeps state.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The session; `__Host-`: Secure, `Path=/`, no `Domain`, so no other site or path sets it.
pub const SESSION: &str = "__Host-bordergate-session";
/// The sign-in in progress, sent back only to `/oidc/`.
pub const SIGN_IN: &str = "__Secure-bordergate-signin";
/// How long a sign-in may take at the identity provider.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(600);

/// The `aud` of each kind of cookie, so one is never taken for the other.
const SESSION_AUD: &str = "bordergate-admin-session";
const SIGN_IN_AUD: &str = "bordergate-admin-signin";
/// The `iss` of both.
const ISSUER: &str = "bordergate-admin";
/// Shortest `session_secret` accepted.
pub const MIN_SECRET_BYTES: usize = 32;

/// The officer's session: who signed in, where, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The provider's subject.
    pub sub: String,
    /// A name to show (`name`, `preferred_username` or `email` of the ID token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The issuer that signed the officer in.
    pub idp: String,
    /// The gateway role the sign-in granted.
    pub role: String,
    pub iat: u64,
    pub exp: u64,
}

/// A sign-in in progress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Serialize, Deserialize)]
struct Claims<T> {
    iss: String,
    aud: String,
    #[serde(flatten)]
    body: T,
}

/// The keys of both cookies.
pub struct Keys {
    session: (EncodingKey, DecodingKey),
    sign_in: (EncodingKey, DecodingKey),
}

impl Keys {
    /// Derives both keys from the configured secret.
    pub fn new(secret: &[u8]) -> Result<Keys, String> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "`admin.oidc.session_secret` is shorter than {MIN_SECRET_BYTES} bytes"
            ));
        }
        let derive = |label: &[u8]| {
            let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
            let tag = aws_lc_rs::hmac::sign(&k, label);
            (
                EncodingKey::from_secret(tag.as_ref()),
                DecodingKey::from_secret(tag.as_ref()),
            )
        };
        Ok(Keys {
            session: derive(b"bordergate admin session cookie v1"),
            sign_in: derive(b"bordergate admin sign-in cookie v1"),
        })
    }

    pub fn seal_session(&self, s: &Session) -> Result<String, String> {
        seal(&self.session.0, SESSION_AUD, s)
    }

    pub fn open_session(&self, v: &str) -> Result<Session, String> {
        open(&self.session.1, SESSION_AUD, v)
    }

    pub fn seal_sign_in(&self, s: &SignIn) -> Result<String, String> {
        seal(&self.sign_in.0, SIGN_IN_AUD, s)
    }

    pub fn open_sign_in(&self, v: &str) -> Result<SignIn, String> {
        open(&self.sign_in.1, SIGN_IN_AUD, v)
    }
}

fn seal<T: Serialize>(key: &EncodingKey, aud: &str, body: &T) -> Result<String, String> {
    let claims = Claims {
        iss: ISSUER.into(),
        aud: aud.into(),
        body,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, key)
        .map_err(|e| format!("cannot sign the cookie: {e}"))
}

fn open<T: for<'de> Deserialize<'de>>(key: &DecodingKey, aud: &str, v: &str) -> Result<T, String> {
    let mut val = Validation::new(Algorithm::HS256);
    val.leeway = 0;
    val.validate_exp = true;
    val.set_issuer(&[ISSUER]);
    val.set_audience(&[aud]);
    val.set_required_spec_claims(&["exp", "iss", "aud"]);
    jsonwebtoken::decode::<Claims<T>>(v, key, &val)
        .map(|d| d.claims.body)
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => "it has expired".to_owned(),
            _ => "its signature or contents do not verify".to_owned(),
        })
}

/// The value of cookie `name` in the request, if sent once; sent twice is an error (a
/// second value can only have been planted).
pub fn get<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, String> {
    let mut found = None;
    for h in headers.get_all(header::COOKIE) {
        let Ok(h) = h.to_str() else { continue };
        for pair in h.split(';') {
            let Some((n, v)) = pair.trim().split_once('=') else {
                continue;
            };
            if n == name && found.replace(v).is_some() {
                return Err(format!("the cookie `{name}` is sent more than once"));
            }
        }
    }
    Ok(found)
}

/// `Set-Cookie` for the session (`SameSite=Strict`: never sent from another site).
pub fn set_session(value: &str, max_age: u64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SESSION}={value}; Path=/; Max-Age={max_age}; HttpOnly; Secure; SameSite=Strict"
    ))
    .ok()
}

/// `Set-Cookie` removing the session.
pub fn clear_session() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-bordergate-session=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict",
    )
}

/// `Set-Cookie` for a sign-in in progress. `SameSite=Lax`: the provider's redirect back
/// is a top-level navigation from its site, which a `Strict` cookie would not follow.
pub fn set_sign_in(value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{SIGN_IN}={value}; Path=/oidc/; Max-Age={}; HttpOnly; Secure; SameSite=Lax",
        SIGN_IN_TTL.as_secs()
    ))
    .ok()
}

/// `Set-Cookie` removing the sign-in in progress (each is used once).
pub fn clear_sign_in() -> HeaderValue {
    HeaderValue::from_static(
        "__Secure-bordergate-signin=; Path=/oidc/; Max-Age=0; HttpOnly; Secure; SameSite=Lax",
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn session(exp: u64) -> Session {
        Session {
            sub: "olivia".into(),
            name: Some("Olivia".into()),
            idp: "https://idp.test".into(),
            role: "compliance-officer".into(),
            iat: 1,
            exp,
        }
    }

    #[test]
    fn cookies_open_only_under_their_key_and_kind() {
        let k = Keys::new(&[7u8; 32]).unwrap();
        let later = crate::auth::unix_now() + 60;
        let s = k.seal_session(&session(later)).unwrap();
        assert_eq!(k.open_session(&s).unwrap(), session(later));
        // Another secret, another kind of cookie, a changed byte, an expired one.
        assert!(Keys::new(&[8u8; 32]).unwrap().open_session(&s).is_err());
        assert!(k.open_sign_in(&s).is_err());
        let mut bent = s.clone().into_bytes();
        let mid = bent.len() / 2;
        bent[mid] = if bent[mid] == b'A' { b'B' } else { b'A' };
        assert!(k.open_session(&String::from_utf8(bent).unwrap()).is_err());
        let old = k.seal_session(&session(10)).unwrap();
        assert_eq!(k.open_session(&old).unwrap_err(), "it has expired");
        assert!(Keys::new(b"short").is_err());
    }

    #[test]
    fn a_cookie_sent_twice_is_refused() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; __Host-bordergate-session=x".parse().unwrap(),
        );
        assert_eq!(get(&h, SESSION).unwrap(), Some("x"));
        assert_eq!(get(&h, SIGN_IN).unwrap(), None);
        h.append(
            header::COOKIE,
            "__Host-bordergate-session=y".parse().unwrap(),
        );
        assert!(get(&h, SESSION).is_err());
    }

    #[test]
    fn the_session_cookie_is_strict_http_only_and_secure() {
        let v = set_session("abc", 3600).unwrap();
        let v = v.to_str().unwrap();
        for want in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=3600",
        ] {
            assert!(v.contains(want), "{v}");
        }
        assert!(clear_session().to_str().unwrap().starts_with(SESSION));
        assert!(clear_sign_in().to_str().unwrap().starts_with(SIGN_IN));
    }
}
