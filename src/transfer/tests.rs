//! Classification and the decisions taken before any regime is asked.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use super::*;
use crate::model::Caller;

const CATALOG: &str = r#"
entries:
  - id: eu-customers
    kind: dataset
    match: { prefix: /datasets/eu-customers/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics, training]
  - id: erased
    kind: dataset
    match: { prefix: /datasets/erased/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
    withdrawn: { date: 2025-06-01, reason: erasure request }
  - id: wiki
    kind: dataset
    match: { prefix: /datasets/wiki/ }
    origins: [IE]
    categories: [public]
  - id: wiki-old
    kind: dataset
    match: { regex: '^/datasets/wiki/old-.*$' }
    origins: [IE]
    categories: [public]
    withdrawn: { date: 2024-01-01, reason: licence withdrawn }
  - id: erased-part
    kind: dataset
    match: { prefix: /datasets/erased/part-1/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
  - id: us-registry
    kind: store
    match: { prefix: /registry/us/ }
"#;

fn catalog() -> Catalog {
    Catalog::parse(Path::new("catalog.yaml"), CATALOG).unwrap()
}

fn policies() -> PolicySet {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    PolicySet::load(
        &root.join("policies"),
        &root.join("examples/quickstart/registry.yaml"),
    )
    .unwrap()
}

fn caller(org: &str, j: &str, purpose: &str) -> Caller {
    Caller {
        sub: "t".into(),
        org: org.into(),
        jurisdiction: Country::parse(j).unwrap(),
        purpose: purpose.into(),
        claimed_jurisdiction: None,
    }
}

fn place(j: &str, operator: Option<&'static str>) -> Place<'static> {
    Place {
        upstream: "up",
        jurisdiction: Country::parse(j).unwrap(),
        operator,
        public: false,
    }
}

fn date(s: &str) -> Date {
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]")).unwrap()
}

fn ask<'a>(subject: Subject<'a>, direction: Direction, c: &'a Caller, l: &'a [String]) -> Ask<'a> {
    Ask {
        subject,
        direction,
        caller: c,
        lineage: l,
        at: OffsetDateTime::now_utc(),
        digests: &[],
        recent: None,
    }
}

#[test]
fn a_download_goes_to_the_caller_and_untagged_data_originates_where_it_is_stored() {
    let cat = catalog();
    let c = caller("acme-us", "US", "analytics");
    let public = Place {
        public: true,
        ..place("FR", None)
    };
    let t = classify(
        &cat,
        &ask(Subject::Path("/open/a"), Direction::Download, &c, &[]),
        Some(public),
    )
    .unwrap();
    assert_eq!(t.destination.as_str(), "US");
    assert_eq!(t.importer.as_deref(), Some("acme-us"));
    assert_eq!(t.dataset, None);
    assert_eq!(t.tags.categories, [Category::Public].into());
    assert!(t.tags.origins.contains(&Country::parse("FR").unwrap()));
    let t = classify(
        &cat,
        &ask(
            Subject::Path("/datasets/eu-customers/a"),
            Direction::Download,
            &c,
            &[],
        ),
        Some(place("FR", None)),
    )
    .unwrap();
    assert_eq!(t.tags.origins, [Country::parse("DE").unwrap()].into());
    let e = classify(
        &cat,
        &ask(
            Subject::Path("/datasets/nothing/a"),
            Direction::Download,
            &c,
            &[],
        ),
        Some(place("FR", None)),
    )
    .unwrap_err();
    assert_eq!(e, Unclassified::NotInCatalog);
}

#[test]
fn an_upload_goes_to_the_store_and_takes_its_declared_lineage() {
    let cat = catalog();
    let c = caller("acme-de", "DE", "training");
    let lineage = vec!["eu-customers".to_string()];
    let t = classify(
        &cat,
        &ask(
            Subject::Path("/registry/us/m.bin"),
            Direction::Upload,
            &c,
            &lineage,
        ),
        Some(place("US", Some("acme-us"))),
    )
    .unwrap();
    assert_eq!(t.destination.as_str(), "US");
    assert_eq!(t.importer.as_deref(), Some("acme-us"));
    assert!(t.tags.lineage.contains("eu-customers"));
    assert!(t.tags.origins.contains(&Country::parse("DE").unwrap()));
    let d = t.decide(&policies(), date("2026-03-01"), None);
    assert!(!d.is_allow());
    assert_eq!(d.rule, "eu.chapter-v.no-basis");

    let bad = vec!["nope".to_string()];
    let e = classify(
        &cat,
        &ask(
            Subject::Path("/registry/us/m.bin"),
            Direction::Upload,
            &c,
            &bad,
        ),
        Some(place("US", Some("acme-us"))),
    )
    .unwrap_err();
    assert!(matches!(e, Unclassified::BadLineage(_)), "{e:?}");
}

#[test]
fn an_undeclared_upload_is_refused_only_across_a_border() {
    let cat = catalog();
    let set = policies();
    let c = caller("acme-de", "DE", "training");
    let across = classify(
        &cat,
        &ask(
            Subject::Path("/registry/us/m.bin"),
            Direction::Upload,
            &c,
            &[],
        ),
        Some(place("US", Some("acme-us"))),
    )
    .unwrap();
    let d = across.decide(&set, date("2026-03-01"), None);
    assert_eq!(d.rule, rules::LINEAGE_UNDECLARED);
    assert_eq!(d.ground, Some(DenyGround::Transfer));
    assert!(across.refused_by_catalog(date("2026-03-01")));
    let home = classify(
        &cat,
        &ask(
            Subject::Path("/registry/us/m.bin"),
            Direction::Upload,
            &c,
            &[],
        ),
        Some(place("DE", None)),
    )
    .unwrap();
    assert!(home.undeclared.is_none());
    assert!(home.tags.origins.contains(&Country::parse("DE").unwrap()));
}

#[test]
fn a_withdrawal_decides_from_its_date_in_every_explanation() {
    let cat = catalog();
    let mut set = policies();
    let c = caller("acme-de", "DE", "analytics");
    let t = classify(
        &cat,
        &ask(Subject::Dataset("erased"), Direction::Download, &c, &[]),
        None,
    )
    .unwrap();
    let before = t.decide(&set, date("2025-05-31"), None);
    assert!(before.is_allow(), "{before:?}");
    let on = t.decide(&set, date("2025-06-01"), None);
    assert_eq!(on.rule, rules::WITHDRAWN);
    assert_eq!(on.ground, Some(DenyGround::Withdrawn));
    assert!(
        on.reason.contains("withdrawn on 2025-06-01"),
        "{}",
        on.reason
    );
    let e = t.explain(&mut set, date("2025-06-02"), None);
    assert_eq!(e.decision, t.decide(&set, date("2025-06-02"), None));
    assert_eq!(e.trace.len(), 1);
    assert!(e.remedies.is_empty());
}

#[test]
fn upstream_tags_only_add_and_recompute_the_export() {
    let cat = catalog();
    let c = caller("acme-us", "US", "analytics");
    let mut t = classify(
        &cat,
        &ask(
            Subject::Dataset("eu-customers"),
            Direction::Download,
            &c,
            &[],
        ),
        None,
    )
    .unwrap();
    assert!(t.export.is_none());
    let none = Tags::default();
    assert!(!t.absorb_upstream(&none, &cat, None, "acme-us", OffsetDateTime::now_utc()));
    let cn = Tags {
        origins: [Country::parse("CN").unwrap()].into(),
        ..Tags::default()
    };
    assert!(t.absorb_upstream(
        &cn,
        &cat,
        Some("acme-cn"),
        "acme-us",
        OffsetDateTime::now_utc()
    ));
    assert!(t.tags.origins.contains(&Country::parse("DE").unwrap()));
    let e = t.export.as_ref().unwrap();
    assert_eq!(e.exporter.as_deref(), Some("acme-cn"));
}

#[test]
fn a_withdrawn_entry_refuses_under_a_live_prefix_and_nested_entries_inherit_it() {
    let cat = catalog();
    let set = policies();
    let c = caller("acme-de", "DE", "analytics");
    let day = date("2026-03-01");
    let decide = |subject: Subject<'_>| {
        classify(
            &cat,
            &ask(subject, Direction::Download, &c, &[]),
            Some(place("IE", None)),
        )
        .unwrap()
        .decide(&set, day, None)
    };
    assert!(decide(Subject::Path("/datasets/wiki/new.txt")).is_allow());
    let d = decide(Subject::Path("/datasets/wiki/old-dump.csv"));
    assert_eq!(d.rule, rules::WITHDRAWN, "{d:?}");
    assert!(d.reason.contains("2024-01-01"), "{}", d.reason);
    // A live entry nested under a withdrawn prefix is withdrawn too, by path and by id.
    assert_eq!(
        decide(Subject::Path("/datasets/erased/part-1/a.csv")).rule,
        rules::WITHDRAWN
    );
    assert_eq!(
        decide(Subject::Dataset("erased-part")).rule,
        rules::WITHDRAWN
    );
}

#[test]
fn recent_downloads_the_lineage_does_not_cover_refuse_or_are_folded_in() {
    let cat = catalog();
    let set = policies();
    let c = caller("acme-de", "DE", "training");
    let now = OffsetDateTime::now_utc();
    let eu = crate::lineage::RecentDownload {
        dataset: Some("eu-customers".into()),
        origins: [Country::parse("DE").unwrap()].into(),
        categories: [Category::Personal].into(),
        at: now,
    };
    let downloads = [eu];
    let upload = |lineage: &[String], action, to: &str| {
        let mut a = ask(
            Subject::Path("/registry/us/m.bin"),
            Direction::Upload,
            &c,
            lineage,
        );
        a.recent = Some(Recent {
            downloads: &downloads,
            action,
            window_days: 30,
        });
        classify(&cat, &a, Some(place(to, Some("acme-us")))).unwrap()
    };
    let wiki = vec!["wiki".to_string()];
    let t = upload(&wiki, UndeclaredRecent::Refuse, "US");
    let d = t.decide(&set, now.date(), None);
    assert_eq!(d.rule, rules::UNDECLARED_RECENT);
    assert_eq!(d.ground, Some(DenyGround::Lineage));
    assert!(
        d.reason.contains("`eu-customers` (DE; personal)"),
        "{}",
        d.reason
    );
    assert!(t.refused_by_catalog(now.date()));
    // Declared: covered, decided by the regime.
    let both = vec!["wiki".to_string(), "eu-customers".to_string()];
    let t = upload(&both, UndeclaredRecent::Refuse, "US");
    assert!(t.unaccounted.is_none());
    assert_eq!(
        t.decide(&set, now.date(), None).rule,
        "eu.chapter-v.no-basis"
    );
    // Back into the data's own origin country: not checked.
    assert!(
        upload(&wiki, UndeclaredRecent::Refuse, "DE")
            .unaccounted
            .is_none()
    );
    // ... unless it also came from elsewhere.
    let mixed = [crate::lineage::RecentDownload {
        origins: [Country::parse("DE").unwrap(), Country::parse("FR").unwrap()].into(),
        ..downloads[0].clone()
    }];
    let mut a = ask(
        Subject::Path("/registry/us/m.bin"),
        Direction::Upload,
        &c,
        &wiki,
    );
    a.recent = Some(Recent {
        downloads: &mixed,
        action: UndeclaredRecent::Refuse,
        window_days: 30,
    });
    let t = classify(&cat, &a, Some(place("DE", None))).unwrap();
    assert!(t.unaccounted.is_some());
    // Flag: decided as derived from the recent data, and flagged.
    let t = upload(&wiki, UndeclaredRecent::Flag, "US");
    assert!(t.flagged().is_some());
    assert!(t.tags.lineage.contains("eu-customers"));
    assert!(t.tags.is_personal());
    assert_eq!(
        t.decide(&set, now.date(), None).rule,
        "eu.chapter-v.no-basis"
    );
}

#[test]
fn a_declared_digest_of_a_known_artifact_is_lineage() {
    let text = format!(
        "{CATALOG}  - id: eu-model\n    kind: model\n    match: {{ prefix: /models/eu/ }}\n    derived_from: [eu-customers]\n    digests: [\"sha256:{}\"]\n",
        "ab".repeat(32)
    );
    let cat = Catalog::parse(Path::new("catalog.yaml"), &text).unwrap();
    let c = caller("acme-de", "DE", "training");
    let d = crate::lineage::digest::Sha256([0xab; 32]);
    let wiki = vec!["wiki".to_string()];
    let mut a = ask(
        Subject::Path("/registry/us/m.bin"),
        Direction::Upload,
        &c,
        &wiki,
    );
    let digests = [d];
    a.digests = &digests;
    let t = classify(&cat, &a, Some(place("US", Some("acme-us")))).unwrap();
    assert!(t.tags.lineage.contains("eu-model"));
    assert!(t.tags.lineage.contains("eu-customers"));
    assert!(t.tags.is_personal());
    // A digest on two entries is a catalog error.
    let twice = format!(
        "{text}  - id: copy\n    kind: model\n    match: {{ prefix: /models/copy/ }}\n    derived_from: [eu-customers]\n    digests: [\"sha256:{}\"]\n",
        "ab".repeat(32)
    );
    let e = Catalog::parse(Path::new("catalog.yaml"), &twice).unwrap_err();
    assert!(e.to_string().contains("also listed on `eu-model`"), "{e}");
}

#[test]
fn tags_given_directly_carry_the_tags_of_what_they_were_derived_from() {
    let c = catalog();
    let who = caller("acme-us", "US", "analytics");
    let given = Tags::given(&["FR"], Some(&["public"]), None, &[]).unwrap();
    let from = vec!["eu-customers".to_string()];
    let t = classify(
        &c,
        &ask(
            Subject::Tags(given.clone()),
            Direction::Download,
            &who,
            &from,
        ),
        None,
    )
    .unwrap();
    assert!(t.tags.origins.contains(&Country::parse("DE").unwrap()));
    assert!(t.tags.origins.contains(&Country::parse("FR").unwrap()));
    assert!(t.tags.is_personal());
    assert!(t.tags.lineage.contains("eu-customers"));
    // An unknown id is a refusal before classification, as for an upload's lineage.
    let bad = vec!["nope".to_string()];
    let e = classify(
        &c,
        &ask(Subject::Tags(given), Direction::Download, &who, &bad),
        None,
    )
    .unwrap_err();
    assert!(matches!(e, Unclassified::BadLineage(_)), "{e:?}");
}

#[test]
fn an_anonymity_assessment_counts_from_its_day() {
    let c = Catalog::parse(
        Path::new("catalog.yaml"),
        r#"
entries:
  - id: eu-customers
    kind: dataset
    match: { prefix: /datasets/eu-customers/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics, training]
  - id: bot
    kind: model
    match: { prefix: /models/bot/ }
    derived_from: [eu-customers]
    categories: [anonymous]
    anonymity_assessment: { date: 2025-03-01, assessor: dpo, reference: DPIA-7 }
  - id: bot-distilled
    kind: model
    match: { prefix: /models/bot-distilled/ }
    derived_from: [bot]
"#,
    )
    .unwrap();
    let p = policies();
    let who = caller("acme-us", "US", "analytics");
    let at = |day: &str, id: &'static str| {
        let mut a = ask(Subject::Dataset(id), Direction::Download, &who, &[]);
        a.at = OffsetDateTime::now_utc().replace_date(date(day));
        let t = classify(&c, &a, Some(place("DE", None))).unwrap();
        (t.tags.is_personal(), t.decide(&p, date(day), None))
    };
    for id in ["bot", "bot-distilled"] {
        // Before the assessment the model is its training data: personal, refused to the US.
        let (personal, d) = at("2025-02-28", id);
        assert!(personal, "{id}");
        assert_eq!(d.effect, Effect::Deny, "{id}: {}", d.rule);
        // From its day it is anonymous: outside the GDPR.
        let (personal, d) = at("2025-03-01", id);
        assert!(!personal, "{id}");
        assert_eq!(d.effect, Effect::Allow, "{id}: {}", d.rule);
    }
    // The live catalog is untouched, and asked of a later day it is not copied.
    assert!(!c.get("bot").unwrap().tags.is_personal());
    assert!(matches!(
        c.as_of(date("2026-01-01")),
        crate::catalog::Dated::Live(_)
    ));
}

#[test]
fn a_dated_derogation_counts_only_on_its_days() {
    let c = Catalog::parse(
        Path::new("catalog.yaml"),
        r#"
entries:
  - id: consented
    kind: dataset
    match: { prefix: /datasets/consented/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
    derogations: [{ kind: explicit-consent, from: 2025-01-01, until: 2025-12-31 }, contract]
  - id: consented-model
    kind: model
    match: { prefix: /models/consented/ }
    derived_from: [consented]
"#,
    )
    .unwrap();
    let p = policies();
    let who = caller("nobody-au", "AU", "analytics");
    let at = |day: &str, id: &'static str| {
        let mut a = ask(Subject::Dataset(id), Direction::Download, &who, &[]);
        a.at = OffsetDateTime::now_utc().replace_date(date(day));
        let t = classify(&c, &a, Some(place("DE", None))).unwrap();
        (
            t.tags.derogations.contains("explicit-consent"),
            t.tags.derogations.contains("contract"),
        )
    };
    assert_eq!(at("2024-12-31", "consented"), (false, true));
    assert_eq!(at("2025-01-01", "consented"), (true, true));
    assert_eq!(at("2025-12-31", "consented"), (true, true));
    assert_eq!(at("2026-01-01", "consented"), (false, true));
    // A model records no derogation of its own, so it holds none of its data's on any day.
    assert_eq!(at("2025-06-01", "consented-model"), (false, false));
    // Decided with them: the derogation allows only on its days.
    let t = |day: &str| {
        let mut a = ask(
            Subject::Dataset("consented"),
            Direction::Download,
            &who,
            &[],
        );
        a.at = OffsetDateTime::now_utc().replace_date(date(day));
        let t = classify(&c, &a, Some(place("DE", None))).unwrap();
        t.decide(&p, date(day), None).rule
    };
    assert_eq!(t("2025-06-01"), "eu.derogation.explicit-consent");
    assert_eq!(t("2026-06-01"), "eu.derogation.contract");
    // The same day twice is folded once (the gateway asks one day at a time).
    let a = c.as_of(date("2026-02-01"));
    let b = c.as_of(date("2026-02-01"));
    match (&a, &b) {
        (crate::catalog::Dated::Then(x), crate::catalog::Dated::Then(y)) => {
            assert!(std::sync::Arc::ptr_eq(x, y));
        }
        _ => panic!("a day outside the facts' days is a copy"),
    }
    // Dates that are not dates, and a period that ends before it starts, are refused.
    for bad in [
        "[{ kind: explicit-consent, from: 2025-13-01 }]",
        "[{ kind: explicit-consent, from: 2025-06-01, until: 2025-01-01 }]",
        "[{ kind: explicit-consent }]",
        "[{ kind: no-such-derogation, from: 2025-01-01 }]",
    ] {
        let text = format!(
            "entries:\n  - id: x\n    kind: dataset\n    match: {{ prefix: /x/ }}\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n    derogations: {bad}\n"
        );
        let e = Catalog::parse(Path::new("catalog.yaml"), &text).unwrap_err();
        assert!(e.to_string().contains("derogation"), "{bad}: {e}");
    }
}
