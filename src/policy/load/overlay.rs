//! Checking the organisation overlay (`policies/org/`): company rules that may only deny;
//! and the check for law rules that can never match.

use std::path::Path;

use super::{Compiled, Sink, opt_line, parse_yaml, policy_files, read};
use crate::config::Diagnostic;
use crate::model::Effect;
use crate::policy::schema::{OverlayFile, OverlayRuleSpec, RuleSpec};
use crate::policy::{CatMask, CountrySet, OverlayRule, Regime, Rule};

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
    let purposes = r.purposes.as_ref().map(|l| sink.purposes(l));
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

/// Reports a rule that no request can ever reach or satisfy.
pub(super) fn never_matches(
    sink: &mut Sink<'_>,
    spec: &RuleSpec,
    rule: &Rule,
    members: &CountrySet,
    scope: CatMask,
) {
    let id = &rule.id;
    let mut never = |why: String| sink.at(&spec.id, format!("rule `{id}` can never match: {why}"));
    if let Some(d) = &rule.destinations {
        if d.is_empty() {
            if spec.destinations.as_ref().is_some_and(|l| l.is_empty()) {
                never("its `destinations` list is empty".into());
            }
        } else if d.is_subset(members) {
            never("every one of its `destinations` is a member of the regime, and transfers between members are decided by the intra-bloc rule first".into());
        }
    }
    if let Some(any) = rule.categories_any
        && any != 0
        && any & scope == 0
    {
        never("none of its `categories_any` is in the regime's `scope_categories`".into());
    }
    if let Some(only) = rule.categories_only
        && only != 0
        && only & scope == 0
    {
        never("none of its `categories_only` is in the regime's `scope_categories`".into());
    }
    if spec.purposes.as_ref().is_some_and(|p| p.is_empty()) {
        never("its `purposes` list is empty".into());
    }
}

/// Loads and checks `dir/org/*.yaml`, if the directory exists.
pub(super) fn load_dir(
    dir: &Path,
    regimes: &[Compiled],
    hashed: &mut Vec<(String, Vec<u8>)>,
    errs: &mut Vec<Diagnostic>,
) -> Vec<OverlayRule> {
    let mut overlay = Vec::new();
    let org_dir = dir.join("org");
    if org_dir.is_dir() {
        let law: Vec<&Regime> = regimes.iter().map(|c| &c.regime).collect();
        let mut ids = Vec::new();
        match policy_files(&org_dir) {
            Ok(files) => {
                for path in &files {
                    let text = match read(path) {
                        Ok(t) => t,
                        Err(d) => {
                            errs.push(d);
                            continue;
                        }
                    };
                    let name = path
                        .file_name()
                        .map(|n| format!("org/{}", n.to_string_lossy()))
                        .unwrap_or_default();
                    hashed.push((name, text.as_bytes().to_vec()));
                    match parse_yaml::<OverlayFile>(path, &text) {
                        Ok(spec) => {
                            overlay.extend(compile_overlay(path, &spec, &law, &mut ids, errs))
                        }
                        Err(d) => errs.push(d),
                    }
                }
            }
            Err(d) => errs.push(d),
        }
        for (id, line) in ids {
            let clash = regimes.iter().any(|c| c.ids.iter().any(|(i, _)| *i == id));
            if clash || overlay.iter().filter(|o| *o.id == *id).count() > 1 {
                let file = overlay
                    .iter()
                    .find(|o| *o.id == *id)
                    .map(|o| o.file.clone())
                    .unwrap_or_else(|| org_dir.clone());
                let d = Diagnostic::new(file, opt_line(line), format!("duplicate rule id `{id}`"));
                if !errs.contains(&d) {
                    errs.push(d);
                }
            }
        }
    }

    overlay
}
