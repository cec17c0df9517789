//! Lineage: resolving `derived_from`, finding cycles and folding sources' tags into
//! every entry's effective tags.

use std::collections::{BTreeSet, HashMap};

use serde_saphyr::Spanned;

use super::file::{Errors, esc};
use super::{Entry, EntryKind};

/// The source indices of each entry; unknown ids are reported.
pub(super) fn resolve(
    errs: &mut Errors,
    named: &[(&Spanned<String>, &[Spanned<String>])],
    by_id: &HashMap<String, usize>,
) -> Vec<BTreeSet<usize>> {
    named
        .iter()
        .map(|(id, derived_from)| {
            let mut set = BTreeSet::new();
            for d in derived_from.iter() {
                match by_id.get(&d.value) {
                    Some(&i) => {
                        set.insert(i);
                    }
                    None => errs.at(
                        d,
                        format!(
                            "entry `{}` is derived from unknown entry `{}`",
                            esc(&id.value),
                            esc(&d.value)
                        ),
                    ),
                }
            }
            set
        })
        .collect()
}

/// Computes every entry's effective tags in lineage order; reports cycles and the
/// checks that need effective tags.
pub(super) fn fold(errs: &mut Errors, entries: &mut [Entry], sources: &[BTreeSet<usize>]) {
    let n = entries.len();
    let mut pending: Vec<usize> = sources.iter().map(BTreeSet::len).collect();
    let mut derived: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, srcs) in sources.iter().enumerate() {
        for &s in srcs {
            derived[s].push(i);
        }
    }
    let mut ready: Vec<usize> = (0..n).filter(|&i| pending[i] == 0).collect();
    let mut done = vec![false; n];
    while let Some(i) = ready.pop() {
        let mut tags = entries[i].own_tags.clone();
        let assessed = entries[i].anonymity_assessment.is_some();
        for &s in &sources[i] {
            let src = &entries[s].tags;
            if assessed {
                // An assessed model's categories and purposes are its own; where its
                // training data came from is still recorded.
                tags.origins.extend(src.origins.iter().copied());
                tags.lineage.extend(src.lineage.iter().cloned());
            } else {
                tags.absorb(src);
            }
            tags.lineage.insert(entries[s].id.clone());
        }
        entries[i].tags = tags;
        done[i] = true;
        for &d in &derived[i] {
            pending[d] -= 1;
            if pending[d] == 0 {
                ready.push(d);
            }
        }
    }
    report_cycles(errs, entries, sources, &done);
    for e in entries
        .iter()
        .zip(&done)
        .filter(|(_, d)| **d)
        .map(|(e, _)| e)
    {
        if e.tags.is_personal() && e.tags.purposes.is_none() {
            errs.line(
                e.line,
                format!(
                    "entry `{}` holds personal data but lists no `purposes` (its own or its sources')",
                    e.id
                ),
            );
        }
        if e.kind != EntryKind::Store && e.tags.origins.is_empty() {
            errs.line(
                e.line,
                format!("{} `{}` has no `origins`", kind_name(e.kind), e.id),
            );
        }
    }
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::Dataset => "dataset",
        EntryKind::Model => "model",
        EntryKind::Store => "store",
    }
}

/// Reports each lineage cycle once. Every entry left undone has an undone source, so
/// following sources from it always reaches a cycle.
fn report_cycles(errs: &mut Errors, entries: &[Entry], sources: &[BTreeSet<usize>], done: &[bool]) {
    let mut seen = vec![false; entries.len()];
    for start in 0..entries.len() {
        if done[start] || seen[start] {
            continue;
        }
        let mut walk: Vec<usize> = Vec::new();
        let mut pos: HashMap<usize, usize> = HashMap::new();
        let mut cur = start;
        loop {
            if seen[cur] {
                break;
            }
            if let Some(&p) = pos.get(&cur) {
                let cycle = &walk[p..];
                let mut names: Vec<&str> = cycle.iter().map(|&i| entries[i].id.as_str()).collect();
                names.push(entries[cur].id.as_str());
                let first = cycle.iter().copied().min().unwrap_or(cur);
                errs.line(
                    entries[first].line,
                    format!("lineage cycle: `{}`", names.join("` ← `")),
                );
                break;
            }
            pos.insert(cur, walk.len());
            walk.push(cur);
            match sources[cur].iter().find(|&&s| !done[s]) {
                Some(&next) => cur = next,
                None => break,
            }
        }
        for i in walk {
            seen[i] = true;
        }
    }
}
