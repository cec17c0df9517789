//! The keyed hash pseudonyms come from (HMAC-SHA-256), and the pseudonymisation keys of
//! each origin region, rotated by id. `audit report --pseudonymise` uses the same hash.
//!
//! A key file (`transform.keys` in the gateway config) is YAML:
//!
//! ```yaml
//! regions:
//!   eu:
//!     current: eu-2026-02        # the key new transfers use
//!     keys:
//!       eu-2026-01: 8f0c…        # hex, at least 16 bytes; kept to name old pseudonyms
//!       eu-2026-02: 51aa…
//! ```
//!
//! A key may instead come from the environment: `BORDERGATE_PSEUDONYM_KEY_EU=eu-2026-02:51aa…`
//! (region in upper case) adds that key to region `eu` and makes it current.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;

/// Shortest key accepted.
pub const MIN_KEY_BYTES: usize = 16;

/// Prefix of the environment variables keys are read from.
pub const ENV_PREFIX: &str = "BORDERGATE_PSEUDONYM_KEY_";

/// `HMAC-SHA-256(key, value)` truncated to 8 bytes, written `p-<16 hex digits>`: stable
/// for one key, so rows of one person still join; unrelated across keys.
///
/// The keyed state (the compressions of `key ⊕ ipad` and `key ⊕ opad`, RFC 2104) is made
/// once, when the key is loaded, and copied for each value: a pseudonym of a short value
/// costs two SHA-256 compressions and no allocation.
#[derive(Clone)]
pub struct KeyedHash {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for KeyedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyedHash(…)")
    }
}

impl KeyedHash {
    pub fn new(secret: &[u8]) -> Result<KeyedHash, String> {
        if secret.len() < MIN_KEY_BYTES {
            return Err(format!(
                "a pseudonymisation key needs at least {MIN_KEY_BYTES} bytes"
            ));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|e| format!("not a pseudonymisation key: {e}"))?;
        Ok(KeyedHash { mac })
    }

    /// The first 8 bytes of `HMAC-SHA-256(key, value)`.
    fn tag(&self, value: &[u8]) -> [u8; 8] {
        let mut m = self.mac.clone();
        m.update(value);
        let digest = m.finalize().into_bytes();
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&digest[..8]);
        tag
    }

    /// The pseudonym of `value`.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut s = String::with_capacity(18);
        self.pseudonym_into(value, &mut s);
        s
    }

    /// Appends the pseudonym of `value` to `out`.
    pub fn pseudonym_into(&self, value: &str, out: &mut String) {
        push_ascii(&self.text(value), out);
    }

    /// The pseudonym of `value`, as ASCII bytes.
    fn text(&self, value: &str) -> [u8; PSEUDONYM_LEN] {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = *b"p-0000000000000000";
        for (i, b) in self.tag(value.as_bytes()).iter().enumerate() {
            text[2 + 2 * i] = HEX[usize::from(b >> 4)];
            text[3 + 2 * i] = HEX[usize::from(b & 0xf)];
        }
        text
    }
}

/// Length of a pseudonym: `p-` and 16 hex digits.
pub const PSEUDONYM_LEN: usize = 18;

fn push_ascii(text: &[u8; PSEUDONYM_LEN], out: &mut String) {
    // ASCII by construction.
    out.push_str(std::str::from_utf8(text).unwrap_or_default());
}

/// The pseudonyms of values met lately in one column of one transfer, so that a value met
/// again (the same customer on the next ticket) costs a lookup instead of an HMAC.
/// Direct-mapped: [`Memo::SLOTS`] slots, a value takes the slot its hash names and evicts
/// what was there, so memory is bounded whatever the data. It lives as long as the
/// transformer that owns it and is never written anywhere.
#[derive(Default)]
pub struct Memo {
    slots: Vec<(String, [u8; PSEUDONYM_LEN])>,
    hasher: foldhash::fast::FixedState,
}

impl Memo {
    /// Slots of one column (a power of two).
    pub const SLOTS: usize = 256;
    /// Longer values are hashed every time (not worth a copy).
    pub const LONGEST: usize = 64;

    /// Appends the pseudonym of `value` under `hash` to `out`, from the memo when the
    /// value was met last in its slot. One memo serves one key.
    pub fn pseudonym_into(&mut self, hash: &KeyedHash, value: &str, out: &mut String) {
        use std::hash::BuildHasher;
        if value.is_empty() || value.len() > Self::LONGEST {
            return hash.pseudonym_into(value, out);
        }
        if self.slots.is_empty() {
            self.slots = vec![(String::new(), [0; PSEUDONYM_LEN]); Self::SLOTS];
        }
        #[allow(clippy::cast_possible_truncation)] // Only the low bits are wanted.
        let at = self.hasher.hash_one(value) as usize & (Self::SLOTS - 1);
        let slot = &mut self.slots[at];
        if slot.0 != value {
            slot.1 = hash.text(value);
            slot.0.clear();
            slot.0.push_str(value);
        }
        push_ascii(&slot.1, out);
    }
}

/// One pseudonymisation key: its id (recorded) and its hash (never written anywhere).
#[derive(Debug)]
pub struct Key {
    pub id: String,
    pub hash: KeyedHash,
}

#[derive(Debug, Default)]
struct Region {
    current: Option<String>,
    keys: BTreeMap<String, Arc<Key>>,
}

/// The keys of every origin region.
#[derive(Debug, Default)]
pub struct Keyring {
    regions: BTreeMap<String, Region>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    regions: BTreeMap<String, RegionFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegionFile {
    current: String,
    keys: BTreeMap<String, String>,
}

fn key(id: &str, hex_secret: &str) -> Result<Arc<Key>, String> {
    let secret =
        hex::decode(hex_secret.trim()).map_err(|_| format!("key `{id}` is not hexadecimal"))?;
    let hash = KeyedHash::new(&secret).map_err(|e| format!("key `{id}`: {e}"))?;
    Ok(Arc::new(Key {
        id: id.to_string(),
        hash,
    }))
}

impl Keyring {
    /// Reads the key file (if any), then the environment's keys.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Keyring, Vec<String>> {
        let mut ring = Keyring::default();
        let mut errs = Vec::new();
        if let Some(path) = file {
            match crate::config::load_yaml::<KeyFile>(path) {
                Err(d) => errs.push(d.to_string()),
                Ok(f) => {
                    for (name, r) in f.regions {
                        let mut region = Region::default();
                        for (id, hex) in &r.keys {
                            match key(id, hex) {
                                Ok(k) => {
                                    region.keys.insert(id.clone(), k);
                                }
                                Err(m) => errs.push(format!("`{}`: {m}", path.display())),
                            }
                        }
                        if !r.keys.contains_key(&r.current) {
                            errs.push(format!(
                                "`{}`: the current key `{}` of region `{name}` is not among its keys",
                                path.display(),
                                r.current
                            ));
                        }
                        region.current = Some(r.current);
                        ring.regions.insert(name, region);
                    }
                }
            }
        }
        for (var, value) in env {
            let Some(region) = var.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let region = region.to_ascii_lowercase();
            let Some((id, hex)) = value.split_once(':') else {
                errs.push(format!("`{var}` must be `<key id>:<hex key>`"));
                continue;
            };
            match key(id, hex) {
                Ok(k) => {
                    let r = ring.regions.entry(region).or_default();
                    r.keys.insert(id.to_string(), k);
                    r.current = Some(id.to_string());
                }
                Err(m) => errs.push(format!("`{var}`: {m}")),
            }
        }
        if errs.is_empty() { Ok(ring) } else { Err(errs) }
    }

    /// A keyring of the given `(region, id, secret)` keys, the last of a region current.
    pub fn of(keys: &[(&str, &str, &[u8])]) -> Result<Keyring, String> {
        let mut ring = Keyring::default();
        for (region, id, secret) in keys {
            let r = ring.regions.entry((*region).to_string()).or_default();
            r.keys.insert(
                (*id).to_string(),
                Arc::new(Key {
                    id: (*id).to_string(),
                    hash: KeyedHash::new(secret)?,
                }),
            );
            r.current = Some((*id).to_string());
        }
        Ok(ring)
    }

    /// The key region `region` pseudonymises with now.
    pub fn current(&self, region: &str) -> Option<Arc<Key>> {
        let r = self.regions.get(region)?;
        r.keys.get(r.current.as_deref()?).cloned()
    }

    /// A key of `region` by id (an old one, to recompute a pseudonym it made).
    pub fn get(&self, region: &str, id: &str) -> Option<Arc<Key>> {
        self.regions.get(region)?.keys.get(id).cloned()
    }

    /// Regions and their current key ids, for `check`.
    pub fn summary(&self) -> Vec<(String, Option<String>, usize)> {
        self.regions
            .iter()
            .map(|(n, r)| (n.clone(), r.current.clone(), r.keys.len()))
            .collect()
    }
}

/// Regions a development key file holds a key for (the pack's regimes).
const DEV_REGIONS: &[&str] = &[
    "eu", "uk", "ch", "us", "in", "br", "ca", "jp", "kr", "sg", "cn",
];

/// Creates a key file with a random key per region at `path` unless one is there.
pub fn ensure_dev_keys(path: &Path) -> Result<bool, String> {
    if path.exists() {
        return Ok(false);
    }
    let shown = path.display();
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{shown}`: {e}"))?;
    }
    let mut text = String::from(
        "# Development pseudonymisation keys, created on first run; never commit them.\nregions:\n",
    );
    for r in DEV_REGIONS {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no system randomness".to_string())?;
        text.push_str(&format!(
            "  {r}:\n    current: {r}-dev-1\n    keys:\n      {r}-dev-1: {}\n",
            hex::encode(raw)
        ));
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    use std::io::Write;
    match opts.open(path) {
        Ok(mut f) => f
            .write_all(text.as_bytes())
            .map(|()| true)
            .map_err(|e| format!("cannot write `{shown}`: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(format!("cannot create `{shown}`: {e}")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn keyed_hash_is_stable_per_key() {
        let a = KeyedHash::new(&[7; 32]).unwrap();
        let b = KeyedHash::new(&[8; 32]).unwrap();
        assert_eq!(a.pseudonym("alice"), a.pseudonym("alice"));
        assert_ne!(a.pseudonym("alice"), b.pseudonym("alice"));
        assert_eq!(a.pseudonym("alice").len(), 18);
        assert!(KeyedHash::new(b"short").is_err());
    }

    #[test]
    fn a_memo_gives_the_pseudonyms_of_the_hash() {
        let a = KeyedHash::new(&[7; 32]).unwrap();
        let mut memo = Memo::default();
        let long = "x".repeat(Memo::LONGEST + 1);
        // More values than slots, twice over: hits, evictions and collisions all agree.
        let values: Vec<String> = (0..3 * Memo::SLOTS)
            .map(|i| format!("customer-{}", i % (2 * Memo::SLOTS)))
            .chain([long, "é".into()])
            .collect();
        for _ in 0..2 {
            for v in &values {
                let mut got = String::new();
                memo.pseudonym_into(&a, v, &mut got);
                assert_eq!(got, a.pseudonym(v), "{v}");
            }
        }
        let mut got = String::new();
        memo.pseudonym_into(&a, "", &mut got);
        assert_eq!(got, a.pseudonym(""));
    }

    #[test]
    fn keyed_hash_is_hmac_sha256() {
        // Against the HMAC of aws-lc, across block boundaries and key lengths (a key longer
        // than the block is hashed first).
        for klen in [16, 32, 63, 64, 65, 100] {
            let secret: Vec<u8> = (0..klen).map(|i| (i * 7 + 3) as u8).collect();
            let ours = KeyedHash::new(&secret).unwrap();
            let theirs = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &secret);
            for vlen in 0..200 {
                let value: String = (0..vlen)
                    .map(|i| char::from(b'a' + (i % 26) as u8))
                    .collect();
                let tag = aws_lc_rs::hmac::sign(&theirs, value.as_bytes());
                let want = format!("p-{}", hex::encode(&tag.as_ref()[..8]));
                assert_eq!(
                    ours.pseudonym(&value),
                    want,
                    "key {klen} bytes, value {vlen} bytes"
                );
            }
        }
    }

    #[test]
    fn keys_rotate_by_id_and_env_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("keys.yaml");
        std::fs::write(
            &p,
            format!(
                "regions:\n  eu:\n    current: eu-2\n    keys:\n      eu-1: {}\n      eu-2: {}\n",
                "11".repeat(16),
                "22".repeat(16)
            ),
        )
        .unwrap();
        let ring = Keyring::load(Some(&p), Vec::new()).unwrap();
        assert_eq!(ring.current("eu").unwrap().id, "eu-2");
        assert!(ring.get("eu", "eu-1").is_some());
        assert!(ring.current("uk").is_none());
        let env = vec![(
            "BORDERGATE_PSEUDONYM_KEY_UK".to_string(),
            format!("uk-1:{}", "33".repeat(16)),
        )];
        let ring = Keyring::load(Some(&p), env).unwrap();
        assert_eq!(ring.current("uk").unwrap().id, "uk-1");
        std::fs::write(
            &p,
            "regions:\n  eu:\n    current: nope\n    keys:\n      eu-1: 11\n",
        )
        .unwrap();
        let errs = Keyring::load(Some(&p), Vec::new()).unwrap_err();
        assert_eq!(errs.len(), 2, "{errs:?}");
    }
}
