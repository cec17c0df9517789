//! Instruments as data and their scopes: what kinds of instrument the pack may cite, the
//! legal regimes a recipient can be declared under, and which recipients a scope covers.

use std::sync::Arc;

use super::{CatMask, Organisation};
use crate::model::Instrument;

/// Instrument kinds a catalogue entry may name, with a label for text output.
pub const INSTRUMENT_KINDS: &[(&str, &str)] = &[
    ("statute", "statute provision"),
    ("adequacy", "adequacy decision"),
    ("scc-decision", "standard contractual clauses decision"),
    ("standard-clauses", "standard clauses or contract"),
    ("bcr-approval", "binding corporate rules approval"),
    ("code-of-conduct", "approved code of conduct"),
    ("certification", "certification mechanism"),
    ("assessment", "authority assessment"),
    ("derogation", "derogation for specific situations"),
    ("exemption", "exemption"),
    ("agreement", "international agreement"),
];

/// The label of an instrument kind.
pub fn kind_label(kind: &str) -> &str {
    INSTRUMENT_KINDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, l)| *l)
        .unwrap_or(kind)
}

/// Legal regimes or sectors an organisation of the registry may be declared under
/// (`regimes:`), with the phrase reasons use.
pub const RECIPIENT_REGIMES: &[(&str, &str)] = &[
    (
        "pipeda",
        "an organisation subject to PIPEDA (Canada, commercial activities)",
    ),
    ("public-body", "a public body or government institution"),
    (
        "appi-business-operator",
        "a business operator handling personal information under the APPI (Japan)",
    ),
    (
        "pipa",
        "a personal information controller under PIPA (Republic of Korea)",
    ),
    (
        "credit-information",
        "a processor of personal credit information under the Credit Information Use and Protection Act (Republic of Korea)",
    ),
];

/// The phrase for a recipient regime.
pub fn regime_label(regime: &str) -> &str {
    RECIPIENT_REGIMES
        .iter()
        .find(|(k, _)| *k == regime)
        .map(|(_, l)| *l)
        .unwrap_or(regime)
}

/// Which recipients and data a rule's instrument covers.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// The recipient must be declared under one of these; `None`: any recipient.
    pub recipients: Option<Vec<&'static str>>,
    /// A recipient declared under one of these is not covered.
    pub excludes: Vec<&'static str>,
    /// The data's restricted categories must all be among these; `None`: any.
    pub(crate) categories: Option<CatMask>,
}

/// Why a scope does not cover a transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutOfScope {
    /// The data has restricted categories the instrument does not cover.
    Data(CatMask),
    /// No importing organisation was identified, so its regime is unknown.
    NoImporter,
    /// The importer is not in the registry.
    UnknownImporter,
    /// The importer declares no regime: the registry must say.
    Undeclared,
    /// The importer's declared regimes are not among those covered.
    NotCovered,
    /// The importer is declared under an excluded regime.
    Excluded(&'static str),
}

impl Scope {
    /// True when the scope depends on the recipient's regime.
    pub fn over_recipient(&self) -> bool {
        self.recipients.is_some() || !self.excludes.is_empty()
    }

    /// Whether the scope covers data with restricted categories `in_scope` going to `org`.
    pub fn check(
        &self,
        in_scope: CatMask,
        importer: Option<&str>,
        org: Option<&Organisation>,
    ) -> Result<(), OutOfScope> {
        if let Some(cats) = self.categories
            && in_scope & !cats != 0
        {
            return Err(OutOfScope::Data(in_scope & !cats));
        }
        if !self.over_recipient() {
            return Ok(());
        }
        let org = match (importer, org) {
            (None, _) => return Err(OutOfScope::NoImporter),
            (Some(_), None) => return Err(OutOfScope::UnknownImporter),
            (Some(_), Some(o)) => o,
        };
        if org.regimes.is_empty() {
            return Err(OutOfScope::Undeclared);
        }
        if let Some(x) = self
            .excludes
            .iter()
            .find(|x| org.regimes.iter().any(|r| r == *x))
        {
            return Err(OutOfScope::Excluded(x));
        }
        match &self.recipients {
            Some(rs) if !rs.iter().any(|r| org.regimes.iter().any(|o| o == r)) => {
                Err(OutOfScope::NotCovered)
            }
            _ => Ok(()),
        }
    }
}

/// `id (kind, date, SCC module n)`: an instrument in one line, for text output.
pub fn summary(i: &Instrument) -> String {
    let mut s = format!("{} ({}", i.id, kind_label(&i.kind));
    if let Some(d) = &i.date {
        s.push_str(", ");
        s.push_str(d);
    }
    if let Some(m) = i.module {
        s.push_str(&format!(", SCC module {m}"));
    }
    s.push(')');
    s
}

/// The instrument of a decision: `i`, with the SCC module of the clauses relied on.
pub fn with_module(i: &Arc<Instrument>, module: Option<u8>) -> Arc<Instrument> {
    match module {
        Some(m) if i.module != Some(m) => {
            let mut c = Instrument::clone(i);
            c.module = Some(m);
            Arc::new(c)
        }
        _ => Arc::clone(i),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Country;

    fn org(regimes: &[&'static str]) -> Organisation {
        Organisation {
            id: "o".into(),
            name: "O".into(),
            country: Country::parse("CA").unwrap(),
            mechanisms: Vec::new(),
            cannot_reidentify: false,
            ciio: false,
            regimes: regimes.to_vec(),
        }
    }

    fn pipeda_only() -> Scope {
        Scope {
            recipients: Some(vec!["pipeda"]),
            ..Scope::default()
        }
    }

    #[test]
    fn a_scope_over_recipients_covers_only_declared_regimes() {
        let s = pipeda_only();
        assert_eq!(s.check(1, Some("o"), Some(&org(&["pipeda"]))), Ok(()));
        assert_eq!(
            s.check(1, Some("o"), Some(&org(&["public-body"]))),
            Err(OutOfScope::NotCovered)
        );
        assert_eq!(
            s.check(1, Some("o"), Some(&org(&[]))),
            Err(OutOfScope::Undeclared)
        );
        assert_eq!(
            s.check(1, Some("o"), None),
            Err(OutOfScope::UnknownImporter)
        );
        assert_eq!(s.check(1, None, None), Err(OutOfScope::NoImporter));
    }

    #[test]
    fn an_excluded_regime_wins_over_a_covered_one() {
        let s = Scope {
            recipients: Some(vec!["pipa"]),
            excludes: vec!["credit-information"],
            categories: None,
        };
        assert_eq!(s.check(1, Some("o"), Some(&org(&["pipa"]))), Ok(()));
        assert_eq!(
            s.check(1, Some("o"), Some(&org(&["pipa", "credit-information"]))),
            Err(OutOfScope::Excluded("credit-information"))
        );
    }

    #[test]
    fn a_scope_over_data_alone_needs_no_importer() {
        let s = Scope {
            categories: Some(0b1),
            ..Scope::default()
        };
        assert_eq!(s.check(0b1, None, None), Ok(()));
        assert_eq!(s.check(0b11, None, None), Err(OutOfScope::Data(0b10)));
    }

    #[test]
    fn the_module_of_the_clauses_relied_on_is_named() {
        let i = Arc::new(Instrument {
            id: "eu.scc-2021-914".into(),
            kind: "scc-decision".into(),
            title: "SCC".into(),
            date: Some("2021-06-04".into()),
            reference: "OJ L 199".into(),
            module: None,
        });
        assert_eq!(with_module(&i, Some(2)).module, Some(2));
        assert_eq!(
            summary(&with_module(&i, Some(2))),
            "eu.scc-2021-914 (standard contractual clauses decision, 2021-06-04, SCC module 2)"
        );
        assert!(Arc::ptr_eq(&with_module(&i, None), &i));
    }
}
