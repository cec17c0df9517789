//! Bearer-token validation: keys and JWKS, the checks, and the `Caller` it yields.
//! STUB: replaced by the auth implementation.

use crate::config::AuthConfig;
use crate::model::Caller;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(String),
}

pub struct Authenticator {}

impl Authenticator {
    pub fn from_config(_cfg: &AuthConfig) -> Result<Authenticator, String> {
        Ok(Authenticator {})
    }
    /// Validates the value of an `Authorization` header.
    pub fn authenticate(&self, _authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        Err(AuthError::Missing)
    }
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing-token",
            AuthError::Invalid(_) => "invalid-token",
        }
    }
}
pub fn mint_token(
    _secret: &[u8],
    _issuer: &str,
    _audience: &str,
    _sub: &str,
    _org: &str,
    _jurisdiction: &str,
    _purpose: &str,
    _ttl: std::time::Duration,
) -> Result<String, String> {
    Err("stub".into())
}
pub fn ensure_dev_secret(_path: &std::path::Path) -> Result<bool, std::io::Error> {
    Ok(false)
}
pub fn parse_duration(_s: &str) -> Result<std::time::Duration, String> {
    Err("stub".into())
}
