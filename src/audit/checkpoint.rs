//! Signed checkpoints: Ed25519 signatures over the chain head, made by the writer and checked by `verify`.
//!
//! A checkpoint record is `{"kind":"checkpoint","time":…,"covers_seq":N,"covers_hash":H,
//! "policy_version":P,"key_id":K,"signature":S}` and is chained like any record, right after
//! record `N` (so its own `prev` is `H`). The signature (base64) is over the bytes of
//! [`message`]; `key_id` is the first 16 hex digits of SHA-256 of the raw public key.

use std::path::Path;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

/// The bytes a checkpoint signature covers.
pub fn message(seq: u64, hash: &str, time: &str, policy_version: &str) -> Vec<u8> {
    format!(
        "bordergate-checkpoint-v1\nseq={seq}\nhash={hash}\ntime={time}\npolicy={policy_version}\n"
    )
    .into_bytes()
}

/// The key id of a raw Ed25519 public key.
pub fn key_id(public: &[u8]) -> String {
    hex::encode(&digest(&SHA256, public).as_ref()[..8])
}

/// A checkpoint record (the JSON the writer chains).
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Checkpoint {
    pub kind: String,
    pub time: String,
    pub covers_seq: u64,
    pub covers_hash: String,
    pub policy_version: String,
    pub key_id: String,
    pub signature: String,
    /// The replica chain it covers, on the PostgreSQL sink (not signed: the hash it covers
    /// belongs to that chain alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<String>,
}

/// The writer's signing key (cheap to clone: the key is shared).
#[derive(Clone, Debug)]
pub struct Signer {
    key: std::sync::Arc<Ed25519KeyPair>,
    id: String,
}

impl Signer {
    /// Loads a PKCS#8 (DER, or PEM with a `PRIVATE KEY` block) Ed25519 key.
    pub fn load(path: &Path) -> Result<Signer, String> {
        let bytes =
            std::fs::read(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        Signer::from_bytes(&bytes).map_err(|e| format!("`{}`: {e}", path.display()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Signer, String> {
        let der = match std::str::from_utf8(bytes) {
            Ok(text) if text.contains("-----BEGIN") => pem_body(text)?,
            _ => bytes.to_vec(),
        };
        let key = Ed25519KeyPair::from_pkcs8(&der)
            .or_else(|_| Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der))
            .map_err(|e| format!("not a PKCS#8 Ed25519 private key: {e}"))?;
        let id = key_id(key.public_key().as_ref());
        Ok(Signer {
            key: std::sync::Arc::new(key),
            id,
        })
    }

    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    pub fn key_id(&self) -> &str {
        &self.id
    }

    /// A signed checkpoint over the head `(seq, hash)`.
    pub fn sign(&self, seq: u64, hash: &str, time: &str, policy_version: &str) -> Checkpoint {
        let sig = self.key.sign(&message(seq, hash, time, policy_version));
        Checkpoint {
            kind: "checkpoint".into(),
            time: time.to_owned(),
            covers_seq: seq,
            covers_hash: hash.to_owned(),
            policy_version: policy_version.to_owned(),
            key_id: self.id.clone(),
            signature: B64.encode(sig.as_ref()),
            chain: None,
        }
    }
}

fn pem_body(text: &str) -> Result<Vec<u8>, String> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    B64.decode(body.trim())
        .map_err(|e| format!("bad PEM body: {e}"))
}

/// A public key to check checkpoints with.
#[derive(Clone, Debug)]
pub struct PublicKey {
    raw: Vec<u8>,
    pub id: String,
}

impl PublicKey {
    /// Reads a public key given inline (base64 or hex of the 32 raw bytes) or as a file holding that.
    pub fn parse_or_load(arg: &str) -> Result<PublicKey, String> {
        let path = Path::new(arg);
        let text = if path.exists() {
            std::fs::read_to_string(path).map_err(|e| format!("cannot read `{arg}`: {e}"))?
        } else {
            arg.to_owned()
        };
        let t = text.trim();
        let raw = hex::decode(t)
            .ok()
            .filter(|r| r.len() == 32)
            .or_else(|| B64.decode(t).ok())
            .filter(|r| r.len() == 32)
            .ok_or_else(|| {
                format!("`{arg}` is not an Ed25519 public key (32 bytes, base64 or hex) or a file holding one")
            })?;
        Ok(PublicKey {
            id: key_id(&raw),
            raw,
        })
    }

    pub fn from_raw(raw: &[u8]) -> PublicKey {
        PublicKey {
            raw: raw.to_vec(),
            id: key_id(raw),
        }
    }

    /// The key as written to `.pub` files: base64 of the raw 32 bytes.
    pub fn to_base64(&self) -> String {
        B64.encode(&self.raw)
    }

    /// Checks `c`'s signature; the error says why it fails.
    pub fn check(&self, c: &Checkpoint) -> Result<(), String> {
        if c.key_id != self.id {
            return Err(format!(
                "signed with key `{}`, not with the given key `{}`",
                c.key_id, self.id
            ));
        }
        let sig = B64
            .decode(&c.signature)
            .map_err(|_| "the signature is not base64".to_owned())?;
        UnparsedPublicKey::new(&ED25519, &self.raw)
            .verify(
                &message(c.covers_seq, &c.covers_hash, &c.time, &c.policy_version),
                &sig,
            )
            .map_err(|_| "the signature does not match the checkpoint".to_owned())
    }
}

/// Generates a new PKCS#8 Ed25519 key; returns (private key DER, public key).
pub fn generate() -> Result<(Vec<u8>, PublicKey), String> {
    let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| "cannot generate an Ed25519 key".to_owned())?;
    let signer = Signer::from_bytes(doc.as_ref())?;
    Ok((
        doc.as_ref().to_vec(),
        PublicKey::from_raw(signer.public_key()),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_and_changes_break_them() {
        let (der, public) = generate().unwrap();
        let s = Signer::from_bytes(&der).unwrap();
        assert_eq!(s.key_id(), public.id);
        let c = s.sign(7, &"ab".repeat(32), "2025-01-01T00:00:00Z", "v1");
        public.check(&c).unwrap();
        let mut bad = c.clone();
        bad.covers_seq = 8;
        assert!(public.check(&bad).unwrap_err().contains("does not match"));
        let other = generate().unwrap().1;
        assert!(
            other
                .check(&c)
                .unwrap_err()
                .contains("not with the given key")
        );
        let again = PublicKey::parse_or_load(&public.to_base64()).unwrap();
        again.check(&c).unwrap();
    }
}
