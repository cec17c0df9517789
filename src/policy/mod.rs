//! The jurisdiction model: loading and checking the policy pack and the
//! transfer-mechanism registry, and evaluating a request into a `Decision`.
//! STUB: replaced by the policy implementation.

use std::path::Path;
use std::sync::Arc;

use crate::config::Diagnostics;
use crate::model::{Country, Decision, Direction, Effect, Tags};

/// What a decision is asked about.
#[derive(Clone, Debug)]
pub struct Query<'a> {
    pub tags: &'a Tags,
    /// The caller's purpose (from the token).
    pub purpose: &'a str,
    /// Registry id of the importing organisation: the caller's org on download,
    /// the upstream's operator on upload.
    pub importer: Option<&'a str>,
    /// Where the data goes: the caller's jurisdiction on download, the upstream's on upload.
    pub destination: Country,
    pub direction: Direction,
    /// The day the decision is taken "as of".
    pub date: time::Date,
}

#[derive(Debug)]
pub struct PolicySet {
    pub version: Arc<str>,
}

impl PolicySet {
    pub fn load(_dir: &Path, _registry: &Path) -> Result<PolicySet, Diagnostics> {
        Ok(PolicySet { version: Arc::from("stub") })
    }
    pub fn decide(&self, _q: &Query<'_>) -> Decision {
        Decision {
            effect: Effect::Deny,
            ground: Some(crate::model::DenyGround::Transfer),
            rule: "stub".into(),
            article: "stub".into(),
            reason: "stub".into(),
            policy_version: self.version.clone(),
            bases: vec![],
        }
    }
}
