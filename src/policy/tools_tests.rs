//! Tests of the policy tools' library parts: never-matching rules, the overlay, the
//! re-identification attribute, expiring bases, test coverage and what-if replay.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use time::macros::date;

use super::*;
use crate::model::{Category, DenyGround};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap();
}

const REGIME: &str = "id: xx
name: X
law: X law
members: [DE, FR]
scope_categories: [personal]
out_of_scope: { id: xx.oos, article: a, reason: r }
intra_bloc: { id: xx.intra, article: a, reason: r }
default_deny: { id: xx.none, article: a, reason: r }
rules:
  - id: xx.inside
    effect: allow
    article: a
    reason: r
    destinations: [FR]
  - id: xx.nocats
    effect: allow
    article: a
    reason: r
    categories_any: [health]
  - id: xx.backwards
    effect: allow
    article: a
    reason: r
    effective_from: 2030-01-01
    effective_until: 2020-01-01
  - id: xx.fine
    effect: allow
    article: a
    reason: r
    destinations: [US]
";

#[test]
fn rules_that_can_never_match_are_load_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(d, "xx.yaml", REGIME);
    write(d, "registry.yaml", "");
    let err = PolicySet::load(d, &d.join("registry.yaml")).unwrap_err();
    let text = err.to_string();
    let at = |needle: &str, line: usize| {
        assert!(
            err.0
                .iter()
                .any(|e| e.message.contains(needle) && e.line == Some(line)),
            "no `{needle}` at line {line} in:\n{text}"
        )
    };
    at(
        "rule `xx.inside` can never match: every one of its `destinations` is a member",
        10,
    );
    at(
        "rule `xx.nocats` can never match: none of its `categories_any`",
        15,
    );
    at(
        "rule `xx.backwards` effective_from `2030-01-01` is after its end `2020-01-01`",
        25,
    );
    assert!(!text.contains("xx.fine"), "{text}");
    assert_eq!(err.0.len(), 3, "{text}");
}

#[test]
fn an_overlay_that_would_allow_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "xx.yaml",
        &REGIME
            .replace("destinations: [FR]", "destinations: [GB]")
            .replace("categories_any: [health]", "categories_any: [personal]")
            .replace("effective_from: 2030-01-01", "effective_from: 2010-01-01"),
    );
    write(d, "registry.yaml", "");
    write(
        d,
        "org/corp.yaml",
        "id: corp\nname: Corp\nrules:\n  - id: corp.relax\n    effect: allow\n    article: policy 1\n    reason: r\n  - id: wrong.prefix\n    effect: deny\n    article: policy 2\n    reason: r\n    origins_in: [nope]\n",
    );
    let err = PolicySet::load(d, &d.join("registry.yaml")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("corp.yaml:5: overlay rule `corp.relax` has effect `allow`: an organisation overlay may only be stricter than the law"), "{text}");
    assert!(
        text.contains("overlay rule id `wrong.prefix` does not start with the overlay id `corp.`"),
        "{text}"
    );
    assert!(text.contains("unknown regime `nope`"), "{text}");
}

fn shipped(registry: &str) -> PolicySet {
    PolicySet::load(&root().join("policies"), &root().join(registry)).unwrap()
}

fn tags(origin: &str, cats: &[Category]) -> Tags {
    Tags {
        origins: [Country::parse(origin).unwrap()].into(),
        categories: cats.iter().copied().collect(),
        purposes: Some(
            crate::model::PURPOSES
                .iter()
                .map(|s| s.to_string())
                .collect(),
        ),
        ..Tags::default()
    }
}

fn ask(
    set: &PolicySet,
    t: &Tags,
    org: &str,
    dest: &str,
    purpose: &str,
) -> (crate::model::Decision, Vec<TraceStep>) {
    set.decide_with_trace(&Query {
        tags: t,
        purpose,
        importer: Some(org),
        destination: Country::parse(dest).unwrap(),
        direction: Direction::Download,
        date: date!(2026 - 03 - 01),
        volume: None,
    })
}

#[test]
fn the_shipped_overlay_is_stricter_than_the_law() {
    let set = shipped("policies/tests/registry.yaml");
    let mut t = tags("DE", &[Category::Personal, Category::Health]);
    t.derogations.insert("explicit-consent".into());
    let (d, trace) = ask(&set, &t, "none-xx", "AU", "analytics");
    assert_eq!(d.rule, "org.special-stays-in-eea");
    assert_eq!(d.ground, Some(DenyGround::Authorization));
    assert_eq!(
        d.bases[0].rule, "eu.derogation.explicit-consent",
        "the law allowed"
    );
    assert!(
        trace
            .iter()
            .any(|s| s.rule == "org.special-stays-in-eea" && s.regime.as_deref() == Some("org"))
    );
    let (d, _) = ask(
        &set,
        &tags("DE", &[Category::Personal]),
        "appi-jp",
        "JP",
        "marketing",
    );
    assert_eq!(
        (d.rule.as_str(), d.ground),
        ("org.no-transfer-for-marketing", Some(DenyGround::Purpose))
    );
    let (d, _) = ask(
        &set,
        &tags("DE", &[Category::Public]),
        "none-xx",
        "JP",
        "marketing",
    );
    assert!(
        d.is_allow(),
        "public data is not personal data: {}",
        d.reason
    );
}

#[test]
fn pseudonymous_data_is_out_of_scope_only_for_recipients_that_cannot_reidentify() {
    let set = shipped("policies/tests/registry.yaml");
    let t = tags("DE", &[Category::Pseudonymous]);
    let (d, _) = ask(&set, &t, "none-us", "US", "analytics");
    assert!(!d.is_allow());
    let (d, trace) = ask(&set, &t, "pseudo-us", "US", "analytics");
    assert_eq!(d.rule, "eu.out-of-scope");
    assert!(
        trace
            .iter()
            .any(|s| s.rule == builtin::CANNOT_REIDENTIFY && s.note.contains("C-413/23 P"))
    );
}

#[test]
fn expiring_bases_within_the_horizon_are_reported() {
    let set = shipped("examples/quickstart/registry.yaml");
    let e = set.expiring(date!(2031 - 06 - 01), 365);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].kind, e[0].id.as_str(), e[0].ends),
        ("rule", "eu.adequacy.gb-renewal", date!(2031 - 12 - 27))
    );
    let e = set.expiring(date!(2030 - 12 - 01), 30);
    let initech = e
        .iter()
        .find(|b| b.id == "initech-in/scc/SCC-2024-INITECH-01")
        .unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(initech.days_left, 30);
    assert!(set.expiring(date!(2026 - 03 - 01), 30).is_empty());
}

#[test]
fn the_shipped_test_cases_cover_every_rule() {
    let r = testing::run(&root().join("policies")).unwrap();
    assert!(r.ok(), "{}", r.render());
    assert!(r.passed > 100);
    assert!(r.rules_total > 100);
}

#[test]
fn what_if_replays_in_parallel_and_merges_counts() {
    let set = shipped("examples/quickstart/registry.yaml");
    let log = synthetic::audit_log(&set, synthetic::QUICKSTART, 8_000, date!(2026 - 03 - 01));
    let other = shipped("policies/tests/registry.yaml");
    for threads in [1, 2] {
        let opts = whatif::Options {
            keep: 5,
            threads,
            ..whatif::Options::default()
        };
        let r = whatif::replay_reader(&other, &log[..], &opts).unwrap();
        assert_eq!(r.lines, 8_000);
        assert_eq!(r.replayed, 8_000);
        // globex-us, wayne-gb... are not in the test registry: only mechanism-based allows flip.
        assert_eq!(r.by_org.get("globex-us"), Some(&2_000));
        assert_eq!(r.by_org.get("initech-in"), Some(&1_000));
        assert_eq!(r.changes.len(), 5);
        assert!(r.changes.windows(2).all(|w| w[0].seq < w[1].seq));
    }
}
