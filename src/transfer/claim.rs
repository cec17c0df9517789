//! The caller's `jurisdiction` claim held against the registry's country for its
//! organisation (`auth.jurisdiction_claim`), before the request is classified: the
//! destination of a download is where the caller processes the data, so a claim the
//! registry contradicts would move data wherever the token says.
//!
//! - `refuse` (default): a claim other than the registry's country is refused with 403
//!   `jurisdiction-mismatch`, rule [`JURISDICTION_MISMATCH`], recorded as the request's deny.
//! - `registry`: the registry's country becomes the caller's jurisdiction; the claim is
//!   kept beside it (`caller.claimed_jurisdiction` in the record).
//! - `trust`: the claim is taken as it is.
//!
//! An organisation the registry does not list is taken at its claim in every mode: the
//! registry names the organisations that hold (or held) transfer mechanisms, and an unknown
//! importer already holds none, so its claim can only match the adequacy or same-bloc
//! grounds of the place it names. Like authentication, the check is enforced in shadow
//! mode too: it decides who is asking, not whether a transfer is allowed.

use crate::config::JurisdictionClaim;
use crate::model::{Caller, Country};
use crate::policy::PolicySet;
use crate::respond::Problem;

/// Rule id of a claim the registry contradicts.
pub const JURISDICTION_MISMATCH: &str = "auth.jurisdiction-mismatch";
/// The claim decides the destination of a transfer (GDPR Chapter V).
pub const JURISDICTION_MISMATCH_ARTICLE: &str = "GDPR Art. 44";
/// The instrument the refusal rests on: the GDPR (the pack's catalogue id).
pub const JURISDICTION_MISMATCH_INSTRUMENT: &str = "eu.gdpr";

/// The refusal of a contradicted claim, as the gateway and the tools answer it: the rule,
/// article and instrument, and the policy version that held it.
pub fn refusal(m: &JurisdictionMismatch, policies: &PolicySet) -> Problem {
    let mut p = Problem::from(m);
    p.policy_version = Some(policies.version.to_string());
    match policies.instrument(JURISDICTION_MISMATCH_INSTRUMENT) {
        Some(i) => p.with_instrument(i.clone()),
        None => p,
    }
}

/// A token's `jurisdiction` claim that contradicts the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JurisdictionMismatch {
    pub org: String,
    pub claimed: Country,
    pub registry: Country,
}

impl std::fmt::Display for JurisdictionMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the token claims jurisdiction {} but the transfer-mechanism registry places `{}` in {}",
            self.claimed,
            self.org.escape_default(),
            self.registry
        )
    }
}

/// Applies `mode` to `caller`: under `registry` its jurisdiction becomes the registry's
/// (the claim kept in `claimed_jurisdiction`); under `refuse` a contradicted claim is the
/// error.
pub fn hold_to_registry(
    caller: &mut Caller,
    policies: &PolicySet,
    mode: JurisdictionClaim,
) -> Result<(), JurisdictionMismatch> {
    if mode == JurisdictionClaim::Trust {
        return Ok(());
    }
    let Some(org) = policies.organisation(&caller.org) else {
        return Ok(());
    };
    if org.country == caller.jurisdiction {
        return Ok(());
    }
    match mode {
        JurisdictionClaim::Registry => {
            caller.claimed_jurisdiction = Some(caller.jurisdiction);
            caller.jurisdiction = org.country;
            Ok(())
        }
        _ => Err(JurisdictionMismatch {
            org: caller.org.clone(),
            claimed: caller.jurisdiction,
            registry: org.country,
        }),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::Path;

    use super::*;

    fn policies() -> PolicySet {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        PolicySet::load(
            &root.join("policies"),
            &root.join("examples/quickstart/registry.yaml"),
        )
        .unwrap()
    }

    fn caller(org: &str, j: &str) -> Caller {
        Caller {
            sub: "t".into(),
            org: org.into(),
            jurisdiction: Country::parse(j).unwrap(),
            purpose: "analytics".into(),
            claimed_jurisdiction: None,
        }
    }

    #[test]
    fn a_contradicted_claim_is_refused_by_default() {
        let p = policies();
        let mut c = caller("acme-us", "DE");
        let e = hold_to_registry(&mut c, &p, JurisdictionClaim::default()).unwrap_err();
        assert_eq!(e.claimed, Country::parse("DE").unwrap());
        assert_eq!(e.registry, Country::parse("US").unwrap());
        assert!(e.to_string().contains("places `acme-us` in US"), "{e}");
        // The registry's own country passes untouched.
        let mut c = caller("acme-us", "US");
        hold_to_registry(&mut c, &p, JurisdictionClaim::Refuse).unwrap();
        assert_eq!(c, caller("acme-us", "US"));
    }

    #[test]
    fn registry_mode_decides_on_the_registry_country_and_keeps_the_claim() {
        let p = policies();
        let mut c = caller("acme-us", "DE");
        hold_to_registry(&mut c, &p, JurisdictionClaim::Registry).unwrap();
        assert_eq!(c.jurisdiction, Country::parse("US").unwrap());
        assert_eq!(c.claimed_jurisdiction, Some(Country::parse("DE").unwrap()));
    }

    #[test]
    fn trust_mode_and_unknown_organisations_keep_the_claim() {
        let p = policies();
        let mut c = caller("acme-us", "DE");
        hold_to_registry(&mut c, &p, JurisdictionClaim::Trust).unwrap();
        assert_eq!(c, caller("acme-us", "DE"));
        for mode in [JurisdictionClaim::Refuse, JurisdictionClaim::Registry] {
            let mut c = caller("not-registered", "DE");
            hold_to_registry(&mut c, &p, mode).unwrap();
            assert_eq!(c, caller("not-registered", "DE"));
        }
    }
}
