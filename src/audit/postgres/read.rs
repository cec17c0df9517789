//! Reading the PostgreSQL store for the officer's tools: its lines as a byte stream (what the
//! file readers consume), bounded in time by the `time` index, and its verification as the
//! [`LogReport`] the file verifier gives.
//!
//! The rows are read in pages through a portal inside one read-only snapshot, on a thread
//! of their own, so memory stays flat however large the table and any runtime may call it.

use std::io::Read;
use std::sync::mpsc::{self, Receiver, SyncSender};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_postgres::{IsolationLevel, NoTls};

use super::error::pg_error;
use super::pg_config;
use crate::audit::verify::{Damage, LogReport, Problem};

/// Rows fetched per round trip.
const PAGE_ROWS: i32 = 500;
/// Bytes handed to the reader at a time.
const CHUNK: usize = 1 << 16;
/// Time bounds are widened by this much in SQL: the column holds microseconds, the line
/// may hold more digits. The line-based filter then applies the exact bounds.
const SLACK: time::Duration = time::Duration::milliseconds(1);

/// How the store is named in reports and errors: `postgres table `t``.
pub fn store_name(table: &str) -> String {
    format!("postgres table `{table}`")
}

/// The `SELECT` of the lines of the batches that may hold records of `[from, to)`, in
/// commit order, and its parameters (RFC 3339 text). A batch is committed after its records
/// were made, so `from` bounds the scan (by the `committed` index) but `to` cannot: a
/// record made before `to` may be committed after it. The readers apply the exact bounds
/// to each line.
fn select(
    table: &str,
    from: Option<OffsetDateTime>,
    _to: Option<OffsetDateTime>,
) -> Result<(String, Vec<String>), String> {
    if !crate::config::valid_table_name(table) {
        return Err(format!(
            "`{table}` is not a lower-case SQL name (a-z, 0-9, _)"
        ));
    }
    let mut params = Vec::new();
    let text = |t: OffsetDateTime| t.format(&Rfc3339).map_err(|e| e.to_string());
    let filter = match from {
        Some(f) => {
            params.push(text(f - SLACK)?);
            " WHERE b.committed >= CAST($1::text AS timestamptz)"
        }
        None => "",
    };
    Ok((
        format!(
            "SELECT u.l FROM {table}_batches b CROSS JOIN LATERAL unnest(b.lines) WITH ORDINALITY AS u(l, o){filter} ORDER BY b.committed, b.chain, b.first, u.o"
        ),
        params,
    ))
}

/// The lines of a table, newline-terminated, as a [`Read`] fed by the reading thread.
/// Dropping it stops the thread at its next page.
pub struct Lines {
    rx: Receiver<Result<Vec<u8>, String>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for Lines {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(Ok(v)) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(std::io::Error::other(e)),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Opens the lines of `table` whose `time` lies in `[from, to)` (a bound of `None`: open),
/// in chain order. Returns once the query runs, or says why it cannot (PostgreSQL's words).
pub fn lines(
    conn: &str,
    table: &str,
    from: Option<OffsetDateTime>,
    to: Option<OffsetDateTime>,
) -> Result<Lines, String> {
    let name = store_name(table);
    let (sql, params) = select(table, from, to)?;
    let config = pg_config(conn).map_err(|e| format!("{name}: {e}"))?;
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), String>>(1);
    let (tx, rx) = mpsc::sync_channel(4);
    let n = name.clone();
    std::thread::Builder::new()
        .name("bordergate-audit-read".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(format!("cannot start the runtime: {e}")));
                    return;
                }
            };
            rt.block_on(stream(&config, &sql, &params, &n, ready_tx, tx));
        })
        .map_err(|e| format!("{name}: cannot start the reader: {e}"))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(Lines {
            rx,
            cur: Vec::new(),
            pos: 0,
        }),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!("{name}: the reader stopped")),
    }
}

/// The reading thread: connects, opens the portal, then sends pages of lines until the
/// table ends, the reader is dropped, or PostgreSQL fails.
async fn stream(
    config: &tokio_postgres::Config,
    sql: &str,
    params: &[String],
    name: &str,
    ready: SyncSender<Result<(), String>>,
    tx: SyncSender<Result<Vec<u8>, String>>,
) {
    let (mut client, connection) = match config.connect(NoTls).await {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("{name}: cannot connect: {}", pg_error(&e))));
            return;
        }
    };
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %pg_error(&e), "postgres audit reader connection closed");
        }
    });
    let fail = |e: tokio_postgres::Error| format!("cannot read {name}: {}", pg_error(&e));
    // One snapshot for the whole read: rows committed meanwhile are not half-seen.
    let txn = match client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let _ = ready.send(Err(fail(e)));
            return;
        }
    };
    let portal = match txn.bind_raw(sql, params.iter().map(String::as_str)).await {
        Ok(p) => p,
        Err(e) => {
            let _ = ready.send(Err(fail(e)));
            return;
        }
    };
    if ready.send(Ok(())).is_err() {
        return;
    }
    let mut chunk = Vec::with_capacity(CHUNK);
    loop {
        let rows = match txn.query_portal(&portal, PAGE_ROWS).await {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.send(Err(fail(e)));
                return;
            }
        };
        let last_page = rows.len() < PAGE_ROWS as usize;
        for r in &rows {
            let line: &str = match r.try_get(0) {
                Ok(l) => l,
                Err(e) => {
                    let _ = tx.send(Err(fail(e)));
                    return;
                }
            };
            chunk.extend_from_slice(line.as_bytes());
            chunk.push(b'\n');
            if chunk.len() >= CHUNK && tx.send(Ok(std::mem::take(&mut chunk))).is_err() {
                return;
            }
        }
        if last_page {
            break;
        }
    }
    if !chunk.is_empty() {
        let _ = tx.send(Ok(chunk));
    }
    let _ = txn.commit().await;
}

/// Verifies the whole store with [`super::dump::verify_postgres`] (on a thread of its own,
/// so any runtime may call it) and gives the answer as the file verifier's [`LogReport`]:
/// one "file", the store, and every problem as damage in it. A store that cannot be read is
/// reported as `unreadable`, as a missing file is.
pub fn verify_report(conn: &str, table: &str) -> LogReport {
    let name = store_name(table);
    let (c, t) = (conn.to_owned(), table.to_owned());
    let result = std::thread::Builder::new()
        .name("bordergate-audit-verify".into())
        .spawn(move || super::dump::verify_postgres(&c, &t))
        .map_err(|e| format!("cannot start the verifier: {e}"))
        .and_then(|h| h.join().map_err(|_| "the verifier failed".to_owned()))
        .and_then(|r| r);
    let rep = match result {
        Ok(r) => r,
        Err(e) => {
            return LogReport {
                damage: vec![Damage {
                    kind: crate::audit::verify::ProblemKind::Unreadable,
                    file: name,
                    line: 0,
                    seq: None,
                    message: e,
                }],
                ..LogReport::default()
            };
        }
    };
    let damage = |p: &Problem| Damage {
        kind: p.kind,
        file: name.clone(),
        line: p.line,
        seq: p.seq,
        message: p.message.clone(),
    };
    // One "file" per replica chain; the first seq and the last hash are a chain's, so they
    // are given only when the store holds one chain.
    let one = (rep.chains.len() == 1).then(|| &rep.chains[0].report);
    LogReport {
        files: rep
            .chains
            .iter()
            .map(|c| (format!("{name} chain `{}`", c.chain), c.report.records))
            .collect(),
        records: rep.records(),
        first_seq: (rep.records() > 0).then_some(1),
        last_seq: one.and_then(|r| r.last_seq),
        last_hash: one.and_then(|r| r.last_hash.clone()),
        damage: rep
            .all_problems()
            .into_iter()
            .map(|(chain, p)| {
                let mut d = damage(p);
                if let Some(c) = chain {
                    d.message = format!("chain `{c}`: {}", d.message);
                }
                d
            })
            .collect(),
        ..LogReport::default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_start_bound_goes_into_sql_widened_and_the_table_name_is_checked() {
        let (sql, p) = select("t1", None, None).unwrap();
        assert!(sql.starts_with("SELECT u.l FROM t1_batches b"), "{sql}");
        assert!(
            sql.ends_with("ORDER BY b.committed, b.chain, b.first, u.o"),
            "{sql}"
        );
        assert!(p.is_empty());
        let from = crate::audit::query::parse_bound("2025-03-01", false).unwrap();
        let to = crate::audit::query::parse_bound("2025-03-31", true).unwrap();
        let (sql, p) = select("t1", Some(from), Some(to)).unwrap();
        assert!(
            sql.contains("WHERE b.committed >= CAST($1::text AS timestamptz)"),
            "{sql}"
        );
        assert_eq!(p, ["2025-02-28T23:59:59.999Z"]);
        // A record made before `to` may be committed after it: `to` does not bound the scan.
        let (sql, p) = select("t1", None, Some(to)).unwrap();
        assert!(!sql.contains("WHERE"), "{sql}");
        assert!(p.is_empty());
        assert!(select("t; DROP TABLE x", None, None).is_err());
    }

    #[test]
    fn an_unreadable_store_is_reported_as_damage() {
        let r = verify_report("host=127.0.0.1 port=1 connect_timeout=2", "t1");
        assert!(!r.is_ok());
        assert_eq!(
            r.damage[0].kind,
            crate::audit::verify::ProblemKind::Unreadable
        );
        assert_eq!(r.damage[0].file, "postgres table `t1`");
    }
}
