//! The officer's tools on a gateway with `audit.sink: postgres`: `audit query`, `audit
//! report`, `policy what-if` and the admin audit endpoints give the same answers as for a
//! file-sink gateway that served the same requests, and a store that cannot be read says
//! what PostgreSQL said. Each test uses its own table; without a server they skip locally
//! and fail in CI (`CI=true`).

#![allow(clippy::unwrap_used)]

mod common;
use common::pg;
#[path = "support/admin.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::{BIN, Options, copy_dir, repo};
use serde_json::Value;
use support::{Admined, CUSTOMERS};

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("BORDERGATE_AUDIT_POSTGRES")
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap()
}

/// Allowed (intra-EEA and under the DPF), refused (451) and unauthenticated requests; then
/// waits until both completions are recorded.
async fn traffic(a: &Admined) {
    a.traffic().await;
    let c = a.gw.client();
    let dpf = a.gw.token("carol", "globex-us", "US", "analytics");
    let r = c
        .get(a.gw.url(CUSTOMERS))
        .bearer_auth(&dpf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    let officer = a.officer();
    for _ in 0..100 {
        let r = a
            .get("/audit/records?kind=completion", Some(&officer))
            .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        if v["count"] == 2 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the completions were not recorded");
}

/// What two gateways' records of the same requests have in common.
fn shape(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let s = |p: &str| r.pointer(p).map(Value::to_string).unwrap_or_default();
            [
                "/kind",
                "/decision",
                "/status",
                "/caller/sub",
                "/caller/org",
                "/destination",
                "/rule",
                "/bytes_out",
            ]
            .map(s)
            .join(" ")
        })
        .collect()
}

fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The shipped pack without the EU-US Data Privacy Framework.
fn pack_without_dpf(tmp: &Path) -> PathBuf {
    let dir = tmp.join("policies-no-dpf");
    copy_dir(&repo().join("policies"), &dir);
    let eu = std::fs::read_to_string(dir.join("eu.yaml")).unwrap();
    let start = eu.find("  - id: eu.adequacy.us-dpf\n").unwrap();
    let end = eu.find("  - id: eu.adequacy.us-privacy-shield\n").unwrap();
    std::fs::write(
        dir.join("eu.yaml"),
        format!("{}{}", &eu[..start], &eu[end..]),
    )
    .unwrap();
    std::fs::remove_dir_all(dir.join("tests")).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_officers_tools_read_the_postgres_store_as_they_read_files() {
    let Some(c) = pg::pg().await else { return };
    let t = pg::table("tools");
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), format!("{}\n", pg::dsn())).unwrap();
    let mut file_gw = support::start(Options::default());
    let mut pg_gw = support::start(Options {
        extra_audit: format!(
            "  sink: postgres\n  postgres:\n    url: {{file: {}}}\n    table: {t}\n",
            secret.path().display()
        ),
        ..Options::default()
    });
    traffic(&file_gw).await;
    traffic(&pg_gw).await;

    // The admin endpoints answer alike.
    let (fo, po) = (file_gw.officer(), pg_gw.officer());
    let get = |a: &Admined, officer: String, path: &'static str| {
        let url = a.url(path);
        let client = a.gw.client();
        async move {
            let r = client.get(url).bearer_auth(officer).send().await.unwrap();
            assert_eq!(r.status(), 200, "{path}");
            r.text().await.unwrap()
        }
    };
    let records = |text: String| {
        let v: Value = serde_json::from_str(&text).unwrap();
        shape(v["records"].as_array().unwrap())
    };
    let path = "/audit/records?kind=decision";
    let want = records(get(&file_gw, fo.clone(), path).await);
    assert_eq!(want.len(), 4, "{want:?}");
    assert_eq!(records(get(&pg_gw, po.clone(), path).await), want);
    let path = "/audit/records?decision=deny&destination=US&order=desc&limit=1";
    let denied = records(get(&pg_gw, po.clone(), path).await);
    assert_eq!(denied, records(get(&file_gw, fo.clone(), path).await));
    assert!(denied[0].contains("\"acme-us\""), "{denied:?}");

    let v: Value = serde_json::from_str(&get(&pg_gw, po.clone(), "/audit/verify").await).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(v["summary"].as_str().unwrap().starts_with("ok:"), "{v}");
    // One entry per replica chain.
    let first = v["files"][0][0].as_str().unwrap();
    assert!(
        first.starts_with(&format!("postgres table `{t}` chain `")),
        "{v}"
    );
    let records_seen = v["records"].as_u64().unwrap();
    assert!(records_seen >= 6, "{v}");

    let report = |text: String| serde_json::from_str::<Value>(&text).unwrap();
    let fr = report(get(&file_gw, fo.clone(), "/audit/report").await);
    let pr = report(get(&pg_gw, po.clone(), "/audit/report").await);
    assert_eq!(pr["verification"]["ok"], true, "{pr}");
    for k in [
        "transfers",
        "refusals",
        "totals",
        "destinations",
        "refusals_by_rule",
    ] {
        assert_eq!(pr[k], fr[k], "{k}");
    }
    assert_eq!(pr["transfers"][0]["organisations"][0], "globex-us", "{pr}");
    assert_eq!(pr["refusals"][0]["count"], 1, "{pr}");
    let md = get(&pg_gw, po, "/audit/report?format=md").await;
    assert!(md.contains("Log verification: **ok"), "{md}");

    file_gw.gw.stop();
    pg_gw.gw.stop();
    assert!(!pg_gw.gw.audit.exists(), "the file sink was not used");

    // The same store named three ways; the file log by its path.
    let dsn = pg::dsn();
    let log = file_gw.gw.audit.to_str().unwrap().to_owned();
    let pg_config = pg_gw.gw.config.to_str().unwrap().to_owned();
    let by_flag = ["--postgres", dsn.as_str(), "--table", t.as_str()];
    let by_config = ["--config", pg_config.as_str()];
    let query = |store: &[&str], filter: &[&str]| {
        let mut args = vec!["audit", "query", "--format", "jsonl"];
        args.extend_from_slice(store);
        args.extend_from_slice(filter);
        shape(&jsonl(&ok(&run(&args))))
    };
    for filter in [
        &["--kind", "decision"][..],
        &["--decision", "deny"],
        &["--org", "globex-us"],
        &[
            "--kind",
            "completion",
            "--from",
            "2020-01-01",
            "--to",
            "2099-12-31",
        ],
    ] {
        let want = query(&[log.as_str()], filter);
        assert!(!want.is_empty(), "{filter:?}");
        assert_eq!(query(&by_flag, filter), want, "{filter:?}");
        assert_eq!(query(&by_config, filter), want, "{filter:?}");
    }
    // Time bounds are asked of the store: nothing before 2020 or after 2099.
    assert!(query(&by_flag, &["--to", "2020-01-01"]).is_empty());
    assert!(query(&by_flag, &["--from", "2099-01-01"]).is_empty());
    assert_eq!(
        query(&by_flag, &["--kind", "decision", "--limit", "1"]).len(),
        1
    );

    // The Art. 30 record, pseudonymised with one key, is the same.
    let key = file_gw.gw.dir.path().join("pseudo.key");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let key = key.to_str().unwrap();
    let report = |store: &[&str]| {
        let mut args = vec!["audit", "report", "--format", "json", "--pseudonymise"];
        args.extend_from_slice(&["--pseudonymise-org", "--key-file", key]);
        args.extend_from_slice(store);
        json(&run(&args))
    };
    let want = report(&[log.as_str()]);
    for got in [report(&by_flag), report(&by_config)] {
        assert_eq!(got["transfers"], want["transfers"]);
        assert_eq!(got["refusals"], want["refusals"]);
        assert!(
            got["verification"]["damage"].as_array().unwrap().is_empty(),
            "{got}"
        );
        assert_eq!(got["files"][0], format!("postgres table `{t}`"));
    }
    let org = want["transfers"][0]["organisations"][0].as_str().unwrap();
    assert!(org.starts_with("p-"), "{want}");
    let md = ok(&run(&[
        "audit",
        "report",
        "--postgres",
        &dsn,
        "--table",
        &t,
    ]));
    assert!(md.contains("Log verification: **ok:"), "{md}");
    assert!(md.contains("| US | GDPR Art. 45"), "{md}");

    // What-if over the trail: without the DPF, carol's transfer flips.
    let tmp = tempfile::tempdir().unwrap();
    let pack = pack_without_dpf(tmp.path());
    let registry = repo().join("examples/quickstart/registry.yaml");
    let what_if = |store: &[&str]| {
        let mut args = vec!["policy", "what-if", "--json", "--policies"];
        args.push(pack.to_str().unwrap());
        args.extend_from_slice(&["--registry", registry.to_str().unwrap()]);
        args.extend_from_slice(store);
        let mut v = json(&run(&args));
        for c in v["changes"].as_array_mut().unwrap() {
            for k in ["seq", "request_id", "time"] {
                c.as_object_mut().unwrap().remove(k);
            }
        }
        v
    };
    let want = what_if(&["--audit", log.as_str()]);
    assert_eq!(want["changed"], 1, "{want}");
    assert_eq!(want["allow_to_deny"], 1, "{want}");
    assert_eq!(want["by_org"], serde_json::json!({"globex-us": 1}));
    let mut want_counts = want.clone();
    want_counts.as_object_mut().unwrap().remove("lines");
    for got in [what_if(&by_flag), what_if(&by_config)] {
        let mut got_counts = got.clone();
        got_counts.as_object_mut().unwrap().remove("lines");
        assert_eq!(got_counts, want_counts);
    }

    pg::drop_tables(&c, &t).await;
}

#[tokio::test]
async fn a_store_that_cannot_be_read_says_what_postgresql_said() {
    let Some(_c) = pg::pg().await else { return };
    let dsn = pg::dsn();
    if dsn.contains("://") {
        common::report_skip(
            "BORDERGATE_TEST_POSTGRES is a URL",
            "give it as `key=value` pairs to run this case",
        );
        return;
    }
    let no_db = format!("{dsn} dbname=bgt_no_such_db");
    for args in [
        &["audit", "query", "--postgres", no_db.as_str()][..],
        &["audit", "report", "--postgres", no_db.as_str()],
    ] {
        let o = run(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("database \"bgt_no_such_db\" does not exist (SQLSTATE 3D000)"),
            "{err}"
        );
        assert!(!err.contains("db error"), "{err}");
    }
    let missing = pg::table("missing");
    let o = run(&["audit", "query", "--postgres", &dsn, "--table", &missing]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "cannot read postgres table `{missing}`: relation \"{missing}_batches\" does not exist (SQLSTATE 42P01)"
        )),
        "{err}"
    );
    let o = run(&[
        "policy",
        "what-if",
        "--policies",
        "policies",
        "--postgres",
        &no_db,
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("(SQLSTATE 3D000)"), "{err}");
}
