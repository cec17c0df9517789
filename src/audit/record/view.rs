//! Typed views of the records as they appear on a line of the log (with the writer's `seq`,
//! `prev` and `hash`): what every reader of the log deserialises instead of picking fields
//! out of untyped JSON.
//!
//! Every member the writer writes has a field here. All but a decision's `decision` may be
//! missing, so hand-written logs and logs of older versions read too. Strings borrow from
//! the line (or from a parsed `serde_json::Value`) unless they hold escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{Outcome, Recheck};
use crate::model::{Category, Country, Direction, Effect, Tags};

/// How far into a line [`kind_of`] looks: the writer puts `kind` right after `seq` and `prev`.
const HEAD: usize = 160;

/// The `kind` of a log line, read from its head without parsing the line. `None` when the
/// head holds no `kind` member.
pub fn kind_of(line: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""kind":""#;
    let head = &line[..line.len().min(HEAD)];
    let at = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let rest = &line[at..];
    let end = rest.iter().take(32).position(|&b| b == b'"')?;
    std::str::from_utf8(&rest[..end]).ok()
}

/// Any record of the log, by its `kind`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RecordView<'a> {
    Decision(#[serde(borrow)] Box<DecisionView<'a>>),
    Completion(#[serde(borrow)] CompletionView<'a>),
    Event(#[serde(borrow)] EventView<'a>),
    /// A checkpoint, or a kind this version does not know.
    #[serde(other)]
    Other,
}

impl<'a> RecordView<'a> {
    /// Reads one line of the log (without checking its hash: that is the verifier's job).
    pub fn parse(line: &'a [u8]) -> Result<RecordView<'a>, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// Reads a record already parsed as JSON, borrowing its strings.
    pub fn from_value(v: &'a serde_json::Value) -> Result<RecordView<'a>, serde_json::Error> {
        RecordView::deserialize(v)
    }

    /// The sequence number the writer gave the record.
    pub fn seq(&self) -> Option<u64> {
        match self {
            RecordView::Decision(d) => d.seq,
            RecordView::Completion(c) => c.seq,
            RecordView::Event(e) => e.seq,
            RecordView::Other => None,
        }
    }
}

/// A decision record: one per request, written before any byte is forwarded.
#[derive(Clone, Debug, Deserialize)]
pub struct DecisionView<'a> {
    #[serde(default)]
    pub seq: Option<u64>,
    /// Hash of the record before (64 hex digits).
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub prev: Option<Cow<'a, str>>,
    /// This record's hash (64 hex digits).
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub hash: Option<Cow<'a, str>>,
    /// RFC 3339 UTC; see [`DecisionView::time`].
    #[serde(borrow, default)]
    pub time: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request_id: Cow<'a, str>,
    /// The authenticated caller, when authentication succeeded.
    #[serde(borrow, default)]
    pub caller: Option<CallerView<'a>>,
    #[serde(borrow, default)]
    pub method: Cow<'a, str>,
    #[serde(borrow, default)]
    pub path: Cow<'a, str>,
    /// Catalog id the path resolved to.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub dataset: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tags: Option<TagsView<'a>>,
    #[serde(default)]
    pub origins: Vec<Country>,
    #[serde(default)]
    pub destination: Option<Country>,
    /// Missing: a download.
    #[serde(default = "download")]
    pub direction: Direction,
    pub decision: Effect,
    /// Missing: enforced.
    #[serde(default = "yes")]
    pub enforced: bool,
    #[serde(default)]
    pub status: u16,
    #[serde(borrow, default)]
    pub rule: Cow<'a, str>,
    #[serde(borrow, default)]
    pub article: Cow<'a, str>,
    #[serde(borrow, default)]
    pub reason: Cow<'a, str>,
    #[serde(borrow, default)]
    pub policy_version: Cow<'a, str>,
    /// Upstream name the request is routed to.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub upstream: Option<Cow<'a, str>>,
    /// The PIPL exporter the gateway resolved, when it wrote one.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub exporter: Option<Cow<'a, str>>,
    /// The `X-Request-Id` the client sent, when it sent one.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub client_request_id: Option<Cow<'a, str>>,
    /// An upload's recent downloads its lineage did not cover, when the writer wrote them.
    #[serde(default)]
    pub undeclared_recent: Option<crate::transfer::Unaccounted>,
    /// The instrument the deciding rule rests on (logs of older versions have none).
    #[serde(default)]
    pub instrument: Option<crate::model::Instrument>,
    /// What was done to the data before it left, when it was transformed.
    #[serde(default)]
    pub transform: Option<crate::transform::Applied>,
    /// The replica that wrote the record (logs of older versions have none).
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub replica: Option<Cow<'a, str>>,
    /// That replica's region, when it has one.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub region: Option<Cow<'a, str>>,
}

fn download() -> Direction {
    Direction::Download
}

fn yes() -> bool {
    true
}

impl<'a> DecisionView<'a> {
    /// Reads one line of the log that holds a decision record.
    pub fn parse(line: &'a [u8]) -> Result<DecisionView<'a>, serde_json::Error> {
        serde_json::from_slice(line)
    }

    /// Reads a decision record already parsed as JSON, borrowing its strings.
    pub fn from_value(v: &'a serde_json::Value) -> Result<DecisionView<'a>, serde_json::Error> {
        DecisionView::deserialize(v)
    }

    /// The record's time, if it is RFC 3339.
    pub fn time(&self) -> Option<OffsetDateTime> {
        parse_time(&self.time)
    }

    /// The data's tags, when the path resolved to a catalog entry.
    pub fn tags(&self) -> Option<Tags> {
        self.tags.as_ref().map(TagsView::to_tags)
    }

    /// Whether data moved: the transfer was allowed, or refused but not enforced (shadow mode).
    pub fn moved(&self) -> bool {
        self.decision == Effect::Allow || !self.enforced
    }

    /// The data's categories (none without tags).
    pub fn categories(&self) -> &[Category] {
        self.tags.as_ref().map_or(&[], |t| &t.categories)
    }

    /// Whether the data is personal data; without tags it is taken to be.
    pub fn is_personal(&self) -> bool {
        self.tags.as_ref().is_none_or(TagsView::is_personal)
    }

    /// The caller's organisation.
    pub fn org(&self) -> Option<&str> {
        self.caller.as_ref().map(|c| &*c.org)
    }

    /// The caller's purpose.
    pub fn purpose(&self) -> Option<&str> {
        self.caller.as_ref().map(|c| &*c.purpose)
    }
}

/// The caller of a decision record.
#[derive(Clone, Debug, Deserialize)]
pub struct CallerView<'a> {
    #[serde(borrow, default)]
    pub sub: Cow<'a, str>,
    #[serde(borrow, default)]
    pub org: Cow<'a, str>,
    #[serde(default)]
    pub jurisdiction: Option<Country>,
    #[serde(borrow, default)]
    pub purpose: Cow<'a, str>,
}

/// The tags of a decision record, in the writer's (sorted) order.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TagsView<'a> {
    #[serde(default)]
    pub origins: Vec<Country>,
    #[serde(default)]
    pub categories: Vec<Category>,
    /// `None`: any purpose.
    #[serde(borrow, default, deserialize_with = "opt_texts")]
    pub purposes: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default, deserialize_with = "texts")]
    pub derogations: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "texts")]
    pub lawful_basis: Vec<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "texts")]
    pub lineage: Vec<Cow<'a, str>>,
    #[serde(default)]
    pub anonymity_assessed: bool,
}

impl TagsView<'_> {
    /// The tags as the policies take them.
    pub fn to_tags(&self) -> Tags {
        let owned = |v: &[Cow<'_, str>]| v.iter().map(|s| s.to_string()).collect();
        Tags {
            origins: self.origins.iter().copied().collect(),
            categories: self.categories.iter().copied().collect(),
            purposes: self.purposes.as_deref().map(owned),
            derogations: owned(&self.derogations),
            lawful_basis: owned(&self.lawful_basis),
            lineage: owned(&self.lineage),
            anonymity_assessed: self.anonymity_assessed,
        }
    }

    /// True if any category counts as personal data.
    pub fn is_personal(&self) -> bool {
        self.categories.iter().any(|c| c.is_personal())
    }
}

/// A completion record: how a forwarded transfer ended.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionView<'a> {
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub prev: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub hash: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub time: Cow<'a, str>,
    #[serde(borrow, default)]
    pub request_id: Cow<'a, str>,
    /// Sequence number of the request's decision record.
    #[serde(default)]
    pub decision_seq: Option<u64>,
    #[serde(default)]
    pub status: u16,
    #[serde(default)]
    pub bytes_in: u64,
    #[serde(default)]
    pub bytes_out: u64,
    #[serde(default)]
    pub duration_ms: u64,
    #[serde(default)]
    pub outcome: Option<Outcome>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub detail: Option<Cow<'a, str>>,
    #[serde(default)]
    pub recheck: Option<Recheck>,
    /// The replica that wrote the record (logs of older versions have none).
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub replica: Option<Cow<'a, str>>,
    /// That replica's region, when it has one.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub region: Option<Cow<'a, str>>,
}

impl CompletionView<'_> {
    /// Whether the transfer was refused after all (see [`Outcome::Refused`]).
    pub fn refused(&self) -> bool {
        self.outcome == Some(Outcome::Refused)
    }
}

/// An event record: something the gateway records about itself.
#[derive(Clone, Debug, Deserialize)]
pub struct EventView<'a> {
    #[serde(default)]
    pub seq: Option<u64>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub prev: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub hash: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub time: Cow<'a, str>,
    /// `start`, `repair`, `shutdown`, `policy-reload`, `segment-start`, …
    #[serde(borrow, default)]
    pub event: Cow<'a, str>,
    #[serde(borrow, default)]
    pub detail: Cow<'a, str>,
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub policy_version: Option<Cow<'a, str>>,
    /// The replica that wrote the record (logs of older versions have none).
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub replica: Option<Cow<'a, str>>,
    /// That replica's region, when it has one.
    #[serde(borrow, default, deserialize_with = "opt_text")]
    pub region: Option<Cow<'a, str>>,
}

impl EventView<'_> {
    /// The record's time, if it is RFC 3339.
    pub fn time(&self) -> Option<OffsetDateTime> {
        parse_time(&self.time)
    }
}

fn parse_time(t: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(t, &Rfc3339).ok()
}

/// A string that borrows from the input when it can: serde's own `Cow` never borrows
/// inside an `Option` or a `Vec`.
struct Text<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

fn opt_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<Text<'de>>::deserialize(d)?.map(|t| t.0))
}

fn texts<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cow<'de, str>>, D::Error> {
    Ok(Vec::<Text<'de>>::deserialize(d)?
        .into_iter()
        .map(|t| t.0)
        .collect())
}

fn opt_texts<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    Ok(Option::<Vec<Text<'de>>>::deserialize(d)?.map(|v| v.into_iter().map(|t| t.0).collect()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use crate::audit::line::{GENESIS, encode_line};
    use crate::audit::record::{CompletionRecord, DecisionRecord, EventRecord, Record};
    use crate::model::Caller;

    fn c(s: &str) -> Country {
        Country::parse(s).unwrap()
    }

    fn line(rec: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_line(&mut buf, 7, &GENESIS, &serde_json::to_vec(rec).unwrap());
        buf.pop();
        buf
    }

    fn decision(exporter: Option<&str>) -> DecisionRecord {
        DecisionRecord {
            time: "2026-03-01T10:00:00.000000001Z".into(),
            request_id: "req-1".into(),
            caller: Some(Caller {
                sub: "alice".into(),
                org: "acme".into(),
                jurisdiction: c("US"),
                purpose: "training".into(),
                claimed_jurisdiction: None,
            }),
            method: "GET".into(),
            path: "/datasets/ehr/\"quoted\"".into(),
            dataset: Some("ehr".into()),
            tags: Some(Tags {
                origins: [c("CN"), c("DE")].into(),
                categories: [Category::Health].into(),
                purposes: Some(["training".to_string()].into()),
                derogations: ["contract".to_string()].into(),
                lawful_basis: ["consent".to_string()].into(),
                lineage: ["raw".to_string()].into(),
                anonymity_assessed: true,
            }),
            origins: vec![c("CN"), c("DE")],
            destination: Some(c("US")),
            direction: Direction::Upload,
            decision: Effect::Deny,
            enforced: false,
            status: 451,
            rule: "gdpr.no-basis".into(),
            article: "GDPR Art. 44".into(),
            reason: "no transfer mechanism".into(),
            policy_version: "pv1".into(),
            upstream: Some("store".into()),
            exporter: exporter.map(str::to_owned),
            client_request_id: None,
            undeclared_recent: None,
            credential: None,
            instrument: Some(std::sync::Arc::new(crate::model::Instrument {
                id: "eu.gdpr".into(),
                kind: "statute".into(),
                title: "GDPR".into(),
                date: Some("2016-04-27".into()),
                reference: "OJ L 119, 4.5.2016, p. 1".into(),
                module: None,
            })),
            transform: None,
        }
    }

    #[test]
    fn a_decision_line_without_an_instrument_reads_back() {
        let mut rec = decision(None);
        rec.instrument = None;
        let l = line(&Record::Decision(Box::new(rec)));
        assert!(!String::from_utf8_lossy(&l).contains("\"instrument\""));
        let RecordView::Decision(v) = RecordView::parse(&l).unwrap() else {
            panic!("not a decision");
        };
        assert!(v.instrument.is_none());
    }

    #[test]
    fn a_decision_line_reads_back_field_for_field() {
        let rec = decision(Some("acme-cn"));
        let l = line(&Record::Decision(Box::new(rec.clone())));
        assert_eq!(kind_of(&l), Some("decision"));
        let RecordView::Decision(v) = RecordView::parse(&l).unwrap() else {
            panic!("not a decision");
        };
        assert_eq!(v.seq, Some(7));
        assert_eq!(v.prev.as_deref(), Some(hex::encode(GENESIS).as_str()));
        assert_eq!(v.hash.as_deref().map(str::len), Some(64));
        assert_eq!(v.time, rec.time);
        assert_eq!(v.time().unwrap().year(), 2026);
        assert_eq!(v.request_id, "req-1");
        let caller = v.caller.as_ref().unwrap();
        assert_eq!(
            (&*caller.sub, caller.jurisdiction),
            ("alice", Some(c("US")))
        );
        assert_eq!((v.org(), v.purpose()), (Some("acme"), Some("training")));
        assert_eq!(v.method, "GET");
        assert_eq!(v.path, rec.path);
        assert_eq!(v.dataset.as_deref(), Some("ehr"));
        assert_eq!(v.tags(), rec.tags);
        assert_eq!(v.origins, rec.origins);
        assert_eq!(v.destination, rec.destination);
        assert_eq!(v.direction, Direction::Upload);
        assert_eq!(
            (v.decision, v.enforced, v.status),
            (Effect::Deny, false, 451)
        );
        assert_eq!(
            (&*v.rule, &*v.article, &*v.reason),
            ("gdpr.no-basis", "GDPR Art. 44", "no transfer mechanism")
        );
        assert_eq!(v.policy_version, "pv1");
        assert_eq!(v.upstream.as_deref(), Some("store"));
        assert_eq!(v.exporter.as_deref(), Some("acme-cn"));
        assert_eq!(v.instrument.as_ref(), rec.instrument.as_deref());
        assert!(v.moved(), "not enforced: the data moved");
        assert!(v.is_personal());
        // Strings without escapes borrow from the line.
        assert!(matches!(v.request_id, Cow::Borrowed(_)));
        assert!(matches!(v.dataset, Some(Cow::Borrowed(_))));
        assert!(matches!(v.path, Cow::Owned(_)), "escaped: owned");
    }

    #[test]
    fn exporter_and_recheck_are_written_only_when_set() {
        let l = line(&Record::Decision(Box::new(decision(None))));
        assert!(!String::from_utf8(l.clone()).unwrap().contains("exporter"));
        assert_eq!(DecisionView::parse(&l).unwrap().exporter, None);
        let mut done = CompletionRecord {
            time: "2026-03-01T10:00:01Z".into(),
            request_id: "req-1".into(),
            decision_seq: 7,
            status: 200,
            bytes_in: 3,
            bytes_out: 4,
            duration_ms: 5,
            outcome: Outcome::Complete,
            detail: None,
            recheck: None,
            sent_sha256: None,
        };
        let l = line(&Record::Completion(done.clone()));
        assert!(!String::from_utf8(l.clone()).unwrap().contains("recheck"));
        let RecordView::Completion(v) = RecordView::parse(&l).unwrap() else {
            panic!("not a completion");
        };
        assert_eq!((v.decision_seq, v.bytes_in, v.bytes_out), (Some(7), 3, 4));
        assert!(!v.refused());
        done.outcome = Outcome::Refused;
        done.recheck = Some(Recheck {
            of: crate::audit::record::RecheckOf::UpstreamMetadata,
            decision: Effect::Deny,
            rule: "pipl.no-basis".into(),
            article: "PIPL Art. 38".into(),
            reason: "no basis".into(),
            origins: vec![c("CN")],
            categories: vec![Category::Personal],
        });
        let l = line(&Record::Completion(done.clone()));
        assert!(
            String::from_utf8(l.clone())
                .unwrap()
                .contains(r#""outcome":"refused""#)
        );
        let RecordView::Completion(v) = RecordView::parse(&l).unwrap() else {
            panic!("not a completion");
        };
        assert!(v.refused());
        assert_eq!(v.recheck, done.recheck);
    }

    #[test]
    fn events_other_kinds_and_old_records_read() {
        let l = line(&Record::Event(EventRecord::new("start", "new log".into())));
        let RecordView::Event(e) = RecordView::parse(&l).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(
            (&*e.event, &*e.detail, e.seq),
            ("start", "new log", Some(7))
        );
        assert!(e.time().is_some());
        assert_eq!((e.replica.as_deref(), e.region.as_deref()), (None, None));
        let stamped = br#"{"seq":8,"kind":"event","event":"reload","policy_version":"sha256:1","replica":"gw-2","region":"eu-central"}"#;
        let RecordView::Event(e) = RecordView::parse(stamped).unwrap() else {
            panic!("not an event");
        };
        assert_eq!(
            (
                e.replica.as_deref(),
                e.region.as_deref(),
                e.policy_version.as_deref()
            ),
            (Some("gw-2"), Some("eu-central"), Some("sha256:1"))
        );
        let cp = br#"{"seq":3,"prev":"00","kind":"checkpoint","covers_seq":2}"#;
        assert!(matches!(RecordView::parse(cp).unwrap(), RecordView::Other));
        assert_eq!(kind_of(cp), Some("checkpoint"));
        // A hand-written decision with only what a reader needs.
        let v = serde_json::json!({"kind":"decision","decision":"allow","tags":{"categories":["public"]}});
        let RecordView::Decision(d) = RecordView::from_value(&v).unwrap() else {
            panic!("not a decision");
        };
        assert_eq!(
            (d.seq, d.direction, d.enforced),
            (None, Direction::Download, true)
        );
        assert!(!d.is_personal());
        assert!(d.tags.as_ref().unwrap().purposes.is_none());
        assert!(DecisionView::parse(br#"{"kind":"decision"}"#).is_err());
        assert_eq!(kind_of(b"not json"), None);
    }
}
