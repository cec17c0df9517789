//! Checking the organisation overlay (`policies/org/`): company rules that may only deny.

use std::path::Path;

use super::Sink;
use crate::config::Diagnostic;
use crate::model::{Effect, check_purpose};
use crate::policy::schema::{OverlayFile, OverlayRuleSpec};
use crate::policy::{OverlayRule, Regime};

/// Compiles one overlay file; `regimes` are the law's regimes, for `origins_in` and
/// `destinations_outside`.
pub(super) fn compile_overlay(
    path: &Path,
    spec: &OverlayFile,
    regimes: &[&Regime],
    ids: &mut Vec<(String, usize)>,
    errs: &mut Vec<Diagnostic>,
) -> Vec<OverlayRule> {
    let mut sink = Sink { file: path, errs };
    spec.rules
        .iter()
        .map(|r| {
            let mut rule = compile_rule(&mut sink, path, r, regimes, ids);
            if !r.id.value.starts_with(&format!("{}.", spec.id.value)) {
                sink.at(
                    &r.id,
                    format!(
                        "overlay rule id `{}` does not start with the overlay id `{}.`",
                        r.id.value, spec.id.value
                    ),
                );
            }
            rule.layer = spec.id.value.as_str().into();
            rule.layer_name = spec.name.as_str().into();
            rule
        })
        .collect()
}

fn compile_rule(
    sink: &mut Sink<'_>,
    path: &Path,
    r: &OverlayRuleSpec,
    regimes: &[&Regime],
    ids: &mut Vec<(String, usize)>,
) -> OverlayRule {
    let id = &r.id.value;
    ids.push((id.clone(), super::line_of(&r.id)));
    if r.effect.value != Effect::Deny {
        sink.at(
            &r.effect,
            format!(
                "overlay rule `{id}` has effect `allow`: an organisation overlay may only be stricter than the law, so its rules must deny"
            ),
        );
    }
    if r.article.value.trim().is_empty() {
        sink.at(
            &r.article,
            format!("overlay rule `{id}` has an empty `article`"),
        );
    }
    let mut regime_list = |l: &Option<Vec<crate::policy::schema::S>>| {
        l.as_ref().map(|l| {
            l.iter()
                .filter_map(|s| {
                    if regimes.iter().any(|g| *g.id == *s.value) {
                        Some(Box::<str>::from(s.value.as_str()))
                    } else {
                        sink.at(
                            s,
                            format!(
                                "unknown regime `{}` in overlay rule `{id}`",
                                s.value.escape_default()
                            ),
                        );
                        None
                    }
                })
                .collect::<Vec<_>>()
        })
    };
    let origins_in = regime_list(&r.origins_in);
    let destinations_outside = regime_list(&r.destinations_outside);
    let reason = sink.template(&r.reason);
    let destinations = r.destinations.as_ref().map(|l| sink.countries(l));
    let categories_any = r.categories_any.as_ref().map(|l| sink.categories(l));
    let purposes = r.purposes.as_ref().map(|l| {
        l.iter()
            .filter_map(|p| match check_purpose(&p.value) {
                Ok(()) => Some(p.value.as_str().into()),
                Err(e) => {
                    sink.at(p, e);
                    None
                }
            })
            .collect()
    });
    let from = r
        .effective_from
        .as_ref()
        .and_then(|s| sink.date(s).map(|d| (s, d)));
    let until = r
        .effective_until
        .as_ref()
        .and_then(|s| sink.date(s).map(|d| (s, d)));
    sink.range(from, until, &format!("overlay rule `{id}` effective_from"));
    if let (Some(d), Some(out)) = (&destinations, &destinations_outside) {
        let inside = d.iter().all(|c| {
            regimes
                .iter()
                .any(|g| out.iter().any(|o| **o == *g.id) && g.members.contains(c))
        });
        if inside && !d.is_empty() {
            sink.at(
                &r.id,
                format!("overlay rule `{id}` can never match: all its `destinations` are inside its `destinations_outside` regimes"),
            );
        }
    }
    OverlayRule {
        id: id.as_str().into(),
        article: r.article.value.as_str().into(),
        reason,
        file: path.to_path_buf(),
        layer: "".into(),
        layer_name: "".into(),
        origins_in,
        destinations,
        destinations_outside,
        categories_any,
        purposes,
        effective_from: from.map(|(_, d)| d),
        effective_until: until.map(|(_, d)| d),
    }
}
