//! A fleet of gateway replicas on one PostgreSQL store (127.0.0.1:5432, database `test`):
//! three replicas under concurrent load keep a chain each and every answered request has its
//! decision record; the gateway's role cannot rewrite the trail and deleting its newest rows
//! is detected; one replica's frozen connection does not stop the others; an outage loses no
//! record, readiness comes back without traffic, and a replica starts during one; a crash is
//! recovered per replica. Each test uses its own tables (and role). Without a server the
//! tests skip locally and fail in CI (`CI=true`).

#![allow(clippy::unwrap_used)]

mod common;
use common::pg;
#[path = "support/relay.rs"]
mod relay;
#[path = "support/admin.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Gateway, Options};
use pg::{delete_records, drop_tables, dsn, table};
use relay::{Mode, Relay};

const CUSTOMERS: &str = "/datasets/eu-customers/customers.csv";

/// A replica named `name` on `table` through `conn`; `extra_audit`: more `audit:` keys.
fn replica(name: &str, conn: &str, table: &str, extra_audit: &str) -> Options {
    Options {
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    dsn: {conn}\n    table: {table}\n    timeout_ms: 1000\n    migrate: false\n{extra_audit}"
        ),
        extra_config: format!("name: {name}\n"),
        ..Options::default()
    }
}

fn migrate(t: &str, grant: Option<&str>) {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit", "migrate", "--postgres", &dsn(), "--table", t]);
    if let Some(g) = grant {
        cmd.args(["--grant", g]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("schema version 3"));
}

async fn get(client: &reqwest::Client, url: String, token: &str) -> reqwest::Response {
    client.get(url).bearer_auth(token).send().await.unwrap()
}

/// Polls `f` until it is true (at most `secs`).
async fn eventually<F, Fut>(secs: u64, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("not within {secs} s: {what}");
}

async fn ready(client: &reqwest::Client, admin: &str) -> bool {
    match client.get(format!("{admin}/readyz")).send().await {
        Ok(r) => r.status() == 200,
        Err(_) => false,
    }
}

/// True when `chain` of `t` holds the completion of `request_id` with `outcome`.
async fn completed(
    c: &tokio_postgres::Client,
    t: &str,
    chain: &str,
    request_id: &str,
    outcome: &str,
) -> bool {
    c.query_opt(
        &format!(
            "SELECT line FROM {t} WHERE kind = 'completion' AND request_id = $1 AND chain = $2"
        ),
        &[&request_id, &chain],
    )
    .await
    .unwrap()
    .is_some_and(|r| {
        r.get::<_, String>(0)
            .contains(&format!("\"outcome\":\"{outcome}\""))
    })
}

fn verify(t: &str, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(["audit", "verify", "--postgres", &dsn(), "--table", t])
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_under_load_keep_whole_chains_on_a_store_they_cannot_rewrite() {
    let Some(c) = pg::pg().await else { return };
    let t = table("fleet");
    let role = format!("{t}_gw");
    c.batch_execute(&format!("CREATE ROLE {role} LOGIN"))
        .await
        .unwrap();
    // An administrator migrates; the gateways connect as a role that may SELECT and INSERT.
    migrate(&t, Some(&role));
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("checkpoint.pem");
    let out = Command::new(BIN)
        .args(["audit", "keygen", "--out"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let conn = format!("host=127.0.0.1 port=5432 user={role} dbname=test");
    let signing = format!(
        "  checkpoint_key: {}\n  checkpoint_interval_secs: 1\n",
        key.display()
    );
    let gws: Vec<Gateway> = ["gw-1", "gw-2", "gw-3"]
        .iter()
        .map(|n| Gateway::start(replica(n, &conn, &t, &signing)))
        .collect();

    // Concurrent load through all three: allowed and refused transfers.
    let mut tasks = Vec::new();
    for (i, gw) in gws.iter().enumerate() {
        for j in 0..40 {
            let client = gw.client();
            let url = gw.url(CUSTOMERS);
            let token = if j % 4 == 0 {
                gw.token("bob", "acme-us", "US", "analytics")
            } else {
                gw.token("alice", "acme-de", "DE", "analytics")
            };
            tasks.push(tokio::spawn(async move {
                let r = get(&client, url, &token).await;
                let status = r.status().as_u16();
                let receipt = r
                    .headers()
                    .get("audit-receipt")
                    .map(|v| v.to_str().unwrap().to_owned());
                let _ = r.bytes().await.unwrap();
                (i, status, receipt)
            }));
        }
    }
    let mut receipts = Vec::new();
    let (mut allowed, mut refused) = (0, 0);
    for task in tasks {
        let (_, status, receipt) = task.await.unwrap();
        match status {
            200 => allowed += 1,
            451 => refused += 1,
            s => panic!("unexpected status {s}"),
        }
        receipts.push(receipt.expect("every answer carries its receipt"));
    }
    assert_eq!((allowed, refused), (90, 30));
    assert!(
        receipts.iter().all(|r| r.starts_with("chain=gw-")),
        "{receipts:?}"
    );
    for mut gw in gws {
        assert!(gw.stop().success());
    }

    // Decision records equal answered requests, each replica's on its own chain.
    let n: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'decision'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 120);
    let chains: Vec<String> = c
        .query(
            &format!("SELECT DISTINCT chain FROM {t} ORDER BY chain"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(chains, ["gw-1", "gw-2", "gw-3"]);
    let completions: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'completion'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        completions, 90,
        "every forwarded transfer has its completion"
    );

    // Every chain whole, every checkpoint signed, every receipt still there.
    let rfile = keys.path().join("receipts.txt");
    std::fs::write(&rfile, receipts.join("\n")).unwrap();
    let pubkey = format!("{}.pub", key.display());
    let out = verify(
        &t,
        &[
            "--pubkey",
            &pubkey,
            "--receipts",
            rfile.to_str().unwrap(),
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{v}");
    assert_eq!(v["chains"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["receipts_checked"], 120, "{v}");
    assert!(
        v["chains"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["checkpoints"].as_u64().unwrap() >= 1),
        "{v}"
    );

    // The gateway's role cannot change a row: no privilege, and the triggers besides.
    let (gwc, conn_task) = tokio_postgres::connect(&conn, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn_task);
    for sql in [
        format!("UPDATE {t} SET line = 'x'"),
        format!("DELETE FROM {t} WHERE chain = 'gw-1'"),
        format!("UPDATE {t}_batches SET lines = '{{}}'"),
        format!("DELETE FROM {t}_batches WHERE chain = 'gw-1'"),
        format!("TRUNCATE {t}_batches"),
        format!("DELETE FROM {t}_heads"),
        format!("TRUNCATE {t}_pipl"),
    ] {
        let e = gwc.batch_execute(&sql).await.unwrap_err();
        assert_eq!(
            e.as_db_error().unwrap().code().code(),
            "42501",
            "{sql}: {e:?}"
        );
    }
    // Even the owner is refused by the triggers.
    let e = c
        .batch_execute(&format!("DELETE FROM {t} WHERE chain = 'gw-2'"))
        .await
        .unwrap_err();
    assert!(e.as_db_error().unwrap().message().contains("append-only"));

    // A superuser past the triggers deletes gw-2's newest rows: verify names it.
    delete_records(
        &c,
        &t,
        &format!("chain = 'gw-2' AND seq > (SELECT max(seq) - 3 FROM {t} WHERE chain = 'gw-2')"),
    )
    .await;
    let out = verify(&t, &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("chain `gw-2`") && err.contains("newest 3 record(s) were deleted"),
        "{err}"
    );
    // And a receipt of a deleted record is missing.
    let out = verify(&t, &["--receipts", rfile.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));

    drop(gwc);
    drop_tables(&c, &t).await;
    let _ = c
        .batch_execute(&format!("DROP OWNED BY {role}; DROP ROLE {role}"))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_with_a_frozen_connection_does_not_stop_the_others() {
    let Some(c) = pg::pg().await else { return };
    let t = table("frozen");
    migrate(&t, None);
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let stuck = Gateway::start(replica(
        "gw-a",
        &relay.dsn("user=postgres dbname=test"),
        &t,
        "",
    ));
    let others = [
        Gateway::start(replica("gw-b", &dsn(), &t, "")),
        Gateway::start(replica("gw-c", &dsn(), &t, "")),
    ];
    let token = stuck.token("alice", "acme-de", "DE", "analytics");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    assert_eq!(
        get(&client, stuck.url(CUSTOMERS), &token).await.status(),
        200
    );

    // The replica's connection stops answering mid-flight, sockets open (a partition).
    relay.set(Mode::Freeze);
    let frozen = {
        let (client, url, token) = (client.clone(), stuck.url(CUSTOMERS), token.clone());
        tokio::spawn(async move { get(&client, url, &token).await.status().as_u16() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The others go on serving meanwhile.
    for round in 0..10 {
        for gw in &others {
            let token = gw.token("alice", "acme-de", "DE", "analytics");
            let r = get(&client, gw.url(CUSTOMERS), &token).await;
            assert_eq!(r.status(), 200, "round {round}");
        }
    }
    // The stuck replica fails closed within its bounded wait.
    assert_eq!(frozen.await.unwrap(), 503);

    // Given its connection back, it serves again.
    relay.set(Mode::Pass);
    eventually(30, "the stuck replica serves again", || {
        let (client, url, token) = (client.clone(), stuck.url(CUSTOMERS), token.clone());
        async move { get(&client, url, &token).await.status() == 200 }
    })
    .await;
    drop(stuck);
    drop(others);
    let out = verify(&t, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop_tables(&c, &t).await;
}

/// Writes a file of `mib` MiB into the store's eu-customers folder.
fn big_file(store: &Path, mib: usize) -> &'static str {
    let line = "1,Erika Mustermann,erika@example.de,Berlin\n".repeat(1 << 10);
    let mut text = String::with_capacity(mib << 20);
    while text.len() < mib << 20 {
        text.push_str(&line);
    }
    std::fs::write(store.join("datasets/eu-customers/big.csv"), text).unwrap();
    "/datasets/eu-customers/big.csv"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_outage_loses_no_record_and_readiness_returns_without_traffic() {
    let Some(c) = pg::pg().await else { return };
    let t = table("outage");
    migrate(&t, None);
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let conn = relay.dsn("user=postgres dbname=test");
    let a = support::start(replica("gw-a", &conn, &t, ""));
    let path = big_file(&a.gw.store, 16);
    let probe = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    eventually(10, "the replica is ready", || {
        let (p, u) = (probe.clone(), a.admin.clone());
        async move { ready(&p, &u).await }
    })
    .await;

    // A download is under way when the database goes away.
    let token = a.gw.token("alice", "acme-de", "DE", "analytics");
    let mut resp = get(&a.gw.client(), a.gw.url(path), &token).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let first = resp.chunk().await.unwrap().unwrap();
    assert!(!first.is_empty());
    relay.set(Mode::Down);
    // Readiness follows the database, with no request needed.
    eventually(20, "readiness goes down", || {
        let (p, u) = (probe.clone(), a.admin.clone());
        async move { !ready(&p, &u).await }
    })
    .await;
    // The transfer ends during the outage; new transfers are refused meanwhile.
    while resp.chunk().await.unwrap().is_some() {}
    let r = get(&a.gw.client(), a.gw.url(CUSTOMERS), &token).await;
    assert_eq!(r.status(), 503);

    // A replica started now starts, unready and refusing, and serves once the store is back.
    let b = support::start(replica("gw-b", &conn, &t, ""));
    assert!(!ready(&probe, &b.admin).await);
    let token_b = b.gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&b.gw.client(), b.gw.url(CUSTOMERS), &token_b).await;
    assert_eq!(r.status(), 503);

    relay.set(Mode::Pass);
    for (name, gw) in [("gw-a", &a), ("gw-b", &b)] {
        eventually(30, &format!("{name} is ready again"), || {
            let (p, u) = (probe.clone(), gw.admin.clone());
            async move { ready(&p, &u).await }
        })
        .await;
    }
    // The completion of the download that ended during the outage is stored.
    eventually(20, "the completion is stored", || {
        completed(&c, &t, "gw-a", &id, "complete")
    })
    .await;
    let r = get(&b.gw.client(), b.gw.url(CUSTOMERS), &token_b).await;
    assert_eq!(r.status(), 200);
    drop(a);
    drop(b);
    let out = verify(&t, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_crashed_replica_completes_its_interrupted_transfers_on_restart() {
    let Some(c) = pg::pg().await else { return };
    let t = table("crash");
    migrate(&t, None);
    let opts = replica("gw-k", &dsn(), &t, "");
    let mut gw = Gateway::start(opts);
    let path = big_file(&gw.store, 16);
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    let mut resp = get(&gw.client(), gw.url(path), &token).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let _ = resp.chunk().await.unwrap();
    // kill -9 in the middle of the transfer.
    gw.child.kill().unwrap();
    gw.child.wait().unwrap();
    drop(resp);
    // The same replica again (its config, its name).
    gw.respawn();
    eventually(10, "the crashed transfer is completed as unknown", || {
        completed(&c, &t, "gw-k", &id, "unknown-crashed")
    })
    .await;
    assert!(gw.stop().success());
    let out = verify(&t, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop_tables(&c, &t).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_spool_a_replica_serves_through_an_outage_and_drains_without_loss_or_duplicate() {
    let Some(c) = pg::pg().await else { return };
    let t = table("spool");
    migrate(&t, None);
    let relay = Relay::start("127.0.0.1:5432".parse().unwrap()).await;
    let keep = tempfile::tempdir().unwrap();
    let spool = keep.path().join("gw-s.spool");
    let opts = replica(
        "gw-s",
        &relay.dsn("user=postgres dbname=test"),
        &t,
        &format!("    spool: {}\n", spool.display()),
    );
    let mut gw = Gateway::start(opts);
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    let client = gw.client();
    let mut receipts = Vec::new();
    let fetch = |gw: &Gateway| {
        let (client, url, token) = (client.clone(), gw.url(CUSTOMERS), token.clone());
        async move {
            let r = get(&client, url, &token).await;
            assert_eq!(r.status(), 200);
            r.headers()["audit-receipt"].to_str().unwrap().to_owned()
        }
    };
    receipts.push(fetch(&gw).await);
    relay.set(Mode::Down);
    // The database is gone: the replica keeps serving, each decision durable in the spool.
    for _ in 0..20 {
        receipts.push(fetch(&gw).await);
    }
    assert!(std::fs::metadata(&spool).unwrap().len() > 0);
    // A replica restarted during the outage keeps its spool, but cannot read the fleet's
    // trail (PIPL volumes, recent downloads): it refuses until the database answers.
    assert!(gw.stop().success());
    gw.respawn();
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    let r = get(&gw.client(), gw.url(CUSTOMERS), &token).await;
    assert_eq!(r.status(), 503);
    relay.set(Mode::Pass);
    eventually(30, "the spool is drained", || {
        let spool = spool.clone();
        async move { std::fs::metadata(&spool).map(|m| m.len()).unwrap_or(1) == 0 }
    })
    .await;
    eventually(30, "the restarted replica serves", || {
        let (client, url, token) = (gw.client(), gw.url(CUSTOMERS), token.clone());
        async move { get(&client, url, &token).await.status() == 200 }
    })
    .await;
    assert!(gw.stop().success());
    let decisions: i64 = c
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE kind = 'decision'"),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(decisions >= 22, "{decisions}");
    // Every decision once: no seq of the chain holds a second copy of a request.
    let dup: i64 = c
        .query_one(
            &format!(
                "SELECT count(*) - count(DISTINCT request_id) FROM {t} WHERE kind = 'decision'"
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(dup, 0, "no record was inserted twice");
    let rfile = keep.path().join("receipts.txt");
    std::fs::write(&rfile, receipts.join("\n")).unwrap();
    let out = verify(&t, &["--receipts", rfile.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("receipts checked: 21"));
    drop_tables(&c, &t).await;
}

/// A store of schema version 2 (one row per record) is migrated to batches: its table is
/// kept as `<t>_v2`, every record is readable through the `<t>` view, the chains verify,
/// and a replica continues its chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_version_2_store_migrates_to_batches_and_keeps_its_records() {
    let Some(c) = pg::pg().await else { return };
    let (t, old) = (table("v3"), table("v2"));
    migrate(&t, None);
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let gw = Gateway::start(replica("gw-a", &dsn(), &t, ""));
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    for _ in 0..3 {
        assert_eq!(get(&client, gw.url(CUSTOMERS), &token).await.status(), 200);
    }
    drop(gw);
    // The same records laid out as version 2 kept them.
    c.batch_execute(&format!(
        "CREATE TABLE {old} AS SELECT chain, seq, prev, hash, kind, time, request_id, org, sub, dataset, destination, decision, rule, line FROM {t};
         ALTER TABLE {old} ADD PRIMARY KEY (chain, seq);
         CREATE TABLE {old}_heads AS SELECT * FROM {t}_heads;
         CREATE TABLE {old}_schema (version INT PRIMARY KEY, applied TIMESTAMPTZ NOT NULL DEFAULT now());
         INSERT INTO {old}_schema (version) VALUES (2);"
    ))
    .await
    .unwrap();
    let count = |sql: String| {
        let c = &c;
        async move { c.query_one(&sql, &[]).await.unwrap().get::<_, i64>(0) }
    };
    let records = count(format!("SELECT count(*) FROM {old}")).await;
    assert!(records >= 5, "{records}");
    migrate(&old, None);
    assert_eq!(
        count(format!("SELECT count(*) FROM {old}_v2")).await,
        records
    );
    assert_eq!(count(format!("SELECT count(*) FROM {old}")).await, records);
    let out = verify(&old, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A replica continues its chain on the migrated store.
    let gw = Gateway::start(replica("gw-a", &dsn(), &old, ""));
    let token = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(get(&client, gw.url(CUSTOMERS), &token).await.status(), 200);
    drop(gw);
    assert!(count(format!("SELECT count(*) FROM {old}")).await > records);
    let out = verify(&old, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop_tables(&c, &t).await;
    drop_tables(&c, &old).await;
}
