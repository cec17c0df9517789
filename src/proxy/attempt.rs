//! The record phase: what is known of a request as it moves through the phases, and the
//! one decision record it gets — a refusal's before the answer, an allow's before any
//! byte is forwarded.

use std::sync::Arc;
use std::time::Instant;

use http::Method;
use http::request::Parts;

use crate::audit::{DecisionRecord, Record};
use crate::metrics::Decided;
use crate::model::{Caller, Decision, Direction, Effect, Instrument};
use crate::respond::Problem;
use crate::transfer::Transfer;

/// The rule an S3 listing's record names.
pub(super) const LISTING_RULE: &str = "s3.list-objects-v2";

/// Renders a path that failed normalisation for the audit log: printable ASCII only, bounded.
pub(super) fn escaped_path(raw: &str) -> String {
    let mut s: String = raw.escape_default().take(512).collect();
    if raw.len() > 512 {
        s.push('…');
    }
    s
}

/// A request on its way through the phases.
pub(super) struct Attempt {
    pub started: Instant,
    /// The gateway's own id of the request, unique.
    pub request_id: String,
    /// The `X-Request-Id` the client sent, if well-formed.
    pub client_request_id: Option<String>,
    pub method: Method,
    /// The decoded path once normalised; before that an escaped rendering of the raw one.
    pub path: String,
    pub direction: Direction,
    pub enforce: bool,
    pub policy_version: std::sync::Arc<str>,
    pub caller: Option<Caller>,
    pub upstream: Option<String>,
    pub transfer: Option<Transfer>,
    /// What the request's decision record said, for the request metrics.
    pub decided: Decided,
    /// Signed the S3 way (SigV4): answered in S3's XML.
    pub s3: bool,
    /// The credential other than a bearer token that authenticated the caller.
    pub credential: Option<String>,
    /// What is done to the data before it leaves, for the decision record.
    pub transform: Option<crate::transform::Applied>,
}

impl Attempt {
    pub fn new(parts: &Parts, enforce: bool, policy_version: std::sync::Arc<str>) -> Attempt {
        Attempt {
            started: Instant::now(),
            request_id: super::headers::request_id(),
            client_request_id: super::headers::client_request_id(&parts.headers),
            method: parts.method.clone(),
            path: escaped_path(parts.uri.path()),
            direction: if matches!(parts.method, Method::PUT | Method::POST) {
                Direction::Upload
            } else {
                Direction::Download
            },
            enforce,
            policy_version,
            caller: None,
            upstream: None,
            transfer: None,
            decided: Decided::None,
            s3: crate::s3::verify::is_s3(parts),
            credential: None,
            transform: None,
        }
    }

    pub fn is_head(&self) -> bool {
        self.method == Method::HEAD
    }

    /// The decision record of a refusal answered with `p`.
    pub fn refusal(&mut self, p: &Problem) -> Record {
        self.record(
            Effect::Deny,
            p.status().as_u16(),
            &p.record_rule(),
            p.article.as_deref().unwrap_or_default(),
            &p.detail,
            p.instrument.clone(),
        )
    }

    /// The decision record of a transfer about to be forwarded (allowed, or refused in
    /// shadow mode).
    pub fn forwarded(&mut self, d: &Decision) -> Record {
        self.record(
            d.effect,
            0,
            &d.rule,
            &d.article,
            &d.reason,
            d.instrument.clone(),
        )
    }

    /// The decision record of an S3 listing the gateway answers itself (each key in it
    /// was decided as a GET of it).
    pub fn listed(&mut self, reason: &str) -> Record {
        self.record(Effect::Allow, 0, LISTING_RULE, "", reason, None)
    }

    /// The answer to the refusal `p`: problem+json, or S3's XML to an S3 request.
    pub fn answer(&self, p: Problem) -> http::Response<super::ResBody> {
        if self.s3 {
            p.into_s3_response(self.is_head(), &self.path)
        } else {
            p.into_response(self.is_head())
        }
    }

    fn record(
        &mut self,
        decision: Effect,
        status: u16,
        rule: &str,
        article: &str,
        reason: &str,
        instrument: Option<Arc<Instrument>>,
    ) -> Record {
        self.decided = Decided::of(decision);
        let t = self.transfer.as_ref();
        let destination = t.map(|t| t.destination);
        crate::metrics::global().decision(rule, destination);
        Record::Decision(Box::new(DecisionRecord {
            time: crate::audit::record::now_rfc3339(),
            request_id: self.request_id.clone(),
            caller: self.caller.clone(),
            method: self.method.as_str().to_string(),
            path: self.path.clone(),
            dataset: t.and_then(|t| t.dataset.clone()),
            origins: t
                .map(|t| t.tags.origins.iter().copied().collect())
                .unwrap_or_default(),
            tags: t.map(|t| t.tags.clone()),
            destination,
            direction: self.direction,
            decision,
            enforced: self.enforce || decision == Effect::Allow,
            status,
            rule: rule.to_string(),
            article: article.to_string(),
            reason: reason.to_string(),
            policy_version: self.policy_version.to_string(),
            upstream: self.upstream.clone(),
            exporter: t
                .and_then(|t| t.export.as_ref())
                .and_then(|e| e.exporter.clone()),
            client_request_id: self.client_request_id.clone(),
            undeclared_recent: t.and_then(|t| t.unaccounted.clone()),
            instrument,
            credential: self.credential.clone(),
            transform: self.transform.clone(),
        }))
    }
}
