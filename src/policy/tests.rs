//! Scenario tests against the shipped policy pack and the quickstart registry.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use time::macros::date;

use super::*;
use crate::model::{Category, Decision, DenyGround};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pack() -> PolicySet {
    match PolicySet::load(
        &root().join("policies"),
        &root().join("examples/quickstart/registry.yaml"),
    ) {
        Ok(p) => p,
        Err(d) => panic!("shipped policies do not load:\n{d}"),
    }
}

fn c(s: &str) -> Country {
    Country::parse(s).unwrap()
}

fn tags(origins: &[&str], cats: &[Category], purposes: Option<&[&str]>) -> Tags {
    Tags {
        origins: origins.iter().map(|o| c(o)).collect(),
        categories: cats.iter().copied().collect(),
        purposes: purposes.map(|p| p.iter().map(|s| s.to_string()).collect()),
        ..Tags::default()
    }
}

fn personal(origins: &[&str]) -> Tags {
    tags(
        origins,
        &[Category::Personal],
        Some(&["training", "evaluation"]),
    )
}

fn ask(p: &PolicySet, t: &Tags, importer: Option<&str>, dest: &str, day: time::Date) -> Decision {
    let q = Query {
        tags: t,
        purpose: "training",
        importer,
        destination: c(dest),
        direction: Direction::Download,
        date: day,
        volume: None,
    };
    let d = p.decide(&q);
    // The traced evaluation is the same evaluator and must agree.
    let (d2, trace) = p.decide_with_trace(&q);
    assert_eq!(d, d2);
    assert!(!trace.is_empty());
    d
}

const TODAY: time::Date = date!(2026 - 03 - 01);

#[test]
fn same_country_and_intra_eea_are_allowed() {
    let p = pack();
    let d = ask(&p, &personal(&["DE"]), Some("acme-us"), "DE", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.intra-eea");
    assert_eq!(d.article, "GDPR Art. 1(3)");
    let d = ask(&p, &personal(&["DE"]), None, "NO", TODAY);
    assert_eq!(d.rule, "eu.intra-eea");
    assert!(d.policy_version.starts_with("sha256:") && d.policy_version.len() == 7 + 64);
}

#[test]
fn japan_is_adequate() {
    let p = pack();
    let d = ask(&p, &personal(&["FR"]), Some("cyberdyne-jp"), "JP", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.adequacy.jp");
    assert_eq!(d.article, "GDPR Art. 45(3)");
    assert!(
        d.reason.contains("JP") && d.reason.contains("2019/419"),
        "{}",
        d.reason
    );
    // Before the decision, no basis.
    let d = ask(
        &p,
        &personal(&["FR"]),
        Some("cyberdyne-jp"),
        "JP",
        date!(2018 - 06 - 01),
    );
    assert!(!d.is_allow());
}

#[test]
fn uk_adequacy_and_its_renewal() {
    let p = pack();
    let d = ask(
        &p,
        &personal(&["DE"]),
        Some("wayne-gb"),
        "GB",
        date!(2024 - 01 - 01),
    );
    assert_eq!(d.rule, "eu.adequacy.gb");
    let d = ask(&p, &personal(&["DE"]), Some("wayne-gb"), "GB", TODAY);
    assert_eq!(d.rule, "eu.adequacy.gb-renewal");
    let d = ask(
        &p,
        &personal(&["DE"]),
        Some("wayne-gb"),
        "GB",
        date!(2032 - 01 - 01),
    );
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
}

#[test]
fn us_without_mechanism_is_refused_under_chapter_v() {
    let p = pack();
    let d = ask(&p, &personal(&["DE"]), Some("acme-us"), "US", TODAY);
    assert_eq!(d.effect, Effect::Deny);
    assert_eq!(d.ground, Some(DenyGround::Transfer));
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(d.article.contains("Chapter V") && d.article.contains("Art. 44"));
    for needle in [
        "DE",
        "US",
        "`acme-us`",
        "no adequacy decision covers US",
        "EU standard contractual clauses",
        "Data Privacy Framework",
    ] {
        assert!(
            d.reason.contains(needle),
            "missing {needle:?} in {}",
            d.reason
        );
    }
    assert_eq!(d.bases.len(), 1);
    assert_eq!(d.bases[0].effect, Effect::Deny);
    // Unknown importer and no importer are refused too, and say so.
    let d = ask(&p, &personal(&["DE"]), Some("nobody"), "US", TODAY);
    assert!(
        d.reason
            .contains("`nobody` is not in the transfer-mechanism registry"),
        "{}",
        d.reason
    );
    let d = ask(&p, &personal(&["DE"]), None, "US", TODAY);
    assert!(
        d.reason.contains("no importing organisation"),
        "{}",
        d.reason
    );
}

#[test]
fn dpf_certified_importer_is_allowed() {
    let p = pack();
    let d = ask(&p, &personal(&["DE"]), Some("globex-us"), "US", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.adequacy.us-dpf");
    assert!(d.article.contains("Art. 45"));
    assert!(
        d.reason.contains("Data Privacy Framework") && d.reason.contains("`globex-us`"),
        "{}",
        d.reason
    );
    // UK and Swiss data go through their own extensions.
    let d = ask(&p, &personal(&["GB"]), Some("globex-us"), "US", TODAY);
    assert_eq!(d.rule, "uk.adequacy.us-extension");
    let d = ask(&p, &personal(&["CH"]), Some("globex-us"), "US", TODAY);
    assert_eq!(d.rule, "ch.adequacy.us-swiss-dpf");
    let d = ask(
        &p,
        &personal(&["CH"]),
        Some("globex-us"),
        "US",
        date!(2024 - 09 - 14),
    );
    assert_eq!(d.rule, "ch.fadp.no-basis");
}

#[test]
fn signed_scc_allows_and_expired_scc_does_not() {
    let p = pack();
    let d = ask(&p, &personal(&["IT"]), Some("initech-in"), "IN", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.scc");
    assert!(d.article.contains("Art. 46(2)(c)"));
    assert!(
        d.reason.contains("SCC-2024-INITECH-01") && d.reason.contains("module 1"),
        "{}",
        d.reason
    );

    let d = ask(&p, &personal(&["IT"]), Some("umbrella-in"), "IN", TODAY);
    assert_eq!(d.ground, Some(DenyGround::Transfer));
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(d.reason.contains("expired on 2025-06-30"), "{}", d.reason);
    // Still valid on its last day.
    let d = ask(
        &p,
        &personal(&["IT"]),
        Some("umbrella-in"),
        "IN",
        date!(2025 - 06 - 30),
    );
    assert_eq!(d.rule, "eu.scc");
    // A mechanism for India does not cover Brazil... which has its own adequacy from 2026.
    let d = ask(
        &p,
        &personal(&["IT"]),
        Some("initech-in"),
        "BR",
        date!(2025 - 12 - 01),
    );
    assert!(
        d.reason.contains("does not cover transfers to BR"),
        "{}",
        d.reason
    );
}

#[test]
fn purpose_mismatch_is_a_purpose_refusal() {
    let p = pack();
    let t = tags(&["DE"], &[Category::Personal], Some(&["analytics"]));
    let d = ask(&p, &t, Some("wayne-gb"), "DE", TODAY);
    assert_eq!(d.ground, Some(DenyGround::Purpose));
    assert_eq!(d.rule, "eu.purpose-limitation");
    assert_eq!(d.article, "GDPR Art. 5(1)(b)");
    assert!(
        d.reason.contains("`training`") && d.reason.contains("analytics"),
        "{}",
        d.reason
    );
    // Personal data without recorded purposes fails closed.
    let t = tags(&["DE"], &[Category::Personal], None);
    assert_eq!(
        ask(&p, &t, None, "DE", TODAY).ground,
        Some(DenyGround::Purpose)
    );
}

#[test]
fn special_categories_need_a_mechanism_that_covers_them() {
    let p = pack();
    let t = tags(
        &["DE"],
        &[Category::Personal, Category::Health],
        Some(&["training"]),
    );
    let d = ask(&p, &t, Some("globex-us"), "US", TODAY);
    assert_eq!(d.ground, Some(DenyGround::Transfer));
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(
        d.reason
            .contains("does not cover special-category data (GDPR Art. 9)"),
        "{}",
        d.reason
    );
    let d = ask(&p, &t, Some("globex-us"), "FR", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.intra-eea");
    // Adequacy covers them in law; the shipped organisation overlay (policies/org/) keeps
    // special-category data in the EEA all the same.
    let d = ask(&p, &t, Some("cyberdyne-jp"), "JP", TODAY);
    assert_eq!(d.bases[0].rule, "eu.adequacy.jp");
    assert_eq!(d.rule, "org.special-stays-in-eea");
}

#[test]
fn every_origin_must_allow() {
    let p = pack();
    let t = personal(&["DE", "US"]);
    // US data may go to Japan freely, DE data by adequacy.
    let d = ask(&p, &t, Some("cyberdyne-jp"), "JP", TODAY);
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.adequacy.jp");
    assert_eq!(d.bases.len(), 2);
    assert_eq!(d.bases[1].rule, "us.no-general-restriction");
    // To acme-us the DE part has no basis: refused, though the US part is fine.
    let d = ask(&p, &t, Some("acme-us"), "US", TODAY);
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert_eq!(d.bases[1].rule, "us.domestic");
    assert_eq!(d.bases[1].effect, Effect::Allow);
    // US health data to a country of concern is refused even when the EU part is public.
    let t = tags(&["US"], &[Category::Health], Some(&["training"]));
    let d = ask(&p, &t, None, "CN", TODAY);
    assert_eq!(d.rule, "us.dsp.countries-of-concern");
    assert!(
        d.article
            .contains("28 CFR Part 202 (DOJ Data Security Program)")
    );
    assert_eq!(
        ask(&p, &t, None, "CN", date!(2025 - 04 - 07)).rule,
        "us.no-general-restriction"
    );
    // Origins without a regime, and data without origins, fail closed.
    let d = ask(&p, &personal(&["AU"]), None, "AU", TODAY);
    assert_eq!(
        (d.rule.as_str(), d.ground),
        (builtin::NO_REGIME, Some(DenyGround::Transfer))
    );
    let d = ask(&p, &tags(&[], &[Category::Public], None), None, "DE", TODAY);
    assert_eq!(d.rule, builtin::NO_ORIGIN);
}

#[test]
fn india_and_brazil_minimal_packs() {
    let p = pack();
    // India: the IT Act restricts only sensitive data until DPDP s. 16 commences.
    assert_eq!(
        ask(&p, &personal(&["IN"]), Some("acme-us"), "US", TODAY).rule,
        "in.it-act.not-sensitive"
    );
    assert_eq!(
        ask(
            &p,
            &personal(&["IN"]),
            Some("acme-us"),
            "US",
            date!(2027 - 05 - 13)
        )
        .rule,
        "in.s16.not-restricted"
    );
    assert_eq!(
        ask(&p, &personal(&["BR"]), None, "DE", TODAY).rule,
        "br.adequacy.eu"
    );
    let d = ask(&p, &personal(&["BR"]), Some("acme-us"), "US", TODAY);
    assert_eq!(d.rule, "br.art33.no-basis");
    assert!(
        d.reason.contains("ANPD standard contractual clauses"),
        "{}",
        d.reason
    );
    // EU data to Brazil: adequate from 26 Jan 2026 only.
    assert_eq!(
        ask(&p, &personal(&["DE"]), None, "BR", TODAY).rule,
        "eu.adequacy.br"
    );
    assert_eq!(
        ask(&p, &personal(&["DE"]), None, "BR", date!(2026 - 01 - 25)).rule,
        "eu.chapter-v.no-basis"
    );
}

#[test]
fn public_data_goes_anywhere() {
    let p = pack();
    let t = tags(
        &["DE", "GB", "CH", "US"],
        &[Category::Public, Category::Anonymous],
        None,
    );
    for dest in ["US", "CN", "KP", "IN"] {
        let d = ask(&p, &t, None, dest, TODAY);
        assert!(d.is_allow(), "{dest}: {d:?}");
        // Origins are evaluated in code order: CH first.
        assert_eq!(d.rule, "ch.out-of-scope");
        let rules: Vec<&str> = d.bases.iter().map(|b| b.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "ch.out-of-scope",
                "eu.out-of-scope",
                "uk.out-of-scope",
                "us.out-of-scope"
            ]
        );
        assert_eq!(d.bases[1].article, "GDPR Recital 26");
    }
}

#[test]
fn privacy_shield_replays_by_date() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.yaml");
    std::fs::write(
        &reg,
        "organisations:\n  - id: hooli-us\n    name: Hooli\n    country: US\n    mechanisms:\n      - kind: privacy-shield\n        reference: PS-1\n        categories: [personal]\n        valid_from: 2017-01-01\n",
    )
    .unwrap();
    let p = PolicySet::load(&root().join("policies"), &reg).unwrap();
    let d = ask(
        &p,
        &personal(&["DE"]),
        Some("hooli-us"),
        "US",
        date!(2020 - 07 - 10),
    );
    assert!(d.is_allow(), "{d:?}");
    assert_eq!(d.rule, "eu.adequacy.us-privacy-shield");
    let d = ask(
        &p,
        &personal(&["DE"]),
        Some("hooli-us"),
        "US",
        date!(2020 - 07 - 17),
    );
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(
        d.reason.contains("ceased to apply after 2020-07-15"),
        "{}",
        d.reason
    );
}

#[test]
#[ignore]
fn print_reasons() {
    let p = pack();
    let h = tags(
        &["DE"],
        &[Category::Personal, Category::Health],
        Some(&["training"]),
    );
    for (t, imp, dest) in [
        (personal(&["DE"]), Some("acme-us"), "US"),
        (personal(&["DE"]), Some("globex-us"), "US"),
        (personal(&["DE"]), Some("initech-in"), "IN"),
        (personal(&["DE"]), Some("umbrella-in"), "IN"),
        (personal(&["DE"]), Some("cyberdyne-jp"), "JP"),
        (personal(&["DE"]), Some("wayne-gb"), "GB"),
        (h.clone(), Some("globex-us"), "US"),
        (personal(&["DE", "US"]), Some("cyberdyne-jp"), "JP"),
        (
            tags(&["DE"], &[Category::Personal], Some(&["analytics"])),
            None,
            "DE",
        ),
        (tags(&["DE"], &[Category::Public], None), None, "US"),
    ] {
        let d = ask(&p, &t, imp, dest, TODAY);
        println!(
            "{imp:?} -> {dest}: {:?} {} [{}]\n  {}\n",
            d.effect, d.rule, d.article, d.reason
        );
    }
}

#[test]
fn trace_lists_the_rules_considered() {
    let p = pack();
    let t = personal(&["DE"]);
    let q = Query {
        tags: &t,
        purpose: "training",
        importer: Some("acme-us"),
        destination: c("US"),
        direction: Direction::Download,
        date: TODAY,
        volume: None,
    };
    let (_, trace) = p.decide_with_trace(&q);
    let ids: Vec<&str> = trace.iter().map(|s| s.rule.as_str()).collect();
    assert!(
        ids.contains(&"eu.adequacy.us-dpf") && ids.contains(&"eu.scc"),
        "{ids:?}"
    );
    assert_eq!(trace.last().unwrap().rule, "eu.chapter-v.no-basis");
    assert_eq!(trace.last().unwrap().outcome, Outcome::Deny);
    let dpf = trace
        .iter()
        .find(|s| s.rule == "eu.adequacy.us-dpf")
        .unwrap();
    assert!(
        dpf.note
            .contains("no EU-US Data Privacy Framework certification on record for `acme-us`"),
        "{}",
        dpf.note
    );
}

#[test]
fn empty_registry_is_accepted_and_version_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let reg = dir.path().join("registry.yaml");
    std::fs::write(&reg, "# nothing yet\n").unwrap();
    let a = PolicySet::load(&root().join("policies"), &reg).unwrap();
    std::fs::write(&reg, "organisations: []\n").unwrap();
    let b = PolicySet::load(&root().join("policies"), &reg).unwrap();
    assert_ne!(a.version, b.version);
    let d = ask(&b, &personal(&["DE"]), Some("globex-us"), "US", TODAY);
    assert!(!d.is_allow());
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

const MINI: &str = "id: xx
name: X
law: X law
members: [DE]
scope_categories: [personal]
out_of_scope: {id: xx.oos, article: A 1, reason: r}
intra_bloc: {id: xx.intra, article: A 2, reason: r}
default_deny: {id: xx.none, article: A 3, reason: r}
";

#[test]
fn load_errors_are_all_reported_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.yaml",
        &format!(
            "{MINI}rules:
  - id: xx.one
    effect: allow
    article: A 4
    reason: to {{destination}}
    destinations: [DE, XZ]
    categories_any: [personal, secret]
    purposes: [training, spying]
    requires_mechanism: handshake
  - id: xx.one
    effect: allow
    reason: no article
    effective_from: 2024-01-01
    effective_until: 2023-01-01
    requires_derogation: because
  - id: xx.two
    effect: allow
    article: A 5
    reason: to {{nowhere}}
"
        ),
    );
    write(
        d,
        "b.yaml",
        &MINI.replace("xx", "yy").replace("id: yy.oos", "id: xx.oos"),
    );
    write(d, "c.yaml", "id: zz\nname: Z\nbogus: 1\n");
    write(
        d,
        "registry.yaml",
        "organisations:\n  - id: o\n    name: O\n    country: QQ\n    mechanisms:\n      - kind: scc\n        reference: r\n        module: 7\n        categories: [personal]\n        valid_from: 2024-01-01\n",
    );
    let err = PolicySet::load(d, &d.join("registry.yaml")).unwrap_err();
    let text = err.to_string();
    let has = |needle: &str, line: usize| {
        assert!(
            err.0
                .iter()
                .any(|e| e.message.contains(needle) && e.line == Some(line)),
            "no `{needle}` at line {line} in:\n{text}"
        )
    };
    has("unknown country code `XZ`", 14);
    has("unknown category `secret`", 15);
    has("unknown purpose `spying`", 16);
    has("unknown mechanism kind `handshake`", 17);
    has("duplicate rule id `xx.one`", 18);
    has("rule `xx.one` has no `article`", 18);
    has("is after its end", 22);
    has("unknown derogation `because`", 23);
    has("unknown placeholder `{nowhere}`", 27);
    has("duplicate rule id `xx.oos`", 6);
    has(
        "country `DE` is a member of regime `yy` and of regime `xx`",
        4,
    );
    has("unknown country code `QQ`", 4);
    has("SCC module `7`", 8);
    assert!(
        err.0
            .iter()
            .any(|e| e.file.ends_with("c.yaml") && e.message.contains("bogus")),
        "{text}"
    );
    assert!(
        text.contains("a.yaml:14: unknown country code `XZ`"),
        "{text}"
    );
}

#[test]
fn unknown_instruments_and_regimes_are_load_errors_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d,
        "a.yaml",
        &format!(
            "{MINI}instrument: xx.law
instruments:
  - {{ id: xx.law, kind: statute, title: X law, reference: X 1 }}
  - {{ id: xx.law, kind: statute, title: again, reference: X 2 }}
  - {{ id: xx.odd, kind: decree, title: Odd, date: 2024-13-01, reference: X 3 }}
rules:
  - id: xx.one
    effect: allow
    article: A 4
    instrument: xx.missing
    scope: {{ recipients: [martians] }}
    reason: r
"
        ),
    );
    write(
        d,
        "registry.yaml",
        "organisations:\n  - id: o\n    name: O\n    country: DE\n    regimes: [pipeda, guild]\n",
    );
    let err = PolicySet::load(d, &d.join("registry.yaml")).unwrap_err();
    let text = err.to_string();
    let has = |needle: &str, file: &str, line: usize| {
        assert!(
            err.0.iter().any(|e| e.message.contains(needle)
                && e.line == Some(line)
                && e.file.ends_with(file)),
            "no `{needle}` at {file}:{line} in:\n{text}"
        )
    };
    has("duplicate instrument id `xx.law`", "a.yaml", 12);
    has("unknown instrument kind `decree`", "a.yaml", 13);
    has("invalid date `2024-13-01`", "a.yaml", 13);
    has("unknown instrument `xx.missing`", "a.yaml", 18);
    has("unknown recipient regime `martians`", "a.yaml", 19);
    has("unknown recipient regime `guild`", "registry.yaml", 5);
}

#[test]
fn every_decision_names_its_instrument() {
    let p = pack();
    let d = ask(&p, &personal(&["FR"]), Some("globex-us"), "US", TODAY);
    let i = d.instrument.as_deref().unwrap();
    assert_eq!(i.id, "eu.adequacy-2023-1795");
    assert_eq!(i.kind, "adequacy");
    assert_eq!(i.date.as_deref(), Some("2023-07-10"));
    assert!(i.reference.contains("OJ L 231"), "{}", i.reference);
    assert_eq!(
        d.bases[0].instrument.as_deref(),
        Some("eu.adequacy-2023-1795")
    );
    // The fixed rules cite the regime's statute.
    let d = ask(&p, &personal(&["FR"]), Some("acme-us"), "US", TODAY);
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert_eq!(d.instrument.as_deref().unwrap().id, "eu.gdpr");
    let d = ask(&p, &personal(&["FR"]), None, "DE", TODAY);
    assert_eq!(d.instrument.as_deref().unwrap().id, "eu.gdpr");
    // SCCs: the decision, with the module of the clauses relied on.
    let d = ask(&p, &personal(&["FR"]), Some("initech-in"), "IN", TODAY);
    assert_eq!(d.rule, "eu.scc");
    let i = d.instrument.as_deref().unwrap();
    assert_eq!((i.id.as_str(), i.module), ("eu.scc-2021-914", Some(1)));
    assert!(p.instrument("eu.scc-2021-914").unwrap().module.is_none());
    // The engine's own fail-closed refusal rests on no instrument.
    let d = ask(&p, &personal(&[]), None, "DE", TODAY);
    assert!(d.instrument.is_none());
}

#[test]
fn canada_is_adequate_only_for_pipeda_organisations() {
    let p = pack();
    let d = ask(&p, &personal(&["DE"]), Some("tyrell-ca"), "CA", TODAY);
    assert_eq!(d.rule, "eu.adequacy.ca", "{d:?}");
    assert_eq!(d.instrument.as_deref().unwrap().id, "eu.adequacy-2002-2");
    let d = ask(&p, &personal(&["DE"]), Some("statcan-ca"), "CA", TODAY);
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(
        d.reason
            .contains("covers only a recipient that is an organisation subject to PIPEDA")
            && d.reason
                .contains("`statcan-ca` is declared as a public body"),
        "{}",
        d.reason
    );
    let d = ask(&p, &personal(&["DE"]), Some("acme-us"), "CA", TODAY);
    assert!(
        d.reason
            .contains("the registry declares no legal regime for `acme-us`: declare it in the registry (`regimes:`"),
        "{}",
        d.reason
    );
    let (_, trace) = p.decide_with_trace(&Query {
        tags: &personal(&["DE"]),
        purpose: "training",
        importer: Some("statcan-ca"),
        destination: c("CA"),
        direction: Direction::Download,
        date: TODAY,
        volume: None,
    });
    let step = trace.iter().find(|s| s.rule == "eu.adequacy.ca").unwrap();
    assert_eq!(step.outcome, Outcome::NotApplicable);
    assert!(step.note.contains("public body"), "{}", step.note);
}

/// The "DPF annulled" what-if documented on `eu.adequacy.us-dpf`: a copy of the pack with an
/// `effective_until` on that one rule refuses what rested on it, and nothing else changes.
#[test]
fn dpf_can_be_switched_off_in_a_copy_of_the_pack() {
    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let mut text = std::fs::read_to_string(&path).unwrap();
            if path.file_name().is_some_and(|n| n == "eu.yaml") {
                let from = "    effective_from: 2023-07-10\n";
                assert_eq!(text.matches(from).count(), 1);
                text = text.replace(from, &format!("{from}    effective_until: 2026-05-31\n"));
            }
            std::fs::write(dir.path().join(path.file_name().unwrap()), text).unwrap();
        }
    }
    let annulled = PolicySet::load(
        dir.path(),
        &root().join("examples/quickstart/registry.yaml"),
    )
    .unwrap_or_else(|d| panic!("{d}"));
    let p = pack();
    let eu = personal(&["DE"]);
    let before = date!(2026 - 05 - 31);
    let after = date!(2026 - 06 - 01);
    assert_eq!(
        ask(&annulled, &eu, Some("globex-us"), "US", before).rule,
        "eu.adequacy.us-dpf"
    );
    let d = ask(&annulled, &eu, Some("globex-us"), "US", after);
    assert_eq!(d.rule, "eu.chapter-v.no-basis");
    assert!(
        d.reason.contains("ceased to apply after 2026-05-31"),
        "{}",
        d.reason
    );
    assert_eq!(
        ask(&p, &eu, Some("globex-us"), "US", after).rule,
        "eu.adequacy.us-dpf"
    );
    // Other bases are untouched: UK data under the UK Extension, EU data under SCCs.
    let uk = personal(&["GB"]);
    assert_eq!(
        ask(&annulled, &uk, Some("globex-us"), "US", after).rule,
        "uk.adequacy.us-extension"
    );
    assert_eq!(
        ask(&annulled, &eu, Some("initech-in"), "IN", after).rule,
        "eu.scc"
    );
}

#[test]
fn mechanism_concluded_before_needs_a_mechanism() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("xx.yaml"),
        "id: xx\nname: X\nlaw: X\nmembers: [AU]\nscope_categories: [personal]\n\
         out_of_scope: { id: xx.out, article: A, reason: r }\n\
         intra_bloc: { id: xx.intra, article: A, reason: r }\n\
         default_deny: { id: xx.deny, article: A, reason: r }\n\
         rules:\n  - { id: xx.r, effect: allow, article: A, reason: r, mechanism_concluded_before: 2021-09-27 }\n",
    )
    .unwrap();
    let reg = dir.path().join("registry.yaml");
    std::fs::write(&reg, "organisations: []\n").unwrap();
    let err = PolicySet::load(dir.path(), &reg).err().unwrap().to_string();
    assert!(
        err.contains("`mechanism_concluded_before` but no `requires_mechanism`"),
        "{err}"
    );
}
