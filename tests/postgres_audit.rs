//! The PostgreSQL audit sink against the real server at 127.0.0.1:5432 (database `test`):
//! group commit, one chain per writer, restart, append-only tables, tamper detection, and
//! the gateway end to end. Each test uses its own table. Without a server the tests skip
//! locally and fail in CI (`CI=true`).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use bordergate::audit::postgres::PgOptions;
use bordergate::audit::postgres::dump::{export_postgres, verify_postgres};
use bordergate::audit::verify::{ProblemKind, verify_reader};
use bordergate::audit::{AuditError, AuditLog, EventRecord, Record};
use common::pg::{delete_records, drop_tables, dsn, pg, rewrite, table};
use common::{BIN, Gateway, Options};
use tokio_postgres::Client;

fn event(i: usize) -> Record {
    Record::Event(EventRecord::new("test", format!("record {i} \"quoted\" é")))
}

/// Runs blocking work (the sink's open, verify, export) off the test runtime.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

async fn open(t: &str, dsn: String) -> Result<AuditLog, AuditError> {
    open_chain(t, dsn, "gw-a").await
}

async fn open_chain(t: &str, dsn: String, chain: &str) -> Result<AuditLog, AuditError> {
    let mut o = PgOptions::new(&dsn, t, chain);
    o.batch_max = 64;
    blocking(move || AuditLog::open_postgres(o)).await
}

async fn seqs(c: &Client, t: &str) -> Vec<i64> {
    seqs_of(c, t, "gw-a").await
}

async fn seqs_of(c: &Client, t: &str, chain: &str) -> Vec<i64> {
    c.query(
        &format!("SELECT seq FROM {t} WHERE chain = $1 ORDER BY seq"),
        &[&chain],
    )
    .await
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_are_durable_chained_and_exported_byte_for_byte() {
    let Some(c) = pg().await else { return };
    let t = table("basic");
    let log = open(&t, dsn()).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move { log.append(event(i)).await }));
    }
    let mut got = Vec::new();
    for task in tasks {
        let r = task.await.unwrap().unwrap();
        // Durable before the receipt: the row is there.
        let row = c
            .query_one(
                &format!("SELECT hash FROM {t} WHERE seq = $1"),
                &[&(r.seq as i64)],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), r.hash);
        got.push(r.seq);
    }
    got.sort_unstable();
    got.dedup();
    assert_eq!(got.len(), 50);
    log.shutdown().await;
    assert!(log.append(event(99)).await.is_err());
    // 50 records, the start and the shutdown event.
    assert_eq!(seqs(&c, &t).await, (1..=52).collect::<Vec<_>>());
    let kinds = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'event' AND time IS NOT NULL"),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(kinds.get::<_, i64>(0), 52);

    let (d, tt) = (dsn(), t.clone());
    let rep = blocking(move || verify_postgres(&d, &tt)).await.unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.records(), 52);
    assert_eq!(rep.chains.len(), 1);
    assert_eq!(rep.chains[0].report.last_seq, Some(52));

    let (d, tt) = (dsn(), t.clone());
    let out = blocking(move || {
        let mut out = Vec::new();
        let n = export_postgres(&d, &tt, &mut out).unwrap();
        (n, out)
    })
    .await;
    assert_eq!(out.0, 52);
    let file_rep = verify_reader(&out.1[..]);
    assert!(file_rep.is_ok(), "{file_rep}");
    assert_eq!(file_rep.last_hash, rep.chains[0].report.last_hash);
    // The exported text is what the `line` column holds, newline-terminated.
    let first = std::str::from_utf8(&out.1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    let line: String = c
        .query_one(&format!("SELECT line FROM {t} WHERE seq = 1"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(first, line);
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_writers_keep_a_chain_each_and_one_name_has_one_writer() {
    let Some(c) = pg().await else { return };
    let t = table("scale");
    let a = open_chain(&t, dsn(), "gw-a").await.unwrap();
    let b = open_chain(&t, dsn(), "gw-b").await.unwrap();
    // A second process under a name in use is refused: one chain, one writer.
    let e = open_chain(&t, dsn(), "gw-b").await.unwrap_err();
    assert!(matches!(e, AuditError::Corrupt(_)), "{e}");
    assert!(e.to_string().contains("own `name:`"), "{e}");
    let mut tasks = Vec::new();
    for i in 0..400 {
        let log = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move { log.append(event(i)).await }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        let r = task.await.unwrap().unwrap();
        receipts.push((r.chain.unwrap().to_string(), r.seq));
    }
    a.shutdown().await;
    b.shutdown().await;
    receipts.sort_unstable();
    receipts.dedup();
    assert_eq!(
        receipts.len(),
        400,
        "every receipt has its own chain and seq"
    );
    // 200 records plus a start and a shutdown event per writer, each chain linear.
    assert_eq!(seqs_of(&c, &t, "gw-a").await, (1..=202).collect::<Vec<_>>());
    assert_eq!(seqs_of(&c, &t, "gw-b").await, (1..=202).collect::<Vec<_>>());
    let (d, tt) = (dsn(), t.clone());
    let rep = blocking(move || verify_postgres(&d, &tt)).await.unwrap();
    assert!(rep.is_ok(), "{rep}");
    assert_eq!(rep.records(), 404);
    assert_eq!(rep.chains.len(), 2);
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_tables_refuse_update_delete_and_truncate_even_to_their_owner() {
    let Some(c) = pg().await else { return };
    let t = table("append");
    let log = open(&t, dsn()).await.unwrap();
    log.append(event(1)).await.unwrap();
    log.shutdown().await;
    for sql in [
        format!("UPDATE {t} SET line = 'x'"),
        format!("DELETE FROM {t}"),
        format!("UPDATE {t}_batches SET lines = '{{}}'"),
        format!("DELETE FROM {t}_batches"),
        format!("TRUNCATE {t}_batches"),
        format!("DELETE FROM {t}_heads"),
        format!("UPDATE {t}_heads SET seq = 1"),
        format!("TRUNCATE {t}_heads"),
    ] {
        let e = c.batch_execute(&sql).await.unwrap_err();
        let db = e.as_db_error().unwrap();
        assert_eq!(db.code().code(), "42501", "{sql}: {db}");
        assert!(db.message().contains("append-only"), "{sql}: {db}");
    }
    assert_eq!(seqs(&c, &t).await, vec![1, 2, 3]);
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_continues_the_chain_and_a_damaged_tail_refuses_to_start() {
    let Some(c) = pg().await else { return };
    let t = table("restart");
    let log = open(&t, dsn()).await.unwrap();
    log.append(event(1)).await.unwrap();
    log.shutdown().await;
    let log = open(&t, dsn()).await.unwrap();
    let r = log.append(event(2)).await.unwrap();
    // start, 1, shutdown, start, 2
    assert_eq!(r.seq, 5);
    log.shutdown().await;
    let start: String = c
        .query_one(&format!("SELECT line FROM {t} WHERE seq = 4"), &[])
        .await
        .unwrap()
        .get(0);
    assert!(start.contains("continues at seq 4"), "{start}");

    // Someone deletes the newest row past the triggers: the chain no longer reaches the
    // head its last batch recorded, and the gateway refuses to start.
    delete_records(&c, &t, "seq = 6").await;
    let e = open(&t, dsn()).await.unwrap_err();
    assert!(matches!(e, AuditError::Corrupt(_)), "{e}");
    assert!(
        e.to_string().contains("ends at seq 5") && e.to_string().contains("deleted"),
        "{e}"
    );
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verify_names_modified_deleted_and_inconsistent_rows_by_seq() {
    let Some(c) = pg().await else { return };
    let t = table("tamper");
    let log = open(&t, dsn()).await.unwrap();
    for i in 0..9 {
        log.append(event(i)).await.unwrap();
    }
    log.shutdown().await;
    let check = |t: String| async move {
        let d = dsn();
        blocking(move || verify_postgres(&d, &t)).await.unwrap()
    };
    assert!(check(t.clone()).await.is_ok());

    rewrite(&c, &t, "seq = 5", "replace(l, 'record 3 ', 'record 4 ')").await;
    let rep = check(t.clone()).await;
    let p = rep.chains[0].report.problem.clone().unwrap();
    assert_eq!((p.kind, p.seq), (ProblemKind::Modified, Some(5)), "{rep}");
    assert!(rep.to_string().contains("seq 5"), "{rep}");
    drop_tables(&c, &t).await;

    // A gap in the middle, and rows cut off the end.
    let t = table("gap");
    let log = open(&t, dsn()).await.unwrap();
    for i in 0..9 {
        log.append(event(i)).await.unwrap();
    }
    log.shutdown().await;
    delete_records(&c, &t, "seq = 4").await;
    let rep = check(t.clone()).await;
    let p = rep.chains[0].report.problem.clone().unwrap();
    assert_eq!((p.kind, p.seq), (ProblemKind::Missing, Some(5)), "{rep}");
    drop_tables(&c, &t).await;

    // The newest rows cut off the end (the shutdown event and the last record): the head
    // recorded with the last batch names the loss.
    let t = table("cut");
    let log = open(&t, dsn()).await.unwrap();
    for i in 0..9 {
        log.append(event(i)).await.unwrap();
    }
    log.shutdown().await;
    delete_records(&c, &t, "seq >= 10").await;
    let rep = check(t.clone()).await;
    assert!(!rep.is_ok());
    assert!(
        rep.problems.iter().any(|p| p.kind == ProblemKind::Missing
            && p.message.contains("ends at seq 9")
            && p.message.contains("deleted")),
        "{rep}"
    );
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_connection_fails_the_batch_without_a_gap_and_recovers() {
    let Some(c) = pg().await else { return };
    let t = table("lost");
    let app = format!("{t}_writer");
    let log = open(&t, format!("{} application_name={app}", dsn()))
        .await
        .unwrap();
    log.append(event(0)).await.unwrap();
    c.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
        &[&app],
    )
    .await
    .unwrap();
    // The batch on the dead connection fails (503 in the proxy) …
    let e = log.append(event(1)).await.unwrap_err();
    assert!(matches!(e, AuditError::Unavailable(_)), "{e}");
    assert_eq!(log.status(), bordergate::audit::AuditStatus::WriteFailing);
    // … and the next one reconnects and takes the next seq: no gap.
    let r = log.append(event(2)).await.unwrap();
    assert_eq!(r.seq, 3);
    assert_eq!(log.status(), bordergate::audit::AuditStatus::Ok);
    log.shutdown().await;
    let (d, tt) = (dsn(), t.clone());
    let rep = blocking(move || verify_postgres(&d, &tt)).await.unwrap();
    assert!(rep.is_ok(), "{rep}");
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gateway_writes_its_decisions_to_postgres() {
    let Some(c) = pg().await else { return };
    let t = table("gateway");
    // The connection string by reference, as a deployment with a password would give it.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{}\n", dsn())).unwrap();
    let mut gw = Gateway::start(Options {
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    url: {{file: {}}}\n    table: {t}\n",
            secret.path().display()
        ),
        ..Options::default()
    });
    let ok = gw
        .client()
        .get(gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(gw.token("alice", "acme-de", "DE", "analytics"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let ok_id = ok.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = ok.bytes().await.unwrap();
    let no = gw
        .client()
        .get(gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(gw.token("bob", "acme-us", "US", "analytics"))
        .send()
        .await
        .unwrap();
    assert_eq!(no.status(), 451);
    let no_id = no.headers()["x-request-id"].to_str().unwrap().to_owned();
    gw.stop();
    assert!(!gw.audit.exists(), "the file sink was not used");

    let row = |id: String| {
        let (c, t) = (&c, &t);
        async move {
            c.query_one(
                &format!("SELECT org, decision, line FROM {t} WHERE kind = 'decision' AND request_id = $1"),
                &[&id],
            )
            .await
            .unwrap()
        }
    };
    let allowed = row(ok_id.clone()).await;
    assert_eq!(allowed.get::<_, String>(0), "acme-de");
    assert_eq!(allowed.get::<_, String>(1), "allow");
    let refused = row(no_id).await;
    assert_eq!(refused.get::<_, String>(0), "acme-us");
    assert_eq!(refused.get::<_, String>(1), "deny");
    assert!(refused.get::<_, String>(2).contains("\"status\":451"));
    let done = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'completion' AND request_id = $1"),
            &[&ok_id],
        )
        .await
        .unwrap();
    assert_eq!(done.get::<_, i64>(0), 1);

    let verify = |t: &str| {
        Command::new(BIN)
            .args(["audit", "verify", "--postgres", &dsn(), "--table", t])
            .output()
            .unwrap()
    };
    let out = verify(&t);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok:"));

    // Export, then the file tools read it.
    let out = Command::new(BIN)
        .args(["audit", "export", "--postgres", &dsn(), "--table", &t])
        .output()
        .unwrap();
    assert!(out.status.success());
    let exported = gw.dir.path().join("exported.log");
    std::fs::write(&exported, &out.stdout).unwrap();
    assert!(common::verify(&exported).status.success());
    let q = Command::new(BIN)
        .args(["audit", "query", "--decision", "deny", "--format", "jsonl"])
        .arg(&exported)
        .output()
        .unwrap();
    assert!(q.status.success());
    assert_eq!(String::from_utf8_lossy(&q.stdout).lines().count(), 1);

    let seq: i64 = refused_seq(&c, &t).await;
    rewrite(
        &c,
        &t,
        &format!("seq = {seq}"),
        "replace(l, 'acme-us', 'acme-de')",
    )
    .await;
    let out = verify(&t);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("seq {seq}")), "{err}");
    drop_tables(&c, &t).await;
}

async fn refused_seq(c: &Client, t: &str) -> i64 {
    c.query_one(
        &format!("SELECT seq FROM {t} WHERE kind = 'decision' AND decision = 'deny'"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// `cargo test --test postgres_audit -- --ignored --nocapture`: records per second with
/// 256 concurrent appenders (batches of up to 512 records per statement).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore]
async fn throughput() {
    let Some(c) = pg().await else { return };
    let t = table("speed");
    let mut o = PgOptions::new(&dsn(), &t, "speed");
    o.batch_max = 512;
    let log = blocking(move || AuditLog::open_postgres(o)).await.unwrap();
    let n = 20_000;
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for w in 0..256 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in (w..n).step_by(256) {
                log.append(event(i)).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    log.shutdown().await;
    println!(
        "{n} records in {secs:.2} s: {:.0} records/s",
        n as f64 / secs
    );
    drop_tables(&c, &t).await;
}
