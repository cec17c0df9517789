//! Checking the instruments catalogue (every file's `instruments`) and resolving the ids
//! rules cite, and rules' scopes.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use super::{Sink, line_of};
use crate::config::Diagnostic;
use crate::model::Instrument;
use crate::policy::schema::{RegimeFile, S, ScopeSpec};
use crate::policy::{INSTRUMENT_KINDS, RECIPIENT_REGIMES, Scope};

/// Instruments by id.
pub(super) type Catalogue = HashMap<String, Arc<Instrument>>;

/// The catalogue of every parsed file; duplicates and bad entries are reported.
pub(super) fn catalogue(files: &[(&Path, &RegimeFile)], errs: &mut Vec<Diagnostic>) -> Catalogue {
    let mut out = Catalogue::new();
    let mut at: HashMap<String, (&Path, usize)> = HashMap::new();
    for (path, spec) in files {
        let mut sink = Sink { file: path, errs };
        for i in &spec.instruments {
            let id = i.id.value.trim();
            if id.is_empty() || id != i.id.value || id.contains(char::is_whitespace) {
                sink.at(
                    &i.id,
                    format!(
                        "instrument id `{}` is empty or has spaces",
                        i.id.value.escape_default()
                    ),
                );
                continue;
            }
            if let Some((pf, pl)) = at.get(id) {
                sink.at(
                    &i.id,
                    format!(
                        "duplicate instrument id `{id}` (first defined in {}:{pl})",
                        pf.display()
                    ),
                );
                continue;
            }
            if !INSTRUMENT_KINDS.iter().any(|(k, _)| *k == i.kind.value) {
                let known: Vec<&str> = INSTRUMENT_KINDS.iter().map(|(k, _)| *k).collect();
                sink.at(
                    &i.kind,
                    format!(
                        "unknown instrument kind `{}` (known: {})",
                        i.kind.value.escape_default(),
                        known.join(", ")
                    ),
                );
            }
            let date = i.date.as_ref().and_then(|d| sink.date(d));
            if i.title.trim().is_empty() || i.reference.trim().is_empty() {
                sink.at(
                    &i.id,
                    format!("instrument `{id}` needs a `title` and a `reference`"),
                );
            }
            at.insert(id.to_string(), (path, line_of(&i.id)));
            out.insert(
                id.to_string(),
                Arc::new(Instrument {
                    id: id.to_string(),
                    kind: i.kind.value.clone(),
                    title: i.title.trim().to_string(),
                    date: date.map(|d| d.to_string()),
                    reference: i.reference.trim().to_string(),
                    module: None,
                }),
            );
        }
    }
    out
}

/// The instrument an id names; an unknown id is reported at its line.
pub(super) fn resolve(sink: &mut Sink<'_>, cat: &Catalogue, id: &S) -> Option<Arc<Instrument>> {
    let i = cat.get(id.value.as_str()).cloned();
    if i.is_none() {
        sink.at(
            id,
            format!(
                "unknown instrument `{}` (not in any policy file's `instruments`)",
                id.value.escape_default()
            ),
        );
    }
    i
}

fn regimes(sink: &mut Sink<'_>, list: &[S]) -> Vec<&'static str> {
    list.iter()
        .filter_map(|s| {
            let r = RECIPIENT_REGIMES
                .iter()
                .find(|(k, _)| *k == s.value)
                .map(|(k, _)| *k);
            if r.is_none() {
                let known: Vec<&str> = RECIPIENT_REGIMES.iter().map(|(k, _)| *k).collect();
                sink.at(
                    s,
                    format!(
                        "unknown recipient regime `{}` (known: {})",
                        s.value.escape_default(),
                        known.join(", ")
                    ),
                );
            }
            r
        })
        .collect()
}

/// The regimes an organisation is declared under.
pub(super) fn org_regimes(sink: &mut Sink<'_>, list: &[S]) -> Vec<&'static str> {
    regimes(sink, list)
}

/// A rule's scope, checked.
pub(super) fn scope(sink: &mut Sink<'_>, rule: &S, s: &ScopeSpec) -> Scope {
    let recipients = s.recipients.as_ref().map(|l| regimes(sink, l));
    let excludes = s
        .excludes
        .as_ref()
        .map(|l| regimes(sink, l))
        .unwrap_or_default();
    let categories = s.categories.as_ref().map(|l| sink.categories(l));
    if s.recipients.as_ref().is_some_and(|r| r.is_empty()) {
        sink.at(
            rule,
            format!("rule `{}` has a scope with no `recipients`", rule.value),
        );
    }
    if recipients.is_none() && excludes.is_empty() && categories.is_none() {
        sink.at(rule, format!("rule `{}` has an empty `scope`", rule.value));
    }
    Scope {
        recipients,
        excludes,
        categories,
    }
}
