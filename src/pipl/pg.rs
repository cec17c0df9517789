//! The PIPL export ledger a fleet of gateways shares in PostgreSQL (`audit.sink: postgres`):
//! one append-only row per counting unit, exporter and year, in `<audit table>_pipl`.
//!
//! Each PIPL export is decided and counted in one short transaction: take the
//! exporter-and-year advisory lock, read the totals and which of the export's units are
//! already counted, decide, insert the new units (`ON CONFLICT DO NOTHING`) when the data
//! moves, commit. Replicas deciding for the same exporter and year serialise on the lock,
//! so the fleet together never lets more individuals leave than one gateway would. The
//! gateway needs only `SELECT` and `INSERT` on the table. A database that cannot answer
//! in time refuses the export (fail closed).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, IsolationLevel, Statement};

use super::{Export, ExportCounter};
use crate::policy::volume::VolumeInfo;

/// Connections per gateway: exports of different exporters are counted in parallel.
const POOL: usize = 4;
/// How long a transaction waits for another replica's lock on the same exporter and year.
const LOCK_TIMEOUT: &str = "2s";
/// How long one statement (or an idle transaction of a stuck replica) may last.
const STATEMENT_TIMEOUT: &str = "5s";
/// The whole count, connecting included, from this side.
const COUNT_TIMEOUT: Duration = Duration::from_secs(10);

/// The ledger table of the audit table `audit_table`.
pub fn table_name(audit_table: &str) -> String {
    format!("{audit_table}_pipl")
}

/// The ledger's DDL: idempotent, safe to run from many gateways at once, and independent of
/// the audit table's own layout. `audit_table` must be a valid table name (it is spliced in).
pub(crate) fn ddl(audit_table: &str) -> String {
    let t = table_name(audit_table);
    format!(
        "SELECT pg_advisory_xact_lock(hashtext('bordergate-pipl-ddl:{t}'));
CREATE TABLE IF NOT EXISTS {t} (
  exporter TEXT NOT NULL,
  year INT NOT NULL,
  unit TEXT NOT NULL,
  subjects BIGINT CHECK (subjects IS NULL OR subjects >= 0),
  non_sensitive BOOLEAN NOT NULL,
  sensitive BOOLEAN NOT NULL,
  important BOOLEAN NOT NULL,
  replica TEXT NOT NULL,
  request_id TEXT,
  time TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (exporter, year, unit)
);
"
    )
}

/// The advisory lock key of one exporter's year in one ledger (hashed by the server).
fn lock_key(table: &str, exporter: &str, year: i32) -> String {
    format!("bordergate-pipl:{table}:{exporter}:{year}")
}

/// This process's name in the ledger's `replica` column when none is configured.
pub fn default_replica() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gateway".to_owned())
}

/// Why an export could not be counted.
#[derive(Debug, thiserror::Error)]
#[error("cannot count PIPL export volumes in postgres table `{table}`: {reason}")]
pub struct LedgerError {
    pub table: String,
    pub reason: String,
}

/// A connection with the ledger's statements prepared.
struct Conn {
    client: Client,
    lock: Statement,
    totals: Statement,
    insert: Statement,
}

/// The shared ledger: a few lazily (re)connected sessions.
pub struct Ledger {
    config: tokio_postgres::Config,
    table: String,
    replica: String,
    conns: Vec<Mutex<Option<Conn>>>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Ledger({})", self.table)
    }
}

impl Ledger {
    /// The ledger of `audit_table` on the server `conn`; rows are signed with `replica`
    /// (default: [`default_replica`]). Nothing is connected yet.
    pub fn new(conn: &str, audit_table: &str, replica: Option<&str>) -> Result<Ledger, String> {
        if !crate::config::valid_table_name(audit_table) {
            return Err(format!(
                "`{audit_table}` is not a lower-case SQL name (a-z, 0-9, _)"
            ));
        }
        Ok(Ledger {
            config: crate::audit::postgres::pg_config(conn)?,
            table: table_name(audit_table),
            replica: replica.map_or_else(default_replica, str::to_owned),
            conns: (0..POOL).map(|_| Mutex::new(None)).collect(),
            next: AtomicUsize::new(0),
        })
    }

    /// The ledger table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    fn error(&self, reason: impl std::fmt::Display) -> LedgerError {
        LedgerError {
            table: self.table.clone(),
            reason: reason.to_string(),
        }
    }

    /// A free session, or the next one in turn.
    async fn session(&self) -> tokio::sync::MutexGuard<'_, Option<Conn>> {
        for c in &self.conns {
            if let Ok(g) = c.try_lock() {
                return g;
            }
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].lock().await
    }

    async fn connect(&self) -> Result<Conn, String> {
        let client = crate::audit::postgres::connect(&self.config).await?;
        let t = &self.table;
        let prep = |s: String| {
            let client = &client;
            async move {
                client
                    .prepare(&s)
                    .await
                    .map_err(|e| format!("cannot prepare a statement: {e}"))
            }
        };
        let lock = prep("SELECT pg_advisory_xact_lock(hashtext($1::text))".into()).await?;
        let totals = prep(format!(
            "SELECT
  least(coalesce(sum(subjects) FILTER (WHERE non_sensitive), 0), 9223372036854775807)::int8,
  least(coalesce(sum(subjects) FILTER (WHERE sensitive), 0), 9223372036854775807)::int8,
  coalesce(bool_or(subjects IS NULL), false),
  coalesce(array_agg(unit) FILTER (WHERE unit = ANY($3::text[])), '{{}}')
FROM {t} WHERE exporter = $1::text AND year = $2::int4"
        ))
        .await?;
        let insert = prep(format!(
            "INSERT INTO {t} (exporter, year, unit, subjects, non_sensitive, sensitive, important, replica, request_id)
SELECT $1::text, $2::int4, u, s, $5::bool, $6::bool, $7::bool, $8::text, $9::text FROM unnest($3::text[], $4::int8[]) AS x(u, s)
ON CONFLICT DO NOTHING"
        ))
        .await?;
        Ok(Conn {
            client,
            lock,
            totals,
            insert,
        })
    }

    /// Decides the export `e` on the fleet's totals and counts it when the data moves:
    /// `decide` gets the volume and returns its answer and whether the data moves. Atomic
    /// across every gateway sharing the ledger. `Err`: nothing was counted or decided.
    pub async fn count<T>(
        &self,
        e: &Export,
        request_id: &str,
        decide: impl FnOnce(&VolumeInfo) -> (T, bool),
    ) -> Result<T, LedgerError> {
        let mut session = self.session().await;
        let run = async {
            if session.is_none() {
                *session = Some(self.connect().await?);
            }
            let Some(c) = session.as_mut() else {
                return Err("not connected".to_owned());
            };
            count_in(c, &self.table, &self.replica, e, request_id, decide).await
        };
        let out = match tokio::time::timeout(COUNT_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", COUNT_TIMEOUT.as_secs())),
        };
        // A failed session may be dead, hung or mid-rollback: the next count reconnects.
        out.map_err(|reason| {
            *session = None;
            self.error(reason)
        })
    }

    /// Counts every unit of `year` in the ledger into `counter` (the local view the admin
    /// API answers from). Returns the number of units; `Err` when the ledger cannot be read.
    pub async fn seed(&self, counter: &ExportCounter, year: i32) -> Result<usize, LedgerError> {
        let mut session = self.session().await;
        let run = async {
            if session.is_none() {
                *session = Some(self.connect().await?);
            }
            let Some(c) = session.as_mut() else {
                return Err("not connected".to_owned());
            };
            let rows = c
                .client
                .query(
                    &format!(
                        "SELECT exporter, unit, subjects, non_sensitive, sensitive, important FROM {} WHERE year = $1::int4",
                        self.table
                    ),
                    &[&year],
                )
                .await
                .map_err(|e| e.to_string())?;
            for r in &rows {
                let exporter: String = r.try_get(0).map_err(|e| e.to_string())?;
                let unit: String = r.try_get(1).map_err(|e| e.to_string())?;
                let subjects: Option<i64> = r.try_get(2).map_err(|e| e.to_string())?;
                counter.record(&Export {
                    exporter: Some(exporter).filter(|x| !x.is_empty()),
                    year,
                    units: vec![(unit, subjects.and_then(|n| u64::try_from(n).ok()))],
                    important_data: r.try_get(5).map_err(|e| e.to_string())?,
                    counts: (
                        r.try_get(3).map_err(|e| e.to_string())?,
                        r.try_get(4).map_err(|e| e.to_string())?,
                    ),
                });
            }
            Ok(rows.len())
        };
        let out = match tokio::time::timeout(COUNT_TIMEOUT, run).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {} s", COUNT_TIMEOUT.as_secs())),
        };
        out.map_err(|reason| {
            *session = None;
            self.error(reason)
        })
    }
}

/// One count in one transaction on `c` (see [`Ledger::count`]).
async fn count_in<T>(
    c: &mut Conn,
    table: &str,
    replica: &str,
    e: &Export,
    request_id: &str,
    decide: impl FnOnce(&VolumeInfo) -> (T, bool),
) -> Result<T, String> {
    let exporter = e.exporter.as_deref().unwrap_or("");
    let ids: Vec<&str> = e.units.iter().map(|(id, _)| id.as_str()).collect();
    let tx = c
        .client
        .build_transaction()
        // Each statement sees what committed before it: the totals are read after the lock.
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(|e| e.to_string())?;
    tx.batch_execute(&format!(
        "SET LOCAL lock_timeout = '{LOCK_TIMEOUT}';
SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}';
SET LOCAL idle_in_transaction_session_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .await
    .map_err(|e| e.to_string())?;
    tx.execute(&c.lock, &[&lock_key(table, exporter, e.year)])
        .await
        .map_err(|e| format!("cannot take the exporter's lock: {e}"))?;
    let row = tx
        .query_one(&c.totals, &[&exporter, &e.year, &ids])
        .await
        .map_err(|e| e.to_string())?;
    let as_count = |n: i64| u64::try_from(n).unwrap_or(0);
    let non_sensitive: i64 = row.try_get(0).map_err(|e| e.to_string())?;
    let sensitive: i64 = row.try_get(1).map_err(|e| e.to_string())?;
    let unbounded: bool = row.try_get(2).map_err(|e| e.to_string())?;
    let counted: Vec<String> = row.try_get(3).map_err(|e| e.to_string())?;
    let volume = e.volume(
        (as_count(non_sensitive), as_count(sensitive), unbounded),
        |id| counted.iter().any(|c| c == id),
    );
    let (answer, moves) = decide(&volume);
    if moves && !volume.already_counted {
        let subjects: Vec<Option<i64>> = e
            .units
            .iter()
            .map(|(_, n)| n.map(|n| i64::try_from(n).unwrap_or(i64::MAX)))
            .collect();
        tx.execute(
            &c.insert,
            &[
                &exporter,
                &e.year,
                &ids,
                &subjects,
                &e.counts.0,
                &e.counts.1,
                &e.important_data,
                &replica,
                &request_id,
            ],
        )
        .await
        .map_err(|e| format!("cannot record the export: {e}"))?;
    }
    tx.commit()
        .await
        .map_err(|e| format!("commit failed (the export may or may not be counted): {e}"))?;
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ddl_is_idempotent_and_names_its_own_table() {
        let d = ddl("bordergate_audit");
        assert!(d.contains("CREATE TABLE IF NOT EXISTS bordergate_audit_pipl ("));
        assert!(d.contains("PRIMARY KEY (exporter, year, unit)"));
        assert!(
            !d.contains("_head"),
            "independent of the audit table's layout"
        );
        assert!(!d.contains("UPDATE") && !d.contains("DELETE"));
    }

    #[test]
    fn the_lock_is_per_ledger_exporter_and_year() {
        let k = lock_key("t_pipl", "acme-cn", 2026);
        assert_eq!(k, "bordergate-pipl:t_pipl:acme-cn:2026");
        assert_ne!(k, lock_key("t_pipl", "acme-cn", 2027));
        assert_ne!(k, lock_key("u_pipl", "acme-cn", 2026));
    }

    #[test]
    fn a_ledger_needs_a_valid_table_name() {
        let l = Ledger::new("host=127.0.0.1 user=postgres", "audit", Some("r1")).unwrap();
        assert_eq!(l.table(), "audit_pipl");
        assert_eq!(l.replica, "r1");
        assert!(Ledger::new("host=127.0.0.1", "bad; drop", None).is_err());
        assert!(!default_replica().is_empty());
    }
}
