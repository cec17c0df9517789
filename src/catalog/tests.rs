#![allow(clippy::unwrap_used)] // Tests may unwrap.

use super::*;
use crate::model::{Category, Country};
use std::path::PathBuf;

fn quickstart_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/catalog.yaml")
}

fn quickstart() -> Catalog {
    match Catalog::load(&quickstart_path()) {
        Ok(c) => c,
        Err(e) => panic!("quickstart catalog does not load:\n{e}"),
    }
}

fn parse(text: &str) -> Catalog {
    match Catalog::parse(Path::new("test.yaml"), text) {
        Ok(c) => c,
        Err(e) => panic!("catalog does not load:\n{e}"),
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match Catalog::parse(Path::new("bad.yaml"), text) {
        Ok(c) => panic!("catalog loaded with {} entries", c.len()),
        Err(d) => d.0,
    }
}

fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn de() -> Country {
    Country::parse("DE").unwrap()
}

#[test]
fn quickstart_loads_and_resolves() {
    let c = quickstart();
    assert_eq!(c.len(), 5);
    assert!(c.version.starts_with("sha256:") && c.version.len() == 7 + 64);
    let bytes = std::fs::read(quickstart_path()).unwrap();
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &bytes);
    assert_eq!(c.version, format!("sha256:{}", hex::encode(d.as_ref())));

    let r = c.resolve("/datasets/eu-customers/customers.csv").unwrap();
    assert_eq!(r.entry.id, "eu-customers");
    assert!(matches!(r.tags, Cow::Borrowed(_)));
    assert_eq!(r.tags.origins, [de()].into());
    assert_eq!(r.tags.categories, [Category::Personal].into());
    assert_eq!(r.tags.purposes, Some(set(&["analytics", "training"])));
    assert_eq!(r.tags.lawful_basis, set(&["contract"]));

    let r = c.resolve("/datasets/eu-clinical/records.csv").unwrap();
    assert_eq!(r.entry.id, "eu-clinical");
    assert!(r.tags.is_special());
    assert_eq!(r.tags.purposes, Some(set(&["research"])));

    let r = c.resolve("/datasets/public-wiki/sample.txt").unwrap();
    assert_eq!(r.entry.id, "public-wiki");
    assert!(!r.tags.is_personal());
    assert_eq!(r.tags.purposes, None);

    let r = c.resolve("/registry/us/new-model.bin").unwrap();
    assert_eq!(r.entry.id, "us-registry");
    assert_eq!(r.entry.kind, EntryKind::Store);
    assert!(r.tags.origins.is_empty());

    assert!(c.resolve("/datasets/unknown.csv").is_none());
    assert!(c.resolve("/").is_none());
}

#[test]
fn quickstart_store_files_are_all_catalogued() {
    let store = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/quickstart/store");
    let c = quickstart();
    for rel in [
        "datasets/eu-customers/customers.csv",
        "datasets/eu-clinical/records.csv",
        "datasets/public-wiki/sample.txt",
        "models/support-bot/model.safetensors",
        "registry/us/README.txt",
    ] {
        let meta = std::fs::metadata(store.join(rel)).unwrap();
        assert!(meta.len() > 0 && meta.len() < 20 * 1024, "{rel}");
        assert!(c.resolve(&format!("/{rel}")).is_some(), "{rel}");
    }
}

#[test]
fn quickstart_model_is_a_valid_safetensors_file() {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/quickstart/store/models/support-bot/model.safetensors");
    let bytes = std::fs::read(p).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let data = &bytes[8 + n..];
    let mut total = 0;
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        assert_eq!(t["dtype"], "F32");
        let elems: u64 = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .product();
        let off = t["data_offsets"].as_array().unwrap();
        let (a, b) = (off[0].as_u64().unwrap(), off[1].as_u64().unwrap());
        assert_eq!(b - a, elems * 4);
        total = total.max(b);
    }
    assert_eq!(total as usize, data.len());
}

#[test]
fn model_inherits_its_training_data_tags() {
    let c = quickstart();
    let r = c.resolve("/models/support-bot/model.safetensors").unwrap();
    assert_eq!(r.entry.id, "support-bot");
    assert_eq!(r.entry.kind, EntryKind::Model);
    assert_eq!(r.tags.origins, [de()].into());
    assert!(r.tags.is_personal());
    assert_eq!(r.tags.purposes, Some(set(&["analytics", "training"])));
    assert_eq!(r.tags.lineage, set(&["eu-customers"]));
    assert!(!r.tags.anonymity_assessed);
    assert!(r.entry.own_tags.categories.is_empty());
}

const LINEAGE: &str = "
entries:
  - id: raw
    kind: dataset
    match: { prefix: /raw/ }
    origins: [DE]
    categories: [personal]
    purposes: [training, research]
    derogations: [explicit-consent]
  - id: clinical
    kind: dataset
    match: { prefix: /clinical/ }
    origins: [FR]
    categories: [health]
    purposes: [training]
  - id: features
    kind: dataset
    match: { prefix: /features/ }
    origins: [IE]
    categories: [pseudonymous]
    derived_from: [raw, clinical]
  - id: model-a
    kind: model
    match: { prefix: /models/a/ }
    derived_from: [features]
  - id: model-b
    kind: model
    match: { prefix: /models/b/ }
    categories: [anonymous]
    derived_from: [features]
    anonymity_assessment: { date: 2025-03-01, assessor: dpo@example.org, reference: DPIA-2025-07 }
";

#[test]
fn lineage_folds_transitively() {
    let c = parse(LINEAGE);
    let a = c.get("model-a").unwrap();
    assert_eq!(
        a.tags.origins,
        ["DE", "FR", "IE"]
            .iter()
            .map(|s| Country::parse(s).unwrap())
            .collect()
    );
    assert!(a.tags.is_special());
    assert_eq!(a.tags.purposes, Some(set(&["training"])));
    assert!(a.tags.derogations.is_empty());
    assert_eq!(a.tags.lineage, set(&["raw", "clinical", "features"]));
}

#[test]
fn assessed_model_keeps_its_own_categories() {
    let c = parse(LINEAGE);
    let b = c.get("model-b").unwrap();
    assert!(!b.tags.is_personal());
    assert_eq!(b.tags.categories, [Category::Anonymous].into());
    assert!(b.tags.anonymity_assessed);
    assert_eq!(b.tags.purposes, None);
    assert_eq!(b.tags.origins.len(), 3);
    assert_eq!(b.tags.lineage, set(&["raw", "clinical", "features"]));
    let a = b.anonymity_assessment.as_ref().unwrap();
    assert_eq!(a.reference, "DPIA-2025-07");
    assert_eq!(a.date, time::macros::date!(2025 - 03 - 01));
}

#[test]
fn lineage_tags_for_uploads() {
    let c = parse(LINEAGE);
    let t = c.lineage_tags(&["raw", "clinical"]).unwrap();
    assert!(t.is_special());
    assert_eq!(t.purposes, Some(set(&["training"])));
    assert_eq!(t.lineage, set(&["raw", "clinical"]));
    assert_eq!(
        c.lineage_tags(&["raw"]).unwrap().derogations,
        set(&["explicit-consent"])
    );
    assert!(!c.lineage_tags(&["model-b"]).unwrap().anonymity_assessed);
    assert_eq!(c.lineage_tags(&[]).unwrap(), Tags::default());
    let e = c.lineage_tags(&["raw", "nope"]).unwrap_err();
    assert_eq!(e, "unknown catalog id `nope` in lineage");
}

const OVERLAP: &str = "
entries:
  - id: eu
    kind: dataset
    match: { prefix: /eu }
    origins: [DE]
    categories: [personal]
    purposes: [analytics, training]
  - id: eu-health
    kind: dataset
    match: { prefix: /eu/health/ }
    origins: [FR]
    categories: [health]
    purposes: [training, research]
  - id: eu-mirror
    kind: dataset
    match: { prefix: /eu-mirror/ }
    origins: [IE]
    categories: [public]
  - id: versions
    kind: dataset
    match: { regex: '^/versions/v[0-9]+/.*$' }
    origins: [NL]
    categories: [public]
  - id: eu-versions
    kind: dataset
    match: { regex: '^/eu/v[0-9]+$' }
    origins: [AT]
    categories: [public]
";

#[test]
fn prefixes_match_on_segment_boundaries() {
    let c = parse(OVERLAP);
    assert_eq!(c.resolve("/eu").unwrap().entry.id, "eu");
    assert_eq!(c.resolve("/eu/").unwrap().entry.id, "eu");
    assert_eq!(c.resolve("/eu/x.csv").unwrap().entry.id, "eu");
    assert_eq!(c.resolve("/eu-mirror/x").unwrap().entry.id, "eu-mirror");
    assert!(c.resolve("/eu-other/x").is_none());
    assert!(c.resolve("/eux").is_none());
    assert!(c.resolve("/e").is_none());
    // The trailing slash of a prefix is not needed to match the folder itself.
    assert_eq!(c.resolve("/eu/health").unwrap().entry.id, "eu-health");
    assert_eq!(c.resolve("/eu/healthy/x").unwrap().entry.id, "eu");
    // Paths the normaliser would refuse never match by accident.
    assert!(c.resolve("eu/x").is_none());
}

#[test]
fn overlapping_entries_take_the_most_restrictive_union() {
    let c = parse(OVERLAP);
    let r = c.resolve("/eu/health/records.csv").unwrap();
    assert_eq!(r.entry.id, "eu-health");
    assert!(matches!(r.tags, Cow::Owned(_)));
    assert_eq!(r.tags.origins.len(), 2);
    assert!(r.tags.categories.contains(&Category::Personal));
    assert!(r.tags.categories.contains(&Category::Health));
    assert_eq!(r.tags.purposes, Some(set(&["training"])));
    // The entry's own tags are untouched.
    assert_eq!(r.entry.tags.origins.len(), 1);
}

#[test]
fn regexes_are_less_specific_than_prefixes() {
    let c = parse(OVERLAP);
    let r = c.resolve("/versions/v12/data.csv").unwrap();
    assert_eq!(r.entry.id, "versions");
    assert!(matches!(r.tags, Cow::Borrowed(_)));
    assert!(c.resolve("/versions/vx/data.csv").is_none());
    assert!(c.resolve("/x/versions/v1/data.csv").is_none());
    // Both the `/eu` prefix and the regex match: the prefix is the entry, tags unite.
    let r = c.resolve("/eu/v3").unwrap();
    assert_eq!(r.entry.id, "eu");
    assert_eq!(r.tags.origins.len(), 2);
    assert!(r.tags.is_personal());
}

fn line_of(errs: &[Diagnostic], needle: &str) -> Option<usize> {
    errs.iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no error containing `{needle}` in {errs:#?}"))
        .line
}

#[test]
fn every_load_error_is_reported_with_its_line() {
    let text = "entries:
  - id: a
    kind: dataset
    match: { prefix: /a/ }
    origins: [DE, XZ]
    categories: [personal, secret]
    purposes: [training, spying]
    lawful_basis: [whim]
    derogations: [because]
  - id: a
    kind: dataset
    match: { prefix: /a }
    origins: [FR]
    categories: [public]
  - id: b
    kind: dataset
    match: { regex: '/b/.*' }
    origins: [FR]
    categories: [public]
  - id: c
    kind: model
    match: { prefix: /c/ }
    derived_from: [a, ghost]
  - id: Bad_Id
    kind: dataset
    match: { prefix: /d/../e }
    categories: [personal]
";
    let errs = errors(text);
    assert_eq!(line_of(&errs, "unknown country code `XZ`"), Some(5));
    assert_eq!(line_of(&errs, "unknown category `secret`"), Some(6));
    assert_eq!(line_of(&errs, "unknown purpose `spying`"), Some(7));
    assert_eq!(line_of(&errs, "unknown lawful basis `whim`"), Some(8));
    assert_eq!(line_of(&errs, "unknown derogation `because`"), Some(9));
    assert_eq!(
        line_of(&errs, "duplicate entry id `a` (first at line 2)"),
        Some(10)
    );
    assert_eq!(
        line_of(&errs, "prefix `/a` of entry `a` duplicates"),
        Some(12)
    );
    assert_eq!(line_of(&errs, "must be anchored"), Some(17));
    assert_eq!(line_of(&errs, "unknown entry `ghost`"), Some(23));
    assert_eq!(line_of(&errs, "entry id `Bad_Id` must match"), Some(24));
    assert_eq!(line_of(&errs, "prefix `/d/../e`"), Some(26));
    assert_eq!(
        line_of(
            &errs,
            "entry `Bad_Id` holds personal data but lists no `purposes`"
        ),
        Some(24)
    );
    assert_eq!(
        line_of(&errs, "dataset `Bad_Id` has no `origins`"),
        Some(24)
    );
    for d in &errs {
        assert_eq!(d.file, Path::new("bad.yaml"));
        assert!(!d.message.ends_with('.'), "{}", d.message);
    }
}

#[test]
fn lineage_cycles_are_load_errors() {
    let text = "entries:
  - id: x
    kind: dataset
    match: { prefix: /x/ }
    origins: [DE]
    categories: [public]
    derived_from: [z]
  - id: y
    kind: dataset
    match: { prefix: /y/ }
    origins: [DE]
    categories: [public]
    derived_from: [x]
  - id: z
    kind: dataset
    match: { prefix: /z/ }
    origins: [DE]
    categories: [public]
    derived_from: [y]
  - id: self
    kind: model
    match: { prefix: /s/ }
    derived_from: [self]
  - id: downstream
    kind: model
    match: { prefix: /d/ }
    derived_from: [z]
";
    let errs = errors(text);
    let cycles: Vec<_> = errs
        .iter()
        .filter(|d| d.message.starts_with("lineage cycle"))
        .collect();
    assert_eq!(cycles.len(), 2, "{errs:#?}");
    assert_eq!(line_of(&errs, "lineage cycle: `x`"), Some(2));
    assert_eq!(line_of(&errs, "lineage cycle: `self` ← `self`"), Some(20));
}

#[test]
fn regex_errors() {
    let big = format!("^/({})$", "a{1000}{1000}");
    let text = format!(
        "entries:
  - id: a
    kind: store
    match: {{ regex: '^/a)|(b$' }}
  - id: b
    kind: store
    match: {{ regex: '^/b\\$' }}
  - id: c
    kind: store
    match: {{ regex: '{big}' }}
"
    );
    let errs = errors(&text);
    assert_eq!(
        line_of(&errs, "regex `^/a)|(b$` of entry `a` does not compile"),
        Some(4)
    );
    assert_eq!(
        line_of(&errs, "regex `^/b\\\\$` of entry `b` must be anchored"),
        Some(7)
    );
    assert_eq!(line_of(&errs, "entry `c` does not compile"), Some(10));
}

#[test]
fn fail_closed_rules() {
    let text = "entries:
  - id: personal-no-purpose
    kind: dataset
    match: { prefix: /p/ }
    origins: [DE]
    categories: [personal]
  - id: no-categories
    kind: dataset
    match: { prefix: /n/ }
    origins: [DE]
  - id: unassessed
    kind: model
    match: { prefix: /m/ }
    origins: [DE]
    categories: [anonymous]
  - id: mixed
    kind: dataset
    match: { prefix: /x/ }
    origins: [DE]
    categories: [public, health]
    purposes: [research]
  - id: store-ok
    kind: store
    match: { prefix: /s/ }
  - id: withdrawn-bad
    kind: dataset
    match: { prefix: /w/ }
    origins: [DE]
    categories: [public]
    withdrawn: { date: yesterday, reason: '' }
";
    let errs = errors(text);
    assert_eq!(
        line_of(&errs, "`personal-no-purpose` holds personal data"),
        Some(2)
    );
    assert_eq!(
        line_of(&errs, "dataset `no-categories` has no `categories`"),
        Some(7)
    );
    assert_eq!(
        line_of(&errs, "`unassessed` is tagged `anonymous` without"),
        Some(11)
    );
    assert_eq!(
        line_of(&errs, "`mixed` is tagged `public` and also"),
        Some(16)
    );
    assert_eq!(line_of(&errs, "withdrawal date `yesterday`"), Some(30));
    assert_eq!(
        line_of(&errs, "withdrawal `reason` must not be empty"),
        Some(30)
    );
    assert!(
        !errs.iter().any(|d| d.message.contains("store-ok")),
        "{errs:#?}"
    );
}

#[test]
fn syntax_errors_carry_a_line() {
    let errs = errors(
        "entries:\n  - id: a\n    kind: dataset\n    match: { prefix: /a/ }\n    colour: red\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("colour"), "{errs:?}");
    assert_eq!(errs[0].line, Some(5), "{errs:?}");
    let errs = errors("entries:\n  - id: a\n    kind: table\n    match: { prefix: /a/ }\n");
    assert_eq!(errs[0].line, Some(3), "{errs:?}");
}

#[test]
fn load_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("catalog.yaml");
    std::fs::write(&p, "entries:\n  - id: a\n    kind: dataset\n    match: { prefix: /a/ }\n    origins: [DE]\n    categories: [personal]\n").unwrap();
    let d = Catalog::load(&p).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(d.0[0].file, p);
    assert_eq!(d.0[0].line, Some(2));
    assert!(
        d.to_string()
            .contains("catalog.yaml:2: entry `a` holds personal data"),
        "{d}"
    );
    let missing = Catalog::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(missing.0[0].message.starts_with("cannot read file"));
}

#[test]
fn ten_thousand_entries_resolve() {
    let mut text = String::from("entries:\n");
    for i in 0..10_000 {
        text.push_str(&format!(
            "  - id: ds-{i}\n    kind: dataset\n    match: {{ prefix: /datasets/group-{}/ds-{i}/ }}\n    origins: [DE]\n    categories: [public]\n",
            i % 100
        ));
    }
    for i in 0..50 {
        text.push_str(&format!(
            "  - id: rx-{i}\n    kind: dataset\n    match: {{ regex: '^/rx/{i}/v[0-9]+/.*$' }}\n    origins: [FR]\n    categories: [public]\n"
        ));
    }
    let c = parse(&text);
    assert_eq!(c.len(), 10_050);
    let start = std::time::Instant::now();
    for i in 0..10_000 {
        let p = format!("/datasets/group-{}/ds-{i}/part/file-{i}.csv", i % 100);
        let r = c.resolve(&p).unwrap();
        assert_eq!(r.entry.id, format!("ds-{i}"));
        assert!(matches!(r.tags, Cow::Borrowed(_)));
    }
    for i in 0..50 {
        assert_eq!(
            c.resolve(&format!("/rx/{i}/v7/a.bin")).unwrap().entry.id,
            format!("rx-{i}")
        );
    }
    assert!(c.resolve("/datasets/group-1/ds-2/x").is_none());
    // Generous bound for a debug build on a shared machine; release is far faster.
    assert!(
        start.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
