//! One log, one writer: a second gateway pointed at a running gateway's audit log is
//! refused before it writes anything, and a running gateway that finds records it did not
//! write in its log stops accepting (fail closed) instead of forking the chain.

#![allow(clippy::unwrap_used)]

mod common;

use common::{Gateway, Options};

fn lines(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .count()
}

/// Runs a second `serve` on `config` with `args` and returns its exit code and stderr (it
/// is expected to be refused; one that starts would block the test).
fn serve_refused(config: &std::path::Path, args: &[&std::ffi::OsStr]) -> (Option<i32>, String) {
    let o = std::process::Command::new(common::BIN)
        .arg("serve")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("BORDERGATE_LOG", "warn")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The status of one download a DE analyst is allowed to make.
async fn fetch(gw: &Gateway, token: &str) -> reqwest::StatusCode {
    gw.client()
        .get(gw.url("/datasets/eu-customers/customers.csv"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_second_gateway_on_the_same_log_is_refused_and_writes_nothing() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let get = || fetch(&gw, &t);
    assert_eq!(get().await, 200);
    // Let the completion land, then count.
    let last = gw
        .records()
        .into_iter()
        .rev()
        .find(|r| r["kind"] == "decision")
        .unwrap();
    let _ = gw.completion(last["request_id"].as_str().unwrap()).await;
    let before = std::fs::read(&gw.audit).unwrap();
    // Same config (same log), another port.
    let (code, err) = serve_refused(&gw.config, &["--listen".as_ref(), "127.0.0.1:0".as_ref()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("another process is writing this audit log"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&gw.audit).unwrap(),
        before,
        "the second gateway wrote nothing"
    );
    // The first one goes on, and its chain verifies.
    assert_eq!(get().await, 200);
    let v = std::process::Command::new(common::BIN)
        .args(["audit", "verify"])
        .arg(&gw.audit)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
}

#[tokio::test]
async fn records_the_gateway_did_not_write_stop_it_fail_closed() {
    let gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    let get = || fetch(&gw, &t);
    assert_eq!(get().await, 200);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    // Another writer that ignores the lock appends a line.
    let n = lines(&gw.audit);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&gw.audit)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"kind\":\"event\",\"event\":\"forged\"}\n").unwrap();
    drop(f);
    // The next request cannot be made durable: refused 503, nothing forwarded.
    assert_eq!(get().await, 503);
    assert_eq!(get().await, 503);
    assert_eq!(
        lines(&gw.audit),
        n + 1,
        "nothing was chained after the foreign line"
    );
}

#[tokio::test]
async fn a_second_gateway_on_a_busy_port_writes_nothing_to_any_log() {
    let gw = Gateway::start(Options::default());
    // Another gateway with a log of its own, on the port the first one holds.
    let other = tempfile::tempdir().unwrap();
    let log = other.path().join("other.log");
    let addr = gw.addr.to_string();
    let (code, err) = serve_refused(
        &gw.config,
        &[
            "--listen".as_ref(),
            addr.as_ref(),
            "--audit-log".as_ref(),
            log.as_os_str(),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("cannot listen on {}", gw.addr)) && err.contains("in use"),
        "{err}"
    );
    assert!(!log.exists(), "the refused gateway created its log");
    assert!(
        !other.path().join("other.log.head").exists(),
        "nor its head file"
    );
    // The running gateway's log holds one start, its own.
    let starts = gw
        .records()
        .iter()
        .filter(|r| r["event"] == "start")
        .count();
    assert_eq!(
        starts, 1,
        "the refused gateway wrote into the running one's log"
    );
}

fn bordergate(args: &[&str], log: &std::path::Path) -> (Option<i32>, String, String) {
    let o = std::process::Command::new(common::BIN)
        .args(args)
        .arg(log)
        .env("USER", "ops-oncall")
        .output()
        .unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_forked_log_is_repaired_keeping_the_evidence_and_the_gateway_continues() {
    let mut gw = Gateway::start(Options::default());
    let t = gw.token("alice", "acme-de", "DE", "analytics");
    assert_eq!(fetch(&gw, &t).await, 200);
    assert!(gw.stop().success());
    // A second writer that ignored the lock forked the chain.
    let mut forked = std::fs::read(&gw.audit).unwrap();
    let good = gw.records().len();
    forked
        .extend_from_slice(b"{\"seq\":3,\"prev\":\"00\",\"kind\":\"event\",\"event\":\"start\"}\n");
    std::fs::write(&gw.audit, &forked).unwrap();

    // The gateway refuses the damaged log and says how to repair it.
    let (code, err) = serve_refused(&gw.config, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("bordergate audit repair {}", gw.audit.display())),
        "{err}"
    );
    let (code, _, err) = bordergate(&["audit", "verify"], &gw.audit);
    assert_eq!(code, Some(1), "{err}");

    let (code, out, err) = bordergate(&["audit", "repair"], &gw.audit);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("sealed as"), "{out}");
    let sealed: Vec<_> = std::fs::read_dir(gw.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.to_string_lossy().contains("audit.log.damaged-")
                && p.extension().is_none_or(|e| e != "head")
        })
        .collect();
    assert_eq!(sealed.len(), 1, "{sealed:?}");
    assert_eq!(
        std::fs::read(&sealed[0]).unwrap(),
        forked,
        "the evidence is kept as it was"
    );
    let first = &gw.records()[0];
    assert_eq!(first["event"], "repair");
    assert_eq!(first["by"], "ops-oncall");
    assert_eq!(first["last_good_seq"], good as u64);

    let (code, out, err) = bordergate(&["audit", "verify"], &gw.audit);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("1 recorded repair(s)") && out.contains("note: recorded repair"),
        "{out}"
    );

    // The gateway starts on the repaired log and appends to it.
    gw.respawn();
    assert_eq!(fetch(&gw, &t).await, 200);
    // Not while it runs.
    let (code, _, err) = bordergate(&["audit", "repair"], &gw.audit);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("stop it before repairing"), "{err}");
    assert!(gw.stop().success());
    let (code, out, err) = bordergate(&["audit", "verify"], &gw.audit);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(gw.records().iter().any(|r| r["kind"] == "decision"));
}
