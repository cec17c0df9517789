//! Evaluation of a query against the loaded regimes: the one evaluator behind the gateway,
//! `policy explain` and every other caller.

use std::sync::Arc;

use serde::Serialize;

use super::instrument::{OutOfScope, with_module};
use super::volume::{self, Assessed, Band};
use super::{CatMask, Mechanism, Organisation, PolicySet, Query, Regime, Rule, builtin, cat_bit};
use crate::model::{Basis, Category, Country, Decision, DenyGround, Effect, Instrument};

/// What a rule did in an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Allow,
    Deny,
    /// The rule was considered and did not apply.
    NotApplicable,
}

/// One rule considered while deciding, in evaluation order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TraceStep {
    /// The origin being evaluated (none for the purpose check across origins).
    pub origin: Option<Country>,
    pub regime: Option<String>,
    pub rule: String,
    pub outcome: Outcome,
    /// Why the rule did or did not apply.
    pub note: String,
}

/// Why a rule did not apply.
enum Miss<'p> {
    Destination,
    NotYet(time::Date),
    Ended(time::Date),
    Purpose,
    CategoriesAny,
    CategoriesOnly(CatMask),
    NoDerogation(&'static str),
    NoImporter,
    UnknownImporter,
    NoMechanism(&'static str),
    MechNotYet(&'p Mechanism),
    MechExpired(&'p Mechanism),
    MechDestination(&'p Mechanism),
    MechCategories(&'p Mechanism, CatMask),
    /// The mechanism was concluded on or after the day the rule requires it before.
    MechConcludedLate(&'p Mechanism, time::Date),
    /// The PIPL volume band after the transfer is not one the rule applies in.
    VolumeBand(Band),
    /// The instrument's scope does not cover the recipient or the data.
    Scope(OutOfScope),
}

/// Which rule decided an origin.
enum Hit<'p> {
    OutOfScope,
    Intra,
    Rule(&'p Rule, Option<&'p Mechanism>),
    Default,
    NoRegime,
}

/// One origin's verdict.
struct Verdict<'p> {
    origin: Country,
    regime: Option<&'p Regime>,
    effect: Effect,
    hit: Hit<'p>,
    /// The data's categories in the regime's scope.
    in_scope: CatMask,
}

impl Verdict<'_> {
    fn rule_and_article(&self) -> (&str, &str) {
        match (&self.hit, self.regime) {
            (Hit::OutOfScope, Some(r)) => (&r.out_of_scope.id, &r.out_of_scope.article),
            (Hit::Intra, Some(r)) => (&r.intra_bloc.id, &r.intra_bloc.article),
            (Hit::Rule(rule, _), _) => (&rule.id, &rule.article),
            (Hit::Default, Some(r)) => (&r.default_deny.id, &r.default_deny.article),
            _ => (builtin::NO_REGIME, builtin::ARTICLE),
        }
    }

    /// The instrument the deciding rule rests on, with the SCC module relied on.
    fn instrument(&self) -> Option<Arc<Instrument>> {
        let i = match (&self.hit, self.regime) {
            (Hit::OutOfScope, Some(r)) => r.out_of_scope.instrument.as_ref(),
            (Hit::Intra, Some(r)) => r.intra_bloc.instrument.as_ref(),
            (Hit::Rule(rule, m), _) => {
                return rule
                    .instrument
                    .as_ref()
                    .map(|i| with_module(i, m.and_then(|m| m.module)));
            }
            (Hit::Default, Some(r)) => r.default_deny.instrument.as_ref(),
            _ => None,
        };
        i.cloned()
    }
}

/// Everything a rule check needs about the request.
struct Ctx<'q, 'p> {
    q: &'q Query<'q>,
    data: CatMask,
    org: Option<&'p Organisation>,
    /// The PIPL volume band after this transfer.
    volume: Assessed,
}

type Trace<'t> = Option<&'t mut Vec<TraceStep>>;

fn step(
    trace: &mut Trace<'_>,
    origin: Option<Country>,
    regime: Option<&Regime>,
    rule: &str,
    outcome: Outcome,
    note: impl FnOnce() -> String,
) {
    if let Some(t) = trace.as_deref_mut() {
        t.push(TraceStep {
            origin,
            regime: regime.map(|r| r.id.to_string()),
            rule: rule.to_string(),
            outcome,
            note: note(),
        });
    }
}

impl PolicySet {
    /// Decides a query.
    pub fn decide(&self, q: &Query<'_>) -> Decision {
        self.evaluate(q, None)
    }

    /// Decides a query and returns every rule considered, in order.
    pub fn decide_with_trace(&self, q: &Query<'_>) -> (Decision, Vec<TraceStep>) {
        let mut t = Vec::new();
        let d = self.evaluate(q, Some(&mut t));
        (d, t)
    }

    fn evaluate(&self, q: &Query<'_>, mut trace: Trace<'_>) -> Decision {
        let tags = q.tags;
        let org = q.importer.and_then(|id| self.registry.get(id));
        let mut data = tags.categories.iter().fold(0, |m, c| m | cat_bit(*c));
        if let Some(o) = org.filter(|o| o.cannot_reidentify)
            && data & cat_bit(Category::Pseudonymous) != 0
        {
            data &= !cat_bit(Category::Pseudonymous);
            step(
                &mut trace,
                None,
                None,
                builtin::CANNOT_REIDENTIFY,
                Outcome::NotApplicable,
                || {
                    format!(
                        "`{}` is recorded as unable to re-identify pseudonymised data (CJEU C-413/23 P): pseudonymous data is not personal data for it",
                        o.id
                    )
                },
            );
        }
        let ciio = q.volume.map(|v| {
            v.exporter
                .as_deref()
                .map(|e| self.registry.get(e).is_some_and(|o| o.ciio))
        });
        let volume = volume::assess(q.volume, tags, ciio.flatten());
        let ctx = Ctx {
            q,
            data,
            org,
            volume,
        };

        // Purpose limitation first, across all origins.
        let purpose_ok = match &tags.purposes {
            Some(p) => p.contains(q.purpose),
            None => !tags.is_personal(),
        };
        let (p_origin, p_regime, p_rule) = tags
            .origins
            .iter()
            .find_map(|o| {
                let r = self.regime_for(*o)?;
                Some((Some(*o), Some(r), r.purpose.as_ref()?))
            })
            .map_or((None, None, None), |(o, r, p)| (o, r, Some(p)));
        let p_id = p_rule.map_or(builtin::PURPOSE, |p| &*p.id);
        if !purpose_ok {
            step(&mut trace, p_origin, p_regime, p_id, Outcome::Deny, || {
                format!("purpose `{}` is not permitted for the data", q.purpose)
            });
            let reason = match p_rule {
                Some(p) => self.render_fixed(p, p_regime, p_origin, &ctx, 0),
                None => {
                    let mut s = format!(
                        "The purpose `{}` is not among the purposes permitted for this data (",
                        q.purpose
                    );
                    write_permitted(&mut s, q);
                    s.push_str(").");
                    s
                }
            };
            return Decision {
                effect: Effect::Deny,
                ground: Some(DenyGround::Purpose),
                rule: p_id.to_string(),
                article: p_rule
                    .map_or(builtin::PURPOSE_ARTICLE, |p| &*p.article)
                    .to_string(),
                reason,
                policy_version: self.version.clone(),
                bases: Vec::new(),
                instrument: p_rule.and_then(|p| p.instrument.clone()),
                transform: None,
            };
        }
        step(
            &mut trace,
            p_origin,
            p_regime,
            p_id,
            Outcome::NotApplicable,
            || format!("purpose `{}` is permitted for the data", q.purpose),
        );

        if tags.origins.is_empty() {
            step(
                &mut trace,
                None,
                None,
                builtin::NO_ORIGIN,
                Outcome::Deny,
                || "the data has no origin country".into(),
            );
            return Decision {
                effect: Effect::Deny,
                ground: Some(DenyGround::Transfer),
                rule: builtin::NO_ORIGIN.into(),
                article: builtin::ARTICLE.into(),
                reason: format!(
                    "The data has no recorded origin country, so no transfer rule can be applied to sending it to {}; refused (fail closed).",
                    q.destination
                ),
                policy_version: self.version.clone(),
                bases: Vec::new(),
                instrument: None,
                transform: None,
            };
        }

        let verdicts: Vec<Verdict<'_>> = tags
            .origins
            .iter()
            .map(|o| self.origin_verdict(*o, &ctx, &mut trace))
            .collect();
        let bases: Vec<Basis> = verdicts
            .iter()
            .map(|v| {
                let (rule, article) = v.rule_and_article();
                Basis {
                    origin: v.origin,
                    effect: v.effect,
                    rule: rule.to_string(),
                    article: article.to_string(),
                    instrument: v.instrument().map(|i| i.id.clone()),
                }
            })
            .collect();

        if let Some(v) = verdicts.iter().find(|v| v.effect == Effect::Deny) {
            let (rule, article) = v.rule_and_article();
            return Decision {
                effect: Effect::Deny,
                ground: Some(DenyGround::Transfer),
                rule: rule.to_string(),
                article: article.to_string(),
                reason: self.render_verdict(v, &ctx),
                policy_version: self.version.clone(),
                bases,
                instrument: v.instrument(),
                transform: None,
            };
        }
        if let Some(d) = self.overlay_verdict(&ctx, &mut trace, &bases) {
            return d;
        }
        let (rule, article) = verdicts[0].rule_and_article();
        let mut reason = String::new();
        for v in &verdicts {
            if !reason.is_empty() {
                reason.push(' ');
            }
            reason.push_str(&self.render_verdict(v, &ctx));
        }
        // Every origin's required transformation, the stronger method where two differ.
        let transform = verdicts
            .iter()
            .filter_map(|v| match &v.hit {
                Hit::Rule(rule, _) => rule.transform.as_deref(),
                _ => None,
            })
            .fold(None, |acc: Option<crate::transform::Requirement>, t| {
                let mut acc = acc.unwrap_or_default();
                acc.merge(t);
                Some(acc)
            })
            .map(Arc::new);
        Decision {
            effect: Effect::Allow,
            ground: None,
            rule: rule.to_string(),
            article: article.to_string(),
            reason,
            policy_version: self.version.clone(),
            bases,
            instrument: verdicts[0].instrument(),
            transform,
        }
    }

    fn origin_verdict<'p>(
        &'p self,
        origin: Country,
        ctx: &Ctx<'_, 'p>,
        trace: &mut Trace<'_>,
    ) -> Verdict<'p> {
        let dest = ctx.q.destination;
        let Some(regime) = self.regime_for(origin) else {
            step(
                trace,
                Some(origin),
                None,
                builtin::NO_REGIME,
                Outcome::Deny,
                || format!("no loaded policy governs data originating in {origin}"),
            );
            return Verdict {
                origin,
                regime: None,
                effect: Effect::Deny,
                hit: Hit::NoRegime,
                in_scope: 0,
            };
        };
        let v = |effect, hit, in_scope| Verdict {
            origin,
            regime: Some(regime),
            effect,
            hit,
            in_scope,
        };
        let o = Some(origin);
        let in_scope = ctx.data & regime.scope;
        if in_scope == 0 {
            step(
                trace,
                o,
                Some(regime),
                &regime.out_of_scope.id,
                Outcome::Allow,
                || "no category of the data is restricted by this regime".into(),
            );
            return v(Effect::Allow, Hit::OutOfScope, 0);
        }
        step(
            trace,
            o,
            Some(regime),
            &regime.out_of_scope.id,
            Outcome::NotApplicable,
            || {
                let mut s = String::from("restricted categories present: ");
                write_cats(&mut s, in_scope);
                s
            },
        );
        if regime.members.contains(dest) {
            step(
                trace,
                o,
                Some(regime),
                &regime.intra_bloc.id,
                Outcome::Allow,
                || format!("{dest} is a member of the regime"),
            );
            return v(Effect::Allow, Hit::Intra, in_scope);
        }
        step(
            trace,
            o,
            Some(regime),
            &regime.intra_bloc.id,
            Outcome::NotApplicable,
            || format!("{dest} is not a member of the regime"),
        );
        for effect in [Effect::Deny, Effect::Allow] {
            for rule in regime.rules.iter().filter(|r| r.effect == effect) {
                match self.check(rule, ctx, in_scope) {
                    Ok(m) => {
                        let out = if effect == Effect::Deny {
                            Outcome::Deny
                        } else {
                            Outcome::Allow
                        };
                        step(trace, o, Some(regime), &rule.id, out, || match m {
                            Some(m) => format!("applies, relying on {}", describe_mechanism(m)),
                            None => "applies".into(),
                        });
                        return v(effect, Hit::Rule(rule, m), in_scope);
                    }
                    Err(miss) => step(
                        trace,
                        o,
                        Some(regime),
                        &rule.id,
                        Outcome::NotApplicable,
                        || self.miss_note(&miss, rule, regime, ctx),
                    ),
                }
            }
        }
        step(
            trace,
            o,
            Some(regime),
            &regime.default_deny.id,
            Outcome::Deny,
            || "no rule allowed the transfer".into(),
        );
        v(Effect::Deny, Hit::Default, in_scope)
    }

    /// Whether `rule` applies; with the mechanism relied on, if it needs one.
    fn check<'p>(
        &'p self,
        rule: &'p Rule,
        ctx: &Ctx<'_, 'p>,
        in_scope: CatMask,
    ) -> Result<Option<&'p Mechanism>, Miss<'p>> {
        let q = ctx.q;
        if let Some(d) = &rule.destinations
            && !d.contains(q.destination)
        {
            return Err(Miss::Destination);
        }
        if let Some(f) = rule.effective_from
            && q.date < f
        {
            return Err(Miss::NotYet(f));
        }
        if let Some(u) = rule.effective_until
            && q.date > u
        {
            return Err(Miss::Ended(u));
        }
        if let Some(ps) = &rule.purposes
            && !ps.iter().any(|p| &**p == q.purpose)
        {
            return Err(Miss::Purpose);
        }
        if let Some(any) = rule.categories_any
            && in_scope & any == 0
        {
            return Err(Miss::CategoriesAny);
        }
        if let Some(only) = rule.categories_only
            && in_scope & !only != 0
        {
            return Err(Miss::CategoriesOnly(in_scope & !only));
        }
        if let Some(d) = rule.requires_derogation
            && !q.tags.derogations.contains(d)
        {
            return Err(Miss::NoDerogation(d));
        }
        if let Some(bands) = rule.volume_bands
            && bands & ctx.volume.band.bit() == 0
        {
            return Err(Miss::VolumeBand(ctx.volume.band));
        }
        if let Some(sc) = &rule.scope {
            sc.check(in_scope, q.importer, ctx.org)
                .map_err(Miss::Scope)?;
        }
        match rule.requires_mechanism {
            Some(kind) => {
                find_mechanism(kind, ctx, in_scope, rule.mechanism_concluded_before).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// The first mechanism of `kind` the importer holds that is valid for this transfer.
fn find_mechanism<'p>(
    kind: &'static str,
    ctx: &Ctx<'_, 'p>,
    in_scope: CatMask,
    concluded_before: Option<time::Date>,
) -> Result<&'p Mechanism, Miss<'p>> {
    let q = ctx.q;
    let org = match (q.importer, ctx.org) {
        (None, _) => return Err(Miss::NoImporter),
        (Some(_), None) => return Err(Miss::UnknownImporter),
        (Some(_), Some(o)) => o,
    };
    let mut first_miss = None;
    for m in org.mechanisms.iter().filter(|m| m.kind == kind) {
        let miss = if q.date < m.valid_from {
            Miss::MechNotYet(m)
        } else if m.valid_until.is_some_and(|u| q.date > u) {
            Miss::MechExpired(m)
        } else if let Some(d) = concluded_before.filter(|d| m.valid_from >= *d) {
            Miss::MechConcludedLate(m, d)
        } else if !m.destinations.contains(q.destination) {
            Miss::MechDestination(m)
        } else if in_scope & !m.categories != 0 {
            Miss::MechCategories(m, in_scope & !m.categories)
        } else {
            return Ok(m);
        };
        first_miss.get_or_insert(miss);
    }
    Err(first_miss.unwrap_or(Miss::NoMechanism(kind)))
}

mod overlay;
mod reason;

use reason::{describe_mechanism, write_cats, write_permitted};
