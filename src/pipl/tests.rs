//! Tests of the PIPL export counter and its seeding from an audit log.

use std::io::Write;
use std::path::Path;

use super::*;
use crate::policy::volume::{Band, assess};

const CATALOG: &str = r#"
entries:
  - id: cn-a
    kind: dataset
    match: { prefix: /cn/a }
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 60000
  - id: cn-b
    kind: dataset
    match: { prefix: /cn/b }
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 50000
    exporter: acme-cn-2
  - id: cn-health
    kind: dataset
    match: { prefix: /cn/h }
    origins: [CN]
    categories: [health]
    purposes: [training]
    subjects: 3000
  - id: cn-unknown
    kind: dataset
    match: { prefix: /cn/u }
    origins: [CN]
    categories: [personal]
    purposes: [training]
  - id: cn-secret
    kind: dataset
    match: { prefix: /cn/s }
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 5
    important_data: true
  - id: cn-model
    kind: model
    match: { prefix: /cn/m }
    derived_from: [cn-secret]
  - id: de-a
    kind: dataset
    match: { prefix: /de/a }
    origins: [DE]
    categories: [personal]
    purposes: [training]
    subjects: 10
"#;

fn catalog() -> Catalog {
    Catalog::parse(Path::new("catalog.yaml"), CATALOG).unwrap()
}

fn c(s: &str) -> Country {
    Country::parse(s).unwrap()
}

fn export(cat: &Catalog, id: &str, dest: &str) -> Option<Export> {
    let e = cat.get(id).unwrap();
    Export::of(
        cat,
        &e.tags,
        c(dest),
        Direction::Download,
        Some(id),
        Some("acme-cn"),
        Some("importer"),
        2026,
    )
}

#[test]
fn only_chinese_personal_data_leaving_china_is_an_export() {
    let cat = catalog();
    assert!(export(&cat, "cn-a", "US").is_some());
    assert!(export(&cat, "cn-a", "CN").is_none());
    assert!(export(&cat, "de-a", "US").is_none());
    let e = export(&cat, "cn-b", "US").unwrap();
    assert_eq!(
        e.exporter.as_deref(),
        Some("acme-cn-2"),
        "the catalog's exporter wins"
    );
    assert_eq!(e.units, vec![("cn-b".to_string(), Some(50_000))]);
    let m = export(&cat, "cn-model", "US").unwrap();
    assert!(
        m.important_data,
        "important data stays important in derived models"
    );
}

#[test]
fn each_dataset_counts_once_per_exporter_and_year() {
    let cat = catalog();
    let k = ExportCounter::new();
    let a = export(&cat, "cn-a", "US").unwrap();
    let v = k.volume(&a);
    assert_eq!(
        (v.non_sensitive, v.subjects, v.already_counted),
        (0, Some(60_000), false)
    );
    k.record(&a);
    k.record(&a);
    let v = k.volume(&a);
    assert_eq!(
        (v.non_sensitive, v.subjects, v.already_counted),
        (60_000, Some(0), true)
    );
    assert_eq!(k.totals("acme-cn", 2026), (60_000, 0, false));
    // Another year starts from zero.
    let mut next = a.clone();
    next.year = 2027;
    assert_eq!(k.volume(&next).non_sensitive, 0);
    k.record(&next);
    assert_eq!(k.totals("acme-cn", 2027), (60_000, 0, false));
    assert_eq!(k.totals("acme-cn", 2026), (0, 0, false));
}

#[test]
fn crossing_the_exempt_threshold_changes_the_band() {
    let cat = catalog();
    let k = ExportCounter::new();
    let a = export(&cat, "cn-a", "US").unwrap();
    k.record(&a);
    let mut b = export(&cat, "cn-b", "US").unwrap();
    b.exporter = Some("acme-cn".into());
    let v = k.volume(&b);
    let tags = &cat.get("cn-b").unwrap().tags;
    let got = assess(Some(&v), tags, Some(false));
    assert_eq!(got.band, Band::Contract);
    assert_eq!(got.non_sensitive_after, Some(110_000));
    // Before the second dataset, the first alone is exempt.
    assert_eq!(
        assess(Some(&k.volume(&a)), tags, Some(false)).band,
        Band::Exempt
    );
}

#[test]
fn concurrent_first_exports_are_decided_one_after_the_other() {
    // 60,000 and 50,000 individuals from one exporter, decided at once on many threads:
    // the second decision sees the first's count, so exactly one stays under 100,000.
    let cat = catalog();
    let a = export(&cat, "cn-a", "US").unwrap();
    let mut b = export(&cat, "cn-b", "US").unwrap();
    b.exporter = Some("acme-cn".into());
    for _ in 0..50 {
        let k = std::sync::Arc::new(ExportCounter::new());
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(2));
        let run = |e: Export| {
            let (k, barrier) = (k.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                k.count(&e, |v| {
                    let after = v.non_sensitive + v.subjects.unwrap_or(u64::MAX);
                    let allow = after <= 100_000;
                    (allow, allow)
                })
            })
        };
        let (x, y) = (run(a.clone()), run(b.clone()));
        let allowed = [x.join().unwrap(), y.join().unwrap()];
        assert_eq!(allowed.iter().filter(|&&ok| ok).count(), 1, "{allowed:?}");
        let (n, _, _) = k.totals("acme-cn", 2026);
        assert!(
            n == 60_000 || n == 50_000,
            "only the allowed export counted: {n}"
        );
    }
}

#[test]
fn sensitive_and_unknown_sizes_count_separately() {
    let cat = catalog();
    let k = ExportCounter::new();
    k.record(&export(&cat, "cn-health", "US").unwrap());
    assert_eq!(k.totals("acme-cn", 2026), (0, 3_000, false));
    k.record(&export(&cat, "cn-unknown", "US").unwrap());
    assert_eq!(k.totals("acme-cn", 2026), (0, 3_000, true));
    let v = k.volume(&export(&cat, "cn-a", "US").unwrap());
    assert!(v.unbounded);
}

#[test]
fn the_counter_is_seeded_from_allowed_exports_of_this_year() {
    let cat = catalog();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let mut f = std::fs::File::create(&log).unwrap();
    let rec = |time: &str, ds: &str, decision: &str, enforced: bool, dest: &str| {
        serde_json::json!({
            "kind": "decision", "time": time, "dataset": ds, "decision": decision,
            "enforced": enforced, "destination": dest, "direction": "download",
            "upstream": "cn-store", "origins": ["CN"],
            "caller": { "sub": "x", "org": "importer", "jurisdiction": dest, "purpose": "training" },
            "tags": { "origins": ["CN"], "categories": ["personal"], "lineage": [] }
        })
    };
    for r in [
        rec("2026-03-01T10:00:00Z", "cn-a", "allow", true, "US"),
        rec("2026-03-02T10:00:00Z", "cn-a", "allow", true, "DE"),
        // Refused: nothing moved.
        rec("2026-03-03T10:00:00Z", "cn-unknown", "deny", true, "US"),
        // Shadow mode: refused but forwarded, so it counts.
        rec("2026-03-04T10:00:00Z", "cn-b", "deny", false, "US"),
        // Domestic: not an export.
        rec("2026-03-05T10:00:00Z", "cn-health", "allow", true, "CN"),
        // Last year in China (31 Dec 2025, 15:00 UTC is 23:00 in Beijing).
        rec("2025-12-31T15:00:00Z", "cn-health", "allow", true, "US"),
        // New year in China (31 Dec 2025, 17:00 UTC is 1 Jan 01:00 in Beijing).
        rec("2025-12-31T17:00:00Z", "cn-health", "allow", true, "US"),
    ] {
        writeln!(f, "{r}").unwrap();
    }
    writeln!(f, "not json").unwrap();
    drop(f);
    let k = ExportCounter::new();
    let ops: HashMap<String, String> = [("cn-store".to_string(), "acme-cn".to_string())].into();
    let n = k.seed(&[log], &cat, &ops, 2026).unwrap();
    assert_eq!(n, 4);
    // cn-a once (60,000) and the new-year cn-health record (3,000 individuals; the record's
    // tags say `personal`, and the recorded tags decide which total they add to).
    assert_eq!(k.totals("acme-cn", 2026), (63_000, 0, false));
    assert_eq!(k.totals("acme-cn-2", 2026), (50_000, 0, false));
}

#[test]
fn seeding_takes_the_exporter_the_record_names() {
    let cat = catalog();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.jsonl");
    let rec = |ds: &str, exporter: Option<&str>| {
        let mut v = serde_json::json!({
            "kind": "decision", "time": "2026-03-01T10:00:00Z", "dataset": ds,
            "decision": "allow", "enforced": true, "destination": "US",
            "direction": "download", "upstream": "cn-store", "origins": ["CN"],
            "tags": { "origins": ["CN"], "categories": ["personal"] }
        });
        if let Some(x) = exporter {
            v["exporter"] = x.into();
        }
        v.to_string()
    };
    let text = [
        rec("cn-a", Some("recorded-cn")),
        // Recorded beats the catalog's `exporter`.
        rec("cn-b", Some("recorded-cn")),
        // Without one: derived as before (the upstream's operator).
        rec("cn-health", None),
    ]
    .join("\n");
    std::fs::write(&log, text + "\n").unwrap();
    let k = ExportCounter::new();
    let ops: HashMap<String, String> = [("cn-store".to_string(), "acme-cn".to_string())].into();
    assert_eq!(k.seed(&[log], &cat, &ops, 2026).unwrap(), 3);
    assert_eq!(k.totals("recorded-cn", 2026), (110_000, 0, false));
    assert_eq!(k.totals("acme-cn-2", 2026), (0, 0, false));
    assert_eq!(k.totals("acme-cn", 2026), (3_000, 0, false));
}
