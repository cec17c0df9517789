//! The organisation overlay in evaluation: company rules asked once the law allows.

use super::{Ctx, Outcome, Trace, TraceStep};
use crate::model::{Basis, Decision, DenyGround, Effect};
use crate::policy::{OverlayRule, PolicySet};

impl PolicySet {
    /// The organisation overlay, asked once the law allows: the first overlay rule that
    /// matches refuses (company policy, 403).
    pub(super) fn overlay_verdict(
        &self,
        ctx: &Ctx<'_, '_>,
        trace: &mut Trace<'_>,
        bases: &[Basis],
    ) -> Option<Decision> {
        let q = ctx.q;
        let transfer = q.tags.origins.iter().any(|o| *o != q.destination);
        for r in &self.overlay {
            let miss = if !transfer {
                Some("the data does not leave its origin country".to_string())
            } else {
                self.overlay_miss(r, ctx)
            };
            let (outcome, note) = match miss {
                Some(n) => (Outcome::NotApplicable, n),
                None => (
                    Outcome::Deny,
                    "company policy refuses this transfer".to_string(),
                ),
            };
            if let Some(t) = trace.as_deref_mut() {
                t.push(TraceStep {
                    origin: None,
                    regime: Some(r.layer.to_string()),
                    rule: r.id.to_string(),
                    outcome,
                    note,
                });
            }
            if outcome == Outcome::Deny {
                let origin = q.tags.origins.iter().next().copied();
                let reason = r.reason.render(|var, out| {
                    self.write_var(
                        var,
                        out,
                        origin.and_then(|o| self.regime_for(o)),
                        origin,
                        ctx,
                        ctx.data,
                    )
                });
                return Some(Decision {
                    effect: Effect::Deny,
                    ground: Some(if r.purposes.is_some() {
                        DenyGround::Purpose
                    } else {
                        DenyGround::Authorization
                    }),
                    rule: r.id.to_string(),
                    article: r.article.to_string(),
                    reason,
                    policy_version: self.version.clone(),
                    bases: bases.to_vec(),
                    instrument: None,
                    transform: None,
                });
            }
        }
        None
    }

    fn overlay_miss(&self, r: &OverlayRule, ctx: &Ctx<'_, '_>) -> Option<String> {
        let q = ctx.q;
        if let Some(f) = r.effective_from
            && q.date < f
        {
            return Some(format!("applies only from {f}"));
        }
        if let Some(u) = r.effective_until
            && q.date > u
        {
            return Some(format!("ceased to apply after {u}"));
        }
        if let Some(rs) = &r.origins_in {
            let hit = q.tags.origins.iter().any(|o| {
                self.regime_for(*o)
                    .is_some_and(|g| rs.iter().any(|x| **x == *g.id))
            });
            if !hit {
                return Some("no origin of the data is governed by its regimes".into());
            }
        }
        if let Some(d) = &r.destinations
            && !d.contains(q.destination)
        {
            return Some(format!("does not cover {}", q.destination));
        }
        if let Some(rs) = &r.destinations_outside {
            let inside = self
                .regimes
                .iter()
                .any(|g| rs.iter().any(|x| **x == *g.id) && g.members.contains(q.destination));
            if inside {
                return Some(format!(
                    "{} is inside the regimes it protects",
                    q.destination
                ));
            }
        }
        if let Some(any) = r.categories_any
            && ctx.data & any == 0
        {
            return Some("the data has none of the rule's categories".into());
        }
        if let Some(ps) = &r.purposes
            && !ps.iter().any(|p| &**p == q.purpose)
        {
            return Some(format!("does not cover the purpose `{}`", q.purpose));
        }
        None
    }
}
