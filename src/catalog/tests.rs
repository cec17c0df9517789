//! Catalog loading, lineage folding and path resolution.
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

fn set(items: &[&str]) -> std::collections::BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn de() -> Country {
    Country::parse("DE").unwrap()
}

#[test]
fn quickstart_loads_and_resolves() {
    let c = quickstart();
    assert_eq!(c.len(), 6);
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

fn small_path() -> impl proptest::strategy::Strategy<Value = String> {
    use proptest::prelude::*;
    prop::collection::vec(
        prop::sample::select(vec!["a", "b", "ab", "a-b", "b.c"]),
        1..4,
    )
    .prop_map(|segs| format!("/{}", segs.join("/")))
}

proptest::proptest! {
    #[test]
    fn resolution_agrees_with_segment_prefix_match(
        prefixes in proptest::collection::btree_set(small_path(), 1..8),
        slash in proptest::prelude::any::<bool>(),
        path in small_path(),
    ) {
        let mut text = String::from("entries:\n");
        for (i, p) in prefixes.iter().enumerate() {
            let p = if slash { format!("{p}/") } else { p.clone() };
            text.push_str(&format!(
                "  - id: e{i}\n    kind: store\n    match: {{ prefix: '{p}' }}\n"
            ));
        }
        let c = parse(&text);
        let expected = prefixes
            .iter()
            .enumerate()
            .filter(|(_, p)| crate::catalog::path::segment_prefix_match(p, &path))
            .max_by_key(|(_, p)| p.len())
            .map(|(i, _)| format!("e{i}"));
        let got = c.resolve(&path).map(|r| r.entry.id.clone());
        proptest::prop_assert_eq!(got, expected);
    }
}
