//! Reading the PostgreSQL store back: `audit verify --postgres` (every replica's chain,
//! streamed through the file verifier, against the recorded heads, the signed checkpoints
//! and the receipts clients kept) and `audit export` (the rows as JSON Lines).

use std::collections::HashMap;
use std::fmt;
use std::io::{BufReader, Read, Write};
use std::sync::mpsc;

use futures_util::TryStreamExt;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::schema::{self, Sql};
use super::{connect, pg_config, pg_error};
use crate::audit::checkpoint::{Checkpoint, PublicKey};
use crate::audit::verify::{Problem, ProblemKind, VerifyReport, verify_reader};

/// What `audit verify --postgres` checks besides the chains themselves.
#[derive(Clone, Debug, Default)]
pub struct PgVerifyOptions {
    /// Check every checkpoint's signature with this key, and require one on every chain.
    pub pubkey: Option<PublicKey>,
    /// Receipts clients kept: `(chain, seq, hash)`; a receipt without a chain matches any.
    pub receipts: Vec<(Option<String>, u64, String)>,
}

/// One replica's chain.
#[derive(Clone, Debug)]
pub struct ChainReport {
    pub chain: String,
    pub report: VerifyReport,
    pub checkpoints: u64,
}

/// What `audit verify --postgres` found.
#[derive(Clone, Debug)]
pub struct PgVerifyReport {
    pub table: String,
    pub chains: Vec<ChainReport>,
    /// Problems outside a chain's own links: copied columns that differ from their line,
    /// recorded heads the chain no longer reaches, bad checkpoints, missing receipts.
    pub problems: Vec<Problem>,
    pub receipts_checked: usize,
}

impl PgVerifyReport {
    pub fn is_ok(&self) -> bool {
        self.chains.iter().all(|c| c.report.is_ok()) && self.problems.is_empty()
    }

    /// Records that chain correctly, over every chain.
    pub fn records(&self) -> u64 {
        self.chains.iter().map(|c| c.report.records).sum()
    }

    /// Every problem: the chains' first breaks, then the others.
    pub fn all_problems(&self) -> Vec<(Option<&str>, &Problem)> {
        self.chains
            .iter()
            .filter_map(|c| {
                c.report
                    .problem
                    .as_ref()
                    .map(|p| (Some(c.chain.as_str()), p))
            })
            .chain(self.problems.iter().map(|p| (None, p)))
            .collect()
    }
}

impl fmt::Display for PgVerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.is_ok() { "ok" } else { "FAILED" };
        writeln!(
            f,
            "postgres table `{}`: {verdict}: {} chain(s), {} records",
            self.table,
            self.chains.len(),
            self.records()
        )?;
        for c in &self.chains {
            writeln!(f, "  chain `{}`: {}", c.chain, c.report)?;
            if c.checkpoints > 0 {
                writeln!(f, "    checkpoints: {}", c.checkpoints)?;
            }
        }
        if self.receipts_checked > 0 {
            writeln!(f, "  receipts checked: {}", self.receipts_checked)?;
        }
        for p in &self.problems {
            writeln!(f, "FAILED: {p}")?;
        }
        Ok(())
    }
}

/// Most non-chain problems listed.
const MAX_PROBLEMS: usize = 50;

/// Feeds a verifier thread from the row stream.
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

/// One row as read.
struct Row<'a> {
    chain: &'a str,
    seq: i64,
    prev: &'a str,
    hash: &'a str,
    line: &'a str,
}

/// Called for each row, chain by chain in `seq` order.
type RowFn<'a> = dyn FnMut(Row<'_>) -> Result<(), String> + Send + 'a;

/// A chain's name and its last row (seq, hash).
type ChainEnd = (String, Option<(i64, String)>);

/// Receipts wanted at one seq: (chain, hash, found).
type Wanted<'a> = HashMap<u64, Vec<(Option<&'a str>, &'a str, bool)>>;

/// A chain's recorded heads, oldest first.
type Heads = HashMap<String, Vec<(i64, String)>>;

/// Streams every row of `table` to `each`, in one snapshot with the recorded heads, which
/// it returns.
async fn stream_rows(conn: &str, table: &str, each: &mut RowFn<'_>) -> Result<Heads, String> {
    let sql = Sql::new(table)?;
    let client = connect(&pg_config(conn)?).await?;
    let err = |e: tokio_postgres::Error| format!("cannot read `{table}`: {}", pg_error(&e));
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL statement_timeout = 0",
        )
        .await
        .map_err(err)?;
    let mut heads: Heads = HashMap::new();
    let hrows = client
        .query_raw(&sql.all_heads(), std::iter::empty::<i64>())
        .await
        .map_err(err)?;
    let mut hrows = std::pin::pin!(hrows);
    while let Some(r) = hrows.try_next().await.map_err(err)? {
        heads
            .entry(r.get::<_, String>(0))
            .or_default()
            .push((r.get(1), r.get(2)));
    }
    let rows = client
        .query_raw(&sql.all(), std::iter::empty::<i64>())
        .await
        .map_err(err)?;
    let mut rows = std::pin::pin!(rows);
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let line: &str = r.get(2);
        // The link and hash as the line states them (a line that states none is reported
        // by the verifier as malformed).
        let (prev, hash) = crate::audit::line::read_head(line.as_bytes())
            .map(|h| (hex::encode(h.prev), hex::encode(h.hash)))
            .unwrap_or_default();
        each(Row {
            chain: r.get(0),
            seq: r.get(1),
            prev: &prev,
            hash: &hash,
            line,
        })?;
    }
    let _ = client.batch_execute("COMMIT").await;
    Ok(heads)
}

/// Calls `each` with the line of every decision and completion record of `table` from
/// `since` (RFC 3339) on, oldest first, streaming; returns how many. Used at start-up on
/// the gateway's own runtime (the lineage index), so it is async.
pub async fn for_each_line_since(
    conn: &str,
    table: &str,
    since: &str,
    each: &mut (dyn FnMut(&str) + Send),
) -> Result<u64, String> {
    let sql = Sql::new(table)?;
    let client = connect(&pg_config(conn)?).await?;
    let err = |e: tokio_postgres::Error| format!("cannot read `{table}`: {}", pg_error(&e));
    let rows = client
        .query_raw(&sql.lines_since(), std::iter::once(since))
        .await
        .map_err(err)?;
    let since = OffsetDateTime::parse(since, &Rfc3339)
        .map_err(|e| format!("`{since}` is not an RFC 3339 time: {e}"))?;
    let mut rows = std::pin::pin!(rows);
    let mut n = 0u64;
    while let Some(r) = rows.try_next().await.map_err(err)? {
        let line = r.get::<_, &str>(0);
        if decision_or_completion_since(line, since) {
            each(line);
            n += 1;
        }
    }
    Ok(n)
}

/// True for the line of a decision or completion made at `since` or later (batches hold
/// every kind of record, and a batch committed after `since` may hold older ones).
fn decision_or_completion_since(line: &str, since: OffsetDateTime) -> bool {
    #[derive(serde::Deserialize)]
    struct KindTime<'a> {
        #[serde(borrow)]
        kind: &'a str,
        #[serde(borrow)]
        time: Option<&'a str>,
    }
    let Ok(r) = serde_json::from_str::<KindTime<'_>>(line) else {
        return false;
    };
    matches!(r.kind, "decision" | "completion")
        && r.time
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .is_some_and(|t| t >= since)
}

/// A verifier thread for one chain.
struct Verifier {
    chain: String,
    tx: mpsc::SyncSender<Vec<u8>>,
    chunk: Vec<u8>,
    thread: std::thread::JoinHandle<VerifyReport>,
    /// Seq and hash of the last row read, from its columns.
    last: Option<(i64, String)>,
    checkpoints: u64,
}

impl Verifier {
    fn start(chain: &str) -> Verifier {
        let (tx, rx) = mpsc::sync_channel::<Vec<u8>>(64);
        let thread = std::thread::spawn(move || {
            let reader = ChanReader {
                rx,
                cur: Vec::new(),
                pos: 0,
            };
            verify_reader(BufReader::with_capacity(1 << 16, reader))
        });
        Verifier {
            chain: chain.to_owned(),
            tx,
            chunk: Vec::with_capacity(1 << 16),
            thread,
            last: None,
            checkpoints: 0,
        }
    }

    fn push(&mut self, line: &str) -> Result<(), String> {
        self.chunk.extend_from_slice(line.as_bytes());
        self.chunk.push(b'\n');
        if self.chunk.len() >= 1 << 16 {
            self.tx
                .send(std::mem::take(&mut self.chunk))
                .map_err(|_| "the verifier stopped".to_owned())?;
        }
        Ok(())
    }

    fn finish(self) -> Result<(ChainReport, Option<(i64, String)>), String> {
        if !self.chunk.is_empty() {
            let _ = self.tx.send(self.chunk);
        }
        drop(self.tx);
        let report = self
            .thread
            .join()
            .map_err(|_| "the verifier failed".to_owned())?;
        Ok((
            ChainReport {
                chain: self.chain,
                report,
                checkpoints: self.checkpoints,
            },
            self.last,
        ))
    }
}

fn problem(kind: ProblemKind, seq: Option<i64>, message: String) -> Problem {
    Problem {
        kind,
        line: 0,
        seq: seq.and_then(|s| u64::try_from(s).ok()),
        message,
    }
}

/// Checks every chain stored in `table`: each line's hash and link (by the file verifier,
/// so gaps and modified rows are named by seq), the copied columns, the recorded heads.
pub fn verify_postgres(conn: &str, table: &str) -> Result<PgVerifyReport, String> {
    verify_postgres_with(conn, table, &PgVerifyOptions::default())
}

/// [`verify_postgres`], also checking checkpoint signatures and receipts as `opts` asks.
pub fn verify_postgres_with(
    conn: &str,
    table: &str,
    opts: &PgVerifyOptions,
) -> Result<PgVerifyReport, String> {
    let rt = runtime()?;
    let mut problems: Vec<Problem> = Vec::new();
    let mut chains: Vec<ChainReport> = Vec::new();
    let mut ends: Vec<ChainEnd> = Vec::new();
    let mut cur: Option<Verifier> = None;
    // Receipts by (seq, hash): found when a row matches.
    let mut wanted: Wanted<'_> = HashMap::new();
    for (c, s, h) in &opts.receipts {
        wanted
            .entry(*s)
            .or_default()
            .push((c.as_deref(), h.as_str(), false));
    }
    let note = |problems: &mut Vec<Problem>, p: Problem| {
        if problems.len() < MAX_PROBLEMS {
            problems.push(p);
        }
    };
    let streamed = rt.block_on(stream_rows(conn, table, &mut |r: Row<'_>| {
        if cur.as_ref().is_none_or(|v| v.chain != r.chain) {
            if let Some(v) = cur.take() {
                let (rep, last) = v.finish()?;
                ends.push((rep.chain.clone(), last));
                chains.push(rep);
            }
            cur = Some(Verifier::start(r.chain));
        }
        let Some(v) = cur.as_mut() else {
            return Err("no verifier".into());
        };
        if let Some(p) = column_problem(r.seq, r.prev, r.hash, r.line) {
            note(
                &mut problems,
                problem(
                    ProblemKind::Modified,
                    Some(r.seq),
                    format!("chain `{}` row seq {}: {p}", r.chain, r.seq),
                ),
            );
        }
        if r.line.contains("\"kind\":\"checkpoint\"") {
            v.checkpoints += 1;
            if let Some(key) = &opts.pubkey
                && let Err(e) = check_checkpoint(key, r.line, r.seq, r.prev)
            {
                note(
                    &mut problems,
                    problem(
                        ProblemKind::BadCheckpointSignature,
                        Some(r.seq),
                        format!("chain `{}` checkpoint at seq {}: {e}", r.chain, r.seq),
                    ),
                );
            }
        }
        if let Some(list) = u64::try_from(r.seq).ok().and_then(|s| wanted.get_mut(&s)) {
            for (chain, hash, found) in list.iter_mut() {
                if chain.is_none_or(|c| c == r.chain) && *hash == r.hash {
                    *found = true;
                }
            }
        }
        v.last = Some((r.seq, r.hash.to_owned()));
        v.push(r.line)
    }));
    if let Some(v) = cur.take() {
        let (rep, last) = v.finish()?;
        ends.push((rep.chain.clone(), last));
        chains.push(rep);
    }
    let heads = streamed?;
    // Every chain must reach the newest head recorded for it, and a chain with heads but
    // no rows was removed.
    for (chain, last) in &ends {
        let Some(hs) = heads.get(chain) else {
            continue;
        };
        if let (Some((hseq, hhash)), Some((seq, hash))) = (hs.last(), last) {
            if hseq > seq {
                note(
                    &mut problems,
                    problem(
                        ProblemKind::Missing,
                        Some(*hseq),
                        format!(
                            "chain `{chain}` ends at seq {seq} but a committed batch ended it at seq {hseq}: the newest {} record(s) were deleted",
                            hseq - seq
                        ),
                    ),
                );
            } else if hseq == seq && hhash != hash {
                note(
                    &mut problems,
                    problem(
                        ProblemKind::Modified,
                        Some(*hseq),
                        format!("chain `{chain}` seq {seq} is not the record its batch committed"),
                    ),
                );
            }
        }
    }
    for (chain, hs) in &heads {
        if !ends.iter().any(|(c, _)| c == chain)
            && let Some((hseq, _)) = hs.last()
        {
            note(
                &mut problems,
                problem(
                    ProblemKind::Missing,
                    Some(*hseq),
                    format!(
                        "chain `{chain}` has no rows but committed batches up to seq {hseq}: it was deleted"
                    ),
                ),
            );
        }
    }
    if let Some(key) = &opts.pubkey {
        for c in &chains {
            if c.checkpoints == 0 && c.report.records > 0 {
                note(
                    &mut problems,
                    problem(
                        ProblemKind::BadCheckpointSignature,
                        None,
                        format!(
                            "chain `{}` has no checkpoint signed by key `{}`",
                            c.chain, key.id
                        ),
                    ),
                );
            }
        }
    }
    let mut receipts_checked = 0;
    for (seq, list) in &wanted {
        for (chain, hash, found) in list {
            receipts_checked += 1;
            if !found {
                let on = chain
                    .map(|c| format!(" of chain `{c}`"))
                    .unwrap_or_default();
                note(
                    &mut problems,
                    problem(
                        ProblemKind::MissingReceipt,
                        i64::try_from(*seq).ok(),
                        format!("the receipt for seq {seq}{on} (hash {hash}) matches no record"),
                    ),
                );
            }
        }
    }
    Ok(PgVerifyReport {
        table: table.to_owned(),
        chains,
        problems,
        receipts_checked,
    })
}

/// A checkpoint row: signed by `key`, covering the record before it.
fn check_checkpoint(key: &PublicKey, line: &str, seq: i64, prev: &str) -> Result<(), String> {
    let cp: Checkpoint =
        serde_json::from_str(line).map_err(|e| format!("unreadable checkpoint: {e}"))?;
    key.check(&cp)?;
    if i64::try_from(cp.covers_seq).ok() != Some(seq - 1) || cp.covers_hash != prev {
        return Err(format!(
            "it covers seq {} but follows seq {}",
            cp.covers_seq,
            seq - 1
        ));
    }
    Ok(())
}

/// Why a row's copied chain columns differ from its line.
fn column_problem(seq: i64, prev: &str, hash: &str, line: &str) -> Option<String> {
    let h = crate::audit::line::read_head(line.as_bytes()).ok()?;
    let same = u64::try_from(seq).ok() == Some(h.seq)
        && schema::decode_hash(prev) == Some(h.prev)
        && schema::decode_hash(hash) == Some(h.hash);
    (!same).then(|| "its `seq`, `prev` or `hash` column differs from its line".to_owned())
}

/// Writes every line of `table`, chain by chain in `seq` order, to `out` (a JSON Lines log
/// every file tool reads); returns how many.
pub fn export_postgres(
    conn: &str,
    table: &str,
    out: &mut (dyn Write + Send),
) -> Result<u64, String> {
    let rt = runtime()?;
    let mut n = 0u64;
    rt.block_on(stream_rows(conn, table, &mut |r: Row<'_>| {
        out.write_all(r.line.as_bytes())
            .and_then(|_| out.write_all(b"\n"))
            .map_err(|e| format!("cannot write: {e}"))?;
        n += 1;
        Ok(())
    }))?;
    out.flush().map_err(|e| format!("cannot write: {e}"))?;
    Ok(n)
}

/// Creates or upgrades the store (`bordergate audit migrate`), granting `grant` SELECT and
/// INSERT only. Returns the schema version now applied.
pub fn migrate(conn: &str, table: &str, grant: Option<&str>) -> Result<i32, String> {
    if let Some(role) = grant
        && (role.is_empty()
            || !role
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(format!(
            "`{role}` is not a role name this command accepts (letters, digits, `_`, `-`)"
        ));
    }
    let rt = runtime()?;
    let sql = Sql::new(table)?;
    rt.block_on(async {
        let mut client = connect(&pg_config(conn)?).await?;
        schema::migrate_with(&mut client, &sql, grant)
            .await
            .map_err(|e| format!("cannot migrate `{table}`: {e}"))?;
        let v = schema::schema_version(&client, &sql)
            .await
            .map_err(|e| pg_error(&e))?;
        Ok(v.unwrap_or_default())
    })
}
