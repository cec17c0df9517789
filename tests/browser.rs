//! Browser test of the compliance officer's page: seeds a week of audit records, starts
//! the gateway with an admin listener on that log, and runs tests/browser/officer.mjs in
//! Debian's headless chromium (playwright-core). It saves docs/officer-page.png and
//! screenshots under target/browser/.
//!
//! Runs only with `BORDERGATE_BROWSER_TEST=1`: `.ci/run` installs chromium and
//! playwright-core, then runs it; a plain `cargo test` skips it.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use bordergate::audit::{AuditLog, CompletionRecord, DecisionRecord, Outcome, Record};
use bordergate::model::{Caller, Category, Country, Direction, Effect, Tags};
use common::{Options, repo};

struct Seed {
    sub: &'static str,
    org: &'static str,
    dest: &'static str,
    purpose: &'static str,
    dataset: &'static str,
    category: Category,
    effect: Effect,
    status: u16,
    rule: &'static str,
    article: &'static str,
    reason: &'static str,
}

#[allow(clippy::too_many_arguments)]
const fn s(
    sub: &'static str,
    org: &'static str,
    dest: &'static str,
    purpose: &'static str,
    dataset: &'static str,
    category: Category,
    effect: Effect,
    status: u16,
    rule: &'static str,
    article: &'static str,
    reason: &'static str,
) -> Seed {
    Seed {
        sub,
        org,
        dest,
        purpose,
        dataset,
        category,
        effect,
        status,
        rule,
        article,
        reason,
    }
}

/// The kinds of traffic a week at a European ML team might see.
const KINDS: &[Seed] = &[
    s(
        "pipeline-7",
        "acme-de",
        "DE",
        "analytics",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.intra-eea",
        "GDPR Art. 1(3)",
        "DE and DE are both in the EEA; personal data moves freely (GDPR Art. 1(3))",
    ),
    s(
        "trainer-2",
        "lab-fr",
        "FR",
        "training",
        "eu-clinical",
        Category::Health,
        Effect::Allow,
        0,
        "eu.intra-eea",
        "GDPR Art. 1(3)",
        "DE and FR are both in the EEA; personal data moves freely (GDPR Art. 1(3))",
    ),
    s(
        "eval-ch",
        "helvetia-ch",
        "CH",
        "evaluation",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.adequacy.ch",
        "GDPR Art. 45(9)",
        "CH has an EU adequacy decision (Decision 2000/518/EC, GDPR Art. 45(9))",
    ),
    s(
        "jp-batch",
        "cyberdyne-jp",
        "JP",
        "analytics",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.adequacy.jp",
        "GDPR Art. 45(3)",
        "JP has an EU adequacy decision (Implementing Decision (EU) 2019/419, GDPR Art. 45(3))",
    ),
    s(
        "uk-ds",
        "wayne-gb",
        "GB",
        "research",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.adequacy.gb",
        "GDPR Art. 45(3)",
        "GB has an EU adequacy decision (Implementing Decision (EU) 2021/1772, GDPR Art. 45(3))",
    ),
    s(
        "carol",
        "globex-us",
        "US",
        "analytics",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.adequacy.us-dpf",
        "GDPR Art. 45(3)",
        "globex-us is certified under the EU-US Data Privacy Framework",
    ),
    s(
        "dev-in",
        "initech-in",
        "IN",
        "training",
        "eu-customers",
        Category::Personal,
        Effect::Allow,
        0,
        "eu.scc",
        "GDPR Art. 46(2)(c)",
        "initech-in holds standard contractual clauses (module 1) for IN",
    ),
    s(
        "bob",
        "acme-us",
        "US",
        "analytics",
        "eu-customers",
        Category::Personal,
        Effect::Deny,
        451,
        "eu.chapter-v.no-basis",
        "GDPR Chapter V, Art. 44",
        "no adequacy decision, safeguard or derogation covers personal data from DE to US for acme-us",
    ),
    s(
        "ops-br",
        "umbrella-br",
        "BR",
        "training",
        "eu-clinical",
        Category::Health,
        Effect::Deny,
        451,
        "eu.chapter-v.no-basis",
        "GDPR Chapter V, Art. 44",
        "no adequacy decision, safeguard or derogation covers health data from DE to BR for umbrella-br",
    ),
    s(
        "growth",
        "acme-de",
        "DE",
        "marketing",
        "eu-clinical",
        Category::Health,
        Effect::Deny,
        403,
        "eu.purpose-limitation",
        "GDPR Art. 5(1)(b)",
        "eu-clinical may not be used for marketing (GDPR Art. 5(1)(b))",
    ),
];

fn time(days_ago: i64, minute: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago + 1)
        + time::Duration::minutes(minute);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Writes a realistic, correctly chained log: about 140 decisions over nine days.
async fn seed(path: &Path) -> usize {
    let log = AuditLog::open(path, 64).unwrap();
    let mut n = 0;
    for day in (0..9i64).rev() {
        // Traffic grows over the week, refusals come in bursts.
        let per_day = 8 + (8 - day) as usize * 2;
        for i in 0..per_day {
            let k = &KINDS[(i * 7 + day as usize * 3) % KINDS.len()];
            let id = format!("seed-{day}-{i}");
            let origin = Country::parse("DE").unwrap();
            let dest = Country::parse(k.dest).unwrap();
            let tags = Tags {
                origins: [origin].into(),
                categories: [k.category].into(),
                ..Tags::default()
            };
            let rec = DecisionRecord {
                time: time(day, (i as i64) * 37),
                request_id: id.clone(),
                caller: Some(Caller {
                    sub: k.sub.into(),
                    org: k.org.into(),
                    jurisdiction: dest,
                    purpose: k.purpose.into(),
                    claimed_jurisdiction: None,
                }),
                method: "GET".into(),
                path: format!("/datasets/{}/part-{i}.parquet", k.dataset),
                dataset: Some(k.dataset.into()),
                tags: Some(tags),
                origins: vec![origin],
                destination: Some(dest),
                direction: Direction::Download,
                decision: k.effect,
                enforced: true,
                status: k.status,
                rule: k.rule.into(),
                article: k.article.into(),
                reason: k.reason.into(),
                policy_version: "sha256:seed".into(),
                upstream: Some("eu-store".into()),
                exporter: None,
                client_request_id: None,
                undeclared_recent: None,
                instrument: None,
                transform: None,
            };
            let receipt = log.append(Record::Decision(Box::new(rec))).await.unwrap();
            n += 1;
            if k.effect == Effect::Allow {
                log.append(Record::Completion(CompletionRecord {
                    time: time(day, (i as i64) * 37 + 2),
                    request_id: id,
                    decision_seq: receipt.seq,
                    status: 200,
                    bytes_in: 0,
                    bytes_out: 1_000_000 + (i as u64 * 734_113) % 40_000_000,
                    duration_ms: 120 + i as u64,
                    outcome: Outcome::Complete,
                    detail: None,
                    recheck: None,
                    sent_sha256: None,
                }))
                .await
                .unwrap();
            }
        }
    }
    log.shutdown().await;
    n
}

#[tokio::test]
async fn officer_page_in_headless_chromium() {
    // Run by .ci/run's browser block; a plain `cargo test` skips it.
    if std::env::var("BORDERGATE_BROWSER_TEST").is_ok_and(|v| v == "1") {
        let modules = repo().join("tests/browser/node_modules/playwright-core");
        assert!(
            Path::new("/usr/bin/chromium").exists() && modules.exists(),
            "the browser test needs /usr/bin/chromium and tests/browser/node_modules (see .ci/run)"
        );
    } else {
        eprintln!("skipped: set BORDERGATE_BROWSER_TEST=1 (as .ci/run does) to run it");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let log = work.path().join("seeded-audit.log");
    let decisions = seed(&log).await;
    let a = support::start(Options {
        audit_path: Some(log.clone()),
        ..Options::default()
    });
    let officer = a.officer();
    let plain = a.gw.token("alice", "acme-de", "DE", "analytics");
    let artifacts = repo().join("target/browser");
    std::fs::create_dir_all(&artifacts).unwrap();
    let out = Command::new("node")
        .arg(repo().join("tests/browser/officer.mjs"))
        .env("ADMIN_URL", &a.admin)
        .env("OFFICER_TOKEN", &officer)
        .env("PLAIN_TOKEN", &plain)
        .env("SEEDED_DECISIONS", decisions.to_string())
        .env("SCREENSHOT", repo().join("docs/officer-page.png"))
        .env("ARTIFACTS", &artifacts)
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
    assert!(artifacts.join("officer-page.png").exists());
}
