//! Pseudonymised exports: caller identities replaced by a keyed hash (GDPR Art. 5(1)(c)).

use std::path::Path;

use serde_json::Value;

use crate::transform::KeyedHash;

/// Replaces `caller.sub` (and, if asked, `caller.org`) by `HMAC-SHA256(key, value)`, truncated
/// to 16 hex digits: stable within one key, so records of one person still group together.
/// The hash is the one transformed transfers pseudonymise with ([`KeyedHash`]).
#[derive(Clone, Debug)]
pub struct Pseudonymiser {
    key: KeyedHash,
    pub orgs: bool,
}

impl Pseudonymiser {
    /// Reads the key from a file (at least 16 bytes).
    pub fn load(path: &Path, orgs: bool) -> Result<Pseudonymiser, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        Pseudonymiser::new(&bytes, orgs).map_err(|e| format!("`{}`: {e}", path.display()))
    }

    pub fn new(key: &[u8], orgs: bool) -> Result<Pseudonymiser, String> {
        Ok(Pseudonymiser {
            key: KeyedHash::new(key)?,
            orgs,
        })
    }

    /// The pseudonym of `value`.
    pub fn pseudonym(&self, value: &str) -> String {
        self.key.pseudonym(value)
    }

    /// Pseudonymises one record in place.
    pub fn apply(&self, rec: &mut Value) {
        let Some(caller) = rec.get_mut("caller").and_then(Value::as_object_mut) else {
            return;
        };
        let fields: &[&str] = if self.orgs { &["sub", "org"] } else { &["sub"] };
        for f in fields {
            if let Some(v) = caller.get_mut(*f)
                && let Some(s) = v.as_str()
            {
                *v = Value::String(self.pseudonym(s));
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_keyed_and_stable() {
        let p = Pseudonymiser::new(&[7; 32], false).unwrap();
        let q = Pseudonymiser::new(&[8; 32], true).unwrap();
        assert_eq!(p.pseudonym("alice"), p.pseudonym("alice"));
        assert_ne!(p.pseudonym("alice"), q.pseudonym("alice"));
        assert_eq!(p.pseudonym("alice").len(), 18);
        let mut r = serde_json::json!({"caller":{"sub":"alice","org":"acme"}});
        p.apply(&mut r);
        assert_eq!(r["caller"]["org"], "acme");
        assert!(r["caller"]["sub"].as_str().unwrap().starts_with("p-"));
        q.apply(&mut r);
        assert_ne!(r["caller"]["org"], "acme");
        assert!(Pseudonymiser::new(b"short", false).is_err());
    }
}
