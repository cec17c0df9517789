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
    /// What is wrong with the sink settings (`path` for the file sink, `postgres` for postgres).
    pub fn sink_problems(&self) -> Vec<String> {
        let mut errs = Vec::new();
        match self.sink {
            AuditSinkKind::File => {
                if self.path.as_os_str().is_empty() {
                    errs.push("`audit.path` is required by `sink: file`".into());
                }
            }
            AuditSinkKind::Postgres => {
                let Some(pg) = &self.postgres else {
                    errs.push("`audit.sink: postgres` needs an `audit.postgres` section".into());
                    return errs;
                };
                match (&pg.url, &pg.dsn) {
                    (Some(_), Some(_)) => errs.push(
                        "`audit.postgres` has both `url` and `dsn`; choose one".into(),
                    ),
                    (None, None) => errs.push("`audit.postgres` needs `url` or `dsn`".into()),
                    (None, Some(d)) if dsn_has_password(d) => errs.push(
                        "`audit.postgres.dsn` holds a password; give it as `url: {env: …}` or `url: {file: …}`"
                            .into(),
                    ),
                    _ => {}
                }
                if !valid_table_name(&pg.table) {
                    errs.push(format!(
                        "`audit.postgres.table` `{}` is not a lower-case SQL name (a-z, 0-9, _)",
                        pg.table
                    ));
                }
                let file_only = self.checkpoint_key.is_some()
                    || self.checkpoint_export.is_some()
                    || self.rotate_bytes.is_some()
                    || self.rotate_secs.is_some()
                    || self.retain_segments.is_some()
                    || self.retain_days.is_some();
                if file_only {
                    errs.push("checkpoints, rotation and retention apply to `sink: file` only; remove them with `sink: postgres`".into());
                }
            }
        }
        errs
    }

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
    /// The records table; `<table>_head` holds the chain head.
    #[serde(default = "default_pg_table")]
    pub table: String,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn audit(yaml: &str) -> AuditConfig {
        super::super::parse_yaml::<AuditConfig>(Path::new("g.yaml"), yaml).unwrap()
    }

    #[test]
    fn the_postgres_sink_needs_a_connection_without_an_inline_password() {
        let ok = audit("sink: postgres\npostgres:\n  url: {env: PG_URL}\n");
        assert!(ok.sink_problems().is_empty(), "{:?}", ok.sink_problems());
        assert_eq!(ok.describe(), "postgres table bordergate_audit");
        let ok = audit(
            "sink: postgres\npostgres:\n  dsn: host=127.0.0.1 user=postgres dbname=test\n  table: t1\n",
        );
        assert!(ok.sink_problems().is_empty());
        for (yaml, want) in [
            ("sink: postgres\n", "needs an `audit.postgres` section"),
            ("sink: postgres\npostgres: {}\n", "needs `url` or `dsn`"),
            (
                "sink: postgres\npostgres: {dsn: 'postgres://u:secret@h/db'}\n",
                "holds a password",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h password=x'}\n",
                "holds a password",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h', table: 'A; drop'}\n",
                "not a lower-case SQL name",
            ),
            (
                "sink: postgres\npostgres: {dsn: 'host=h'}\nrotate_bytes: 10\n",
                "apply to `sink: file` only",
            ),
            ("sink: file\n", "`audit.path` is required"),
        ] {
            let p = audit(yaml).sink_problems();
            assert!(p.iter().any(|e| e.contains(want)), "{yaml}: {p:?}");
        }
        assert!(audit("path: a.log\n").sink_problems().is_empty());
        assert!(!dsn_has_password("postgres://user@host/db"));
        assert!(!dsn_has_password(
            "host=127.0.0.1 user=postgres dbname=test"
        ));
    }
}
