//! The PostgreSQL sink (`audit.sink: postgres`): the group-commit writer that appends
//! batches of chained records to one table shared by every gateway.
//!
//! Lines are byte for byte what the file sink writes (see [`crate::audit::line`]); a row
//! holds the line (without its newline) and columns copied from it for queries. Each batch
//! is one transaction: lock the chain head row (`SELECT … FOR UPDATE`), chain the batch on
//! it, insert all rows with one statement, move the head, commit (`synchronous_commit = on`),
//! then release the waiters. Gateways sharing the table serialise on the head row, so the
//! chain stays linear. A failed batch is rolled back: its appends fail with
//! [`AuditError::Unavailable`] and the next batch reuses the sequence numbers.

pub mod dump;
pub(crate) mod error;
pub mod read;
pub(crate) mod schema;

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use serde::Deserialize;
use tokio_postgres::{Client, NoTls, Statement};

use super::AuditError;
use super::line::{HASH_LEN, encode_line};
use super::writer::{self, Msg, Pending, STOPPED, Shared};
use schema::{ChainHead, Sql};

/// A batch taking longer than this fails (and the connection is dropped).
const BATCH_TIMEOUT: Duration = Duration::from_secs(30);

/// Parses a connection string (URL or `key=value`) and sets bordergate's defaults.
pub(crate) fn pg_config(conn: &str) -> Result<tokio_postgres::Config, String> {
    let mut c = tokio_postgres::Config::from_str(conn)
        .map_err(|e| format!("invalid postgres connection string: {e}"))?;
    if c.get_connect_timeout().is_none() {
        c.connect_timeout(Duration::from_secs(10));
    }
    if c.get_application_name().is_none() {
        c.application_name("bordergate");
    }
    Ok(c)
}

/// Connects and drives the connection on the current runtime.
pub(crate) async fn connect(c: &tokio_postgres::Config) -> Result<Client, String> {
    let (client, conn) = c
        .connect(NoTls)
        .await
        .map_err(|e| format!("cannot connect to postgres: {e}"))?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "postgres audit connection closed");
        }
    });
    // Durable before the waiters learn their receipt, whatever the server default says.
    client
        .batch_execute("SET synchronous_commit = on")
        .await
        .map_err(|e| format!("cannot configure the postgres session: {e}"))?;
    Ok(client)
}

/// A connection with the writer's statements prepared.
struct Conn {
    client: Client,
    lock_head: Statement,
    insert: Statement,
    update_head: Statement,
}

impl Conn {
    async fn prepare(client: Client, sql: &Sql) -> Result<Conn, String> {
        let prep = |s: String| {
            let client = &client;
            async move {
                client
                    .prepare(&s)
                    .await
                    .map_err(|e| format!("cannot prepare a statement: {e}"))
            }
        };
        let lock_head = prep(sql.lock_head()).await?;
        let insert = prep(sql.insert()).await?;
        let update_head = prep(sql.update_head()).await?;
        Ok(Conn {
            client,
            lock_head,
            insert,
            update_head,
        })
    }
}

/// The columns copied out of a record for queries.
#[derive(Deserialize)]
struct Cols {
    kind: String,
    time: Option<String>,
    request_id: Option<String>,
    caller: Option<CallerCols>,
    dataset: Option<String>,
    destination: Option<String>,
    decision: Option<String>,
    rule: Option<String>,
}

#[derive(Deserialize)]
struct CallerCols {
    org: Option<String>,
    sub: Option<String>,
}

/// One batch as parallel column arrays.
#[derive(Default)]
struct Rows {
    seq: Vec<i64>,
    prev: Vec<String>,
    hash: Vec<String>,
    kind: Vec<String>,
    time: Vec<Option<String>>,
    request_id: Vec<Option<String>>,
    org: Vec<Option<String>>,
    sub: Vec<Option<String>>,
    dataset: Vec<Option<String>>,
    destination: Vec<Option<String>>,
    decision: Vec<Option<String>>,
    rule: Vec<Option<String>>,
    line: Vec<String>,
}

impl Rows {
    fn push(
        &mut self,
        seq: u64,
        prev: &[u8; HASH_LEN],
        json: &[u8],
    ) -> Result<[u8; HASH_LEN], String> {
        let c: Cols =
            serde_json::from_slice(json).map_err(|e| format!("cannot read the record: {e}"))?;
        let mut buf = Vec::with_capacity(json.len() + 200);
        let hash = encode_line(&mut buf, seq, prev, json);
        buf.pop();
        let line = String::from_utf8(buf).map_err(|_| "the record is not UTF-8".to_owned())?;
        let seq = i64::try_from(seq).map_err(|_| "the sequence number overflowed".to_owned())?;
        let (org, sub) = c.caller.map_or((None, None), |c| (c.org, c.sub));
        self.seq.push(seq);
        self.prev.push(hex::encode(prev));
        self.hash.push(hex::encode(hash));
        self.kind.push(c.kind);
        self.time.push(c.time);
        self.request_id.push(c.request_id);
        self.org.push(org);
        self.sub.push(sub);
        self.dataset.push(c.dataset);
        self.destination.push(c.destination);
        self.decision.push(c.decision);
        self.rule.push(c.rule);
        self.line.push(line);
        Ok(hash)
    }
}

/// The writer thread's state: a current-thread runtime that drives one connection.
pub(crate) struct PgWriter {
    rt: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    sql: Sql,
    conn: Option<Conn>,
    batch_max: usize,
    name: String,
    shared: Arc<Shared>,
}

impl PgWriter {
    /// Connects, migrates and checks the tail; returns the writer and the chain head.
    pub fn open(
        conn: &str,
        table: &str,
        batch_max: usize,
        shared: Arc<Shared>,
    ) -> Result<(PgWriter, ChainHead), AuditError> {
        let name = format!("postgres table `{table}`");
        let unavailable = |e: String| AuditError::Unavailable(format!("{name}: {e}"));
        let config = pg_config(conn).map_err(unavailable)?;
        let sql = Sql::new(table).map_err(unavailable)?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| unavailable(format!("cannot start the runtime: {e}")))?;
        let (conn, head) = rt.block_on(async {
            let mut client = connect(&config).await.map_err(unavailable)?;
            let head = schema::prepare(&mut client, &sql)
                .await
                .map_err(|e| AuditError::Corrupt(format!("{name}: {e}")))?;
            let conn = Conn::prepare(client, &sql).await.map_err(unavailable)?;
            Ok::<_, AuditError>((conn, head))
        })?;
        let w = PgWriter {
            rt,
            config,
            sql,
            conn: Some(conn),
            batch_max: batch_max.max(1),
            name,
            shared,
        };
        Ok((w, head))
    }

    /// The writer thread's loop: runs until shut down or every handle is dropped.
    pub fn run(mut self, rx: Receiver<Msg>) {
        let mut batch: Vec<Pending> = Vec::with_capacity(self.batch_max);
        while let Ok(first) = rx.recv() {
            let stop = writer::drain(first, &rx, &mut batch, self.batch_max);
            if !batch.is_empty() {
                self.commit(&mut batch);
            }
            if let Some(ack) = stop {
                writer::stop_writer(&self.shared, rx, ack, &self.name);
                return;
            }
        }
        self.shared.state.fetch_max(STOPPED, Ordering::SeqCst);
    }

    /// Writes one batch in one transaction, then every waiter learns its receipt.
    fn commit(&mut self, batch: &mut Vec<Pending>) {
        let started = std::time::Instant::now();
        let rt = &self.rt;
        let result = rt.block_on(async {
            let commit = try_commit(&mut self.conn, &self.config, &self.sql, batch);
            match tokio::time::timeout(BATCH_TIMEOUT, commit).await {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {} s", BATCH_TIMEOUT.as_secs())),
            }
        });
        match result {
            Ok((seq0, hashes)) => {
                crate::metrics::global().audit_commit(batch.len(), started.elapsed());
                self.shared.write_failing.store(false, Ordering::SeqCst);
                writer::release(batch, seq0, hashes);
            }
            Err(e) => {
                // The transaction was rolled back (or never committed): no row, no gap.
                // The next batch starts on a fresh connection: this one may be dead, in the
                // middle of a rollback, or hung.
                self.conn = None;
                self.shared.write_failing.store(true, Ordering::SeqCst);
                let msg = format!("cannot write to {}: {e}", self.name);
                tracing::error!(log = %self.name, error = %msg, "audit batch failed");
                writer::fail_batch(batch, &self.name, &msg);
            }
        }
    }
}

async fn try_commit(
    conn: &mut Option<Conn>,
    config: &tokio_postgres::Config,
    sql: &Sql,
    batch: &[Pending],
) -> Result<(u64, Vec<String>), String> {
    if conn.is_none() {
        let client = connect(config).await?;
        *conn = Some(Conn::prepare(client, sql).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Err("not connected".into());
    };
    let tx = c.client.transaction().await.map_err(|e| e.to_string())?;
    let row = tx
        .query_one(&c.lock_head, &[])
        .await
        .map_err(|e| e.to_string())?;
    let head = schema::head_from(row.get(0), row.get(1), &sql.table)?;
    let seq0 = head.seq + 1;
    let mut rows = Rows::default();
    let mut prev = head.hash;
    for (i, p) in batch.iter().enumerate() {
        prev = rows.push(seq0 + i as u64, &prev, &p.json)?;
    }
    let last_seq = rows.seq.last().copied().unwrap_or_default();
    tx.execute(
        &c.insert,
        &[
            &rows.seq,
            &rows.prev,
            &rows.hash,
            &rows.kind,
            &rows.time,
            &rows.request_id,
            &rows.org,
            &rows.sub,
            &rows.dataset,
            &rows.destination,
            &rows.decision,
            &rows.rule,
            &rows.line,
        ],
    )
    .await
    .map_err(|e| e.to_string())?;
    tx.execute(&c.update_head, &[&last_seq, &hex::encode(prev)])
        .await
        .map_err(|e| e.to_string())?;
    tx.commit()
        .await
        .map_err(|e| format!("commit failed (the batch may or may not be stored): {e}"))?;
    Ok((seq0, rows.hash))
}

/// Starts the writer thread; returns once the table is ready (or why it is not).
pub(crate) fn start(
    conn: &str,
    table: &str,
    batch_max: usize,
) -> Result<(mpsc::Sender<Msg>, Arc<Shared>, ChainHead), AuditError> {
    let shared = Arc::new(Shared::default());
    let (tx, rx) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let (conn, table, sh) = (conn.to_owned(), table.to_owned(), shared.clone());
    std::thread::Builder::new()
        .name("bordergate-audit-pg".into())
        .spawn(move || match PgWriter::open(&conn, &table, batch_max, sh) {
            Ok((w, head)) => {
                let _ = ready_tx.send(Ok(head));
                w.run(rx);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| AuditError::Unavailable(format!("cannot start the writer: {e}")))?;
    let head = ready_rx
        .recv()
        .map_err(|_| AuditError::Unavailable("the postgres writer stopped".into()))??;
    Ok((tx, shared, head))
}
