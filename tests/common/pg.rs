//! The PostgreSQL server the tests share (127.0.0.1:5432, database `test`, or
//! `BORDERGATE_TEST_POSTGRES`): a client, or a skip outside CI when none runs, and a
//! unique table name per test.
#![allow(clippy::unwrap_used)]

use tokio_postgres::{Client, NoTls};

pub fn dsn() -> String {
    std::env::var("BORDERGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "host=127.0.0.1 port=5432 user=postgres dbname=test".into())
}

/// A client for checks, or None (after a note) when no server runs outside CI.
pub async fn pg() -> Option<Client> {
    match tokio_postgres::connect(&dsn(), NoTls).await {
        Ok((client, conn)) => {
            tokio::spawn(conn);
            Some(client)
        }
        Err(e) => {
            super::skip(
                &format!("no PostgreSQL at `{}`: {e}", dsn()),
                "start one (trust auth, database `test`) or set BORDERGATE_TEST_POSTGRES",
            );
            None
        }
    }
}

/// A table name no other test uses.
pub fn table(name: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("bgt_{name}_{}", &id[..10])
}

/// Drops `t` and what the writer keeps beside it (`t` is a view from schema version 3 on,
/// a table before).
pub async fn drop_tables(c: &Client, t: &str) {
    let _ = c
        .batch_execute(&format!("DROP VIEW IF EXISTS {t} CASCADE"))
        .await;
    let _ = c
        .batch_execute(&format!(
            "DROP TABLE IF EXISTS {t}, {t}_batches, {t}_v2, {t}_heads, {t}_schema, {t}_head, {t}_pipl CASCADE; DROP FUNCTION IF EXISTS {t}_append_only() CASCADE"
        ))
        .await;
}

/// Runs `sql` as a superuser past the append-only triggers: what tampering takes.
pub async fn tamper(c: &Client, sql: &str) {
    c.batch_execute(&format!(
        "SET session_replication_role = replica; {sql}; SET session_replication_role = origin"
    ))
    .await
    .unwrap();
}

/// Rewrites, past the triggers, the records of `t` for which `pred` holds (SQL over `seq`,
/// `chain` and `l`, the line): each becomes `new` (SQL over the same; `NULL` deletes it).
/// A batch left empty goes, and a batch's `last` follows its lines, as a careful intruder
/// would do.
pub async fn rewrite(c: &Client, t: &str, pred: &str, new: &str) {
    let b = format!("{t}_batches");
    let each = "unnest(b.lines) WITH ORDINALITY AS u(l, o) \
        CROSS JOIN LATERAL (SELECT b.first + u.o - 1 AS seq, b.chain::text AS chain) s";
    tamper(
        c,
        &format!(
            "UPDATE {b} b SET lines = ARRAY(SELECT x FROM (SELECT CASE WHEN {pred} THEN {new} ELSE l END AS x, o FROM {each}) y WHERE x IS NOT NULL ORDER BY o) \
             WHERE EXISTS (SELECT 1 FROM {each} WHERE {pred}); \
             DELETE FROM {b} WHERE cardinality(lines) = 0; \
             UPDATE {b} SET last = first + cardinality(lines) - 1 WHERE last <> first + cardinality(lines) - 1"
        ),
    )
    .await;
}

/// Deletes, past the triggers, the records of `t` for which `pred` holds (see [`rewrite`]).
pub async fn delete_records(c: &Client, t: &str, pred: &str) {
    rewrite(c, t, pred, "NULL").await;
}
