//! Load: mixed allow/deny requests at 64 concurrency over keep-alive HTTP/1.1 to the file
//! store. Every status is one policy explains, the audit log has one decision per request,
//! the chain verifies and memory stays flat. `BORDERGATE_LOAD_REQUESTS=100000` for the full run.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{Gateway, Options};

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_load_is_explained_audited_and_flat() {
    let total: usize = std::env::var("BORDERGATE_LOAD_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let concurrency = 64;
    let gw = Gateway::start(Options::default());
    let pem = std::fs::read(gw.dir.path().join("cert.pem")).unwrap();
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .http1_only()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    // (token, path, the status policy gives)
    let cases = Arc::new(vec![
        (
            gw.token("alice", "acme-de", "DE", "analytics"),
            "/datasets/eu-customers/customers.csv",
            200u16,
        ),
        (
            gw.token("bob", "acme-us", "US", "analytics"),
            "/datasets/eu-customers/customers.csv",
            451,
        ),
        (
            gw.token("alice", "acme-de", "DE", "marketing"),
            "/datasets/eu-customers/customers.csv",
            403,
        ),
        (
            gw.token("alice", "acme-de", "DE", "analytics"),
            "/datasets/nowhere/x",
            403,
        ),
        (
            "not-a-token".to_string(),
            "/datasets/eu-customers/customers.csv",
            401,
        ),
        (
            gw.token("alice", "acme-de", "DE", "analytics"),
            "/datasets/eu-customers/a%2Fb",
            400,
        ),
    ]);
    let next = Arc::new(AtomicUsize::new(0));
    let rss_start = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let pid = gw.child.id();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, cases, next, base) =
            (client.clone(), cases.clone(), next.clone(), gw.base.clone());
        let rss_start = rss_start.clone();
        tasks.push(tokio::spawn(async move {
            let mut unexplained = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                if i == total / 4 {
                    rss_start.store(rss_kib(pid), Ordering::Relaxed);
                }
                let (tok, path, want) = &cases[i % cases.len()];
                let r = client
                    .get(format!("{base}{path}"))
                    .bearer_auth(tok)
                    .send()
                    .await;
                match r {
                    Ok(r) => {
                        let s = r.status().as_u16();
                        let _ = r.bytes().await;
                        if s != *want {
                            unexplained.push(format!("{path}: {s} (policy says {want})"));
                        }
                    }
                    Err(e) => unexplained.push(format!("{path}: {e}")),
                }
            }
            unexplained
        }));
    }
    let mut unexplained = Vec::new();
    for t in tasks {
        unexplained.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();
    let rss_end = rss_kib(pid);
    eprintln!(
        "{total} requests in {elapsed:?}; VmRSS at 1/4: {} KiB, at end: {rss_end} KiB",
        rss_start.load(Ordering::Relaxed)
    );
    assert!(
        unexplained.is_empty(),
        "{} unexplained: {:?}",
        unexplained.len(),
        &unexplained[..unexplained.len().min(10)]
    );
    // Let completions land, then count.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let recs = gw.records();
    let decisions = recs.iter().filter(|r| r["kind"] == "decision").count();
    assert_eq!(decisions, total, "audit decision records != requests");
    let allows = recs
        .iter()
        .filter(|r| r["kind"] == "decision" && r["decision"] == "allow")
        .count();
    let completions = recs.iter().filter(|r| r["kind"] == "completion").count();
    assert_eq!(allows, total.div_ceil(cases.len()));
    assert_eq!(completions, allows);
    assert!(common::verify(&gw.audit).status.success());
    // Flat memory: growth over the last three quarters is bounded, not proportional.
    let start = rss_start.load(Ordering::Relaxed);
    assert!(
        rss_end < start + 64 * 1024,
        "VmRSS grew from {start} KiB to {rss_end} KiB"
    );
}
