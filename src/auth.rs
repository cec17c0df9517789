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
