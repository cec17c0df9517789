//! `admin.oidc`: signing the compliance officer in through the organisation's OpenID
//! Connect provider — the issuer, this client, the claim that carries the role, and the
//! key every replica signs its session cookies with.

use std::path::PathBuf;

use serde::Deserialize;

use super::{FileDiagnostics, SecretRef};

/// Longest session accepted (`session_ttl_secs`): a working day.
pub const MAX_SESSION_TTL_SECS: u64 = 12 * 3600;
/// The path of the admin listener that finishes a sign-in; `redirect_url` must end there.
pub const CALLBACK_PATH: &str = "/oidc/callback";

/// The organisation's identity provider and how the admin listener signs officers in.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The issuer (`https://…`); its metadata is read from
    /// `{issuer}/.well-known/openid-configuration` and must name this issuer.
    pub issuer: String,
    /// This gateway's client id at the provider (the ID token's audience).
    pub client_id: String,
    /// For a confidential client: its secret, from `env` or `file` (sent with HTTP Basic).
    #[serde(default)]
    pub client_secret: Option<SecretRef>,
    /// Where the provider sends the browser back: this listener's public
    /// `https://…/oidc/callback` (the origin state-changing requests must come from).
    pub redirect_url: String,
    /// Scopes asked for; `openid` is always added.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding the caller's roles or groups (a string or an array of
    /// strings); dots name nested claims, as in `realm_access.roles`.
    #[serde(default = "default_role_claim")]
    pub role_claim: String,
    /// The value of `role_claim` that makes the caller a compliance officer.
    #[serde(default = "default_officer_role")]
    pub officer_role: String,
    /// The key session cookies are signed with (HMAC-SHA-256, at least 32 bytes); every
    /// replica behind one address needs the same one.
    pub session_secret: SecretRef,
    /// How long a session lasts before the officer signs in again.
    #[serde(default = "default_session_ttl")]
    pub session_ttl_secs: u64,
    /// CA bundle that verifies the provider (default: the Mozilla roots).
    #[serde(default)]
    pub ca: Option<PathBuf>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into()]
}
fn default_role_claim() -> String {
    "roles".into()
}
fn default_officer_role() -> String {
    crate::admin::OFFICER_ROLE.into()
}
fn default_session_ttl() -> u64 {
    3600
}

impl OidcConfig {
    /// The issuer without a trailing `/`, as discovery paths are built from it.
    pub fn issuer_base(&self) -> &str {
        self.issuer.strip_suffix('/').unwrap_or(&self.issuer)
    }

    /// Reports every problem of the section.
    pub(super) fn check(&self, out: &mut FileDiagnostics<'_>) {
        if let Err(e) = https_url(&self.issuer, "admin.oidc.issuer") {
            out.at("admin.oidc.issuer", e);
        }
        match https_url(&self.redirect_url, "admin.oidc.redirect_url") {
            Err(e) => out.at("admin.oidc.redirect_url", e),
            Ok(u) if u.path() != CALLBACK_PATH || u.query().is_some() => out.at(
                "admin.oidc.redirect_url",
                format!(
                    "`admin.oidc.redirect_url` `{}` must end in `{CALLBACK_PATH}` (where the admin listener finishes a sign-in), with no query",
                    self.redirect_url.escape_default()
                ),
            ),
            Ok(_) => {}
        }
        if self.client_id.trim().is_empty() {
            out.at("admin.oidc.client_id", "`admin.oidc.client_id` is empty");
        }
        if self.role_claim.split('.').any(str::is_empty) {
            out.at(
                "admin.oidc.role_claim",
                format!(
                    "`admin.oidc.role_claim` `{}` is not a claim name (names joined by `.`)",
                    self.role_claim.escape_default()
                ),
            );
        }
        if self.officer_role.trim().is_empty() {
            out.at(
                "admin.oidc.officer_role",
                "`admin.oidc.officer_role` is empty",
            );
        }
        if let Some(s) = self.scopes.iter().find(|s| {
            s.is_empty()
                || !s
                    .bytes()
                    .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        }) {
            out.at(
                "admin.oidc.scopes",
                format!("scope `{}` is not a scope token", s.escape_default()),
            );
        }
        if self.session_ttl_secs == 0 || self.session_ttl_secs > MAX_SESSION_TTL_SECS {
            out.at(
                "admin.oidc.session_ttl_secs",
                format!(
                    "`admin.oidc.session_ttl_secs` must be between 1 and {MAX_SESSION_TTL_SECS} (12 h)"
                ),
            );
        }
    }
}

/// An absolute `https://` URL with a host, no credentials and no fragment.
pub fn https_url(s: &str, name: &str) -> Result<url::Url, String> {
    let u = url::Url::parse(s)
        .map_err(|e| format!("`{name}` `{}` is not a URL: {e}", s.escape_default()))?;
    if u.scheme() != "https" {
        return Err(format!(
            "`{name}` `{}` is not https: sign-in over plain HTTP could be read and replayed",
            s.escape_default()
        ));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{name}` `{}` has no host", s.escape_default()));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(format!("`{name}` must not carry credentials"));
    }
    if u.fragment().is_some() {
        return Err(format!("`{name}` must not have a fragment"));
    }
    Ok(u)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_https_without_credentials() {
        https_url("https://idp.example/realms/acme", "x").unwrap();
        for bad in [
            "http://idp.example",
            "https://u:p@idp.example",
            "https://idp.example/#f",
            "idp.example",
        ] {
            assert!(https_url(bad, "x").is_err(), "{bad}");
        }
    }
}
