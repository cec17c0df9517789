//! The audit record kinds and their JSON form; [`view`] reads them back.

use serde::{Deserialize, Serialize};

use crate::model::{Caller, Category, Country, Direction, Effect, Tags};

pub mod view;

pub use view::{CallerView, CompletionView, DecisionView, EventView, RecordView, TagsView};

/// What the writer chains. Serialised with a `kind` field; the writer adds `seq`,
/// `prev` and `hash`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Decision(Box<DecisionRecord>),
    Completion(CompletionRecord),
    /// Written by the gateway itself (start, repair, shutdown, policy reload …).
    Event(EventRecord),
}

/// One per request, durable before any byte is forwarded.
#[derive(Clone, Debug, Serialize)]
pub struct DecisionRecord {
    /// RFC 3339 UTC with nanoseconds.
    pub time: String,
    pub request_id: String,
    /// The authenticated caller, when authentication succeeded.
    pub caller: Option<Caller>,
    pub method: String,
    /// The normalised path (or, for a refused malformed path, an escaped rendering of it).
    pub path: String,
    /// Catalog id the path resolved to.
    pub dataset: Option<String>,
    pub tags: Option<Tags>,
    pub origins: Vec<Country>,
    pub destination: Option<Country>,
    pub direction: Direction,
    pub decision: Effect,
    /// Whether the decision was enforced (false in shadow mode).
    pub enforced: bool,
    /// Status the gateway answers (before forwarding: the status of a refusal, or 0 when forwarded).
    pub status: u16,
    pub rule: String,
    pub article: String,
    pub reason: String,
    pub policy_version: String,
    /// Upstream name the request is routed to.
    pub upstream: Option<String>,
    /// The exporting organisation of a PIPL export (registry id), as the gateway resolved it;
    /// written only when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
    /// The `X-Request-Id` the client sent, kept apart from the gateway's own unique
    /// `request_id`; written only when the client sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_request_id: Option<String>,
    /// An upload's: the uploader's recent personal-data downloads its declared lineage did
    /// not cover, and what was done (`refuse` or `flag`); written only when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undeclared_recent: Option<crate::transfer::Unaccounted>,
    /// The legal instrument the deciding rule rests on; written only when there is one
    /// (older logs have none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<std::sync::Arc<crate::model::Instrument>>,
    /// The credential that authenticated the caller when it was not a bearer token: an S3
    /// access key (`s3:BGK…`); written only then.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
    /// A transformed transfer's columns by method and the pseudonymisation key's id (never
    /// the key); written only when the data is transformed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transform: Option<crate::transform::Applied>,
}

/// How a forwarded transfer ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Complete,
    Aborted,
    UpstreamError,
    /// Written at start-up for a request whose decision has no completion (the gateway crashed).
    UnknownCrashed,
    /// The upstream's metadata added tags and the re-decision refused: nothing of the body
    /// was sent (see [`Recheck`]).
    Refused,
}

/// A decision taken on the upstream's answer, after the request's one decision record was
/// written: a download whose upstream declared more origins or categories than the catalog
/// (`upstream-metadata`), or the response body of an upload, which is data coming back and
/// is decided as a download of the same path (`upload-response`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recheck {
    /// `upstream-metadata`, `upload-response` or `upload-content`.
    #[serde(default)]
    pub of: RecheckOf,
    pub decision: Effect,
    pub rule: String,
    pub article: String,
    pub reason: String,
    /// Origins and categories the upstream added (for an upload's response: its tags).
    #[serde(default)]
    pub origins: Vec<Country>,
    #[serde(default)]
    pub categories: Vec<Category>,
}

/// What a [`Recheck`] decided.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecheckOf {
    #[default]
    UpstreamMetadata,
    UploadResponse,
    /// The bytes of an upload are a catalog artifact's (by content digest), not in its
    /// declared lineage: decided again as derived from it before the body's end.
    UploadContent,
}

/// One per forwarded request, after the transfer ends.
#[derive(Clone, Debug, Serialize)]
pub struct CompletionRecord {
    pub time: String,
    pub request_id: String,
    /// Sequence number of the request's decision record.
    pub decision_seq: u64,
    pub status: u16,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub duration_ms: u64,
    pub outcome: Outcome,
    pub detail: Option<String>,
    /// The decision taken on the upstream's answer; written only when one was taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recheck: Option<Recheck>,
    /// SHA-256 of the bytes sent to the client (`sha256:<hex>`); written for transformed
    /// transfers, whose bytes exist nowhere else.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sent_sha256: Option<String>,
}

/// Something the gateway records about itself.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    pub time: String,
    /// `start`, `repair`, `shutdown`, `policy-reload`, …
    pub event: String,
    pub detail: String,
    pub policy_version: Option<String>,
}

impl EventRecord {
    /// An event stamped now.
    pub fn new(event: &str, detail: String) -> EventRecord {
        EventRecord {
            time: now_rfc3339(),
            event: event.to_owned(),
            detail,
            policy_version: None,
        }
    }
}

/// Now, as RFC 3339 UTC with nanoseconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The first record of a new segment: where the chain came from.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentStart {
    /// Always `event`.
    pub kind: String,
    pub time: String,
    /// Always `segment-start`.
    pub event: String,
    pub detail: String,
    /// File name of the segment before this one.
    pub previous: String,
    /// Hash of that segment's last record (this record's `prev`).
    pub previous_hash: String,
}

/// The first record of the segment `bordergate audit repair` starts after sealing a damaged
/// log: what was sealed, where the chain it continues was last intact, and who repaired it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RepairRecord {
    /// Always `event`.
    pub kind: String,
    pub time: String,
    /// Always `repair`.
    pub event: String,
    pub detail: String,
    /// File name of the sealed, damaged log (kept beside this one).
    pub sealed: String,
    /// The last record that chained correctly (0: none) and its hash (this record's `prev`).
    pub last_good_seq: u64,
    pub last_good_hash: String,
    /// The damage `audit verify` found, one line per kind.
    pub damage: Vec<String>,
    /// Who ran the repair.
    pub by: String,
}

/// A rotated segment the retention policy removed.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SegmentRemoved {
    /// Always `event`.
    pub kind: String,
    pub time: String,
    /// Always `segment-removed`.
    pub event: String,
    pub detail: String,
    /// File name of the removed segment.
    pub segment: String,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: String,
}
