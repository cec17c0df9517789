//! The file formats of policy files and the mechanism registry, as written (before checking).

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::model::Effect;

pub type S = Spanned<String>;

/// One policy file: one jurisdiction or regime.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegimeFile {
    /// Short id, e.g. `eu`; rule ids start with it.
    pub id: S,
    pub name: String,
    pub law: String,
    /// Countries whose data this regime governs as origin.
    pub members: Vec<S>,
    #[serde(default)]
    pub sources: Vec<String>,
    /// Facts not confirmed against a primary source.
    #[serde(default)]
    pub unconfirmed: Vec<String>,
    /// Cited when a mechanism does not cover special-category data, e.g. `GDPR Art. 9`.
    #[serde(default)]
    pub special_categories_article: Option<String>,
    /// Data categories this regime restricts; data with none of them is out of scope.
    pub scope_categories: Vec<S>,
    /// The statute's instrument id: cited by the fixed rules and by rules naming none.
    #[serde(default)]
    pub instrument: Option<S>,
    /// The instruments rules of any file may cite by id.
    #[serde(default)]
    pub instruments: Vec<InstrumentSpec>,
    /// Allows data with no category in scope.
    pub out_of_scope: FixedRule,
    /// Refuses a purpose the data does not permit.
    #[serde(default)]
    pub purpose: Option<FixedRule>,
    /// Allows transfers to a member country.
    pub intra_bloc: FixedRule,
    /// Refuses when no rule allows.
    pub default_deny: FixedRule,
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
}

/// An entry of a file's `instruments` catalogue.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstrumentSpec {
    /// Unique across the pack, e.g. `eu.dpf-2023-1795`.
    pub id: S,
    /// One of [`crate::policy::INSTRUMENT_KINDS`].
    pub kind: S,
    pub title: String,
    /// Date of adoption (or entry into force for a statute), `YYYY-MM-DD`.
    #[serde(default)]
    pub date: Option<S>,
    /// Official reference: number and publication.
    pub reference: String,
}

/// Which recipients and data a rule's instrument covers.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeSpec {
    /// The recipient must be declared under one of these legal regimes.
    #[serde(default)]
    pub recipients: Option<Vec<S>>,
    /// A recipient declared under one of these regimes is not covered.
    #[serde(default)]
    pub excludes: Option<Vec<S>>,
    /// The data's restricted categories must all be among these.
    #[serde(default)]
    pub categories: Option<Vec<S>>,
}

/// A rule with a fixed role in the evaluation order.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedRule {
    pub id: S,
    #[serde(default)]
    pub article: Option<S>,
    /// Instrument id; default: the regime's `instrument`.
    #[serde(default)]
    pub instrument: Option<S>,
    #[serde(default)]
    pub reason: Option<S>,
}

/// A rule of the `rules` list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub id: S,
    pub effect: Effect,
    #[serde(default)]
    pub article: Option<S>,
    /// Instrument id (an entry of some file's `instruments`); default: the regime's.
    #[serde(default)]
    pub instrument: Option<S>,
    /// Recipients and data the instrument covers.
    #[serde(default)]
    pub scope: Option<ScopeSpec>,
    #[serde(default)]
    pub reason: Option<S>,
    /// First day the rule applies (inclusive).
    #[serde(default)]
    pub effective_from: Option<S>,
    /// Last day the rule applies (inclusive).
    #[serde(default)]
    pub effective_until: Option<S>,
    #[serde(default)]
    pub destinations: Option<Vec<S>>,
    #[serde(default)]
    pub categories_any: Option<Vec<S>>,
    #[serde(default)]
    pub categories_only: Option<Vec<S>>,
    #[serde(default)]
    pub purposes: Option<Vec<S>>,
    #[serde(default)]
    pub requires_mechanism: Option<S>,
    #[serde(default)]
    pub requires_derogation: Option<S>,
    /// The mechanism must have been concluded (registry `valid_from`) before this day.
    #[serde(default)]
    pub mechanism_concluded_before: Option<S>,
    /// PIPL volume bands (`exempt`, `contract`, `assessment`) the rule applies in.
    #[serde(default)]
    pub volume_bands: Option<Vec<S>>,
    /// An allow rule's required transformation: a method for each kind of column
    /// (`identifier: pseudonymise`, `special: drop`, …).
    #[serde(default)]
    pub transform: Option<Spanned<std::collections::BTreeMap<String, S>>>,
}

/// The transfer-mechanism registry.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFile {
    #[serde(default)]
    pub organisations: Vec<OrgSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgSpec {
    pub id: S,
    pub name: String,
    pub country: S,
    #[serde(default)]
    pub mechanisms: Vec<MechanismSpec>,
    /// No reasonably likely means to re-identify pseudonymised data (CJEU C-413/23 P).
    #[serde(default)]
    pub cannot_reidentify: bool,
    /// A critical information infrastructure operator (PIPL Art. 40).
    #[serde(default)]
    pub ciio: bool,
    /// The legal regimes or sectors the organisation falls under (one of
    /// [`crate::policy::RECIPIENT_REGIMES`]); empty: not declared.
    #[serde(default)]
    pub regimes: Vec<S>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MechanismSpec {
    pub kind: S,
    pub reference: String,
    /// SCC module (1 C2C, 2 C2P, 3 P2P, 4 P2C).
    #[serde(default)]
    pub module: Option<Spanned<u8>>,
    /// Countries the mechanism covers; default: the organisation's country.
    #[serde(default)]
    pub destinations: Option<Vec<S>>,
    pub categories: Vec<S>,
    pub valid_from: S,
    #[serde(default)]
    pub valid_until: Option<S>,
}

/// An organisation overlay file (`policies/org/*.yaml`): company policy, stricter than the law.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayFile {
    pub id: S,
    pub name: String,
    #[serde(default)]
    pub rules: Vec<OverlayRuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlayRuleSpec {
    pub id: S,
    /// Must be `deny`: an overlay may only be stricter than the law.
    pub effect: Spanned<Effect>,
    pub article: S,
    pub reason: S,
    #[serde(default)]
    pub origins_in: Option<Vec<S>>,
    #[serde(default)]
    pub destinations: Option<Vec<S>>,
    #[serde(default)]
    pub destinations_outside: Option<Vec<S>>,
    #[serde(default)]
    pub categories_any: Option<Vec<S>>,
    #[serde(default)]
    pub purposes: Option<Vec<S>>,
    #[serde(default)]
    pub effective_from: Option<S>,
    #[serde(default)]
    pub effective_until: Option<S>,
}
