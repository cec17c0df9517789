//! Synthetic, hash-chained audit logs and catalogs for tests and benchmarks of the policy
//! tools: every decision record is decided by the policy set it is generated with.

use std::collections::BTreeSet;

use super::{PolicySet, Query};
use crate::audit::{DecisionRecord, Record};
use crate::model::{Caller, Category, Country, Direction, Tags};

/// One kind of request in a synthetic log.
#[derive(Clone, Debug)]
pub struct Scenario {
    pub org: &'static str,
    pub dataset: &'static str,
    pub origins: &'static [&'static str],
    pub categories: &'static [Category],
    pub purposes: &'static [&'static str],
    pub purpose: &'static str,
    pub destination: &'static str,
}

/// Requests against the quickstart catalog and registry.
pub const QUICKSTART: &[Scenario] = &[
    Scenario {
        org: "globex-us",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "analytics",
        destination: "US",
    },
    Scenario {
        org: "acme-us",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "training",
        destination: "US",
    },
    Scenario {
        org: "wayne-gb",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "training",
        destination: "GB",
    },
    Scenario {
        org: "cyberdyne-jp",
        dataset: "support-bot",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "analytics",
        destination: "JP",
    },
    Scenario {
        org: "initech-in",
        dataset: "eu-customers",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "analytics",
        destination: "IN",
    },
    Scenario {
        org: "globex-us",
        dataset: "eu-clinical",
        origins: &["FR"],
        categories: &[Category::Personal, Category::Health],
        purposes: &["research"],
        purpose: "research",
        destination: "US",
    },
    Scenario {
        org: "acme-us",
        dataset: "public-wiki",
        origins: &["IE"],
        categories: &[Category::Public],
        purposes: &[],
        purpose: "training",
        destination: "US",
    },
    Scenario {
        org: "globex-us",
        dataset: "support-bot",
        origins: &["DE"],
        categories: &[Category::Personal],
        purposes: &["analytics", "training"],
        purpose: "training",
        destination: "US",
    },
];

fn tags_of(s: &Scenario) -> Tags {
    Tags {
        origins: s
            .origins
            .iter()
            .filter_map(|o| Country::parse(o).ok())
            .collect(),
        categories: s.categories.iter().copied().collect(),
        purposes: if s.purposes.is_empty() {
            None
        } else {
            Some(
                s.purposes
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<BTreeSet<_>>(),
            )
        },
        ..Tags::default()
    }
}

/// A hash-chained audit log of `n` decision records cycling through `scenarios`, each
/// decided by `set` on `date` (the records are stamped at noon that day).
pub fn audit_log(set: &PolicySet, scenarios: &[Scenario], n: usize, date: time::Date) -> Vec<u8> {
    let mut out = Vec::with_capacity(n * 900);
    let mut prev = [0u8; 32];
    let time = format!("{date}T12:00:00.000000000Z");
    // Decide each scenario once; records differ only in their ids.
    let decided: Vec<(&Scenario, Tags, crate::model::Decision, Country)> = scenarios
        .iter()
        .filter_map(|s| {
            let dest = Country::parse(s.destination).ok()?;
            let tags = tags_of(s);
            let d = set.decide(&Query {
                tags: &tags,
                purpose: s.purpose,
                importer: Some(s.org),
                destination: dest,
                direction: Direction::Download,
                date,
                volume: None,
            });
            Some((s, tags, d, dest))
        })
        .collect();
    if decided.is_empty() {
        return out;
    }
    for i in 0..n {
        let (s, tags, d, dest) = &decided[i % decided.len()];
        let rec = Record::Decision(Box::new(DecisionRecord {
            time: time.clone(),
            request_id: format!("req-{i:08}"),
            caller: Some(Caller {
                sub: format!("pipeline-{}", i % 7),
                org: s.org.to_string(),
                jurisdiction: *dest,
                purpose: s.purpose.to_string(),
                claimed_jurisdiction: None,
            }),
            method: "GET".into(),
            path: format!("/datasets/{}/part-{:04}.parquet", s.dataset, i % 1000),
            dataset: Some(s.dataset.to_string()),
            tags: Some(tags.clone()),
            origins: tags.origins.iter().copied().collect(),
            destination: Some(*dest),
            direction: Direction::Download,
            decision: d.effect,
            enforced: true,
            status: if d.is_allow() { 0 } else { 451 },
            rule: d.rule.clone(),
            article: d.article.clone(),
            reason: d.reason.clone(),
            policy_version: d.policy_version.to_string(),
            upstream: Some("eu-store".into()),
            exporter: None,
            client_request_id: None,
            undeclared_recent: None,
            credential: None,
            instrument: d.instrument.clone(),
            transform: None,
        }));
        let Ok(json) = serde_json::to_vec(&rec) else {
            continue;
        };
        prev = crate::audit::line::encode_line(&mut out, i as u64 + 1, &prev, &json);
    }
    out
}

/// Origins and categories the synthetic catalog cycles through.
const CATALOG_ORIGINS: &[&str] = &["DE", "FR", "GB", "CH", "US", "IN", "BR", "JP", "CN", "SG"];
const CATALOG_CATEGORIES: &[&str] = &["personal", "health", "public", "pseudonymous", "criminal"];

/// A catalog of `n` datasets `ds-{i}` under `/datasets/ds-{i}/`, with mixed origins and
/// categories; with `regex_every: Some(k)`, every k-th dataset also has a regex entry for
/// its `old-` files, so matching exercises the regex set as well as the prefixes.
pub fn catalog(n: usize, regex_every: Option<usize>) -> Result<crate::catalog::Catalog, String> {
    use std::fmt::Write;
    let (o, c) = (CATALOG_ORIGINS, CATALOG_CATEGORIES);
    let mut s = String::from("entries:\n");
    for i in 0..n {
        let _ = write!(
            s,
            "  - id: ds-{i}\n    kind: dataset\n    match: {{ prefix: /datasets/ds-{i}/ }}\n    origins: [{}, {}]\n    categories: [{}]\n    purposes: [analytics, training]\n",
            o[i % o.len()],
            o[(i / 7) % o.len()],
            c[i % c.len()],
        );
        if regex_every.is_some_and(|k| k > 0 && i % k == 0) {
            let _ = write!(
                s,
                "  - id: ds-{i}-old\n    kind: dataset\n    match: {{ regex: '^/datasets/ds-{i}/old-.*$' }}\n    origins: [DE]\n    categories: [personal]\n    purposes: [analytics]\n"
            );
        }
    }
    crate::catalog::Catalog::parse(std::path::Path::new("synthetic-catalog.yaml"), &s)
        .map_err(|d| d.to_string())
}

#[cfg(test)]
mod catalog_tests {
    #[test]
    fn the_synthetic_catalog_resolves_its_prefixes_and_regexes() {
        let cat = super::catalog(1_000, Some(100)).unwrap_or_else(|d| panic!("{d}"));
        let r = cat.resolve("/datasets/ds-7/part-0.parquet");
        assert_eq!(r.map(|r| r.entry.id.as_str()), Some("ds-7"));
        let r = cat.resolve("/datasets/ds-200/old-dump.csv");
        assert!(r.is_some_and(|r| r.tags.is_personal()));
        assert!(cat.resolve("/datasets/ds-1000/x").is_none());
    }
}
