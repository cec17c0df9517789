//! The `audit:` section: which sink (a file or a PostgreSQL table), its connection given by
//! reference, checkpoints, rotation and retention.

use std::path::PathBuf;

use serde::Deserialize;

use super::SecretRef;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    #[serde(default)]
    pub sink: AuditSinkKind,
    /// The JSON Lines file of the file sink (required by it; unused by `sink: postgres`).
    #[serde(default)]
    pub path: PathBuf,
    /// The PostgreSQL store of `sink: postgres`.
    #[serde(default)]
    pub postgres: Option<PostgresAuditConfig>,
    /// Most records written per fdatasync.
    #[serde(default = "default_batch")]
    pub batch_max: usize,
    /// PKCS#8 Ed25519 key that signs checkpoints (`bordergate audit keygen`); none: no checkpoints.
    #[serde(default)]
    pub checkpoint_key: Option<PathBuf>,
    /// Development only: create `checkpoint_key` (and its `.pub`) on first run if missing.
    #[serde(default)]
    pub generate_checkpoint_key: bool,
    /// A checkpoint after this many records …
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: u64,
    /// … or this many seconds after the last one, whichever comes first (and at shutdown).
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_interval_secs: u64,
    /// Also append every checkpoint to this file, for copying off the host.
    #[serde(default)]
    pub checkpoint_export: Option<PathBuf>,
    /// Rotate the log once it reaches this many bytes.
    #[serde(default)]
    pub rotate_bytes: Option<u64>,
    /// Rotate the log once its segment is this many seconds old.
    #[serde(default)]
    pub rotate_secs: Option<u64>,
    /// Keep at most this many rotated segments (older ones are removed, and recorded as removed).
    #[serde(default)]
    pub retain_segments: Option<usize>,
    /// Remove rotated segments older than this many days.
    #[serde(default)]
    pub retain_days: Option<u64>,
}

impl AuditConfig {
    /// The log as people name it: the file, or `postgres table <t>`.
    pub fn describe(&self) -> String {
        match (&self.sink, &self.postgres) {
            (AuditSinkKind::Postgres, Some(p)) => format!("postgres table {}", p.table),
            _ => self.path.display().to_string(),
        }
    }
}

fn default_checkpoint_every() -> u64 {
    1000
}

fn default_checkpoint_secs() -> u64 {
    60
}

fn default_batch() -> usize {
    512
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditSinkKind {
    #[default]
    File,
    /// A PostgreSQL table shared by every gateway (`audit.postgres`).
    Postgres,
}

/// Where `audit.sink: postgres` writes: a connection given by reference (`url`), or a `dsn`
/// without a password (trust, peer or `.pgpass` authentication).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresAuditConfig {
    /// A `postgres://…` URL or `key=value` connection string, from an env var or a file.
    #[serde(default)]
    pub url: Option<SecretRef>,
    /// A connection string without a password, inline.
    #[serde(default)]
    pub dsn: Option<String>,
    /// The records table; `<table>_heads` and `<table>_schema` sit beside it.
    #[serde(default = "default_pg_table")]
    pub table: String,
    /// Create or upgrade the tables at start when they are missing (needs the privileges
    /// of `bordergate audit migrate`). Set it to false where the gateway's role may only
    /// SELECT and INSERT: a missing schema then refuses the start with the command to run.
    #[serde(default = "default_true")]
    pub migrate: bool,
    /// A batch (or a probe) the database has not answered after this many milliseconds fails.
    #[serde(default = "default_pg_timeout")]
    pub timeout_ms: u64,
    /// Under concurrent load a batch waits this many microseconds for more records before
    /// it is written (fewer, fuller commits; a lone caller never waits). 0: off.
    #[serde(default = "default_linger")]
    pub linger_us: u64,
    /// A local file this replica's records go to while the database does not answer (the
    /// replica keeps serving), drained into the database, in order, when it answers again.
    /// None (the default): the replica refuses transfers (503) during an outage.
    #[serde(default)]
    pub spool: Option<PathBuf>,
}

fn default_linger() -> u64 {
    300
}

fn default_true() -> bool {
    true
}

fn default_pg_timeout() -> u64 {
    5000
}

fn default_pg_table() -> String {
    "bordergate_audit".into()
}

impl PostgresAuditConfig {
    /// The connection string, read from its reference.
    pub fn connection_string(&self) -> Result<String, String> {
        match (&self.url, &self.dsn) {
            (Some(u), _) => {
                let v = u.read()?;
                String::from_utf8(v)
                    .map(|s| s.trim().to_owned())
                    .map_err(|_| "the `audit.postgres.url` secret is not UTF-8".into())
            }
            (None, Some(d)) => Ok(d.clone()),
            (None, None) => Err("`audit.postgres` needs `url` or `dsn`".into()),
        }
    }
}

/// True if a connection string carries a password (`password=…` or `user:pass@`).
pub fn dsn_has_password(dsn: &str) -> bool {
    let lower = dsn.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        let rest = &dsn[dsn.find("://").map_or(0, |i| i + 3)..];
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let userinfo = authority.rsplit_once('@').map(|(u, _)| u);
        userinfo.is_some_and(|u| u.contains(':')) || lower.contains("password=")
    } else {
        lower.contains("password")
    }
}

/// True if `name` is a plain lower-case SQL identifier (what `audit.postgres.table` may be).
pub fn valid_table_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && name.len() <= 48
}
