//! The PostgreSQL sink (`audit.sink: postgres`): the group-commit writer that appends
//! batches of chained records to a table shared by a fleet of gateways.
//!
//! Every replica writes its own hash chain (the `chain` column holds its name), so replicas
//! never wait for each other: a batch is one `INSERT` statement that adds one row holding
//! the batch's lines (`<table>_batches`) and the chain's new head (`<table>_heads`)
//! atomically, committed with `synchronous_commit = on` before any waiter learns its
//! receipt. The replica holds a session advisory lock on its chain, so a second process
//! under the same name is refused. Lines are byte for byte what the file sink writes (see
//! [`crate::audit::line`]), without their newline; the `<table>` view shows them one row
//! per record (see [`schema`]).
//!
//! Every wait is bounded: connect timeout, TCP keepalives on both ends, `statement_timeout`,
//! `lock_timeout`, `idle_in_transaction_session_timeout`, and a deadline per batch. While
//! the database is unreachable, appends that wait fail with [`AuditError::Unavailable`]
//! (the gateway answers 503), records nobody waits for (completions, events) are kept and
//! retried until durable, and the writer probes the database on its own so readiness
//! returns without traffic. A replica can start while the database is down.

pub mod dump;
pub(crate) mod error;
pub mod read;
pub(crate) mod schema;
mod spool;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Statement};

use super::AuditError;
use super::checkpoint::Signer;
use super::line::{HASH_LEN, encode_line};
use super::writer::{self, Msg, Pending, STOPPED, Shared};
use schema::{ChainHead, Sql, Unready};

pub(crate) use error::pg_error;

/// Parses a connection string (URL or `key=value`) and sets bordergate's defaults: a
/// connect timeout, TCP keepalives and a user timeout, so a dead peer is noticed in seconds.
pub(crate) fn pg_config(conn: &str) -> Result<tokio_postgres::Config, String> {
    let mut c = tokio_postgres::Config::from_str(conn)
        .map_err(|e| format!("invalid postgres connection string: {e}"))?;
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(5));
    }
    if c.get_application_name().is_none() {
        c.application_name("bordergate");
    }
    c.keepalives(true)
        .keepalives_idle(Duration::from_secs(10))
        .keepalives_interval(Duration::from_secs(5))
        .keepalives_retries(3);
    if c.get_tcp_user_timeout().is_none() {
        c.tcp_user_timeout(Duration::from_secs(20));
    }
    Ok(c)
}

/// Session settings of every gateway connection: durable commits, and no wait unbounded
/// (the server also probes us, so a vanished gateway's session and locks go in seconds).
const SESSION: &str = "SET synchronous_commit = on;
SET lock_timeout = '2s';
SET statement_timeout = '10s';
SET idle_in_transaction_session_timeout = '10s';
SET tcp_keepalives_idle = 10;
SET tcp_keepalives_interval = 5;
SET tcp_keepalives_count = 3;";

/// Connects and drives the connection on the current runtime.
pub(crate) async fn connect(c: &tokio_postgres::Config) -> Result<Client, String> {
    let (client, conn) = c
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to postgres: {}", pg_error(&e)))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %pg_error(&e), "postgres audit connection closed");
        }
    });
    client
        .batch_execute(SESSION)
        .await
        .map_err(|e| format!("cannot configure the postgres session: {}", pg_error(&e)))?;
    // PostgreSQL 14+: notice a vanished client even during a statement.
    let _ = client
        .batch_execute("SET client_connection_check_interval = '5s'")
        .await;
    Ok(client)
}

/// True when the database at `conn` accepts a connection and answers (within 5 s): tells
/// an outage from a trail that cannot be read for another reason.
pub async fn reachable(conn: &str) -> bool {
    let Ok(c) = pg_config(conn) else {
        return false;
    };
    let probe = async {
        let client = connect(&c).await.ok()?;
        client.simple_query("SELECT 1").await.ok()
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), probe).await,
        Ok(Some(_))
    )
}

/// A connection with the writer's statement prepared and the chain's lock held.
struct Conn {
    client: Client,
    insert: Statement,
}

/// One batch: its lines in seq order and their hashes (hex, for the receipts).
#[derive(Default)]
struct Rows {
    /// The seq of the first line (0: no line yet).
    first: u64,
    hash: Vec<String>,
    line: Vec<String>,
}

impl Rows {
    fn push(
        &mut self,
        seq: u64,
        prev: &[u8; HASH_LEN],
        json: &[u8],
    ) -> Result<[u8; HASH_LEN], String> {
        let mut buf = Vec::with_capacity(json.len() + 200);
        let hash = encode_line(&mut buf, seq, prev, json);
        buf.pop();
        let line = String::from_utf8(buf).map_err(|_| "the record is not UTF-8".to_owned())?;
        self.push_built(seq, &hash, line);
        Ok(hash)
    }

    /// A line already chained (from the spool).
    fn push_line(&mut self, line: String) -> Result<ChainHead, String> {
        let h = super::line::read_head(line.as_bytes())?;
        self.push_built(h.seq, &h.hash, line);
        Ok(ChainHead {
            seq: h.seq,
            hash: h.hash,
        })
    }

    fn push_built(&mut self, seq: u64, hash: &[u8; HASH_LEN], line: String) {
        if self.line.is_empty() {
            self.first = seq;
        }
        self.hash.push(hex::encode(hash));
        self.line.push(line);
    }

    fn len(&self) -> usize {
        self.line.len()
    }
}

/// How a replica writes to the store.
#[derive(Clone, Debug)]
pub struct PgOptions {
    pub conn: String,
    pub table: String,
    /// This replica's chain: its name.
    pub chain: String,
    pub batch_max: usize,
    /// Create or upgrade the schema when it is missing or old (needs the privileges of
    /// `bordergate audit migrate`); false: refuse to start instead.
    pub migrate: bool,
    /// A batch taking longer than this fails (and its connection is dropped).
    pub timeout: Duration,
    pub signer: Option<Signer>,
    pub checkpoint_every: u64,
    pub checkpoint_interval: Duration,
    pub checkpoint_export: Option<std::path::PathBuf>,
    /// The local spool used while the database does not answer (see [`spool`]).
    pub spool: Option<std::path::PathBuf>,
    /// How long a batch waits for more records after its first before it is written, when
    /// the previous batch had more than one record.
    pub linger: Duration,
    /// The replica members the writer's own records (crash completions, checkpoints) get,
    /// as every other record of the log (see [`crate::audit::Stamp`]).
    pub stamp: Vec<u8>,
}

impl PgOptions {
    pub fn new(conn: &str, table: &str, chain: &str) -> PgOptions {
        PgOptions {
            conn: conn.to_owned(),
            table: table.to_owned(),
            chain: chain.to_owned(),
            batch_max: 512,
            migrate: true,
            timeout: Duration::from_secs(5),
            signer: None,
            checkpoint_every: 10_000,
            checkpoint_interval: Duration::from_secs(60),
            checkpoint_export: None,
            linger: Duration::from_micros(300),
            spool: None,
            stamp: Vec::new(),
        }
    }
}

/// Records nobody waits for that are kept across an outage; beyond this they are dropped
/// (and counted in the service log).
const RETRY_MAX: usize = 100_000;

/// How often the writer probes the database when idle (readiness follows it).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A failed connection attempt is not repeated for this long: appends fail fast meanwhile.
const RECONNECT_AFTER: Duration = Duration::from_millis(500);

/// How long shutdown keeps trying to store the records still queued.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(10);

/// What the start-up found.
pub(crate) enum Started {
    /// The chain is checked; it continues after `head`.
    Ready(ChainHead),
    /// The database did not answer: the replica starts failing closed and connects later.
    Waiting(String),
}

/// The writer thread's state: a current-thread runtime that drives one connection.
pub(crate) struct PgWriter {
    rt: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    sql: Sql,
    opts: PgOptions,
    conn: Option<Conn>,
    /// Where this replica's chain ends; `None` until it was read and checked (after a lost
    /// connection it is read again, and may only have grown), or taken from the spool.
    head: Option<ChainHead>,
    /// The chain's tail was read and checked once (crash recovery done).
    checked: bool,
    spool: Option<spool::Spool>,
    /// Records without a waiter whose batch failed: written first by the next batch.
    retry: Vec<Pending>,
    /// When the last connection attempt failed.
    last_attempt: Option<Instant>,
    last_ok: Instant,
    since_checkpoint: u64,
    last_checkpoint: Instant,
    /// Records in the last batch (see [`PgOptions::linger`]).
    last_batch: usize,
    name: String,
    /// The chain, as receipts name it.
    chain_id: Arc<str>,
    shared: Arc<Shared>,
}

impl PgWriter {
    fn new(opts: PgOptions, shared: Arc<Shared>) -> Result<PgWriter, AuditError> {
        let name = format!("postgres table `{}` chain `{}`", opts.table, opts.chain);
        let unavailable = |e: String| AuditError::Unavailable(format!("{name}: {e}"));
        if opts.chain.is_empty() {
            return Err(unavailable("the replica has no name".into()));
        }
        let config = pg_config(&opts.conn).map_err(unavailable)?;
        let sql = Sql::new(&opts.table).map_err(unavailable)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the runtime: {e}")))?;
        let opts_chain = opts.chain.clone();
        let spool = match &opts.spool {
            Some(p) => Some(spool::Spool::open(p).map_err(unavailable)?),
            None => None,
        };
        // Records spooled before a restart continue the chain where the spool ends.
        let head = spool.as_ref().and_then(spool::Spool::last);
        Ok(PgWriter {
            rt,
            config,
            sql,
            opts,
            conn: None,
            head,
            checked: false,
            spool,
            retry: Vec::new(),
            last_attempt: None,
            last_ok: Instant::now(),
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            last_batch: 0,
            name,
            chain_id: Arc::from(opts_chain.as_str()),
            shared,
        })
    }

    /// Connects, locks the chain and (the first time) checks its tail and queues the
    /// completions of transfers a crash interrupted. `Corrupt` is final.
    fn establish(&mut self) -> Result<(), Unready> {
        if self.conn.is_some() && self.head.is_some() {
            return Ok(());
        }
        self.conn = None;
        let first = !self.checked;
        let (sql, chain, migrate) = (&self.sql, self.opts.chain.as_str(), self.opts.migrate);
        let config = &self.config;
        let deadline = self.opts.timeout.max(Duration::from_secs(5));
        let got = self.rt.block_on(async {
            let work = async {
                let mut client = connect(config).await.map_err(Unready::Unavailable)?;
                let lock = if first {
                    sql.lock_chain()
                } else {
                    sql.wait_chain()
                };
                let locked: bool = match client.query_one(&lock, &[&sql.table, &chain]).await {
                    Ok(r) => r.get(0),
                    // lock_timeout: our previous session still holds it.
                    Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) => false,
                    Err(e) => return Err(Unready::Unavailable(pg_error(&e))),
                };
                if !locked {
                    let msg = format!(
                        "another running gateway writes the chain `{chain}` of `{}`: give every replica its own `name:`",
                        sql.table
                    );
                    // At start this is a configuration error; later, our own vanished
                    // session may still hold the lock for a few seconds.
                    return Err(if first {
                        Unready::Corrupt(msg)
                    } else {
                        Unready::Unavailable(msg)
                    });
                }
                let (head, tail) = schema::prepare(&mut client, sql, chain, migrate).await?;
                let insert = client
                    .prepare(&sql.insert())
                    .await
                    .map_err(|e| Unready::Unavailable(pg_error(&e)))?;
                Ok((Conn { client, insert }, head, tail))
            };
            match tokio::time::timeout(deadline, work).await {
                Ok(r) => r,
                Err(_) => Err(Unready::Unavailable(format!(
                    "no answer within {} s",
                    deadline.as_secs()
                ))),
            }
        });
        let (conn, head, mut tail) =
            got.inspect_err(|_| self.last_attempt = Some(Instant::now()))?;
        self.last_attempt = None;
        self.conn = Some(conn);
        let spooled = self.spool.as_ref().is_some_and(|s| !s.is_empty());
        if spooled {
            if first && let Some(sp) = self.spool.as_mut() {
                let _ = sp.for_each(&mut |l| {
                    tail.push(l.to_owned());
                    Ok(())
                });
            }
            self.head = Some(head);
            if let Err(e) = self.drain_spool(head) {
                self.conn = None;
                self.head = self.spool.as_ref().and_then(spool::Spool::last);
                return Err(e);
            }
        } else if let Some(known) = self.head
            && head.seq < known.seq
        {
            self.conn = None;
            return Err(Unready::Corrupt(format!(
                "the chain ended at seq {} but now ends at seq {}: records were deleted",
                known.seq, head.seq
            )));
        } else {
            self.head = Some(head);
        }
        if first {
            let crashed = super::tail::unfinished_in(tail.iter().map(|l| l.as_bytes()));
            let mut recovered: Vec<Pending> = crashed
                .into_iter()
                .filter_map(|(seq, id)| {
                    let rec = super::crashed_completion(seq, id);
                    super::encode_stamped(&rec, &self.opts.stamp)
                        .ok()
                        .map(|json| Pending { json, done: None })
                })
                .collect();
            recovered.append(&mut self.retry);
            self.retry = recovered;
            self.checked = true;
        }
        Ok(())
    }

    /// Inserts the spooled records the database does not hold yet (the chain in the
    /// database ends at `db`), in order, then empties the spool.
    fn drain_spool(&mut self, db: ChainHead) -> Result<(), Unready> {
        let Some(mut sp) = self.spool.take() else {
            return Ok(());
        };
        let out = self.drain_from(&mut sp, db);
        self.spool = Some(sp);
        out
    }

    fn drain_from(&mut self, sp: &mut spool::Spool, db: ChainHead) -> Result<(), Unready> {
        let name = sp.path().display().to_string();
        let (Some(first), Some(last)) = (sp.first_seq(), sp.last()) else {
            return Ok(());
        };
        if first > db.seq + 1 {
            return Err(Unready::Corrupt(format!(
                "the spool `{name}` starts at seq {first} but the chain in the database ends at seq {}: records between are missing",
                db.seq
            )));
        }
        if db.seq > last.seq {
            return Err(Unready::Corrupt(format!(
                "the chain in the database (seq {}) is ahead of the spool `{name}` (seq {}): another process wrote this chain",
                db.seq, last.seq
            )));
        }
        let corrupt = |m: String| Unready::Corrupt(format!("the spool `{name}` {m}"));
        let mut lines = Vec::new();
        sp.for_each(&mut |l| {
            lines.push(l.to_owned());
            Ok(())
        })
        .map_err(Unready::Unavailable)?;
        let mut head = db;
        let mut rows = Rows::default();
        for l in lines {
            let h = super::line::read_head(l.as_bytes())
                .map_err(|e| corrupt(format!("holds a line that is not a record: {e}")))?;
            if h.seq <= db.seq {
                // Already in the database (drained before a crash): the same record or a fork.
                if h.seq == db.seq && h.hash != db.hash {
                    return Err(corrupt(format!(
                        "differs from the database at seq {}: the chain forked",
                        h.seq
                    )));
                }
                continue;
            }
            if h.seq != head.seq + 1 || h.prev != head.hash {
                return Err(corrupt(format!(
                    "does not continue the chain in the database at seq {}",
                    h.seq
                )));
            }
            head = rows.push_line(l).map_err(Unready::Corrupt)?;
            if rows.len() >= self.opts.batch_max {
                self.exec_rows(&std::mem::take(&mut rows), head)?;
                self.head = Some(head);
            }
        }
        if rows.len() > 0 {
            self.exec_rows(&rows, head)?;
        }
        self.head = Some(head);
        let drained = head.seq - db.seq;
        sp.clear().map_err(Unready::Unavailable)?;
        tracing::info!(log = %self.name, drained, "the spooled audit records are in the database");
        Ok(())
    }

    /// Runs the batch statement for `rows`, which end the chain at `end`.
    fn exec_rows(&mut self, rows: &Rows, end: ChainHead) -> Result<(), Unready> {
        let Some(c) = self.conn.as_ref() else {
            return Err(Unready::Unavailable("not connected".into()));
        };
        let seq = |s: u64| {
            i64::try_from(s).map_err(|_| Unready::Corrupt("the sequence number overflowed".into()))
        };
        let (first, last) = (seq(rows.first)?, seq(end.seq)?);
        let last_hash = hex::encode(end.hash);
        // The writer's clock: no record of the batch is newer (readers bound time with it).
        let committed = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .map_err(|e| Unready::Corrupt(format!("cannot format the time: {e}")))?;
        let chain = self.opts.chain.as_str();
        let timeout = self.opts.timeout;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] =
            [&chain, &first, &last, &committed, &rows.line, &last_hash];
        let done = self.rt.block_on(async {
            let exec = c.client.execute(&c.insert, &params);
            match tokio::time::timeout(timeout, exec).await {
                Ok(Ok(1)) => Ok(()),
                Ok(Ok(_)) => Err(None),
                Ok(Err(e)) => Err(Some(pg_error(&e))),
                Err(_) => Err(Some(format!(
                    "no answer within {} ms (the batch may or may not be stored)",
                    timeout.as_millis()
                ))),
            }
        });
        done.map_err(|e| {
            // Read the chain's end again on the next connection.
            self.conn = None;
            match e {
                Some(e) => Unready::Unavailable(e),
                None => Unready::Corrupt(format!(
                    "the chain `{chain}` in the database does not end at seq {} (the batch of seq {first} to {last} would not continue it): another process wrote this chain",
                    rows.first.saturating_sub(1)
                )),
            }
        })
    }

    /// The first connection, at start-up.
    fn open(&mut self) -> Result<Started, AuditError> {
        match self.establish() {
            Ok(()) => Ok(Started::Ready(self.head.unwrap_or(ChainHead::EMPTY))),
            Err(Unready::Corrupt(e)) => Err(AuditError::Corrupt(format!("{}: {e}", self.name))),
            Err(Unready::Unavailable(e)) => {
                self.shared.write_failing.store(true, Ordering::SeqCst);
                Ok(Started::Waiting(e))
            }
        }
    }

    /// The writer thread's loop: runs until shut down or every handle is dropped.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.opts.batch_max);
        loop {
            let wait = if self.is_failing() {
                Duration::from_millis(500)
            } else {
                PROBE_EVERY
            };
            let first = match rx.recv_timeout(wait) {
                Ok(m) => m,
                Err(RecvTimeoutError::Timeout) => {
                    self.idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let mut stop = writer::drain(first, &rx, &mut batch, self.opts.batch_max);
            // Linger: under concurrent load (the last batch had company), a batch fuller by a
            // fraction of a millisecond costs the database far less than another commit. A
            // lone caller never waits.
            if stop.is_none()
                && !self.opts.linger.is_zero()
                && self.last_batch > 1
                && batch.len() < self.opts.batch_max
            {
                let until = Instant::now() + self.opts.linger;
                while stop.is_none() && batch.len() < self.opts.batch_max {
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(left) {
                        Ok(m) => stop = writer::drain(m, &rx, &mut batch, self.opts.batch_max),
                        Err(_) => break,
                    }
                }
            }
            self.last_batch = batch.len();
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if let Some(ack) = stop {
                self.flush_at_shutdown();
                writer::stop_writer(&self.shared, rx, ack, &self.name);
                return;
            }
        }
        self.flush_at_shutdown();
        self.shared.state.fetch_max(STOPPED, Ordering::SeqCst);
    }

    fn is_failing(&self) -> bool {
        self.shared.write_failing.load(Ordering::SeqCst)
    }

    /// Nothing to write: reconnect if the store was failing (and write what waits for a
    /// retry), probe it if it was not, and checkpoint when due.
    fn idle(&mut self) {
        if self.is_failing() || self.conn.is_none() || !self.retry.is_empty() {
            let mut none = Vec::new();
            self.commit(&mut none);
            return;
        }
        if self.checkpoint_due(false) {
            self.checkpoint();
            return;
        }
        if self.last_ok.elapsed() >= PROBE_EVERY {
            let ok = match &self.conn {
                Some(c) => self.rt.block_on(async {
                    matches!(
                        tokio::time::timeout(self.opts.timeout, c.client.simple_query("SELECT 1"))
                            .await,
                        Ok(Ok(_))
                    )
                }),
                None => false,
            };
            if ok {
                self.last_ok = Instant::now();
            } else {
                self.conn = None;
                self.shared.write_failing.store(true, Ordering::SeqCst);
                tracing::error!(log = %self.name, "the audit database does not answer");
            }
        }
    }

    /// Writes `batch` (after the records waiting for a retry) in one statement, then every
    /// waiter learns its receipt. On failure waiters get the error and the others are kept.
    fn commit(&mut self, batch: &mut Vec<Pending>) {
        let mut all = std::mem::take(&mut self.retry);
        let retried = all.len();
        all.append(batch);
        if all.is_empty() && !self.is_failing() && self.conn.is_some() {
            return;
        }
        let started = Instant::now();
        match self.try_commit(&all) {
            Ok(Some((seq0, rows))) => {
                crate::metrics::global().audit_commit(all.len(), started.elapsed());
                if self.shared.write_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!(log = %self.name, retried, "the audit database is writable again");
                }
                self.last_ok = Instant::now();
                self.since_checkpoint += all.len() as u64;
                writer::release(&mut all, seq0, rows.hash, Some(&self.chain_id));
                if self.checkpoint_due(false) {
                    self.checkpoint();
                }
            }
            Ok(None) => {
                if self.shared.write_failing.swap(false, Ordering::SeqCst) {
                    tracing::info!(log = %self.name, "the audit database is reachable again");
                }
                self.last_ok = Instant::now();
            }
            Err(Unready::Corrupt(e)) => {
                let msg = format!("{}: {e}", self.name);
                tracing::error!(log = %self.name, error = %msg, "the audit chain cannot be continued");
                self.shared
                    .state
                    .fetch_max(writer::POISONED, Ordering::SeqCst);
                self.conn = None;
                writer::fail_batch(&mut all, &self.name, &msg);
            }
            Err(Unready::Unavailable(e)) => {
                // A statement that failed wrote nothing, so the same sequence numbers are
                // used again; when the outcome is unknown (the connection broke during the
                // commit) the next connection reads where the chain really ends (and the
                // spool's copy of such a batch is recognised there, not inserted twice).
                self.conn = None;
                let mut all = all;
                if self.spool.is_some() && !all.is_empty() {
                    match self.spool_batch(all) {
                        Ok(()) => {
                            self.shared.write_failing.store(false, Ordering::SeqCst);
                            return;
                        }
                        Err((back, why)) => {
                            if !why.is_empty() {
                                tracing::error!(log = %self.name, error = %why, "cannot spool the audit batch");
                            }
                            all = back;
                        }
                    }
                }
                self.shared.write_failing.store(true, Ordering::SeqCst);
                let msg = format!("cannot write to {}: {e}", self.name);
                if retried == 0 || !batch_only_retries(&all) {
                    tracing::error!(log = %self.name, error = %msg, "audit batch failed");
                }
                let mut kept = Vec::new();
                for p in all.drain(..) {
                    match p.done {
                        Some(done) => {
                            let _ = done.send(Err(AuditError::Unavailable(msg.clone())));
                        }
                        None => kept.push(p),
                    }
                }
                if kept.len() > RETRY_MAX {
                    let lost = kept.len() - RETRY_MAX;
                    kept.drain(..lost);
                    tracing::error!(log = %self.name, lost, "audit records dropped: too many waiting for the database");
                }
                self.retry = kept;
            }
        }
    }

    /// One statement for `batch`; `Ok(None)`: nothing to write, but the store answered.
    fn try_commit(&mut self, batch: &[Pending]) -> Result<Option<(u64, Rows)>, Unready> {
        if self.conn.is_none() || self.head.is_none() {
            if self
                .last_attempt
                .is_some_and(|t| t.elapsed() < RECONNECT_AFTER)
            {
                return Err(Unready::Unavailable(
                    "the database is unreachable; retrying".into(),
                ));
            }
            self.establish()?;
        }
        if batch.is_empty() {
            return Ok(None);
        }
        let Some(head) = self.head else {
            return Err(Unready::Unavailable("not connected".into()));
        };
        let (seq0, rows, end) = chain_rows(batch, head)?;
        self.exec_rows(&rows, end)?;
        self.head = Some(end);
        Ok(Some((seq0, rows)))
    }

    /// The database did not take `all`: with a spool, the records continue the chain there
    /// (durably, before their waiters learn their receipts). Returns them back if not.
    fn spool_batch(&mut self, mut all: Vec<Pending>) -> Result<(), (Vec<Pending>, String)> {
        let (Some(sp), Some(head)) = (self.spool.as_mut(), self.head) else {
            return Err((all, String::new()));
        };
        let (seq0, rows, end) = match chain_rows(&all, head) {
            Ok(r) => r,
            Err(Unready::Corrupt(e) | Unready::Unavailable(e)) => return Err((all, e)),
        };
        if let Err(e) = sp.append(&rows.line, end) {
            return Err((all, e));
        }
        if sp.first_seq() == Some(seq0) {
            tracing::warn!(log = %self.name, spool = %sp.path().display(), "the audit database does not answer; records go to the local spool");
        }
        self.head = Some(end);
        self.since_checkpoint += all.len() as u64;
        writer::release(&mut all, seq0, rows.hash, Some(&self.chain_id));
        Ok(())
    }

    fn checkpoint_due(&self, at_shutdown: bool) -> bool {
        self.opts.signer.is_some()
            && self.conn.is_some()
            && self.since_checkpoint > 0
            && (at_shutdown
                || (self.opts.checkpoint_every > 0
                    && self.since_checkpoint >= self.opts.checkpoint_every)
                || self.last_checkpoint.elapsed() >= self.opts.checkpoint_interval)
    }

    /// Signs the chain's head and appends the checkpoint to the chain (and to the export
    /// file, if configured), as the file sink does.
    fn checkpoint(&mut self) {
        self.last_checkpoint = Instant::now();
        let (Some(signer), Some(head)) = (&self.opts.signer, self.head) else {
            return;
        };
        let policy = self
            .shared
            .policy_version
            .lock()
            .map(|p| p.clone())
            .unwrap_or_default();
        let mut cp = signer.sign(
            head.seq,
            &hex::encode(head.hash),
            &super::record::now_rfc3339(),
            &policy,
        );
        cp.chain = Some(self.opts.chain.clone());
        let Ok(mut json) = serde_json::to_vec(&cp) else {
            return;
        };
        if json.last() == Some(&b'}') && !self.opts.stamp.is_empty() {
            json.pop();
            json.extend_from_slice(&self.opts.stamp);
            json.push(b'}');
        }
        let batch = [Pending { json, done: None }];
        match self.try_commit(&batch) {
            Ok(Some((_, rows))) => {
                self.since_checkpoint = 0;
                if let (Some(export), Some(line)) = (&self.opts.checkpoint_export, rows.line.last())
                {
                    use std::io::Write;
                    let written = std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(export)
                        .and_then(|mut f| {
                            f.write_all(line.as_bytes())?;
                            f.write_all(b"\n")?;
                            f.sync_data()
                        });
                    if let Err(e) = written {
                        tracing::warn!(file = %export.display(), error = %e, "cannot export the audit checkpoint");
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                let e = match e {
                    Unready::Corrupt(e) | Unready::Unavailable(e) => e,
                };
                self.shared.write_failing.store(true, Ordering::SeqCst);
                tracing::warn!(log = %self.name, error = %e, "cannot write the audit checkpoint");
            }
        }
    }

    /// Before stopping: store what waits for a retry (within [`SHUTDOWN_FLUSH`]) and sign
    /// a last checkpoint.
    fn flush_at_shutdown(&mut self) {
        let until = Instant::now() + SHUTDOWN_FLUSH;
        while !self.retry.is_empty() && Instant::now() < until {
            let mut none = Vec::new();
            self.commit(&mut none);
            if !self.retry.is_empty() {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        if !self.retry.is_empty() {
            tracing::error!(log = %self.name, lost = self.retry.len(), "audit records could not be stored before shutdown");
            self.retry.clear();
        }
        if self.checkpoint_due(true) {
            self.checkpoint();
        }
    }
}

/// Chains `batch` on `head`: the first seq, the rows, and where the chain then ends.
fn chain_rows(batch: &[Pending], head: ChainHead) -> Result<(u64, Rows, ChainHead), Unready> {
    let seq0 = head.seq + 1;
    let mut rows = Rows::default();
    let mut prev = head.hash;
    for (i, p) in batch.iter().enumerate() {
        prev = rows
            .push(seq0 + i as u64, &prev, &p.json)
            .map_err(Unready::Corrupt)?;
    }
    let end = ChainHead {
        seq: head.seq + batch.len() as u64,
        hash: prev,
    };
    Ok((seq0, rows, end))
}

/// True when every record of a failed batch was a retry (the outage was already reported).
fn batch_only_retries(all: &[Pending]) -> bool {
    all.iter().all(|p| p.done.is_none())
}

/// Starts the writer thread; returns once the first connection succeeded or failed.
pub(crate) fn start(
    opts: PgOptions,
) -> Result<(mpsc::Sender<Msg>, Arc<Shared>, Started), AuditError> {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let sh = shared.clone();
    std::thread::Builder::new()
        .name("bordergate-audit-pg".into())
        .spawn(move || {
            let opened = PgWriter::new(opts, sh).and_then(|mut w| w.open().map(|s| (w, s)));
            match opened {
                Ok((w, started)) => {
                    let _ = ready_tx.send(Ok(started));
                    w.run(rx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        })
        .map_err(|e| AuditError::Unavailable(format!("cannot start the writer: {e}")))?;
    let started = ready_rx
        .recv()
        .map_err(|_| AuditError::Unavailable("the postgres writer stopped".into()))??;
    Ok((tx, shared, started))
}
