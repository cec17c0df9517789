//! Why a bearer token was refused, with a stable short code per reason.

/// Why a request carries no acceptable bearer token. Messages never echo the token.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header at all.
    #[error("no bearer token")]
    Missing,
    /// The header is not exactly `Bearer <token>`.
    #[error("invalid authorization header: {0}")]
    Invalid(String),
    /// The token is larger than the configured limit.
    #[error("token is larger than {0} bytes")]
    TooLarge(usize),
    /// The token is not a compact JWS with a JSON header.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// `alg` is `none`, unknown, or not the algorithm of the key it names.
    #[error("token algorithm is not allowed: {0}")]
    BadAlgorithm(&'static str),
    /// `kid` names no configured key.
    #[error("token names an unknown key")]
    UnknownKey,
    /// A header the gateway refuses (`jku`, `x5u`, `jwk`, `x5c`, `crit`, JWE headers).
    #[error("token header `{0}` is not accepted")]
    ForbiddenHeader(&'static str),
    /// `typ` says this is not an access token.
    #[error("token type is not `JWT` or `at+jwt`")]
    BadType,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    /// `iat` lies further in the future than the leeway allows.
    #[error("token was issued in the future")]
    IssuedInFuture,
    /// `exp` − `iat` is longer than `auth.max_token_lifetime_secs`.
    #[error("token lifetime is longer than the {0} s allowed")]
    LifetimeTooLong(u64),
    #[error("token issuer is not the configured issuer")]
    WrongIssuer,
    #[error("token audience does not include the configured audience")]
    WrongAudience,
    /// A required claim is absent (or null).
    #[error("token lacks the `{0}` claim")]
    MissingClaim(&'static str),
    /// A claim has the wrong JSON type or an unacceptable value.
    #[error("token claim `{0}` is invalid")]
    InvalidClaim(&'static str),
    /// The client certificate does not match the token's `cnf` binding.
    #[error("token is bound to another client certificate")]
    CertificateMismatch,
    /// `auth.jwks_url`: no fetch of the identity provider's keys has succeeded yet.
    #[error("the identity provider's keys have not been fetched yet")]
    KeysUnavailable,
    /// `auth.jwks_url`: the last successful fetch is older than `jwks_max_stale_secs`.
    #[error("the identity provider's keys are stale: last fetched {0} s ago")]
    KeysStale(u64),
}

impl AuthError {
    /// Stable short code for `WWW-Authenticate` `error_description` and the problem `type`.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing-token",
            AuthError::Invalid(_) => "invalid-token",
            AuthError::TooLarge(_) => "token-too-large",
            AuthError::Malformed(_) => "malformed",
            AuthError::BadAlgorithm(_) => "bad-algorithm",
            AuthError::UnknownKey => "unknown-key",
            AuthError::ForbiddenHeader(_) => "forbidden-header",
            AuthError::BadType => "bad-type",
            AuthError::BadSignature => "bad-signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not-yet-valid",
            AuthError::IssuedInFuture => "issued-in-future",
            AuthError::LifetimeTooLong(_) => "lifetime-too-long",
            AuthError::WrongIssuer => "wrong-issuer",
            AuthError::WrongAudience => "wrong-audience",
            AuthError::MissingClaim(_) => "missing-claim",
            AuthError::InvalidClaim(_) => "invalid-claim",
            AuthError::CertificateMismatch => "certificate-mismatch",
            AuthError::KeysUnavailable => "keys-unavailable",
            AuthError::KeysStale(_) => "keys-stale",
        }
    }

    /// The RFC 6750 §3.1 `error` attribute: none when no credentials were sent,
    /// `invalid_request` for a malformed header, `invalid_token` otherwise.
    pub fn rfc6750_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Invalid(_) | AuthError::TooLarge(_) => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Maps a jsonwebtoken error to the precise reason.
pub(crate) fn from_jwt(e: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::InvalidSignature => AuthError::BadSignature,
        K::ExpiredSignature => AuthError::Expired,
        K::ImmatureSignature => AuthError::NotYetValid,
        K::InvalidIssuer => AuthError::WrongIssuer,
        K::InvalidAudience => AuthError::WrongAudience,
        K::InvalidSubject => AuthError::InvalidClaim("sub"),
        K::InvalidAlgorithm
        | K::InvalidAlgorithmName
        | K::UnsupportedAlgorithm
        | K::MissingAlgorithm => AuthError::BadAlgorithm("not the algorithm of the key"),
        K::MissingRequiredClaim(c) => AuthError::MissingClaim(claim_name(c)),
        K::InvalidClaimFormat(c) => AuthError::InvalidClaim(claim_name(c)),
        K::InvalidToken => AuthError::Malformed("not a compact JWS"),
        K::Base64(_) => AuthError::Malformed("a part is not base64url"),
        K::Utf8(_) => AuthError::Malformed("a part is not UTF-8"),
        K::Json(_) => AuthError::InvalidClaim("claims"),
        _ => AuthError::Invalid("the configured key cannot verify this token".into()),
    }
}

fn claim_name(c: &str) -> &'static str {
    match c {
        "exp" => "exp",
        "nbf" => "nbf",
        "iss" => "iss",
        "aud" => "aud",
        "sub" => "sub",
        _ => "claim",
    }
}
