//! The compliance officer's commands on seeded logs: verify (every kind of damage, checkpoints,
//! segments, receipts), query, report, pseudonymised exports, keygen and crash recovery.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use aws_lc_rs::digest::{SHA256, digest};
use bordergate::audit::checkpoint::{Signer, generate};
use bordergate::audit::record::{CompletionRecord, DecisionRecord, Outcome};
use bordergate::audit::upkeep::Upkeep;
use bordergate::audit::{AuditLog, Options, Receipt, Record};
use bordergate::model::{Caller, Category, Country, Direction, Effect, Instrument, Tags};
use common::BIN;

fn c(s: &str) -> Country {
    Country::parse(s).unwrap()
}

fn decision(i: u64, sub: &str, dest: &str, allow: bool) -> Record {
    Record::Decision(Box::new(DecisionRecord {
        time: format!("2025-03-{:02}T10:00:00.000000001Z", 1 + i % 28),
        request_id: format!("req-{i}"),
        caller: Some(Caller {
            sub: sub.into(),
            org: "acme-ml".into(),
            jurisdiction: c(dest),
            purpose: "training".into(),
            claimed_jurisdiction: None,
        }),
        method: "GET".into(),
        path: "/datasets/eu-patients/part-0.parquet".into(),
        dataset: Some("eu-patients".into()),
        tags: Some(Tags {
            origins: [c("DE")].into(),
            categories: [Category::Health].into(),
            ..Tags::default()
        }),
        origins: vec![c("DE")],
        destination: Some(c(dest)),
        direction: Direction::Download,
        decision: if allow { Effect::Allow } else { Effect::Deny },
        enforced: true,
        status: if allow { 0 } else { 451 },
        rule: if allow {
            "gdpr-scc".into()
        } else {
            "gdpr-no-basis".into()
        },
        article: if allow {
            "GDPR Art. 46(2)(c)".into()
        } else {
            "GDPR Art. 44".into()
        },
        reason: if allow {
            "standard contractual clauses in place".into()
        } else {
            "no transfer mechanism for this destination".into()
        },
        policy_version: "pv1".into(),
        upstream: Some("store".into()),
        exporter: None,
        client_request_id: None,
        undeclared_recent: None,
        credential: None,
        instrument: allow.then(|| {
            std::sync::Arc::new(Instrument {
                id: "eu.scc-2021-914".into(),
                kind: "scc-decision".into(),
                title: "SCC decision".into(),
                date: Some("2021-06-04".into()),
                reference: "OJ L 199, 7.6.2021, p. 31".into(),
                module: Some(2),
            })
        }),
        transform: None,
    }))
}

fn completion(seq: u64, i: u64) -> Record {
    Record::Completion(CompletionRecord {
        time: format!("2025-03-{:02}T10:00:01Z", 1 + i % 28),
        request_id: format!("req-{i}"),
        decision_seq: seq,
        status: 200,
        bytes_in: 0,
        bytes_out: 1000,
        duration_ms: 3,
        outcome: Outcome::Complete,
        detail: None,
        recheck: None,
        sent_sha256: None,
    })
}

struct Seeded {
    dir: tempfile::TempDir,
    log: PathBuf,
    pubkey: String,
    receipts: Vec<Receipt>,
}

/// A log of `n` requests (every third refused to CN, the rest allowed to US with a
/// completion), signed every 5 records.
async fn seed(n: u64, tune: impl FnOnce(&mut Upkeep)) -> Seeded {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let (der, public) = generate().unwrap();
    let mut upkeep = Upkeep::default();
    upkeep.signer = Some(Signer::from_bytes(&der).unwrap());
    upkeep.checkpoint_every = 5;
    upkeep.checkpoint_interval = Some(Duration::from_secs(3600));
    tune(&mut upkeep);
    let audit = AuditLog::open_with(
        &log,
        Options {
            batch_max: 4,
            upkeep,
        },
    )
    .unwrap();
    let mut receipts = Vec::new();
    for i in 0..n {
        let allow = i % 3 != 0;
        let sub = if i % 2 == 0 { "alice" } else { "bob" };
        let r = audit
            .append(decision(i, sub, if allow { "US" } else { "CN" }, allow))
            .await
            .unwrap();
        if allow {
            audit.append(completion(r.seq, i)).await.unwrap();
        }
        receipts.push(r);
    }
    audit.shutdown().await;
    Seeded {
        dir,
        log,
        pubkey: public.to_base64(),
        receipts,
    }
}

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["audit"]).args(args);
    for p in paths {
        cmd.arg(p);
    }
    cmd.output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

fn write(p: &Path, lines: &[String]) {
    std::fs::write(p, lines.concat()).unwrap();
}

#[track_caller]
fn expect_damage(s: &Seeded, kind: &str) -> String {
    let o = run(&["verify", "--pubkey", &s.pubkey], &[&s.log]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains(&format!("{kind} in `")), "want {kind}: {t}");
    t
}

/// Recomputes every hash from line `from` on (a forger with the format but not the key).
fn rechain(lines: &mut [String]) {
    let mut prev = "0".repeat(64);
    for (i, l) in lines.iter_mut().enumerate() {
        let body_end = l.len() - 1 - (",\"hash\":\"".len() + 64 + 2);
        let body = &l[..body_end];
        let prev_at = body.find("\"prev\":\"").unwrap() + 8;
        let seq = i as u64 + 1;
        let head = format!("{{\"seq\":{seq},\"prev\":\"{prev}\"");
        let rest = &body[prev_at + 64 + 1..];
        let body = format!("{head}{rest}");
        let h = hex::encode(digest(&SHA256, format!("{body}}}").as_bytes()));
        *l = format!("{body},\"hash\":\"{h}\"}}\n");
        prev = h;
    }
}

/// Removes every checkpoint and chains the rest again (a forger without the key).
fn drop_checkpoints(log: &Path) {
    let mut l: Vec<String> = lines(log)
        .into_iter()
        .filter(|x| !x.contains("\"kind\":\"checkpoint\""))
        .collect();
    rechain(&mut l);
    write(log, &l);
    // A forger who shortens the log rewrites its head file too; what is left to catch
    // them is the checkpoint signature.
    let _ = std::fs::remove_file(bordergate::audit::head::path_for(log));
}

#[tokio::test]
async fn a_clean_log_verifies_with_its_checkpoints() {
    let s = seed(12, |_| {}).await;
    let o = run(&["verify", "--pubkey", &s.pubkey], &[&s.log]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.starts_with("ok: "), "{t}");
    assert!(t.contains("signed checkpoint(s)"), "{t}");
    // The shutdown checkpoint signs the very end.
    let last = lines(&s.log).pop().unwrap();
    assert!(last.contains("\"kind\":\"checkpoint\""), "{last}");
    let json = run(&["verify", "--json", "--pubkey", &s.pubkey], &[&s.log]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert!(v["checkpoints"].as_u64().unwrap() >= 4);
}

#[tokio::test]
async fn every_kind_of_tampering_is_named() {
    let s = seed(9, |_| {}).await;
    let good = lines(&s.log);
    let mut l = good.clone();
    l[4] = l[4]
        .replacen("alice", "mallory", 1)
        .replacen("bob", "mallory", 1);
    write(&s.log, &l);
    expect_damage(&s, "modified");

    let mut l = good.clone();
    l.remove(5);
    write(&s.log, &l);
    expect_damage(&s, "missing");

    let mut l = good.clone();
    l.insert(6, l[5].clone());
    write(&s.log, &l);
    expect_damage(&s, "duplicated");

    let mut l = good.clone();
    l.swap(5, 6);
    write(&s.log, &l);
    expect_damage(&s, "reordered");

    let mut l = good.clone();
    let at = l
        .iter()
        .position(|x| x.contains("\"request_id\":\"req-2\""))
        .unwrap();
    let forged = l[at].replacen("req-", "forged-", 1);
    l.insert(at + 1, forged);
    write(&s.log, &l);
    let t = expect_damage(&s, "inserted");
    assert!(t.contains(&format!("line {}", at + 2)), "{t}");

    let mut l = good.clone();
    let last = l.pop().unwrap();
    l.push(last[..last.len() / 2].to_owned());
    write(&s.log, &l);
    expect_damage(&s, "truncated");
}

#[tokio::test]
async fn a_rewritten_log_is_caught_only_by_the_checkpoint_signature() {
    let s = seed(9, |_| {}).await;
    let mut l = lines(&s.log);
    let i = l
        .iter()
        .position(|x| x.contains("\"decision\":\"deny\""))
        .unwrap();
    l[i] = l[i].replace("\"decision\":\"deny\"", "\"decision\":\"allow\"");
    rechain(&mut l);
    write(&s.log, &l);
    let plain = run(&["verify"], &[&s.log]);
    assert!(plain.status.success(), "{}", text(&plain));
    let t = expect_damage(&s, "bad-checkpoint-signature");
    assert!(t.contains("rewritten"), "{t}");

    // Dropping every checkpoint does not help the forger either.
    drop_checkpoints(&s.log);
    let t = expect_damage(&s, "bad-checkpoint-signature");
    assert!(t.contains("no checkpoint signed"), "{t}");
}

/// A log that started moments ago may not have its first checkpoint yet: with a grace the
/// verdict is the admin endpoint's (pending, not damage); without one it fails as before.
#[tokio::test]
async fn a_young_log_without_checkpoints_is_pending_only_within_the_grace() {
    let s = seed(3, |_| {}).await;
    drop_checkpoints(&s.log);
    let t = expect_damage(&s, "bad-checkpoint-signature");
    assert!(t.contains("no checkpoint signed"), "{t}");
    let args = [
        "verify",
        "--pubkey",
        &s.pubkey,
        "--checkpoint-grace",
        "3600",
    ];
    let o = run(&args, &[&s.log]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("first one is pending"), "{t}");
    let json = run(&[&args[..], &["--json"]].concat(), &[&s.log]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["checkpoint_pending"], true, "{v:#}");
}

#[tokio::test]
async fn receipts_prove_records_are_still_there() {
    let s = seed(6, |_| {}).await;
    let rfile = s.dir.path().join("receipts.txt");
    let text_of = |r: &Receipt| format!("seq={}; hash={}\n", r.seq, r.hash);
    std::fs::write(&rfile, s.receipts.iter().map(text_of).collect::<String>()).unwrap();
    let r = rfile.to_str().unwrap();
    let o = run(&["verify", "--receipts", r], &[&s.log]);
    assert!(o.status.success(), "{}", text(&o));
    // Delete a receipted record (and re-chain, so only the receipt tells).
    let victim = &s.receipts[2];
    let mut l: Vec<String> = lines(&s.log)
        .into_iter()
        .filter(|x| !x.starts_with(&format!("{{\"seq\":{},", victim.seq)))
        .collect();
    rechain(&mut l);
    write(&s.log, &l);
    let o = run(&["verify", "--receipts", r], &[&s.log]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("missing-receipt"), "{t}");
    assert!(
        t.contains(&format!("receipt seq {} hash {}", victim.seq, victim.hash)),
        "{t}"
    );
}

#[tokio::test]
async fn a_rotated_log_with_a_retention_removal_verifies_and_a_lost_segment_does_not() {
    let s = seed(40, |u| {
        u.rotate_bytes = Some(4000);
        u.retain_segments = Some(2);
    })
    .await;
    let dir = s.dir.path();
    let o = run(&["verify", "--pubkey", &s.pubkey], &[dir]);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("removed by the retention policy"), "{t}");
    let segs = bordergate::audit::segments::rotated(&s.log).unwrap();
    assert_eq!(segs.len(), 2, "{segs:?}");
    let all = std::fs::read_to_string(&s.log).unwrap();
    assert!(all.contains("\"event\":\"segment-start\""));
    // Records of every segment can be queried across the directory.
    let q = run(&["query", "--format", "jsonl", "--kind", "event"], &[dir]);
    assert!(text(&q).contains("segment-removed"));

    // A segment removed by hand, not by policy.
    std::fs::remove_file(&segs[1].1).unwrap();
    let o = run(&["verify", "--pubkey", &s.pubkey], &[dir]);
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("missing-segment"), "{t}");
}

#[tokio::test]
async fn query_filters_and_formats() {
    let s = seed(12, |_| {}).await;
    let o = run(
        &[
            "query",
            "--format",
            "jsonl",
            "--decision",
            "deny",
            "--sub",
            "alice",
        ],
        &[&s.log],
    );
    let recs: Vec<serde_json::Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // i = 0, 6: refused and alice's.
    assert_eq!(recs.len(), 2, "{}", text(&o));
    assert!(recs.iter().all(|r| r["destination"] == "CN"));
    let o = run(
        &[
            "query",
            "--format",
            "table",
            "--article",
            "46(2)(c)",
            "--limit",
            "3",
        ],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(t.lines().count(), 4, "{t}");
    assert!(t.lines().next().unwrap().starts_with("seq"), "{t}");
    let o = run(
        &["query", "--format", "csv", "--request-id", "req-4"],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert_eq!(t.lines().count(), 3, "decision and completion: {t}");
    // A forwarded decision shows the status its completion recorded, even when the
    // filter leaves the completions out; the JSON Lines are the records as written.
    for extra in [&[][..], &["--limit", "2"][..]] {
        let mut args = vec![
            "query",
            "--format",
            "csv",
            "--kind",
            "decision",
            "--decision",
            "allow",
        ];
        args.extend_from_slice(extra);
        let o = run(&args, &[&s.log]);
        let t = String::from_utf8_lossy(&o.stdout).to_string();
        let rows: Vec<&str> = t.lines().skip(1).collect();
        assert!(!rows.is_empty(), "{}", text(&o));
        assert!(extra.is_empty() || rows.len() == 2, "{t}");
        for r in rows {
            assert_eq!(r.split(',').nth(4), Some("200"), "{t}");
        }
    }
    let o = run(
        &[
            "query",
            "--format",
            "jsonl",
            "--kind",
            "decision",
            "--decision",
            "allow",
        ],
        &[&s.log],
    );
    let first: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["status"], 0);
    let o = run(&["query", "--from", "not a date"], &[&s.log]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("`not a date` is not a date"));
}

#[tokio::test]
async fn pseudonymised_exports_hide_callers() {
    let s = seed(6, |_| {}).await;
    let key = s.dir.path().join("pseudo.key");
    std::fs::write(&key, [42u8; 32]).unwrap();
    let k = key.to_str().unwrap();
    let o = run(
        &[
            "query",
            "--format",
            "csv",
            "--kind",
            "decision",
            "--pseudonymise",
            "--key-file",
            k,
        ],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!t.contains("alice") && !t.contains("bob"), "{t}");
    assert!(t.contains(",p-"), "{t}");
    assert!(t.contains("acme-ml"), "{t}");
    let o = run(
        &[
            "report",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-31",
            "--pseudonymise",
            "--pseudonymise-org",
            "--key-file",
            k,
        ],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(!t.contains("acme-ml") && t.contains("p-"), "{t}");
}

#[tokio::test]
async fn the_report_lists_transfers_and_refusals_under_the_verification_result() {
    let s = seed(12, |_| {}).await;
    let o = run(
        &[
            "report",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-31",
            "--pubkey",
            &s.pubkey,
        ],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(o.status.success(), "{}", text(&o));
    assert!(t.contains("Log verification: **ok:"), "{t}");
    // 8 allowed to US (1000 bytes each), 4 refused to CN.
    assert!(
        t.contains("| US | GDPR Art. 46(2)(c) | SCC decision of 2021-06-04; OJ L 199, 7.6.2021, p. 31; module 2 [eu.scc-2021-914] | gdpr-scc | DE | eu-patients | health | training | acme-ml | 8 | 8000 |"),
        "{t}"
    );
    assert!(
        t.contains(
            "| CN | gdpr-no-basis | GDPR Art. 44 | no transfer mechanism for this destination | 4 |"
        ),
        "{t}"
    );
    let html = run(
        &[
            "report",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-31",
            "--format",
            "html",
        ],
        &[&s.log],
    );
    assert!(String::from_utf8_lossy(&html.stdout).contains("<td class=\"n\">8000</td>"));
    let csv = run(
        &[
            "report",
            "--from",
            "2025-03-01",
            "--to",
            "2025-03-02",
            "--format",
            "csv",
        ],
        &[&s.log],
    );
    let t = String::from_utf8_lossy(&csv.stdout).to_string();
    assert!(t.starts_with("# log verification: ok"), "{t}");
    // Only 2025-03-01 and -02: i = 0 (refused), 1 (allowed).
    assert!(
        t.contains(
            "transfer,US,GDPR Art. 46(2)(c),gdpr-scc,DE,eu-patients,health,training,acme-ml,1,1000,,eu.scc-2021-914; module 2,"
        ),
        "{t}"
    );
}

#[test]
fn keygen_writes_a_key_the_gateway_can_sign_with() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("checkpoint.key");
    let o = run(&["keygen", "--out", key.to_str().unwrap()], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let public = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    let s = Signer::load(&key).unwrap();
    let pk = bordergate::audit::checkpoint::PublicKey::parse_or_load(&public).unwrap();
    pk.check(&s.sign(1, &"0".repeat(64), "t", "v")).unwrap();
    let from_file = std::fs::read_to_string(dir.path().join("checkpoint.key.pub")).unwrap();
    assert_eq!(from_file.trim(), public);
    let again = run(&["keygen", "--out", key.to_str().unwrap()], &[]);
    assert_eq!(again.status.code(), Some(2));
}

#[tokio::test]
async fn a_crash_during_a_transfer_is_recorded_as_unknown_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let audit = AuditLog::open(&log, 8).unwrap();
    let r = audit
        .append(decision(1, "alice", "US", true))
        .await
        .unwrap();
    let done = audit.append(decision(2, "bob", "US", true)).await.unwrap();
    audit.append(completion(done.seq, 2)).await.unwrap();
    drop(audit); // no shutdown: a crash
    tokio::time::sleep(Duration::from_millis(50)).await;
    let audit = AuditLog::open(&log, 8).unwrap();
    audit.shutdown().await;
    let recs = common::read_records(&log);
    let crashed: Vec<_> = recs
        .iter()
        .filter(|v| v["outcome"] == "unknown-crashed")
        .collect();
    assert_eq!(crashed.len(), 1, "{recs:?}");
    assert_eq!(crashed[0]["decision_seq"], r.seq);
    assert_eq!(crashed[0]["request_id"], "req-1");
    let o = run(&["verify"], &[&log]);
    assert!(o.status.success(), "{}", text(&o));
}

/// docs/audit-records.md names every field of every record a real gateway writes.
#[tokio::test]
async fn audit_records_are_documented() {
    let mut gw = common::Gateway::start(common::Options {
        extra_audit: "  checkpoint_key: cp.key\n  generate_checkpoint_key: true\n".into(),
        ..common::Options::default()
    });
    let de = gw.token("alice", "acme-de", "DE", "analytics");
    let us = gw.token("bob", "acme-us", "US", "analytics");
    for t in [&de, &us] {
        let r = gw
            .client()
            .get(gw.url("/datasets/eu-customers/customers.csv"))
            .bearer_auth(t)
            .send()
            .await
            .unwrap();
        let _ = r.bytes().await;
    }
    assert!(gw.stop().success());
    let doc = std::fs::read_to_string(common::repo().join("docs/audit-records.md")).unwrap();
    let records = gw.records();
    let mut kinds = std::collections::BTreeSet::new();
    let mut missing = std::collections::BTreeSet::new();
    for r in &records {
        kinds.insert(r["kind"].as_str().unwrap().to_owned());
        for k in r.as_object().unwrap().keys() {
            if !doc.contains(&format!("| `{k}` |")) {
                missing.insert(format!("{}.{k}", r["kind"].as_str().unwrap()));
            }
        }
    }
    for k in ["decision", "completion", "event", "checkpoint"] {
        assert!(kinds.contains(k), "no {k} record in {records:?}");
    }
    assert!(
        missing.is_empty(),
        "docs/audit-records.md does not name {missing:?}"
    );
}
