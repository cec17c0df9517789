//! Reading the PostgreSQL store back: `audit verify --postgres` (the whole chain, streamed
//! through the file verifier) and `audit export` (the rows as a JSON Lines log).

use std::fmt;
use std::io::{BufReader, Read, Write};
use std::sync::mpsc;

use futures_util::TryStreamExt;

use super::schema::{self, Sql};
use super::{connect, pg_config};
use crate::audit::verify::{Problem, ProblemKind, VerifyReport, verify_reader};

/// What `audit verify --postgres` found: the chain of the `line` column, and whether the
/// copied columns and the chain head agree with it.
#[derive(Clone, Debug)]
pub struct PgVerifyReport {
    pub table: String,
    pub chain: VerifyReport,
    /// Rows whose `seq`, `prev` or `hash` column differs from their line, and a chain head
    /// that does not match the last row.
    pub problems: Vec<Problem>,
}

impl PgVerifyReport {
    pub fn is_ok(&self) -> bool {
        self.chain.is_ok() && self.problems.is_empty()
    }
}

impl fmt::Display for PgVerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "postgres table `{}`: {}", self.table, self.chain)?;
        for p in &self.problems {
            writeln!(f, "FAILED: {p}")?;
        }
        Ok(())
    }
}

/// Most column problems listed.
const MAX_PROBLEMS: usize = 20;

/// Feeds the verifier thread from the row stream.
struct ChanReader {
    rx: mpsc::Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

impl Read for ChanReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.pos >= self.cur.len() {
            match self.rx.recv() {
                Ok(v) => {
                    self.cur = v;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.cur.len() - self.pos);
        out[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// Called with `(seq, prev, hash, line)` for each row.
type RowFn<'a> = dyn FnMut(i64, &str, &str, &str) -> Result<(), String> + Send + 'a;

/// Streams every row of `table` in `seq` order to `each(seq, prev, hash, line)`, then
/// returns the chain head row.
async fn stream_rows(
    conn: &str,
    table: &str,
    each: &mut RowFn<'_>,
) -> Result<(i64, String), String> {
    let sql = Sql::new(table)?;
    let client = connect(&pg_config(conn)?).await?;
    let err = |e: tokio_postgres::Error| format!("cannot read `{table}`: {e}");
    // One snapshot for the rows and the head.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(err)?;
    let head = client.query_one(&sql.read_head(), &[]).await.map_err(err)?;
    let head = (head.get::<_, i64>(0), head.get::<_, String>(1));
    let rows = client
        .query_raw(&sql.all(), std::iter::empty::<i64>())
        .await
        .map_err(err)?;
    let mut rows = std::pin::pin!(rows);
    while let Some(r) = rows.try_next().await.map_err(err)? {
        each(r.get(0), r.get(1), r.get(2), r.get(3))?;
    }
    let _ = client.batch_execute("COMMIT").await;
    Ok(head)
}

/// Calls `each` with the line of every decision and completion record of `table` from
/// `since` (RFC 3339) on, in `seq` order, streaming; returns how many. Used at start-up on
/// the gateway's own runtime (the lineage index), so it is async.
pub async fn for_each_line_since(
    conn: &str,
    table: &str,
    since: &str,
    each: &mut (dyn FnMut(&str) + Send),
) -> Result<u64, String> {
    let sql = Sql::new(table)?;
    let client = connect(&pg_config(conn)?).await?;
    let err = |e: tokio_postgres::Error| format!("cannot read `{table}`: {e}");
    let rows = client
        .query_raw(&sql.decisions_since(), std::iter::once(since))
        .await
        .map_err(err)?;
    let mut rows = std::pin::pin!(rows);
    let mut n = 0u64;
    while let Some(r) = rows.try_next().await.map_err(err)? {
        each(r.get::<_, &str>(0));
        n += 1;
    }
    Ok(n)
}

/// Checks the whole chain stored in `table`: every line's hash and link (by the file
/// verifier, so gaps and modified rows are named by seq), the copied columns, and the head.
pub fn verify_postgres(conn: &str, table: &str) -> Result<PgVerifyReport, String> {
    let rt = runtime()?;
    let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(64);
    let verifier = std::thread::spawn(move || {
        let reader = ChanReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        };
        verify_reader(BufReader::with_capacity(1 << 16, reader))
    });
    let mut problems = Vec::new();
    let mut last: Option<(i64, String)> = None;
    let mut chunk = Vec::with_capacity(1 << 16);
    let streamed = rt.block_on(stream_rows(conn, table, &mut |seq, prev, hash, line| {
        if problems.len() < MAX_PROBLEMS
            && let Some(p) = column_problem(seq, prev, hash, line)
        {
            problems.push(p);
        }
        chunk.extend_from_slice(line.as_bytes());
        chunk.push(b'\n');
        if chunk.len() >= 1 << 16 {
            tx.send(std::mem::take(&mut chunk))
                .map_err(|_| "the verifier stopped".to_owned())?;
        }
        last = Some((seq, hash.to_owned()));
        Ok(())
    }));
    if !chunk.is_empty() {
        let _ = tx.send(chunk);
    }
    drop(tx);
    let chain = verifier
        .join()
        .map_err(|_| "the verifier failed".to_owned())?;
    let (head_seq, head_hash) = streamed?;
    let head_ok = match &last {
        None => head_seq == 0,
        Some((s, h)) => *s == head_seq && *h == head_hash,
    };
    if !head_ok {
        let ends = last.as_ref().map_or(0, |(s, _)| *s);
        problems.push(Problem {
            kind: if ends < head_seq {
                ProblemKind::Missing
            } else {
                ProblemKind::Modified
            },
            line: 0,
            seq: u64::try_from(head_seq).ok(),
            message: format!(
                "the chain head `{table}_head` says seq {head_seq} but the table ends at seq {ends}"
            ),
        });
    }
    Ok(PgVerifyReport {
        table: table.to_owned(),
        chain,
        problems,
    })
}

/// A row whose copied chain columns differ from its line.
fn column_problem(seq: i64, prev: &str, hash: &str, line: &str) -> Option<Problem> {
    let h = crate::audit::line::read_head(line.as_bytes()).ok()?;
    let same = u64::try_from(seq).ok() == Some(h.seq)
        && schema::decode_hash(prev) == Some(h.prev)
        && schema::decode_hash(hash) == Some(h.hash);
    (!same).then(|| Problem {
        kind: ProblemKind::Modified,
        line: 0,
        seq: u64::try_from(seq).ok(),
        message: format!("row seq {seq}: its `seq`, `prev` or `hash` column differs from its line"),
    })
}

/// Writes every line of `table` in `seq` order to `out` (a JSON Lines log every file tool
/// reads); returns how many.
pub fn export_postgres(
    conn: &str,
    table: &str,
    out: &mut (dyn Write + Send),
) -> Result<u64, String> {
    let rt = runtime()?;
    let mut n = 0u64;
    rt.block_on(stream_rows(conn, table, &mut |_, _, _, line| {
        out.write_all(line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| format!("cannot write: {e}"))?;
        n += 1;
        Ok(())
    }))?;
    out.flush().map_err(|e| format!("cannot write: {e}"))?;
    Ok(n)
}
