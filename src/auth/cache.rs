//! The cache of verified tokens: a pipeline sends the same bearer token on every
//! request, and verifying its RS256 signature each time was the largest single cost of
//! a small request.
//!
//! Keyed by the SHA-256 of the whole token (so a hit is the very token that was
//! verified, never a look-alike), bounded in entries, and valid until the token's own
//! `exp` plus the configured leeway — the instant at which a fresh verification would
//! start refusing it. Only successes are cached: a refused token is verified again
//! every time, so a token that becomes valid later (`nbf`) is not kept out.
//!
//! One cache belongs to one [`super::Authenticator`], and an authenticator is built
//! once per configuration snapshot: a reload that removes a key (the key set's
//! version) starts from an empty cache, so revocation by key removal takes effect
//! at once, on every replica as soon as it reloads. Keys fetched from a `jwks_url`
//! change under one authenticator: each entry carries the generation of the set that
//! verified it (0 for the configured keys), and a hit counts only while that set is
//! still the one in force and not stale.
//!
//! The cache is sharded (`quick_cache`, S3-FIFO eviction): a hit takes one shard's
//! read lock for the length of a hash-table probe, never across an await.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::Authenticated;

/// Tokens held at most; one entry is about 200 bytes plus the caller's identifiers.
pub const CAPACITY: usize = 16_384;

/// SHA-256 of a token.
pub(crate) type TokenKey = [u8; 32];

#[derive(Clone)]
struct Entry {
    auth: Arc<Authenticated>,
    /// Unix seconds after which the token is no longer accepted (`exp` + leeway).
    valid_until: u64,
    /// The key set that verified it: 0 for the configured keys, else the generation of
    /// the fetched set.
    generation: u64,
}

/// Verified tokens of one key set.
pub(crate) struct TokenCache {
    inner: quick_cache::sync::Cache<TokenKey, Entry>,
}

impl TokenCache {
    pub(crate) fn new(capacity: usize) -> TokenCache {
        TokenCache {
            inner: quick_cache::sync::Cache::new(capacity.max(1)),
        }
    }

    /// The key of `token`.
    pub(crate) fn key(token: &[u8]) -> TokenKey {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token);
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    /// The verified token and the generation of the key set that verified it, if it
    /// was verified and has not expired since.
    pub(crate) fn get(&self, key: &TokenKey, now: u64) -> Option<(Arc<Authenticated>, u64)> {
        let e = self.inner.get(key)?;
        if now <= e.valid_until {
            Some((e.auth, e.generation))
        } else {
            self.inner.remove(key);
            None
        }
    }

    /// Remembers a token verified by key set `generation` until `valid_until` (unix
    /// seconds).
    pub(crate) fn put(
        &self,
        key: TokenKey,
        auth: Arc<Authenticated>,
        valid_until: u64,
        generation: u64,
    ) {
        self.inner.insert(
            key,
            Entry {
                auth,
                valid_until,
                generation,
            },
        );
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.inner.len()
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it, which fails every `exp`).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
