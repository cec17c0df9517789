//! The content checks of an upload: the digest of its body, as it streams, against the
//! digest it declared and against the catalog's known artifacts, and how they end the
//! transfer. An upload whose bytes are a known artifact not in its lineage
//! is decided again as derived from it before the body's end reaches the upstream; a
//! refusal cuts the body there (see [`crate::lineage::digest::Verified`]).
//!
//! Runs only when the catalog lists digests. The re-decision takes the PIPL volume of an
//! export as unknown (the highest band): the counter is not consulted from inside a body.

use std::sync::{Arc, OnceLock};

use time::OffsetDateTime;

use super::body::Completion;
use super::response::{self, Ended};
use crate::audit::record::RecheckOf;
use crate::lineage::digest::{KnownCheck, Mismatch, Sha256};
use crate::model::{Decision, Direction, Tags};
use crate::respond::Problem;
use crate::snapshot::Snapshot;
use crate::transfer::Transfer;

/// What the content check decided, for the completion record.
#[derive(Debug)]
pub(super) struct ContentDecision {
    pub artifact: String,
    pub digest: Sha256,
    pub decision: Decision,
    /// The artifact's origins and categories.
    pub tags: Tags,
}

/// The check of an upload's body digest, or `None` when there is nothing to check against
/// (no digests in the catalog, not an upload).
pub(super) fn known_check(
    snap: &Arc<Snapshot>,
    t: &Transfer,
    operator: Option<&str>,
    caller_org: &str,
    at: OffsetDateTime,
    enforce: bool,
    cell: Arc<OnceLock<ContentDecision>>,
) -> Option<KnownCheck> {
    if t.direction != Direction::Upload || !snap.catalog.has_digests() {
        return None;
    }
    let snap = snap.clone();
    let mut t = t.clone();
    let operator = operator.map(str::to_string);
    let org = caller_org.to_string();
    Some(Box::new(move |d: Sha256| {
        // The artifact as the catalog stood on the request's day, as the first decision saw it.
        let dated = snap.catalog.as_of(at.date());
        let catalog: &crate::catalog::Catalog = &dated;
        let Some(e) = catalog.by_digest(&d) else {
            return Ok(());
        };
        let Some(more) = t.absorb_artifact(e) else {
            return Ok(());
        };
        t.absorb_upstream(&more, catalog, operator.as_deref(), &org, at);
        let decision = t.decide(&snap.policies, at.date(), None);
        let refused = !decision.is_allow() && enforce;
        let artifact = e.id.clone();
        let msg = format!(
            "the upload's content is catalog artifact `{artifact}` ({d}) and was refused as derived from it; the upstream body was cut before its end"
        );
        let _ = cell.set(ContentDecision {
            artifact,
            digest: d,
            decision,
            tags: more,
        });
        if refused { Err(msg.into()) } else { Ok(()) }
    }))
}

/// How the body checks ended the transfer, if they did: bytes that do not have their
/// declared digest (`aborted`, 400), or a known artifact's bytes refused (`refused`, the
/// refusal's status). Whatever the upstream answered, it did not get the whole body. An
/// allowed re-decision is recorded on `completion`, and the transfer goes on.
pub(super) fn ended(
    mismatch: &OnceLock<Mismatch>,
    content: &OnceLock<ContentDecision>,
    enforce: bool,
    request_id: &str,
    completion: &mut Completion,
) -> Option<Ended> {
    if let Some(m) = mismatch.get() {
        tracing::warn!(request_id, error = %m, "upload body does not match its declared digest");
        return Some(Ended {
            problem: Problem::from(m),
            outcome: crate::audit::Outcome::Aborted,
            detail: m.to_string().into(),
        });
    }
    let c = content.get()?;
    tracing::info!(request_id, artifact = %c.artifact, digest = %c.digest, rule = %c.decision.rule, "upload content is a known artifact");
    response::recheck(
        RecheckOf::UploadContent,
        &c.decision,
        &c.tags,
        enforce,
        completion,
    )
    .err()
}
