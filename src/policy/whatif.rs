//! `policy what-if`: replay the decision records of an audit log against another policy
//! set and report the transfers whose outcome would change.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::PolicySet;
use crate::audit::record::view::{DecisionView, kind_of};
use crate::model::{Category, Country, Direction, Effect};

/// Options of a replay.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Decide every record as of this day instead of the day it was recorded.
    pub as_of: Option<time::Date>,
    /// Upstream name → operating organisation (the importer of uploads).
    pub operators: HashMap<String, String>,
    /// Keep at most this many changes in detail (counts cover all).
    pub keep: usize,
    /// Worker threads (at least 1).
    pub threads: usize,
    /// The catalog's withdrawals by dataset id (from `--config`): a record of a dataset
    /// withdrawn on or before its replay day is refused as the gateway would refuse it.
    pub withdrawals: HashMap<String, crate::transfer::Withdrawn>,
}

/// One transfer whose outcome would change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Change {
    pub seq: u64,
    pub request_id: String,
    pub time: String,
    pub org: String,
    pub dataset: Option<String>,
    pub destination: Country,
    pub direction: Direction,
    pub old_effect: Effect,
    pub old_rule: String,
    pub new_effect: Effect,
    pub new_rule: String,
    pub new_reason: String,
    /// The recorded transfer left minimised.
    pub old_minimised: bool,
    /// The transformation the new set requires (`identifier: pseudonymise, …`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_transform: Option<String>,
}

/// The result of a replay.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Lines read.
    pub lines: u64,
    /// Decision records replayed.
    pub replayed: u64,
    /// Decision records not decided by the policies (authentication, routing, …) or
    /// lacking a caller, tags or destination.
    pub skipped: u64,
    /// Lines that are not valid records.
    pub malformed: u64,
    pub changed: u64,
    pub allow_to_deny: u64,
    pub deny_to_allow: u64,
    /// Allowed both ways, but sent whole one way and minimised the other.
    pub minimisation: u64,
    pub by_org: BTreeMap<String, u64>,
    pub by_dataset: BTreeMap<String, u64>,
    pub by_destination: BTreeMap<String, u64>,
    /// The first `keep` changes, by sequence number.
    pub changes: Vec<Change>,
}

impl Report {
    fn merge(&mut self, o: Report, keep: usize) {
        self.lines += o.lines;
        self.replayed += o.replayed;
        self.skipped += o.skipped;
        self.malformed += o.malformed;
        self.changed += o.changed;
        self.allow_to_deny += o.allow_to_deny;
        self.deny_to_allow += o.deny_to_allow;
        self.minimisation += o.minimisation;
        for (a, b) in [
            (&mut self.by_org, o.by_org),
            (&mut self.by_dataset, o.by_dataset),
            (&mut self.by_destination, o.by_destination),
        ] {
            for (k, v) in b {
                *a.entry(k).or_default() += v;
            }
        }
        self.changes.extend(o.changes);
        self.changes.sort_by_key(|c| c.seq);
        self.changes.truncate(keep);
    }
}

/// What a replayed decision depends on, borrowed from the record; equal keys decide alike.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
struct Key<'r> {
    origins: &'r [Country],
    categories: &'r [Category],
    purposes: Option<&'r [Cow<'r, str>]>,
    derogations: &'r [Cow<'r, str>],
    purpose: &'r str,
    importer: Option<&'r str>,
    destination: Country,
    /// `true` for uploads.
    upload: bool,
    date: time::Date,
}

/// A key kept in the cache, and the decision it gives: (effect, rule, reason).
/// Effect, rule, reason and the transformation required (its summary), of one decision.
type Decided = (Effect, String, String, Option<String>);

fn decided(d: crate::model::Decision) -> Decided {
    let t = d
        .transform
        .as_deref()
        .map(crate::transform::Requirement::summary);
    (d.effect, d.rule, d.reason, t)
}

struct Cached {
    origins: Vec<Country>,
    categories: Vec<Category>,
    purposes: Option<Vec<Cow<'static, str>>>,
    derogations: Vec<Cow<'static, str>>,
    purpose: String,
    importer: Option<String>,
    destination: Country,
    upload: bool,
    date: time::Date,
    decided: Decided,
}

fn owned(v: &[Cow<'_, str>]) -> Vec<Cow<'static, str>> {
    v.iter().map(|s| Cow::Owned(s.to_string())).collect()
}

impl Cached {
    fn new(k: Key<'_>, decided: Decided) -> Cached {
        Cached {
            origins: k.origins.to_vec(),
            categories: k.categories.to_vec(),
            purposes: k.purposes.map(owned),
            derogations: owned(k.derogations),
            purpose: k.purpose.to_owned(),
            importer: k.importer.map(str::to_owned),
            destination: k.destination,
            upload: k.upload,
            date: k.date,
            decided,
        }
    }

    fn key(&self) -> Key<'_> {
        Key {
            origins: &self.origins,
            categories: &self.categories,
            purposes: self.purposes.as_deref(),
            derogations: &self.derogations,
            purpose: &self.purpose,
            importer: self.importer.as_deref(),
            destination: self.destination,
            upload: self.upload,
            date: self.date,
        }
    }
}

/// Whether a recorded rule id was decided by the policies (a regime's rule or the
/// engine's fail-closed defaults), as opposed to authentication or routing.
fn policy_rule(set: &PolicySet, rule: &str) -> bool {
    let prefix = rule.split('.').next().unwrap_or("");
    prefix == "bordergate"
        || set.regimes().iter().any(|r| *r.id == *prefix)
        || set.overlay().iter().any(|o| *o.id == *rule)
}

fn date_of(time: &str) -> Option<time::Date> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(time.get(..10)?, fmt).ok()
}

struct Worker<'s> {
    set: &'s PolicySet,
    opts: &'s Options,
    /// Decisions by the hash of their key (looked up without building an owned key).
    cache: HashMap<u64, Vec<Cached>>,
    hasher: RandomState,
    report: Report,
}

impl Worker<'_> {
    fn line(&mut self, line: &[u8]) {
        if line.is_empty() {
            return;
        }
        self.report.lines += 1;
        if kind_of(line) != Some("decision") {
            return;
        }
        let Ok(rec) = DecisionView::parse(line) else {
            self.report.malformed += 1;
            return;
        };
        let Some(seq) = rec.seq else {
            self.report.malformed += 1;
            return;
        };
        let (Some(caller), Some(tags), Some(dest)) = (&rec.caller, &rec.tags, rec.destination)
        else {
            self.report.skipped += 1;
            return;
        };
        let withdrawal = rec
            .dataset
            .as_deref()
            .and_then(|d| self.opts.withdrawals.get(d));
        // A record refused for a withdrawal the catalog still records is replayed too.
        let replayable = policy_rule(self.set, &rec.rule)
            || (withdrawal.is_some() && rec.rule == crate::transfer::rules::WITHDRAWN);
        if !replayable {
            self.report.skipped += 1;
            return;
        }
        let Some(date) = self.opts.as_of.or_else(|| date_of(&rec.time)) else {
            self.report.malformed += 1;
            return;
        };
        let importer = match rec.direction {
            Direction::Download => Some(&*caller.org),
            Direction::Upload => rec
                .upstream
                .as_deref()
                .and_then(|u| self.opts.operators.get(u))
                .map(String::as_str),
        };
        let key = Key {
            origins: &tags.origins,
            categories: &tags.categories,
            purposes: tags.purposes.as_deref(),
            derogations: &tags.derogations,
            purpose: &caller.purpose,
            importer,
            destination: dest,
            upload: rec.direction == Direction::Upload,
            date,
        };
        self.report.replayed += 1;
        let withdrawn = withdrawal.filter(|w| w.date <= date);
        let own;
        let (effect, rule, reason, transform) = match withdrawn {
            // Decided on its own: the withdrawal is of this dataset, not of the key.
            Some(w) => {
                let t = crate::transfer::Transfer::of_tags(
                    tags.to_tags(),
                    rec.direction,
                    dest,
                    key.importer,
                    key.purpose,
                )
                .withdrawn(Some(w.clone()));
                let d = t.decide(self.set, date, None);
                own = decided(d);
                &own
            }
            None => {
                let bucket = self.cache.entry(self.hasher.hash_one(key)).or_default();
                let at = match bucket.iter().position(|c| c.key() == key) {
                    Some(at) => at,
                    None => {
                        // The key holds every part of the tags the policies read.
                        let t = crate::transfer::Transfer::of_tags(
                            tags.to_tags(),
                            rec.direction,
                            dest,
                            key.importer,
                            key.purpose,
                        );
                        let d = t.decide(self.set, date, None);
                        bucket.push(Cached::new(key, decided(d)));
                        bucket.len() - 1
                    }
                };
                &bucket[at].decided
            }
        };
        // A transfer sent whole that would now leave minimised (or the reverse) changes too.
        let was_minimised = rec.transform.is_some();
        if *effect == rec.decision
            && (*effect == Effect::Deny || was_minimised == transform.is_some())
        {
            return;
        }
        let r = &mut self.report;
        r.changed += 1;
        if *effect == rec.decision {
            r.minimisation += 1;
        } else if *effect == Effect::Deny {
            r.allow_to_deny += 1;
        } else {
            r.deny_to_allow += 1;
        }
        *r.by_org.entry(caller.org.to_string()).or_default() += 1;
        *r.by_dataset
            .entry(rec.dataset.as_deref().unwrap_or("-").to_string())
            .or_default() += 1;
        *r.by_destination.entry(dest.to_string()).or_default() += 1;
        if r.changes.len() < self.opts.keep {
            r.changes.push(Change {
                seq,
                request_id: rec.request_id.to_string(),
                time: rec.time.to_string(),
                org: caller.org.to_string(),
                dataset: rec.dataset.as_deref().map(str::to_string),
                destination: dest,
                direction: rec.direction,
                old_effect: rec.decision,
                old_rule: rec.rule.to_string(),
                new_effect: *effect,
                new_rule: rule.clone(),
                new_reason: reason.clone(),
                old_minimised: was_minimised,
                new_transform: transform.clone(),
            });
        }
    }
}

/// Replays every decision record of `log` against `set`.
pub fn replay_reader(
    set: &PolicySet,
    mut log: impl Read,
    opts: &Options,
) -> std::io::Result<Report> {
    let threads = opts.threads.max(1);
    const CHUNK: usize = 4 << 20;
    std::thread::scope(|s| {
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        for _ in 0..threads {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(2);
            senders.push(tx);
            handles.push(s.spawn(move || {
                let mut w = Worker {
                    set,
                    opts,
                    cache: HashMap::new(),
                    hasher: RandomState::new(),
                    report: Report::default(),
                };
                for chunk in rx {
                    for line in chunk.split(|b| *b == b'\n') {
                        w.line(line);
                    }
                }
                w.report
            }));
        }
        let mut carry: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        let mut next = 0usize;
        let mut result = Ok(());
        loop {
            let n = match log.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            carry.extend_from_slice(&buf[..n]);
            if let Some(last) = carry.iter().rposition(|b| *b == b'\n') {
                let rest = carry.split_off(last + 1);
                let chunk = std::mem::replace(&mut carry, rest);
                if senders[next % threads].send(chunk).is_err() {
                    break;
                }
                next += 1;
            }
        }
        if !carry.is_empty() {
            let _ = senders[next % threads].send(carry);
        }
        drop(senders);
        let mut total = Report::default();
        for h in handles {
            if let Ok(r) = h.join() {
                total.merge(r, opts.keep);
            }
        }
        result.map(|()| total)
    })
}

/// Replays the audit log at `path`.
pub fn replay(set: &PolicySet, path: &Path, opts: &Options) -> std::io::Result<Report> {
    let f = std::fs::File::open(path)?;
    replay_reader(set, f, opts)
}

/// Renders a report for a terminal.
pub fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} line(s), {} decision(s) replayed, {} skipped (not policy decisions), {} malformed",
        r.lines, r.replayed, r.skipped, r.malformed
    );
    let _ = write!(
        s,
        "{} would change: {} allow → deny, {} deny → allow",
        r.changed, r.allow_to_deny, r.deny_to_allow
    );
    if r.minimisation > 0 {
        let _ = write!(
            s,
            ", {} allowed both ways but sent whole ↔ minimised",
            r.minimisation
        );
    }
    let _ = writeln!(s);
    for (title, m) in [
        ("organisation", &r.by_org),
        ("dataset", &r.by_dataset),
        ("destination", &r.by_destination),
    ] {
        if m.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\nby {title}:");
        let mut v: Vec<(&String, &u64)> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
        for (k, n) in v {
            let _ = writeln!(s, "  {n:>8}  {k}");
        }
    }
    if !r.changes.is_empty() {
        let _ = writeln!(s, "\nchanges (first {}):", r.changes.len());
        for c in &r.changes {
            let _ = writeln!(
                s,
                "  seq {} {} org `{}` dataset `{}` → {} ({}): {} `{}` → {} `{}`",
                c.seq,
                c.time,
                c.org,
                c.dataset.as_deref().unwrap_or("-"),
                c.destination,
                c.direction,
                c.old_effect,
                c.old_rule,
                c.new_effect,
                c.new_rule
            );
            if c.old_minimised || c.new_transform.is_some() {
                let _ = writeln!(
                    s,
                    "      sent {} → {}",
                    if c.old_minimised {
                        "minimised"
                    } else {
                        "whole"
                    },
                    c.new_transform
                        .as_deref()
                        .map_or_else(|| "whole".to_string(), |t| format!("minimised ({t})"))
                );
            }
        }
    }
    s
}
