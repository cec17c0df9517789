//! Where the officer's tools read records from: log files (segments in chain order) or the
//! PostgreSQL store. Both give the same lines to the same readers ([`crate::audit::query`]),
//! so filters, reports and replays have one implementation.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use serde_json::Value;

use super::postgres::read;
use super::query::{Filter, expand, for_each, last_of, scan};
use super::verify::{LogReport, VerifyOptions, verify_log};
use crate::config::{AuditConfig, AuditSinkKind};

/// A PostgreSQL store: its connection string and table.
#[derive(Clone)]
pub struct PgStore {
    /// A URL or `key=value` string; it may hold a password, so it is never shown.
    pub conn: String,
    pub table: String,
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

/// The records to read.
#[derive(Clone, Debug)]
pub enum Source {
    /// Log files or directories of segments, oldest first.
    Files(Vec<PathBuf>),
    Postgres(PgStore),
}

/// True if `s` is a `postgres://` or `postgresql://` URL (given where a log file may be).
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

impl Source {
    /// The log a gateway config writes: its file and rotated segments, or its table.
    pub fn from_config(c: &AuditConfig) -> Result<Source, String> {
        match (c.sink, &c.postgres) {
            (AuditSinkKind::Postgres, Some(p)) => Ok(Source::Postgres(PgStore {
                conn: p.connection_string()?,
                table: p.table.clone(),
            })),
            (AuditSinkKind::Postgres, None) => {
                Err("`audit.sink: postgres` needs an `audit.postgres` section".into())
            }
            (AuditSinkKind::File, _) => Ok(Source::Files(
                crate::admin::AuditSource::file(c.path.clone()).files()?,
            )),
        }
    }

    /// The files read, or the store, as reports name them.
    pub fn names(&self) -> Result<Vec<String>, String> {
        match self {
            Source::Files(paths) => Ok(expand(paths)?
                .iter()
                .map(|p| p.display().to_string())
                .collect()),
            Source::Postgres(s) => Ok(vec![read::store_name(&s.table)]),
        }
    }

    /// Calls `each` with every record matching `filter`, in chain order, streaming; `each`
    /// returns false to stop. The store is asked only for the rows in the filter's time range.
    pub fn for_each(
        &self,
        filter: &Filter,
        mut each: impl FnMut(Value) -> bool,
    ) -> Result<(), String> {
        match self {
            Source::Files(paths) => for_each(paths, filter, each),
            Source::Postgres(s) => {
                let c = filter.compile()?;
                let (from, to) = c.bounds();
                let lines = read::lines(&s.conn, &s.table, from, to)?;
                scan(lines, &c, &mut each).map_err(|e| e.to_string())?;
                Ok(())
            }
        }
    }

    /// The last `limit` records matching `filter`, oldest first.
    pub fn query(&self, filter: &Filter, limit: usize) -> Result<Vec<Value>, String> {
        last_of(limit, |each| self.for_each(filter, each))
    }

    /// The whole log verified: for files as `audit verify` does with `opts`, for the store
    /// by its verifier (checkpoints and receipts are file-sink features).
    pub fn verify(&self, opts: &VerifyOptions) -> LogReport {
        match self {
            Source::Files(paths) => verify_log(paths, opts),
            Source::Postgres(s) => read::verify_report(&s.conn, &s.table),
        }
    }

    /// Every line, in chain order, as one byte stream (for `policy what-if`).
    pub fn reader(&self) -> Result<Box<dyn Read + Send>, String> {
        match self {
            Source::Files(paths) => Ok(Box::new(Concat {
                files: expand(paths)?.into(),
                cur: None,
            })),
            Source::Postgres(s) => Ok(Box::new(read::lines(&s.conn, &s.table, None, None)?)),
        }
    }
}

/// Files read one after the other.
struct Concat {
    files: VecDeque<PathBuf>,
    cur: Option<File>,
}

impl Read for Concat {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(f) = &mut self.cur {
                let n = f.read(out)?;
                if n > 0 || out.is_empty() {
                    return Ok(n);
                }
                self.cur = None;
            }
            let Some(p) = self.files.pop_front() else {
                return Ok(0);
            };
            let f = File::open(&p).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot open `{}`: {e}", p.display()))
            })?;
            self.cur = Some(f);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn files_are_read_one_after_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.log"), dir.path().join("b.log"));
        std::fs::write(&a, "{\"kind\":\"event\",\"seq\":1}\n").unwrap();
        std::fs::write(&b, "{\"kind\":\"decision\",\"seq\":2}\n").unwrap();
        let src = Source::Files(vec![a.clone(), b.clone()]);
        let mut text = String::new();
        src.reader().unwrap().read_to_string(&mut text).unwrap();
        assert_eq!(text.lines().count(), 2);
        let f = Filter {
            kind: Some("decision".into()),
            ..Filter::default()
        };
        let got = src.query(&f, 10).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(src.names().unwrap().len(), 2);
        let missing = Source::Files(vec![dir.path().join("nope.log")]);
        let mut r = missing.reader().unwrap();
        let e = r.read_to_string(&mut text).unwrap_err();
        assert!(e.to_string().contains("nope.log"), "{e}");
    }

    #[test]
    fn the_connection_string_is_never_shown() {
        let s = Source::Postgres(PgStore {
            conn: "postgres://u:secret@db/audit".into(),
            table: "t".into(),
        });
        let d = format!("{s:?}");
        assert!(!d.contains("secret") && d.contains("\"t\""), "{d}");
        assert_eq!(s.names().unwrap(), ["postgres table `t`"]);
        assert!(is_postgres_url("postgresql://x") && !is_postgres_url("audit.log"));
    }
}
