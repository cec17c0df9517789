//! Plain-language reasons and trace notes: rendering templates and saying what was missing.

use std::fmt::Write;

use super::{Ctx, Hit, Miss, Verdict};
use crate::model::{Country, Effect};
use crate::policy::instrument::{OutOfScope, regime_label};
use crate::policy::template::{Var, write_list};
use crate::policy::{
    CatMask, FixedRule, Mechanism, PolicySet, Query, RECIPIENT_REGIMES, Regime, Rule,
    mask_categories, mechanism_label, special_mask, volume,
};

impl PolicySet {
    pub(super) fn miss_note(
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
            Miss::VolumeBand(b) => {
                let mut s = format!("does not apply in the `{}` volume band: ", b.as_str());
                s.push_str(&volume::describe(q.volume, &ctx.volume));
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
    pub(super) fn write_miss(
        &self,
        s: &mut String,
        miss: &Miss<'_>,
        rule: &Rule,
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
            Miss::MechConcludedLate(m, d) => {
                mech(s, m);
                let _ = write!(
                    s,
                    " was concluded on {}, not before {d} as {} requires",
                    m.valid_from,
                    rule.label()
                );
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
            Miss::Scope(why) => write_scope(s, rule, *why, org, ctx, regime),
            _ => {}
        }
    }

    /// What was missing for a default refusal, as one phrase list.
    pub(super) fn missing(&self, regime: &Regime, ctx: &Ctx<'_, '_>, in_scope: CatMask) -> String {
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
                // The band itself is stated by the `{volume}` placeholder; a mechanism the
                // importer holds that the band has outgrown is named here.
                Miss::VolumeBand(b) => {
                    let Some(k) = rule.requires_mechanism.filter(|k| {
                        ctx.org
                            .is_some_and(|o| o.mechanisms.iter().any(|m| m.kind == *k))
                    }) else {
                        continue;
                    };
                    let _ = write!(
                        s,
                        "the {} of `{}` is not enough in the `{}` volume band",
                        mechanism_label(k),
                        q.importer.unwrap_or(""),
                        b.as_str()
                    );
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
                Miss::Scope(_) => {
                    adequacy |= unconditional;
                    self.write_miss(&mut s, &miss, rule, regime, ctx);
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

    pub(super) fn render_verdict(&self, v: &Verdict<'_>, ctx: &Ctx<'_, '_>) -> String {
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

    pub(super) fn render_fixed(
        &self,
        f: &FixedRule,
        regime: Option<&Regime>,
        origin: Option<Country>,
        ctx: &Ctx<'_, '_>,
        in_scope: CatMask,
    ) -> String {
        f.reason.render(|var, out| match var {
            Var::Instrument => {
                out.push_str(f.instrument.as_deref().map_or(&f.article, |i| &i.title))
            }
            Var::Article => out.push_str(&f.article),
            other => self.write_var(other, out, regime, origin, ctx, in_scope),
        })
    }

    pub(super) fn write_var(
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
            Var::Volume => out.push_str(&volume::describe(q.volume, &ctx.volume)),
            Var::Instrument | Var::Article | Var::Mechanism => {}
        }
    }
}
/// Why a rule's scope does not cover the transfer, saying what the registry must declare
/// when the recipient's regime is unknown.
fn write_scope(
    s: &mut String,
    rule: &Rule,
    why: OutOfScope,
    org: &str,
    ctx: &Ctx<'_, '_>,
    regime: &Regime,
) {
    let label = rule.label();
    let covered = |s: &mut String| {
        let Some(sc) = &rule.scope else { return };
        match &sc.recipients {
            Some(rs) => {
                let phrases: Vec<&str> = rs.iter().map(|r| regime_label(r)).collect();
                let _ = write!(s, "{label} covers only a recipient that is ");
                write_list(s, &phrases, " or ");
            }
            None => {
                let phrases: Vec<&str> = sc.excludes.iter().map(|r| regime_label(r)).collect();
                let _ = write!(s, "{label} does not cover a recipient that is ");
                write_list(s, &phrases, " or ");
            }
        }
    };
    let declare = |s: &mut String| {
        let known: Vec<&str> = RECIPIENT_REGIMES.iter().map(|(k, _)| *k).collect();
        let _ = write!(s, " (`regimes:`, one or more of ");
        write_list(s, &known, ", ");
        s.push(')');
    };
    match why {
        OutOfScope::Data(unc) => {
            let _ = write!(s, "{label} does not cover ");
            write_cats_phrase(s, unc, regime);
        }
        OutOfScope::NoImporter => {
            covered(s);
            s.push_str(", and no importing organisation was identified, so its legal regime is unknown: identify the importer and declare its legal regime in the registry");
            declare(s);
        }
        OutOfScope::UnknownImporter => {
            covered(s);
            let _ = write!(
                s,
                ", and `{org}` is not in the registry, so its legal regime is unknown: add it to the registry and declare its legal regime"
            );
            declare(s);
        }
        OutOfScope::Undeclared => {
            covered(s);
            let _ = write!(
                s,
                ", and the registry declares no legal regime for `{org}`: declare it in the registry"
            );
            declare(s);
        }
        OutOfScope::NotCovered => {
            covered(s);
            let declared: Vec<&str> = ctx
                .org
                .map(|o| o.regimes.iter().map(|r| regime_label(r)).collect())
                .unwrap_or_default();
            let _ = write!(s, ", and `{org}` is declared as ");
            write_list(s, &declared, " and ");
        }
        OutOfScope::Excluded(x) => {
            let _ = write!(
                s,
                "{label} does not cover a recipient that is {}, as `{org}` is declared",
                regime_label(x)
            );
        }
    }
}

pub(super) fn describe_mechanism(m: &Mechanism) -> String {
    let mut s = format!("{} `{}`", mechanism_label(m.kind), m.reference);
    if let Some(module) = m.module {
        let _ = write!(s, " (module {module})");
    }
    s
}

pub(super) fn write_cats(out: &mut String, mask: CatMask) {
    let cats: Vec<&str> = mask_categories(mask).map(|c| c.as_str()).collect();
    write_list(out, &cats, ", ");
}

/// "special-category data (GDPR Art. 9)" and/or "`children` data".
pub(super) fn write_cats_phrase(out: &mut String, unc: CatMask, regime: &Regime) {
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

pub(super) fn write_permitted(out: &mut String, q: &Query<'_>) {
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
