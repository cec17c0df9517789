//! `policy explain`: a decision with its trace, why the winning rule won, and which
//! mechanism or derogation would have made a refusal lawful.

use std::fmt::Write;

use serde::Serialize;

use super::volume::{self, Band, VolumeInfo};
use super::{
    CountrySet, MECHANISM_KINDS, Mechanism, Organisation, Outcome, PolicySet, Query, TraceStep,
    mechanism_label,
};
use crate::model::{Category, DEROGATIONS, Decision, Effect};

/// Registry id of the synthetic importer used to test remedies.
pub const SYNTHETIC_ORG: &str = "bordergate.what-if-importer";

/// Something that would have made a refusal lawful.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Remedy {
    /// `mechanism` or `derogation`.
    pub kind: &'static str,
    /// Mechanism kind or derogation name.
    pub name: String,
    /// Plain-language description.
    pub description: String,
    /// The rule that would then allow.
    pub rule: String,
    pub article: String,
}

/// A decision explained.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    pub decision: Decision,
    pub trace: Vec<TraceStep>,
    /// Why the deciding rule won.
    pub why: String,
    /// For a refusal on transfer grounds: what would have made it lawful.
    pub remedies: Vec<Remedy>,
    /// The PIPL cumulative export volume considered, when one was supplied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume: Option<VolumeConsidered>,
}

/// The PIPL volume a decision considered, with its band.
#[derive(Clone, Debug, Serialize)]
pub struct VolumeConsidered {
    #[serde(flatten)]
    pub info: VolumeInfo,
    pub band: Band,
    pub non_sensitive_after: Option<u64>,
    pub sensitive_after: Option<u64>,
    /// In words: totals after the transfer, band and the mechanism it requires.
    pub description: String,
}

/// The volume `q` carries, assessed against `set`'s registry.
pub fn volume_considered(set: &PolicySet, q: &Query<'_>) -> Option<VolumeConsidered> {
    let v = q.volume?;
    let ciio = v
        .exporter
        .as_deref()
        .map(|e| set.organisation(e).is_some_and(|o| o.ciio));
    let a = volume::assess(Some(v), q.tags, ciio);
    Some(VolumeConsidered {
        info: v.clone(),
        band: a.band,
        non_sensitive_after: a.non_sensitive_after,
        sensitive_after: a.sensitive_after,
        description: volume::describe(Some(v), &a),
    })
}

/// A synthetic organisation in `dest` holding one mechanism of `kind` for every category.
pub fn synthetic_org(
    id: &str,
    kind: &'static str,
    dest: crate::model::Country,
    from: time::Date,
) -> Organisation {
    let mut d = CountrySet::default();
    d.insert(dest);
    Organisation {
        id: id.into(),
        name: "synthetic importer".into(),
        country: dest,
        mechanisms: vec![Mechanism {
            kind,
            reference: format!("synthetic {kind}").into(),
            module: (kind == "scc").then_some(1),
            destinations: d,
            categories: Category::ALL.iter().fold(0, |m, c| m | super::cat_bit(*c)),
            valid_from: from,
            valid_until: None,
        }],
        cannot_reidentify: false,
        ciio: false,
        regimes: Vec::new(),
    }
}

/// Explains `q`; `set` is mutable only to try remedies with a synthetic importer (removed again).
pub fn explain(set: &mut PolicySet, q: &Query<'_>) -> Explanation {
    let (decision, trace) = set.decide_with_trace(q);
    let why = why(&decision, &trace);
    let mut remedies = Vec::new();
    if decision.effect == Effect::Deny
        && decision.ground == Some(crate::model::DenyGround::Transfer)
    {
        for (kind, label) in MECHANISM_KINDS {
            set.insert_organisation(synthetic_org(SYNTHETIC_ORG, kind, q.destination, q.date));
            let mut q2 = q.clone();
            q2.importer = Some(SYNTHETIC_ORG);
            let d = set.decide(&q2);
            if d.is_allow() {
                remedies.push(Remedy {
                    kind: "mechanism",
                    name: kind.to_string(),
                    description: format!(
                        "the importer holding a valid {label} covering {} and these categories",
                        q.destination
                    ),
                    rule: d.rule,
                    article: d.article,
                });
            }
        }
        set.remove_organisation(SYNTHETIC_ORG);
        for g in DEROGATIONS {
            let mut tags = q.tags.clone();
            tags.derogations.insert(g.to_string());
            let q2 = Query {
                tags: &tags,
                ..q.clone()
            };
            let d = set.decide(&q2);
            if d.is_allow() {
                remedies.push(Remedy {
                    kind: "derogation",
                    name: g.to_string(),
                    description: format!("a `{g}` derogation recorded on the data"),
                    rule: d.rule,
                    article: d.article,
                });
            }
        }
    }
    Explanation {
        decision,
        trace,
        why,
        remedies,
        volume: volume_considered(set, q),
    }
}

fn why(d: &Decision, trace: &[TraceStep]) -> String {
    let mut s = String::new();
    let winner = trace
        .iter()
        .find(|t| t.rule == d.rule && t.outcome != Outcome::NotApplicable);
    let considered = trace.len();
    let _ = write!(
        s,
        "{considered} rule(s) considered. Order: purpose limitation first; then for each origin its regime's out-of-scope, intra-bloc, deny rules, allow rules (first that applies decides), default refusal; any origin's refusal refuses the request; an allowed transfer is then checked against the organisation overlay."
    );
    match winner {
        Some(w) => {
            let _ = write!(s, " `{}` decided", w.rule);
            if let Some(o) = w.origin {
                let _ = write!(s, " for origin {o}");
            }
            if let Some(r) = &w.regime {
                let _ = write!(s, " (regime `{r}`)");
            }
            let _ = write!(s, ": {}.", w.note);
        }
        None => {
            let _ = write!(s, " `{}` decided.", d.rule);
        }
    }
    let skipped: Vec<&str> = trace
        .iter()
        .filter(|t| t.outcome == Outcome::NotApplicable)
        .map(|t| t.rule.as_str())
        .collect();
    if !skipped.is_empty() {
        let _ = write!(s, " {} rule(s) before it did not apply.", skipped.len());
    }
    s
}

/// Renders an explanation for a terminal.
pub fn render(e: &Explanation) -> String {
    let d = &e.decision;
    let mut s = String::new();
    let effect = match d.effect {
        crate::model::Effect::Allow => "Allow",
        crate::model::Effect::Deny => "Deny",
    };
    let ground = match d.ground {
        None => "",
        Some(crate::model::DenyGround::Transfer) => " (transfer grounds)",
        Some(crate::model::DenyGround::Purpose) => " (purpose grounds)",
        Some(crate::model::DenyGround::Authorization) => " (authorisation grounds)",
        Some(crate::model::DenyGround::Withdrawn) => " (data withdrawn)",
        Some(crate::model::DenyGround::Lineage) => " (lineage does not cover recent downloads)",
    };
    let _ = writeln!(s, "decision: {effect}{ground}");
    let _ = writeln!(s, "rule:     {}", d.rule);
    let _ = writeln!(s, "article:  {}", d.article);
    if let Some(i) = d.instrument.as_deref() {
        let _ = writeln!(s, "instrument: {}", super::instrument::summary(i));
        let _ = writeln!(s, "            {}", i.title);
        let _ = writeln!(s, "            {}", i.reference);
    }
    let _ = writeln!(s, "reason:   {}", d.reason);
    if let Some(t) = d.transform.as_deref() {
        let _ = writeln!(
            s,
            "transform: {} (required by `{}`, {}: the data leaves only so; columns by the dataset's schema)",
            t.summary(),
            d.rule,
            d.article
        );
    }
    let _ = writeln!(s, "policy:   {}", d.policy_version);
    if let Some(v) = &e.volume {
        let _ = writeln!(s, "volume:   {}", v.description);
    }
    for b in &d.bases {
        let _ = write!(
            s,
            "basis:    origin {} → {} by `{}` ({}",
            b.origin, b.effect, b.rule, b.article
        );
        if let Some(i) = &b.instrument {
            let _ = write!(s, "; `{i}`");
        }
        let _ = writeln!(s, ")");
    }
    let _ = writeln!(s, "\ntrace:");
    for (i, t) in e.trace.iter().enumerate() {
        let o = t
            .origin
            .map(|o| o.to_string())
            .unwrap_or_else(|| "--".into());
        let r = t.regime.as_deref().unwrap_or("-");
        let mark = match t.outcome {
            Outcome::Allow => "ALLOW",
            Outcome::Deny => "DENY ",
            Outcome::NotApplicable => "  -  ",
        };
        let _ = writeln!(
            s,
            "{:>3}. {mark} {o} {r:<10} {:<40} {}",
            i + 1,
            t.rule,
            t.note
        );
    }
    let _ = writeln!(s, "\nwhy: {}", e.why);
    if d.effect == Effect::Deny {
        if e.remedies.is_empty() {
            let _ = writeln!(
                s,
                "\nno single mechanism or derogation would make this transfer lawful"
            );
        } else {
            let _ = writeln!(s, "\nwould have been lawful with:");
            for r in &e.remedies {
                let label = if r.kind == "mechanism" {
                    mechanism_label(&r.name)
                } else {
                    r.name.as_str()
                };
                let _ = writeln!(
                    s,
                    "  - {} ({}): {} → `{}` ({})",
                    r.kind, label, r.description, r.rule, r.article
                );
            }
        }
    }
    s
}
