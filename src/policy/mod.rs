//! The jurisdiction model: loading and checking the policy pack and the
//! transfer-mechanism registry, and evaluating a request into a `Decision` with its trace.

pub mod diff;
mod eval;
pub mod explain;
pub mod instrument;
mod load;
mod schema;
pub mod synthetic;
mod template;
pub mod testing;
pub mod volume;
pub mod whatif;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tools_tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Diagnostics;
use crate::model::{Category, Country, Direction, Effect, Instrument, Tags};

pub use eval::{Outcome, TraceStep};
pub use instrument::{INSTRUMENT_KINDS, RECIPIENT_REGIMES, Scope};
pub use template::{Template, Var};

/// What a decision is asked about.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub tags: &'a Tags,
    /// The caller's purpose (from the token).
    pub purpose: &'a str,
    /// Registry id of the importing organisation: the caller's org on download,
    /// the upstream's operator on upload.
    pub importer: Option<&'a str>,
    /// Where the data goes: the caller's jurisdiction on download, the upstream's on upload.
    pub destination: Country,
    pub direction: Direction,
    /// The day the decision is taken "as of".
    pub date: time::Date,
    /// PIPL cumulative export volume of the exporter (CN-origin personal data leaving
    /// China); `None`: unknown, which `volume_bands` rules treat as the highest band.
    pub volume: Option<&'a volume::VolumeInfo>,
}

/// Transfer-mechanism kinds the registry and rules may name, with a label for reasons.
pub const MECHANISM_KINDS: &[(&str, &str)] = &[
    ("dpf", "EU-US Data Privacy Framework certification"),
    ("uk-dpf-extension", "UK Extension to the EU-US DPF"),
    (
        "swiss-us-dpf",
        "Swiss-US Data Privacy Framework certification",
    ),
    ("privacy-shield", "EU-US Privacy Shield certification"),
    ("safe-harbour", "US Safe Harbour self-certification"),
    ("scc", "EU standard contractual clauses"),
    (
        "scc-2001-497",
        "EU standard contractual clauses of Decision 2001/497/EC (set I)",
    ),
    (
        "scc-2004-915",
        "EU standard contractual clauses of Decision 2004/915/EC (set II)",
    ),
    (
        "scc-2010-87",
        "EU standard contractual clauses of Decision 2010/87/EU (controller to processor)",
    ),
    ("bcr", "binding corporate rules"),
    ("uk-bcr", "UK binding corporate rules"),
    ("idta", "UK International Data Transfer Agreement"),
    ("uk-addendum", "UK Addendum to the EU SCCs"),
    ("fadp-scc", "standard clauses recognised by the FDPIC"),
    ("pipl-standard-contract", "filed PIPL standard contract"),
    (
        "pipl-certification",
        "PIPL personal information protection certification",
    ),
    ("pipl-security-assessment", "passed CAC security assessment"),
    ("anpd-scc", "ANPD standard contractual clauses"),
    ("code-of-conduct", "approved code of conduct"),
    (
        "appi-system",
        "APPI Art. 28(1) system of equivalent measures (contract, group rules or APEC CBPR)",
    ),
    (
        "pipc-certification",
        "PIPC certification of the recipient (PIPA Art. 28-8(1)(4))",
    ),
    (
        "pdpa-obligations",
        "PDPA legally enforceable obligations or specified certification (PDP Regulations 2014 reg. 9-10; 2021 reg. 10-12)",
    ),
    ("certification", "approved certification"),
];

/// The label of a mechanism kind, for reasons.
pub fn mechanism_label(kind: &str) -> &str {
    MECHANISM_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, l)| *l)
        .unwrap_or(kind)
}

/// Rule ids the engine itself decides with (no policy file defines them).
pub mod builtin {
    /// The data carries no origin country: refused, fail closed.
    pub const NO_ORIGIN: &str = "bordergate.no-origin";
    /// No loaded regime governs an origin country: refused, fail closed.
    pub const NO_REGIME: &str = "bordergate.no-regime";
    /// Purpose refusal when the origin's regime names no purpose rule.
    pub const PURPOSE: &str = "bordergate.purpose";
    /// Trace step: the recipient cannot re-identify pseudonymised data.
    pub const CANNOT_REIDENTIFY: &str = "bordergate.cannot-reidentify";
    pub(crate) const ARTICLE: &str =
        "bordergate fail-closed default (no legal basis can be established)";
    pub(crate) const PURPOSE_ARTICLE: &str = "catalog purpose restriction";
}

/// A set of countries (a bit per possible alpha-2 code).
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct CountrySet([u64; 11]);

impl CountrySet {
    fn index(c: Country) -> usize {
        let b = c.as_str().as_bytes();
        let a = |x: u8| usize::from(x.saturating_sub(b'A')).min(25);
        a(b[0]) * 26 + a(b.get(1).copied().unwrap_or(b'A'))
    }
    pub fn insert(&mut self, c: Country) {
        let i = Self::index(c);
        self.0[i / 64] |= 1 << (i % 64);
    }
    pub fn contains(&self, c: Country) -> bool {
        let i = Self::index(c);
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
    /// The countries in the set, in code order.
    pub fn iter(&self) -> impl Iterator<Item = Country> + '_ {
        all_countries().filter(|c| self.contains(*c))
    }
    /// True if every country of `self` is in `other`.
    pub fn is_subset(&self, other: &CountrySet) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & !b == 0)
    }
}

/// Every assigned ISO 3166-1 alpha-2 country, in code order.
pub fn all_countries() -> impl Iterator<Item = Country> {
    (b'A'..=b'Z').flat_map(|a| {
        (b'A'..=b'Z').filter_map(move |b| {
            let s = [a, b];
            std::str::from_utf8(&s)
                .ok()
                .and_then(|s| Country::parse(s).ok())
        })
    })
}

impl std::fmt::Debug for CountrySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CountrySet({} countries)",
            self.0.iter().map(|w| w.count_ones()).sum::<u32>()
        )
    }
}

/// Categories as bits (see [`Category::ALL`]).
pub(crate) type CatMask = u16;

pub(crate) fn cat_bit(c: Category) -> CatMask {
    let i = Category::ALL.iter().position(|x| *x == c).unwrap_or(0);
    1 << i
}

/// Bits of every GDPR Art. 9 special category.
pub(crate) fn special_mask() -> CatMask {
    Category::ALL
        .iter()
        .filter(|c| c.is_special())
        .fold(0, |m, c| m | cat_bit(*c))
}

/// What a category named in a rule or a mechanism covers: `special` covers every
/// special subtype, `personal` covers pseudonymous data too.
pub(crate) fn cover_mask(c: Category) -> CatMask {
    match c {
        Category::Special => special_mask(),
        Category::Personal => cat_bit(Category::Personal) | cat_bit(Category::Pseudonymous),
        c => cat_bit(c),
    }
}

pub(crate) fn mask_categories(m: CatMask) -> impl Iterator<Item = Category> {
    Category::ALL
        .iter()
        .copied()
        .filter(move |c| m & cat_bit(*c) != 0)
}

/// A rule with a fixed role: out of scope, purpose, intra-bloc, default refusal.
#[derive(Clone, Debug)]
pub struct FixedRule {
    pub id: Box<str>,
    pub article: Box<str>,
    /// Its own instrument, else the regime's statute.
    pub instrument: Option<Arc<Instrument>>,
    pub reason: Template,
}

/// A rule of a regime's `rules` list, checked.
#[derive(Clone, Debug)]
pub struct Rule {
    pub id: Box<str>,
    pub effect: Effect,
    pub article: Box<str>,
    /// The rule's instrument, else the regime's statute.
    pub instrument: Option<Arc<Instrument>>,
    /// Recipients and data the instrument covers.
    pub scope: Option<Scope>,
    pub reason: Template,
    pub effective_from: Option<time::Date>,
    pub effective_until: Option<time::Date>,
    pub destinations: Option<CountrySet>,
    pub(crate) categories_any: Option<CatMask>,
    pub(crate) categories_only: Option<CatMask>,
    pub purposes: Option<Vec<Box<str>>>,
    pub requires_mechanism: Option<&'static str>,
    pub requires_derogation: Option<&'static str>,
    /// The mechanism must have been concluded (its `valid_from`) before this day.
    pub mechanism_concluded_before: Option<time::Date>,
    /// Applies only when the PIPL volume band after the transfer is one of these
    /// ([`volume::Band::bit`]).
    pub volume_bands: Option<u8>,
    /// The transformation an allow rule requires before the data may leave.
    pub transform: Option<Arc<crate::transform::Requirement>>,
}

impl Rule {
    /// The instrument's title if there is one, else the article.
    pub fn label(&self) -> &str {
        self.instrument
            .as_deref()
            .map_or(&self.article, |i| &i.title)
    }
}

/// One jurisdiction or regime, checked.
#[derive(Clone, Debug)]
pub struct Regime {
    pub id: Box<str>,
    pub name: Box<str>,
    pub law: Box<str>,
    pub members: CountrySet,
    pub sources: Vec<String>,
    pub unconfirmed: Vec<String>,
    pub file: PathBuf,
    pub special_categories_article: Option<Box<str>>,
    pub(crate) scope: CatMask,
    pub out_of_scope: FixedRule,
    pub purpose: Option<FixedRule>,
    pub intra_bloc: FixedRule,
    pub default_deny: FixedRule,
    pub rules: Vec<Rule>,
}

/// A transfer mechanism an organisation holds.
#[derive(Clone, Debug)]
pub struct Mechanism {
    pub kind: &'static str,
    pub reference: Box<str>,
    pub module: Option<u8>,
    pub destinations: CountrySet,
    pub(crate) categories: CatMask,
    pub valid_from: time::Date,
    pub valid_until: Option<time::Date>,
}

/// An organisation of the registry.
#[derive(Clone, Debug)]
pub struct Organisation {
    pub id: Box<str>,
    pub name: Box<str>,
    pub country: Country,
    pub mechanisms: Vec<Mechanism>,
    /// The organisation has no reasonably likely means to re-identify pseudonymised data
    /// (CJEU C-413/23 P): pseudonymous-only data is out of scope when it is the recipient.
    pub cannot_reidentify: bool,
    /// A critical information infrastructure operator (PIPL Art. 40): its exports of
    /// Chinese personal information always need a CAC security assessment.
    pub ciio: bool,
    /// The legal regimes or sectors it is declared under ([`RECIPIENT_REGIMES`]); empty:
    /// not declared, which a rule with a scope over recipients refuses.
    pub regimes: Vec<&'static str>,
}

/// A rule of the organisation overlay (`policies/org/`): company policy, stricter than
/// the law. Overlay rules only ever deny, and only transfers the law allows.
#[derive(Clone, Debug)]
pub struct OverlayRule {
    pub id: Box<str>,
    pub article: Box<str>,
    pub reason: Template,
    pub file: PathBuf,
    /// The overlay file's `id` and `name`.
    pub layer: Box<str>,
    pub layer_name: Box<str>,
    /// Applies only to data with an origin governed by one of these regimes.
    pub origins_in: Option<Vec<Box<str>>>,
    /// Applies only to these destinations.
    pub destinations: Option<CountrySet>,
    /// Applies only to destinations outside every one of these regimes.
    pub destinations_outside: Option<Vec<Box<str>>>,
    pub(crate) categories_any: Option<CatMask>,
    pub purposes: Option<Vec<Box<str>>>,
    pub effective_from: Option<time::Date>,
    pub effective_until: Option<time::Date>,
}

/// A legal basis or mechanism that ends within the reporting horizon.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Expiry {
    /// `rule` or `mechanism`.
    pub kind: &'static str,
    /// Rule id, or `org: reference` for a mechanism.
    pub id: String,
    /// Last day it applies (inclusive).
    pub ends: time::Date,
    pub days_left: i64,
}

/// The loaded policy pack and registry.
#[derive(Clone, Debug)]
pub struct PolicySet {
    /// "sha256:" + hex SHA-256 over the loaded files.
    pub version: Arc<str>,
    regimes: Vec<Regime>,
    /// Origin country index → regime index (`u16::MAX`: none).
    by_origin: Box<[u16]>,
    registry: HashMap<Box<str>, Organisation>,
    overlay: Vec<OverlayRule>,
    /// Every instrument of the pack, sorted by id.
    instruments: Vec<Arc<Instrument>>,
}

impl PolicySet {
    /// Loads every `*.yaml` policy file of `dir` (files named `registry*` excepted) and the
    /// registry, checking both; every problem found is reported with its file and line.
    pub fn load(dir: &Path, registry: &Path) -> Result<PolicySet, Diagnostics> {
        load::load(dir, registry)
    }

    /// The regimes, in file-name order.
    pub fn regimes(&self) -> &[Regime] {
        &self.regimes
    }

    /// The regime governing data originating in `c`.
    pub fn regime_for(&self, c: Country) -> Option<&Regime> {
        let i = *self.by_origin.get(CountrySet::index(c))?;
        self.regimes.get(usize::from(i))
    }

    /// An organisation of the registry.
    pub fn organisation(&self, id: &str) -> Option<&Organisation> {
        self.registry.get(id)
    }

    /// Every organisation of the registry, sorted by id.
    pub fn organisations(&self) -> Vec<&Organisation> {
        let mut v: Vec<&Organisation> = self.registry.values().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    /// Every instrument of the pack's catalogue, sorted by id.
    pub fn instruments(&self) -> &[Arc<Instrument>] {
        &self.instruments
    }

    /// An instrument of the catalogue.
    pub fn instrument(&self, id: &str) -> Option<&Arc<Instrument>> {
        self.instruments
            .binary_search_by(|i| i.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.instruments.get(i))
    }

    /// The organisation overlay's rules, in file order.
    pub fn overlay(&self) -> &[OverlayRule] {
        &self.overlay
    }

    /// Adds (or replaces) an organisation, for what-if analyses (`policy diff`, `explain`).
    pub fn insert_organisation(&mut self, org: Organisation) {
        self.registry.insert(org.id.clone(), org);
    }

    /// Removes an organisation added with [`PolicySet::insert_organisation`].
    pub fn remove_organisation(&mut self, id: &str) {
        self.registry.remove(id);
    }

    /// Rules and registry mechanisms whose last day falls within `horizon_days` of `today`.
    pub fn expiring(&self, today: time::Date, horizon_days: u32) -> Vec<Expiry> {
        let end = today.saturating_add(time::Duration::days(i64::from(horizon_days)));
        let within = |d: time::Date| d >= today && d <= end;
        let left = |d: time::Date| (d - today).whole_days();
        let mut out = Vec::new();
        for r in &self.regimes {
            for rule in &r.rules {
                if let Some(u) = rule.effective_until.filter(|u| within(*u)) {
                    out.push(Expiry {
                        kind: "rule",
                        id: rule.id.to_string(),
                        ends: u,
                        days_left: left(u),
                    });
                }
            }
        }
        for o in self.organisations() {
            for m in &o.mechanisms {
                if let Some(u) = m.valid_until.filter(|u| within(*u)) {
                    out.push(Expiry {
                        kind: "mechanism",
                        id: format!("{}/{}/{}", o.id, m.kind, m.reference),
                        ends: u,
                        days_left: left(u),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.ends.cmp(&b.ends).then_with(|| a.id.cmp(&b.id)));
        out
    }
}
