//! The policy tools on the shipped pack: `policy test`, `explain`, `diff` and `what-if`
//! (including a pack where the EU-US DPF decision is withdrawn and a replay "as of" the
//! day after Schrems II).

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bordergate::model::Category;
use bordergate::policy::PolicySet;
use bordergate::policy::synthetic::{QUICKSTART, Scenario, audit_log};
use common::{BIN, copy_dir, repo};
use serde_json::Value;
use time::macros::date;

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(repo())
        .args(args)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn load(dir: &Path, registry: &Path) -> PolicySet {
    PolicySet::load(dir, registry).unwrap_or_else(|d| panic!("{d}"))
}

/// A copy of the shipped pack with the EU-US DPF adequacy rule removed.
fn pack_without_dpf(tmp: &Path) -> PathBuf {
    let dir = tmp.join("policies-no-dpf");
    copy_dir(&repo().join("policies"), &dir);
    let eu = std::fs::read_to_string(dir.join("eu.yaml")).unwrap();
    let start = eu.find("  - id: eu.adequacy.us-dpf\n").unwrap();
    let end = eu.find("  - id: eu.adequacy.us-privacy-shield\n").unwrap();
    let edited = format!("{}{}", &eu[..start], &eu[end..]);
    std::fs::write(dir.join("eu.yaml"), edited).unwrap();
    // Its own test cases would now fail; they are not what this copy is for.
    std::fs::remove_dir_all(dir.join("tests")).unwrap();
    dir
}

#[test]
fn policy_test_passes_on_the_shipped_pack_with_every_rule_covered() {
    let o = run(&["policy", "test", "policies/"]);
    let out = stdout(&o);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.contains("0 failed"), "{out}");
    assert!(
        out.contains("0 without a deciding case, 0 without a counter case"),
        "{out}"
    );
}

#[test]
fn policy_test_fails_on_a_failing_case_and_an_uncovered_rule() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("policies");
    copy_dir(&repo().join("policies"), &dir);
    let eu = std::fs::read_to_string(dir.join("tests/eu.yaml")).unwrap();
    let eu: String = eu
        .lines()
        .filter(|l| !l.contains("Uruguay adequacy"))
        .map(|l| l.replace("rule: eu.adequacy.ar }", "rule: eu.adequacy.ad }") + "\n")
        .collect();
    std::fs::write(dir.join("tests/eu.yaml"), eu).unwrap();
    let o = run(&["policy", "test", dir.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL") && out.contains("`Argentina adequacy`"),
        "{out}"
    );
    assert!(
        out.contains("expected rule `eu.adequacy.ad`, got `eu.adequacy.ar`"),
        "{out}"
    );
    assert!(out.contains("UNCOVERED rule `eu.adequacy.uy`"), "{out}");
}

#[test]
fn explain_shows_the_trace_the_winner_and_the_remedies() {
    let o = run(&[
        "policy",
        "explain",
        "--dataset",
        "eu-customers",
        "--jurisdiction",
        "US",
        "--org",
        "acme-us",
        "--purpose",
        "analytics",
        "--date",
        "2026-03-01",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["decision"]["effect"], "deny");
    assert_eq!(v["decision"]["rule"], "eu.chapter-v.no-basis");
    assert_eq!(v["decision"]["instrument"]["id"], "eu.gdpr");
    assert_eq!(v["decision"]["instrument"]["kind"], "statute");
    assert!(
        v["decision"]["instrument"]["reference"]
            .as_str()
            .unwrap()
            .contains("Regulation (EU) 2016/679")
    );
    let trace = v["trace"].as_array().unwrap();
    let dpf = trace
        .iter()
        .find(|t| t["rule"] == "eu.adequacy.us-dpf")
        .unwrap();
    assert_eq!(dpf["outcome"], "not-applicable");
    assert!(
        dpf["note"]
            .as_str()
            .unwrap()
            .contains("no EU-US Data Privacy Framework certification on record for `acme-us`")
    );
    assert_eq!(trace.last().unwrap()["rule"], "eu.chapter-v.no-basis");
    assert!(
        v["why"]
            .as_str()
            .unwrap()
            .contains("`eu.chapter-v.no-basis` decided for origin DE")
    );
    let remedies: Vec<(&str, &str)> = v["remedies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["rule"].as_str().unwrap()))
        .collect();
    assert!(
        remedies.contains(&("dpf", "eu.adequacy.us-dpf")),
        "{remedies:?}"
    );
    assert!(remedies.contains(&("scc", "eu.scc")), "{remedies:?}");
    assert!(remedies.contains(&("explicit-consent", "eu.derogation.explicit-consent")));
    assert!(
        !remedies.iter().any(|r| r.0 == "privacy-shield"),
        "Privacy Shield ended in 2020"
    );

    // The certified importer is allowed, by the DPF decision; the text form says so.
    let o = run(&[
        "policy",
        "explain",
        "--dataset",
        "eu-customers",
        "--jurisdiction",
        "US",
        "--org",
        "globex-us",
        "--purpose",
        "analytics",
        "--date",
        "2026-03-01",
    ]);
    let out = stdout(&o);
    assert!(out.contains("decision: Allow"), "{out}");
    assert!(out.contains("rule:     eu.adequacy.us-dpf"), "{out}");
    assert!(
        out.contains("instrument: eu.adequacy-2023-1795 (adequacy decision, 2023-07-10)")
            && out.contains("OJ L 231, 20.9.2023"),
        "{out}"
    );
    assert!(
        out.contains("ALLOW DE eu         eu.adequacy.us-dpf"),
        "{out}"
    );

    let o = run(&[
        "policy",
        "explain",
        "--dataset",
        "nope",
        "--jurisdiction",
        "US",
        "--org",
        "acme-us",
        "--purpose",
        "analytics",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown catalog id `nope`"));
}

#[test]
fn diff_finds_what_withdrawing_the_dpf_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let new = pack_without_dpf(tmp.path());
    let o = run(&[
        "policy",
        "diff",
        "policies",
        new.to_str().unwrap(),
        "--date",
        "2026-03-01",
        "--destinations",
        "US,GB,JP",
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let changes = v["changes"].as_array().unwrap();
    assert!(!changes.is_empty());
    for c in changes {
        assert_eq!(c["destination"], "US", "{c}");
        assert_eq!(c["mechanism"], "dpf", "{c}");
        assert_eq!(c["old_rule"], "eu.adequacy.us-dpf", "{c}");
        assert_eq!(c["new_effect"], "deny", "{c}");
    }
    let cats: Vec<&str> = changes
        .iter()
        .map(|c| c["category"].as_str().unwrap())
        .collect();
    assert!(
        cats.contains(&"personal") && cats.contains(&"pseudonymous"),
        "{cats:?}"
    );
    assert!(
        !cats.contains(&"public"),
        "public data never needed the DPF"
    );
    // Same set on both sides: nothing changes.
    let o = run(&[
        "policy",
        "diff",
        "policies",
        "policies",
        "--date",
        "2026-03-01",
        "--destinations",
        "US,CN",
    ]);
    assert!(stdout(&o).contains(", 0 change outcome"), "{}", stdout(&o));
}

#[test]
fn what_if_the_dpf_fell_tomorrow_globex_transfers_flip_to_deny() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = repo().join("examples/quickstart/registry.yaml");
    let set = load(&repo().join("policies"), &registry);
    let log = tmp.path().join("audit.log");
    std::fs::write(
        &log,
        audit_log(&set, QUICKSTART, 800, date!(2026 - 03 - 01)),
    )
    .unwrap();
    // The seeded log is a genuine hash chain.
    let o = run(&["audit", "verify", log.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let new = pack_without_dpf(tmp.path());
    let o = run(&[
        "policy",
        "what-if",
        "--audit",
        log.to_str().unwrap(),
        "--policies",
        new.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--json",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lines"], 800);
    assert_eq!(v["replayed"], 800);
    // Two of the eight scenarios are DPF transfers of personal data to globex-us.
    assert_eq!(v["changed"], 200);
    assert_eq!(v["allow_to_deny"], 200);
    assert_eq!(v["deny_to_allow"], 0);
    assert_eq!(v["by_org"], serde_json::json!({"globex-us": 200}));
    assert_eq!(
        v["by_dataset"],
        serde_json::json!({"eu-customers": 100, "support-bot": 100})
    );
    assert_eq!(v["by_destination"], serde_json::json!({"US": 200}));
    let first = &v["changes"][0];
    assert_eq!(first["old_rule"], "eu.adequacy.us-dpf");
    assert_eq!(first["new_rule"], "eu.chapter-v.no-basis");

    // The text form lists the counts.
    let o = run(&[
        "policy",
        "what-if",
        "--audit",
        log.to_str().unwrap(),
        "--policies",
        new.to_str().unwrap(),
        "--registry",
        registry.to_str().unwrap(),
        "--limit",
        "3",
    ]);
    let out = stdout(&o);
    assert!(
        out.contains("200 would change: 200 allow → deny, 0 deny → allow"),
        "{out}"
    );
    assert!(out.contains("     200  globex-us"), "{out}");
    assert!(out.contains("changes (first 3):"), "{out}");

    // Against the unchanged pack, nothing changes.
    let o = run(&[
        "policy",
        "what-if",
        "--audit",
        log.to_str().unwrap(),
        "--policies",
        "policies",
        "--registry",
        registry.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["changed"], 0);
}

const SHIELD_ERA: &[Scenario] = &[
    Scenario {
        org: "shield-us",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics"],
        purpose: "analytics",
        destination: "US",
    },
    Scenario {
        org: "scc-xx",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics"],
        purpose: "analytics",
        destination: "US",
    },
    Scenario {
        org: "appi-jp",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics"],
        purpose: "analytics",
        destination: "JP",
    },
];

#[test]
fn what_if_as_of_the_day_after_schrems_ii_privacy_shield_transfers_flip() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = repo().join("policies/tests/registry.yaml");
    let set = load(&repo().join("policies"), &registry);
    let log = tmp.path().join("audit.log");
    // Recorded on 10 Jul 2020, under the Privacy Shield.
    std::fs::write(&log, audit_log(&set, SHIELD_ERA, 30, date!(2020 - 07 - 10))).unwrap();
    let what_if = |as_of: Option<&str>| {
        let mut args = vec![
            "policy",
            "what-if",
            "--audit",
            log.to_str().unwrap(),
            "--policies",
            "policies",
            "--registry",
            registry.to_str().unwrap(),
            "--json",
        ];
        if let Some(d) = as_of {
            args.extend(["--as-of", d]);
        }
        let o = run(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<Value>(&o.stdout).unwrap()
    };
    assert_eq!(
        what_if(None)["changed"],
        0,
        "replayed on their own dates, nothing changes"
    );
    let v = what_if(Some("2020-07-17"));
    assert_eq!(v["changed"], 10, "{v}");
    assert_eq!(v["by_org"], serde_json::json!({"shield-us": 10}));
    assert_eq!(v["changes"][0]["old_rule"], "eu.adequacy.us-privacy-shield");
    assert_eq!(v["changes"][0]["new_rule"], "eu.chapter-v.no-basis");
    // SCCs of the 2021 decision did not exist in 2020: refused on both dates. Before the
    // Privacy Shield (1 Aug 2016) and Japan's adequacy (23 Jan 2019) both flip.
    let v = what_if(Some("2015-01-01"));
    assert_eq!(
        v["by_org"],
        serde_json::json!({"appi-jp": 10, "shield-us": 10})
    );
}

#[test]
fn what_if_counts_malformed_lines_and_skips_non_policy_records() {
    let tmp = tempfile::tempdir().unwrap();
    let registry = repo().join("examples/quickstart/registry.yaml");
    let set = load(&repo().join("policies"), &registry);
    let mut log = audit_log(&set, QUICKSTART, 8, date!(2026 - 03 - 01));
    log.extend_from_slice(b"{\"kind\":\"decision\", not json\n");
    log.extend_from_slice(br#"{"seq":99,"prev":"00","kind":"decision","time":"2026-03-01T00:00:00Z","request_id":"x","caller":null,"method":"GET","path":"/","dataset":null,"tags":null,"origins":[],"destination":null,"direction":"download","decision":"deny","enforced":true,"status":401,"rule":"auth.missing","article":"","reason":"","policy_version":"x","upstream":null,"hash":"00"}"#);
    log.push(b'\n');
    let path = tmp.path().join("audit.log");
    std::fs::write(&path, log).unwrap();
    let o = run(&[
        "policy",
        "what-if",
        "--audit",
        path.to_str().unwrap(),
        "--policies",
        "policies",
        "--registry",
        registry.to_str().unwrap(),
        "--json",
    ]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["replayed"], 8);
    assert_eq!(v["malformed"], 1);
    assert_eq!(v["skipped"], 1);
}
