//! Checking the transfer-mechanism registry.

use std::collections::HashMap;
use std::path::Path;

use super::Sink;
use crate::config::Diagnostic;
use crate::model::Country;
use crate::policy::schema::{MechanismSpec, OrgSpec, RegistryFile};
use crate::policy::{CountrySet, Mechanism, Organisation};

pub(super) fn compile_registry(
    path: &Path,
    spec: RegistryFile,
    errs: &mut Vec<Diagnostic>,
) -> HashMap<Box<str>, Organisation> {
    let mut sink = Sink { file: path, errs };
    let mut orgs: HashMap<Box<str>, Organisation> = HashMap::new();
    for o in &spec.organisations {
        if orgs.contains_key(o.id.value.as_str()) {
            sink.at(&o.id, format!("duplicate organisation id `{}`", o.id.value));
            continue;
        }
        if let Some(org) = compile_org(&mut sink, o) {
            orgs.insert(org.id.clone(), org);
        }
    }
    orgs
}

/// `None` when the organisation has an error (already reported).
fn compile_org(sink: &mut Sink<'_>, o: &OrgSpec) -> Option<Organisation> {
    let bad_id = o.id.value.is_empty() || o.id.value.trim() != o.id.value;
    if bad_id {
        sink.at(
            &o.id,
            format!(
                "organisation id `{}` is empty or has spaces around it",
                o.id.value
            ),
        );
    }
    let country = sink.country(&o.country);
    let mechanisms: Vec<Option<Mechanism>> = o
        .mechanisms
        .iter()
        .map(|m| compile_mechanism(sink, &o.id.value, country, m))
        .collect();
    let regimes = super::instrument::org_regimes(sink, &o.regimes);
    if bad_id {
        return None;
    }
    Some(Organisation {
        id: o.id.value.as_str().into(),
        name: o.name.as_str().into(),
        country: country?,
        mechanisms: mechanisms.into_iter().collect::<Option<Vec<_>>>()?,
        cannot_reidentify: o.cannot_reidentify,
        ciio: o.ciio,
        regimes,
    })
}

fn compile_mechanism(
    sink: &mut Sink<'_>,
    org: &str,
    country: Option<Country>,
    m: &MechanismSpec,
) -> Option<Mechanism> {
    let kind = sink.kind(&m.kind);
    if let Some(module) = &m.module
        && !(1..=4).contains(&module.value)
    {
        sink.at(
            module,
            format!("SCC module `{}` of `{org}` is not 1 to 4", module.value),
        );
    }
    if kind == Some("scc") && m.module.is_none() {
        sink.at(
            &m.kind,
            format!("`scc` mechanism of `{org}` needs a `module` (1 to 4)"),
        );
    }
    let destinations = match &m.destinations {
        Some(l) => sink.countries(l),
        None => {
            let mut s = CountrySet::default();
            if let Some(c) = country {
                s.insert(c);
            }
            s
        }
    };
    let categories = sink.categories(&m.categories);
    if m.categories.is_empty() {
        sink.at(
            &m.kind,
            format!(
                "mechanism `{}` of `{org}` lists no `categories`",
                m.reference
            ),
        );
    }
    let from = sink.date(&m.valid_from).map(|d| (&m.valid_from, d));
    let until = m
        .valid_until
        .as_ref()
        .and_then(|s| sink.date(s).map(|d| (s, d)));
    sink.range(
        from,
        until,
        &format!("mechanism `{}` of `{org}` valid_from", m.reference),
    );
    Some(Mechanism {
        kind: kind?,
        reference: m.reference.as_str().into(),
        module: m.module.as_ref().map(|m| m.value),
        destinations,
        categories,
        valid_from: from?.1,
        valid_until: until.map(|(_, d)| d),
    })
}
