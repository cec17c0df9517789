//! Development credentials: HS256 tokens for `bordergate token`, the random dev secret, durations.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;

use crate::model::{Country, check_purpose};

/// Why a development token could not be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("{0}")]
    Input(String),
    #[error("cannot sign token: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct MintClaims<'a> {
    iss: &'a str,
    aud: &'a str,
    sub: &'a str,
    org: &'a str,
    jurisdiction: &'a str,
    purpose: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
}

/// Mints an HS256 development token that [`super::Authenticator`] accepts when
/// configured with the same secret, issuer and audience.
#[allow(clippy::too_many_arguments)]
pub fn mint_token(
    secret: &[u8],
    issuer: &str,
    audience: &str,
    sub: &str,
    org: &str,
    jurisdiction: &str,
    purpose: &str,
    ttl: Duration,
) -> Result<String, MintError> {
    mint_token_with_role(
        secret,
        issuer,
        audience,
        sub,
        org,
        jurisdiction,
        purpose,
        ttl,
        None,
    )
}

/// [`mint_token`] with an optional `role` claim (e.g. `compliance-officer`).
#[allow(clippy::too_many_arguments)]
pub fn mint_token_with_role(
    secret: &[u8],
    issuer: &str,
    audience: &str,
    sub: &str,
    org: &str,
    jurisdiction: &str,
    purpose: &str,
    ttl: Duration,
    role: Option<&str>,
) -> Result<String, MintError> {
    if secret.len() < super::MIN_SECRET_BYTES {
        return Err(MintError::Input(format!(
            "secret is shorter than {} bytes",
            super::MIN_SECRET_BYTES
        )));
    }
    Country::parse(jurisdiction).map_err(MintError::Input)?;
    check_purpose(purpose).map_err(MintError::Input)?;
    for (name, v) in [("sub", sub), ("org", org), ("role", role.unwrap_or("-"))] {
        if v.is_empty() || v.chars().any(char::is_control) {
            return Err(MintError::Input(format!(
                "`{name}` must be non-empty and free of control characters"
            )));
        }
    }
    if ttl.as_secs() == 0 {
        return Err(MintError::Input(
            "token lifetime must be at least 1 s".into(),
        ));
    }
    let now = jsonwebtoken::get_current_timestamp();
    let claims = MintClaims {
        iss: issuer,
        aud: audience,
        sub,
        org,
        jurisdiction,
        purpose,
        iat: now,
        nbf: now,
        exp: now.saturating_add(ttl.as_secs()),
        role,
    };
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .map_err(|e| MintError::Sign(e.to_string()))
}

/// Creates a random 256-bit HMAC secret (hex, mode 0600) at `path` unless a file is
/// there already. Returns whether it created one. The secret is the hex text.
pub fn ensure_dev_secret(path: &Path) -> Result<bool, std::io::Error> {
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let mut raw = [0u8; 32];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| std::io::Error::other("no system randomness"))?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = match opts.open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e),
    };
    f.write_all(format!("{}\n", hex::encode(raw)).as_bytes())?;
    f.sync_all()?;
    Ok(true)
}

/// Parses a duration such as `90s`, `30m`, `1h` or `2d` (a positive whole number and one unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "invalid duration `{}` (use a number and s, m, h or d, e.g. `1h`)",
            s.escape_default()
        )
    };
    let split = s.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(bad());
    }
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(mult).ok_or_else(bad)?;
    if secs == 0 {
        return Err(format!(
            "duration `{}` must be positive",
            s.escape_default()
        ));
    }
    Ok(Duration::from_secs(secs))
}
