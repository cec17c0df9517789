//! Per-pipeline S3 access keys: the key file (`auth.s3_keys.path`), how a key's secret is
//! derived, and the [`Caller`] an access key stands for.
//!
//! SigV4 is an HMAC, so verifying a signature needs the secret itself; a salted hash of it
//! would not do. Nothing usable is stored instead: a key's secret is
//! `base64url(HMAC-SHA256(derivation secret, "bordergate-s3-key-v1:" ‖ access key id))`,
//! shown once by `bordergate s3-key create`. The key file holds the access key id, the
//! caller's claims, when it was created and revoked, and the SHA-256 of the secret — only
//! to tell a derivation secret that changed (every key of the file then fails closed) from
//! a client with a wrong secret. Stealing the key file gives no key; stealing the
//! derivation secret gives every key, so it is kept like the token signing secret.

use std::collections::HashMap;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::model::{Caller, Country, check_purpose};

/// Domain separation of the derivation.
const DERIVATION_LABEL: &[u8] = b"bordergate-s3-key-v1:";
/// Prefix of every access key id the gateway issues.
pub const KEY_ID_PREFIX: &str = "BGK";
/// Shortest derivation secret accepted.
pub const MIN_DERIVATION_SECRET_BYTES: usize = 32;

/// One issued access key as the key file holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRecord {
    pub access_key_id: String,
    pub sub: String,
    pub org: String,
    pub jurisdiction: String,
    pub purpose: String,
    /// RFC 3339.
    pub created: String,
    /// RFC 3339, when revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<String>,
    /// Hex SHA-256 of the derived secret.
    pub secret_sha256: String,
}

/// The key file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub keys: Vec<KeyRecord>,
}

/// Why an access key does not stand for a caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the access key id is not one this gateway issued")]
    Unknown,
    #[error("the access key was revoked")]
    Revoked,
    #[error(
        "the access key's secret does not derive from the configured derivation secret (was `auth.s3_keys.derivation_secret` changed?)"
    )]
    Derivation,
}

/// The loaded key file and the derivation secret: looks up keys, derives their secrets.
pub struct KeyStore {
    derivation: Vec<u8>,
    keys: HashMap<String, (KeyRecord, Caller)>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

/// Derives the secret of `access_key_id`.
pub fn derive_secret(derivation: &[u8], access_key_id: &str) -> String {
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, derivation);
    let mut ctx = aws_lc_rs::hmac::Context::with_key(&key);
    ctx.update(DERIVATION_LABEL);
    ctx.update(access_key_id.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.sign().as_ref())
}

/// Hex SHA-256 of a secret, as the key file records it.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes()).as_ref())
}

/// A fresh access key id: the prefix and 17 random upper-case hex digits (20 characters,
/// the length of AWS's).
pub fn new_key_id() -> Result<String, String> {
    let mut raw = [0u8; 9];
    aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no system randomness".to_string())?;
    let mut hexed = hex::encode_upper(raw);
    hexed.truncate(17);
    Ok(format!("{KEY_ID_PREFIX}{hexed}"))
}

/// Checks the claims of a key and builds its caller.
pub fn caller_of(r: &KeyRecord) -> Result<Caller, String> {
    let id_ok = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    if !id_ok(&r.sub) || !id_ok(&r.org) {
        return Err(format!(
            "access key `{}`: `sub` and `org` must be 1 to 256 characters, no control characters",
            r.access_key_id.escape_default()
        ));
    }
    let jurisdiction = Country::parse(&r.jurisdiction)
        .map_err(|e| format!("access key `{}`: {e}", r.access_key_id.escape_default()))?;
    check_purpose(&r.purpose)
        .map_err(|e| format!("access key `{}`: {e}", r.access_key_id.escape_default()))?;
    Ok(Caller {
        sub: r.sub.clone(),
        org: r.org.clone(),
        jurisdiction,
        purpose: r.purpose.clone(),
        claimed_jurisdiction: None,
    })
}

/// Reads the key file; a missing file is an empty one (no key issued yet).
pub fn read_file(path: &Path) -> Result<KeyFile, String> {
    match std::fs::read(path) {
        Ok(b) => {
            serde_json::from_slice(&b).map_err(|e| format!("s3 key file `{}`: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeyFile::default()),
        Err(e) => Err(format!("cannot read s3 key file `{}`: {e}", path.display())),
    }
}

/// Writes the key file atomically (a temp file beside it, fsynced, renamed over it).
pub fn write_file(path: &Path, f: &KeyFile) -> Result<(), String> {
    use std::io::Write;
    let mut text = serde_json::to_vec_pretty(f).map_err(|e| e.to_string())?;
    text.push(b'\n');
    let tmp = path.with_extension("tmp");
    let write = || -> std::io::Result<()> {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut out = opts.open(&tmp)?;
        out.write_all(&text)?;
        out.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("cannot write s3 key file `{}`: {e}", path.display()))
}

impl KeyStore {
    /// Builds the store from the derivation secret and the key file's contents; every key
    /// is checked (claims, unique id).
    pub fn new(derivation: Vec<u8>, file: KeyFile) -> Result<KeyStore, String> {
        if derivation.len() < MIN_DERIVATION_SECRET_BYTES {
            return Err(format!(
                "the s3 key derivation secret is shorter than {MIN_DERIVATION_SECRET_BYTES} bytes"
            ));
        }
        let mut keys = HashMap::new();
        for r in file.keys {
            let caller = caller_of(&r)?;
            let id = r.access_key_id.clone();
            if keys.insert(id.clone(), (r, caller)).is_some() {
                return Err(format!("duplicate access key id `{}`", id.escape_default()));
            }
        }
        Ok(KeyStore { derivation, keys })
    }

    /// Loads the configured store.
    pub fn load(cfg: &crate::config::S3KeysConfig) -> Result<KeyStore, String> {
        let derivation = cfg
            .derivation_secret
            .read()
            .map_err(|e| format!("`auth.s3_keys.derivation_secret`: {e}"))?;
        KeyStore::new(derivation, read_file(&cfg.path)?)
    }

    /// The caller and secret of a live access key.
    pub fn lookup(&self, access_key_id: &str) -> Result<(&Caller, String), KeyError> {
        let (r, caller) = self.keys.get(access_key_id).ok_or(KeyError::Unknown)?;
        if r.revoked.is_some() {
            return Err(KeyError::Revoked);
        }
        let secret = derive_secret(&self.derivation, access_key_id);
        if secret_digest(&secret) != r.secret_sha256 {
            return Err(KeyError::Derivation);
        }
        Ok((caller, secret))
    }

    /// A new key record for `caller` (not yet written) and its secret.
    pub fn issue(&self, caller: &Caller, now: &str) -> Result<(KeyRecord, String), String> {
        let id = new_key_id()?;
        let secret = derive_secret(&self.derivation, &id);
        Ok((
            KeyRecord {
                access_key_id: id,
                sub: caller.sub.clone(),
                org: caller.org.clone(),
                jurisdiction: caller.jurisdiction.to_string(),
                purpose: caller.purpose.clone(),
                created: now.to_string(),
                revoked: None,
                secret_sha256: secret_digest(&secret),
            },
            secret,
        ))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caller() -> Caller {
        Caller {
            sub: "pipe-1".into(),
            org: "acme-de".into(),
            jurisdiction: Country::parse("DE").unwrap(),
            purpose: "training".into(),
            claimed_jurisdiction: None,
        }
    }

    #[test]
    fn an_issued_key_looks_up_to_its_caller_and_secret() {
        let store = KeyStore::new(vec![7; 32], KeyFile::default()).unwrap();
        let (rec, secret) = store.issue(&caller(), "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(rec.access_key_id.len(), 20);
        assert!(rec.access_key_id.starts_with(KEY_ID_PREFIX));
        assert!(!serde_json::to_string(&rec).unwrap().contains(&secret));
        let id = rec.access_key_id.clone();
        let store = KeyStore::new(
            vec![7; 32],
            KeyFile {
                keys: vec![rec.clone()],
            },
        )
        .unwrap();
        let (c, s) = store.lookup(&id).unwrap();
        assert_eq!(*c, caller());
        assert_eq!(s, secret);
        assert_eq!(store.lookup("BGKNOPE").unwrap_err(), KeyError::Unknown);
        // Another derivation secret: the key fails closed.
        let other = KeyStore::new(
            vec![8; 32],
            KeyFile {
                keys: vec![rec.clone()],
            },
        )
        .unwrap();
        assert_eq!(other.lookup(&id).unwrap_err(), KeyError::Derivation);
        let mut revoked = rec;
        revoked.revoked = Some("2026-01-02T00:00:00Z".into());
        let store = KeyStore::new(
            vec![7; 32],
            KeyFile {
                keys: vec![revoked],
            },
        )
        .unwrap();
        assert_eq!(store.lookup(&id).unwrap_err(), KeyError::Revoked);
    }

    #[test]
    fn bad_claims_and_short_secrets_are_refused() {
        assert!(KeyStore::new(vec![7; 8], KeyFile::default()).is_err());
        let store = KeyStore::new(vec![7; 32], KeyFile::default()).unwrap();
        let (mut rec, _) = store.issue(&caller(), "t").unwrap();
        rec.jurisdiction = "XZ".into();
        let err = KeyStore::new(vec![7; 32], KeyFile { keys: vec![rec] }).unwrap_err();
        assert!(err.contains("unknown country code"), "{err}");
    }
}
