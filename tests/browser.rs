//! Browser test of the compliance officer's page: writes a synthetic log of over a million
//! records (over a million decisions: seven-digit counts) with the project's own chain code,
//! starts the gateway with an admin listener on it, and runs tests/browser/officer.mjs in
//! Debian's headless chromium (playwright-core). The page must answer "what EU personal data
//! went to the US last month, under which basis, and was anything refused?" with the numbers
//! `audit query` gives for the same filters. It saves docs/officer-page.png and screenshots
//! under target/browser/.
//!
//! Needs chromium and playwright-core (`.ci/run` installs both); without them it is reported
//! `SKIPPED`, and fails in CI (`CI=true`). The million-record log is shown to the release
//! build (`BORDERGATE_BROWSER_BIN`, as `.ci/run` passes it); the debug build is shown
//! 20,000 records.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use common::{BIN, Options, repo};
use serde_json::{Value, json};

/// Records in the log: about 1.02 million of them decisions (`BORDERGATE_BROWSER_RECORDS`
/// sets another number, for a quick local run).
const RECORDS: usize = 1_650_000;
/// Records in the log the debug build is shown.
const SMALL: usize = 20_000;

/// What `audit query` finds for `args`: decisions, allowed, legal refusals (403, 451) by
/// rule, authentication failures.
fn counted(bin: &str, log: &Path, args: &[&str]) -> Value {
    let out = Command::new(bin)
        .args(["audit", "query"])
        .arg(log)
        .args(["--kind", "decision", "--format", "jsonl", "--policies"])
        .arg(repo().join("policies"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (mut decisions, mut allowed, mut refused, mut auth) = (0u64, 0u64, 0u64, 0u64);
    let mut rules = serde_json::Map::new();
    for line in out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let v: Value = serde_json::from_slice(line).unwrap();
        decisions += 1;
        match (v["decision"].as_str(), v["status"].as_u64()) {
            (Some("allow"), _) => allowed += 1,
            (_, Some(401)) => auth += 1,
            (_, Some(403 | 451)) => {
                refused += 1;
                let r = rules
                    .entry(v["rule"].as_str().unwrap().to_owned())
                    .or_insert(json!(0));
                *r = json!(r.as_u64().unwrap() + 1);
            }
            _ => {}
        }
    }
    json!({ "decisions": decisions, "allowed": allowed, "refused": refused, "auth": auth, "rules": rules })
}

#[tokio::test]
async fn officer_page_in_headless_chromium() {
    let modules = repo().join("tests/browser/node_modules/playwright-core");
    if !Path::new("/usr/bin/chromium").exists() || !modules.exists() {
        common::skip(
            "the browser test needs /usr/bin/chromium and tests/browser/node_modules",
            "apt-get install chromium; (cd tests/browser && npm ci), as .ci/run does",
        );
        return;
    }
    // The million-record run takes the release build (`.ci/run` passes it); with the debug
    // build the page is shown a smaller log.
    let bin = std::env::var("BORDERGATE_BROWSER_BIN").ok();
    let records: usize = std::env::var("BORDERGATE_BROWSER_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bin.is_some() { RECORDS } else { SMALL });
    if records < RECORDS {
        println!(
            "{records} records: set BORDERGATE_BROWSER_BIN=target/release/bordergate for the million-record run"
        );
    }
    let bin = bin.unwrap_or_else(|| BIN.to_owned());
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("seeded-audit.log");
    let started = Instant::now();
    let now = time::OffsetDateTime::now_utc();
    let decisions = bordergate::audit::synthetic::officer_log(&log, records, now, 60).unwrap();
    println!(
        "wrote {records} records ({decisions} decisions, {} MB) in {:.1} s",
        std::fs::metadata(&log).unwrap().len() / 1_000_000,
        started.elapsed().as_secs_f64()
    );
    if records == RECORDS {
        assert!(decisions >= 1_000_000, "seven-digit counts");
    }

    // "Last month": the thirty days before the last fortnight.
    let day = |d: i64| (now - time::Duration::days(d)).date().to_string();
    let (from, to) = (day(45), day(15));
    let t = Instant::now();
    let question = counted(
        &bin,
        &log,
        &[
            "--origin",
            "EU",
            "--destination",
            "US",
            "--category",
            "personal",
            "--third-countries",
            "--from",
            &from,
            "--to",
            &to,
        ],
    );
    let eu = counted(
        &bin,
        &log,
        &["--origin", "eu", "--from", &from, "--to", &to],
    );
    println!(
        "audit query answered both questions in {:.1} s: {question} / {eu}",
        t.elapsed().as_secs_f64()
    );
    assert!(question["allowed"].as_u64().unwrap() > 0);
    assert!(question["refused"].as_u64().unwrap() > 0);
    assert!(eu["auth"].as_u64().unwrap() > 0);

    let a = support::start_bin(
        Options {
            audit_path: Some(log.clone()),
            ..Options::default()
        },
        &bin,
    );
    let officer = a.officer();
    let plain = a.gw.token("alice", "acme-de", "DE", "analytics");
    let artifacts = repo().join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let expect = json!({
        "decisions": decisions,
        "records": records,
        "from": from,
        "to": to,
        "question": question,
        "eu": eu,
    });
    let out = Command::new("node")
        .arg(repo().join("tests/browser/officer.mjs"))
        .env("ADMIN_URL", &a.admin)
        .env("OFFICER_TOKEN", &officer)
        .env("PLAIN_TOKEN", &plain)
        .env("EXPECT", expect.to_string())
        .env("SCREENSHOT", repo().join("docs/officer-page.png"))
        .env("ARTIFACTS", &artifacts)
        .env("DOWNLOADS", work.path().join("downloads"))
        .env("USER_DATA_DIR", work.path().join("chromium-profile"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "officer.mjs failed\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    println!(
        "browser test total {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(artifacts.join("officer-page.png").exists());
}
