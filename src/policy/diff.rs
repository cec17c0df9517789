//! `policy diff`: which origin × destination × category × mechanism combinations change
//! outcome between two policy sets.

use std::collections::BTreeSet;

use serde::Serialize;

use super::explain::synthetic_org;
use super::{MECHANISM_KINDS, PolicySet, Query, all_countries};
use crate::model::{Category, Country, Direction, Effect, PURPOSES, Tags};

/// Category classes of the grid: one representative per way rules treat data.
pub const CATEGORY_CLASSES: &[Category] = &[
    Category::Public,
    Category::Pseudonymous,
    Category::Personal,
    Category::Health,
    Category::Criminal,
    Category::Children,
];

/// Registry id of the synthetic importer of the grid.
const GRID_ORG: &str = "bordergate.diff-importer";

/// One combination whose outcome changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub origin: Country,
    pub destination: Country,
    pub category: Category,
    /// Mechanism kind the importer holds (`none`: no mechanism).
    pub mechanism: &'static str,
    pub old_effect: Effect,
    pub old_rule: String,
    pub new_effect: Effect,
    pub new_rule: String,
    /// The purpose asked (`analytics`; `training` where it decides differently).
    pub purpose: &'static str,
    /// The transformation each side requires (`identifier: pseudonymise, …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_transform: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_transform: Option<String>,
}

/// The result of a diff.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub combinations: u64,
    pub changes: Vec<Change>,
}

/// Origins of the grid: one representative country per pair of governing regimes
/// (countries governed alike in both sets decide alike).
fn origins(old: &PolicySet, new: &PolicySet) -> Vec<Country> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for c in all_countries() {
        let a = old.regime_for(c).map(|r| r.id.to_string());
        let b = new.regime_for(c).map(|r| r.id.to_string());
        if a.is_none() && b.is_none() {
            continue;
        }
        if seen.insert((a, b)) {
            out.push(c);
        }
    }
    out
}

/// Compares `old` and `new` on the grid, as of `date`. Both sets get a synthetic importer
/// per destination (removed again).
pub fn diff(
    old: &mut PolicySet,
    new: &mut PolicySet,
    date: time::Date,
    destinations: Option<&[Country]>,
) -> Report {
    let origins = origins(old, new);
    let mut report = Report::default();
    let purposes: BTreeSet<String> = PURPOSES.iter().map(|s| s.to_string()).collect();
    let mechs: Vec<&'static str> = std::iter::once("none")
        .chain(MECHANISM_KINDS.iter().map(|(k, _)| *k))
        .collect();
    let dests: Vec<Country> = match destinations {
        Some(d) => d.to_vec(),
        None => all_countries().collect(),
    };
    for dest in dests {
        for &mech in &mechs {
            for set in [&mut *old, &mut *new] {
                match mech {
                    "none" => set.remove_organisation(GRID_ORG),
                    k => set.insert_organisation(synthetic_org(GRID_ORG, k, dest, date)),
                }
            }
            for &origin in &origins {
                for &cat in CATEGORY_CLASSES {
                    let mut tags = Tags {
                        purposes: Some(purposes.clone()),
                        ..Tags::default()
                    };
                    tags.origins.insert(origin);
                    tags.categories.insert(cat);
                    // Analytics, then training where it decides otherwise (the pack's
                    // minimising rules are for training).
                    let mut first = None;
                    for purpose in ["analytics", "training"] {
                        let q = Query {
                            tags: &tags,
                            purpose,
                            importer: Some(GRID_ORG),
                            destination: dest,
                            direction: Direction::Download,
                            date,
                            volume: None,
                        };
                        report.combinations += 1;
                        let a = old.decide(&q);
                        let b = new.decide(&q);
                        let summary = |d: &crate::model::Decision| {
                            d.transform
                                .as_deref()
                                .map(crate::transform::Requirement::summary)
                        };
                        let outcome = (a.effect, summary(&a), b.effect, summary(&b));
                        let same_as_first = first.as_ref() == Some(&outcome);
                        if first.is_none() {
                            first = Some(outcome.clone());
                        }
                        let (ae, at, be, bt) = outcome;
                        if (ae != be || at != bt) && !same_as_first {
                            report.changes.push(Change {
                                origin,
                                destination: dest,
                                category: cat,
                                mechanism: mech,
                                old_effect: ae,
                                old_rule: a.rule,
                                new_effect: be,
                                new_rule: b.rule,
                                purpose,
                                old_transform: at,
                                new_transform: bt,
                            });
                        }
                    }
                }
            }
        }
    }
    old.remove_organisation(GRID_ORG);
    new.remove_organisation(GRID_ORG);
    report
}

/// Renders a report for a terminal.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} combination(s) compared (origin × destination × category × mechanism), {} change outcome",
        r.combinations,
        r.changes.len()
    );
    for c in &r.changes {
        let _ = writeln!(
            s,
            "  {} → {} {:<14} mechanism {:<24} {} `{}` → {} `{}`",
            c.origin,
            c.destination,
            c.category.as_str(),
            c.mechanism,
            c.old_effect,
            c.old_rule,
            c.new_effect,
            c.new_rule
        );
        if c.purpose != "analytics" || c.old_transform.is_some() || c.new_transform.is_some() {
            let _ = writeln!(
                s,
                "      for {}: transform {} → {}",
                c.purpose,
                c.old_transform.as_deref().unwrap_or("none"),
                c.new_transform.as_deref().unwrap_or("none")
            );
        }
    }
    s
}
