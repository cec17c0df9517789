//! Evaluation of a query against the loaded regimes: the one evaluator behind the gateway,
//! `policy explain` and every other caller.

use std::fmt::Write;

use serde::Serialize;

use super::template::{Var, write_list};
use super::{
    CatMask, FixedRule, Mechanism, Organisation, PolicySet, Query, Regime, Rule, builtin, cat_bit,
    mask_categories, mechanism_label, special_mask,
};
use crate::model::{Basis, Country, Decision, DenyGround, Effect};

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
}

/// Everything a rule check needs about the request.
struct Ctx<'q, 'p> {
    q: &'q Query<'q>,
    data: CatMask,
    org: Option<&'p Organisation>,
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
        let data = tags.categories.iter().fold(0, |m, c| m | cat_bit(*c));
        let ctx = Ctx {
            q,
            data,
            org: q.importer.and_then(|id| self.registry.get(id)),
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
            };
        }

        let verdicts: Vec<Verdict<'_>> = tags
            .origins
            .iter()
            .map(|o| self.origin_verdict(*o, &ctx, &mut trace))
            .collect();
        let bases = verdicts
            .iter()
            .map(|v| {
                let (rule, article) = v.rule_and_article();
                Basis {
                    origin: v.origin,
                    effect: v.effect,
                    rule: rule.to_string(),
                    article: article.to_string(),
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
            };
        }
        let (rule, article) = verdicts[0].rule_and_article();
        let mut reason = String::new();
        for v in &verdicts {
            if !reason.is_empty() {
                reason.push(' ');
            }
            reason.push_str(&self.render_verdict(v, &ctx));
        }
        Decision {
            effect: Effect::Allow,
            ground: None,
            rule: rule.to_string(),
            article: article.to_string(),
            reason,
            policy_version: self.version.clone(),
            bases,
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
        match rule.requires_mechanism {
            Some(kind) => find_mechanism(kind, ctx, in_scope).map(Some),
            None => Ok(None),
        }
    }

    fn miss_note(
        &self,
        miss: &Miss<'_>,
        rule: &Rule,
        regime: &Regime,
        ctx: &Ctx<'_, '_>,
    ) -> String {
        let q = ctx.q;
        match miss {
            Miss::Destination => format!("does not cover {}", q.destination),
            Miss::NotYet(d) => format!("applies only from {d}"),
            Miss::Ended(d) => format!("ceased to apply after {d}"),
            Miss::Purpose => format!("does not cover the purpose `{}`", q.purpose),
            Miss::CategoriesAny => "the data has none of the rule's categories".into(),
            Miss::CategoriesOnly(unc) => {
                let mut s = String::from("does not cover ");
                write_cats_phrase(&mut s, *unc, regime);
                s
            }
            _ => {
                let mut s = String::new();
                self.write_miss(&mut s, miss, rule, regime, ctx);
                s
            }
        }
    }

    /// Writes a mechanism or derogation failure for a reason.
    fn write_miss(
        &self,
        s: &mut String,
        miss: &Miss<'_>,
        _rule: &Rule,
        regime: &Regime,
        ctx: &Ctx<'_, '_>,
    ) {
        let org = ctx.q.importer.unwrap_or("");
        let mech = |s: &mut String, m: &Mechanism| {
            let _ = write!(
                s,
                "the {} `{}` of `{org}`",
                mechanism_label(m.kind),
                m.reference
            );
        };
        match miss {
            Miss::NoDerogation(d) => {
                let _ = write!(s, "no `{d}` derogation is recorded on the data");
            }
            Miss::NoImporter => s.push_str("no importing organisation was identified"),
            Miss::UnknownImporter => {
                let _ = write!(s, "`{org}` is not in the transfer-mechanism registry");
            }
            Miss::NoMechanism(k) => {
                let _ = write!(s, "no {} on record for `{org}`", mechanism_label(k));
            }
            Miss::MechNotYet(m) => {
                mech(s, m);
                let _ = write!(s, " is valid only from {}", m.valid_from);
            }
            Miss::MechExpired(m) => {
                mech(s, m);
                if let Some(u) = m.valid_until {
                    let _ = write!(s, " expired on {u}");
                }
            }
            Miss::MechDestination(m) => {
                mech(s, m);
                let _ = write!(s, " does not cover transfers to {}", ctx.q.destination);
            }
            Miss::MechCategories(m, unc) => {
                mech(s, m);
                s.push_str(" does not cover ");
                write_cats_phrase(s, *unc, regime);
            }
            _ => {}
        }
    }

    /// What was missing for a default refusal, as one phrase list.
    fn missing(&self, regime: &Regime, ctx: &Ctx<'_, '_>, in_scope: CatMask) -> String {
        let q = ctx.q;
        let mut parts: Vec<String> = Vec::new();
        let mut adequacy = false;
        let mut kinds: Vec<&str> = Vec::new();
        // A destination-specific rule needing a mechanism (e.g. the DPF): adequacy in part.
        let mut partial = false;
        let mut importer_problem: Option<String> = None;
        let mut derogations: Vec<&str> = Vec::new();
        for rule in regime.rules.iter().filter(|r| r.effect == Effect::Allow) {
            let unconditional =
                rule.requires_mechanism.is_none() && rule.requires_derogation.is_none();
            let Err(miss) = self.check(rule, ctx, in_scope) else {
                continue;
            };
            let mut s = String::new();
            match &miss {
                Miss::Destination | Miss::NotYet(_) | Miss::Purpose | Miss::CategoriesAny => {
                    continue;
                }
                Miss::Ended(u) => {
                    // A lapsed mechanism-based rule matters only to holders of that mechanism.
                    let held = match rule.requires_mechanism {
                        Some(k) => ctx
                            .org
                            .is_some_and(|o| o.mechanisms.iter().any(|m| m.kind == k)),
                        None => true,
                    };
                    if !held {
                        continue;
                    }
                    let _ = write!(s, "{} ceased to apply after {u}", rule.label());
                }
                Miss::CategoriesOnly(unc) => {
                    adequacy |= unconditional;
                    let _ = write!(s, "{} does not cover ", rule.label());
                    write_cats_phrase(&mut s, *unc, regime);
                }
                Miss::NoDerogation(d) => {
                    if !derogations.contains(d) {
                        derogations.push(d);
                    }
                    continue;
                }
                Miss::NoImporter | Miss::UnknownImporter | Miss::NoMechanism(_) => {
                    partial |= rule.destinations.is_some();
                    if let Some(k) = rule.requires_mechanism
                        && !kinds.contains(&k)
                    {
                        kinds.push(k);
                    }
                    if !matches!(miss, Miss::NoMechanism(_)) && importer_problem.is_none() {
                        let mut p = String::new();
                        self.write_miss(&mut p, &miss, rule, regime, ctx);
                        importer_problem = Some(p);
                    }
                    continue;
                }
                _ => self.write_miss(&mut s, &miss, rule, regime, ctx),
            }
            if !parts.contains(&s) {
                parts.push(s);
            }
        }
        let mut out = String::new();
        if !adequacy {
            let whole = if partial { " as a whole" } else { "" };
            let _ = write!(
                out,
                "no adequacy decision covers {}{whole} on {}",
                q.destination, q.date
            );
        }
        let sep = |out: &mut String| {
            if !out.is_empty() {
                out.push_str("; ");
            }
        };
        if !kinds.is_empty() {
            sep(&mut out);
            let labels: Vec<&str> = kinds.iter().map(|k| mechanism_label(k)).collect();
            match &importer_problem {
                Some(p) => {
                    out.push_str(p);
                    out.push_str(", so no ");
                    write_list(&mut out, &labels, " or ");
                    out.push_str(" can be relied on");
                }
                None => {
                    out.push_str("no ");
                    write_list(&mut out, &labels, " or ");
                    let _ = write!(out, " on record for `{}`", q.importer.unwrap_or(""));
                }
            }
        }
        for p in &parts {
            sep(&mut out);
            out.push_str(p);
        }
        if !derogations.is_empty() {
            sep(&mut out);
            out.push_str("no derogation (");
            write_list(&mut out, &derogations, ", ");
            out.push_str(") is recorded on the data");
        }
        out
    }

    fn render_verdict(&self, v: &Verdict<'_>, ctx: &Ctx<'_, '_>) -> String {
        let Some(regime) = v.regime else {
            return format!(
                "No loaded policy governs data originating in {}, so its transfer to {} is refused (fail closed).",
                v.origin, ctx.q.destination
            );
        };
        match &v.hit {
            Hit::OutOfScope => self.render_fixed(
                &regime.out_of_scope,
                Some(regime),
                Some(v.origin),
                ctx,
                v.in_scope,
            ),
            Hit::Intra => self.render_fixed(
                &regime.intra_bloc,
                Some(regime),
                Some(v.origin),
                ctx,
                v.in_scope,
            ),
            Hit::Default => self.render_fixed(
                &regime.default_deny,
                Some(regime),
                Some(v.origin),
                ctx,
                v.in_scope,
            ),
            Hit::NoRegime => String::new(),
            Hit::Rule(rule, mech) => rule.reason.render(|var, out| match var {
                Var::Instrument => out.push_str(rule.label()),
                Var::Article => out.push_str(&rule.article),
                Var::Mechanism => {
                    if let Some(m) = mech {
                        let _ = write!(out, "`{}`", m.reference);
                        if let Some(module) = m.module {
                            let _ = write!(out, ", module {module}");
                        }
                    }
                }
                other => self.write_var(other, out, Some(regime), Some(v.origin), ctx, v.in_scope),
            }),
        }
    }

    fn render_fixed(
        &self,
        f: &FixedRule,
        regime: Option<&Regime>,
        origin: Option<Country>,
        ctx: &Ctx<'_, '_>,
        in_scope: CatMask,
    ) -> String {
        f.reason.render(|var, out| match var {
            Var::Instrument | Var::Article => out.push_str(&f.article),
            other => self.write_var(other, out, regime, origin, ctx, in_scope),
        })
    }

    fn write_var(
        &self,
        var: Var,
        out: &mut String,
        regime: Option<&Regime>,
        origin: Option<Country>,
        ctx: &Ctx<'_, '_>,
        in_scope: CatMask,
    ) {
        let q = ctx.q;
        match var {
            Var::Origin => {
                if let Some(o) = origin {
                    out.push_str(o.as_str());
                }
            }
            Var::Destination => out.push_str(q.destination.as_str()),
            Var::Importer => match q.importer {
                Some(i) => {
                    let _ = write!(out, "`{i}`");
                }
                None => out.push_str("an unidentified importer"),
            },
            Var::Date => {
                let _ = write!(out, "{}", q.date);
            }
            Var::Missing => {
                if let Some(r) = regime {
                    out.push_str(&self.missing(r, ctx, in_scope));
                }
            }
            Var::Purpose => {
                let _ = write!(out, "`{}`", q.purpose);
            }
            Var::Permitted => write_permitted(out, q),
            Var::Regime => {
                if let Some(r) = regime {
                    out.push_str(&r.name);
                }
            }
            Var::Categories => write_cats(out, if in_scope == 0 { ctx.data } else { in_scope }),
            Var::Instrument | Var::Article | Var::Mechanism => {}
        }
    }
}

/// The first mechanism of `kind` the importer holds that is valid for this transfer.
fn find_mechanism<'p>(
    kind: &'static str,
    ctx: &Ctx<'_, 'p>,
    in_scope: CatMask,
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

fn describe_mechanism(m: &Mechanism) -> String {
    let mut s = format!("{} `{}`", mechanism_label(m.kind), m.reference);
    if let Some(module) = m.module {
        let _ = write!(s, " (module {module})");
    }
    s
}

fn write_cats(out: &mut String, mask: CatMask) {
    let cats: Vec<&str> = mask_categories(mask).map(|c| c.as_str()).collect();
    write_list(out, &cats, ", ");
}

/// "special-category data (GDPR Art. 9)" and/or "`children` data".
fn write_cats_phrase(out: &mut String, unc: CatMask, regime: &Regime) {
    let special = unc & special_mask();
    if special != 0 {
        out.push_str("special-category data");
        if let Some(a) = &regime.special_categories_article {
            let _ = write!(out, " ({a})");
        }
        out.push_str(" such as ");
        write_cats(out, special);
    }
    let rest = unc & !special_mask();
    if rest != 0 {
        if special != 0 {
            out.push_str(", nor ");
        }
        write_cats(out, rest);
        out.push_str(" data");
    }
}

fn write_permitted(out: &mut String, q: &Query<'_>) {
    match &q.tags.purposes {
        Some(p) if !p.is_empty() => {
            let v: Vec<&str> = p.iter().map(String::as_str).collect();
            write_list(out, &v, ", ");
        }
        Some(_) => out.push_str("none"),
        None if q.tags.is_personal() => out.push_str("none recorded"),
        None => out.push_str("any"),
    }
}
