//! The page's overview: every decision the filters match (not only transfers to third
//! countries) counted over time, per destination and per refusing rule, with allowed
//! transfers split into cross-border, within the origin's regime, and public data, and
//! authentication failures (401) apart from legal refusals (403, 451).
//!
//! The record of transfers itself is [`crate::audit::report`]; this feeds the cards, charts
//! and refusal panel. It is built from the officer's index ([`super::index`]) or, for the
//! PostgreSQL store, by streaming the records. No caller identity appears in it:
//! organisations, datasets, categories and purposes only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::audit::place::Regions;
use crate::audit::query::Filter;
use crate::audit::record::view::{CompletionView, DecisionView, RecordView};
use crate::audit::source::Source;
use crate::model::{Category, Country, Effect, Instrument};

/// Nanoseconds in an hour.
const HOUR: i128 = 3_600_000_000_000;

#[derive(Default)]
struct Dest {
    allow: u64,
    deny: u64,
    bytes_out: u64,
    bytes_in: u64,
    /// (rule, article) → the instrument named (latest) and the allowed transfers.
    bases: BTreeMap<(String, String), (Option<Instrument>, u64)>,
    datasets: BTreeSet<String>,
    categories: BTreeSet<String>,
    purposes: BTreeSet<String>,
    organisations: BTreeSet<String>,
}

#[derive(Default)]
struct Refusal {
    count: u64,
    article: String,
    /// The instrument the latest refusal by this rule named.
    instrument: Option<Instrument>,
    status: u64,
    /// Every reason given under this rule, with its count.
    reasons: HashMap<String, u64>,
    destinations: BTreeSet<String>,
}

/// One decision the filters matched, as the overview needs it.
pub(crate) struct Seen<'a> {
    /// Unix nanoseconds (`None`: unreadable time).
    pub time: Option<i128>,
    pub destination: Option<Country>,
    pub origins: &'a [Country],
    /// Whether the data is personal data (no tags: taken to be).
    pub personal: bool,
    pub decision: Effect,
    pub status: u16,
    pub rule: &'a str,
    pub article: &'a str,
    pub reason: &'a str,
    pub instrument: Option<&'a Instrument>,
    pub dataset: Option<&'a str>,
    pub categories: &'a [Category],
    /// (purpose, organisation), when the caller is known.
    pub caller: Option<(&'a str, &'a str)>,
}

/// How an allowed decision ended.
pub(crate) enum Ended<'a> {
    /// Data moved (or the completion is not read yet): the bytes.
    Moved(u64, u64),
    /// Refused after all when decided again (the completion's `recheck`): rule, article,
    /// reason, status.
    Refused(&'a str, &'a str, &'a str, u16),
}

/// The counts being gathered.
pub(crate) struct Tally<'r> {
    regions: &'r Regions,
    dests: BTreeMap<String, Dest>,
    refusals: BTreeMap<String, Refusal>,
    /// Hour number → (allowed, refused, authentication failures).
    hours: BTreeMap<i64, (u64, u64, u64)>,
    decisions: u64,
    allowed: u64,
    cross_border: u64,
    domestic: u64,
    public: u64,
    refused: u64,
    auth: u64,
    rejected: u64,
    bytes_out: u64,
    bytes_in: u64,
    cross_border_bytes: u64,
    first: Option<i128>,
    last: Option<i128>,
}

/// The counts of destination `d` (`none` without one).
fn dest_entry(dests: &mut BTreeMap<String, Dest>, d: Option<Country>) -> &mut Dest {
    dests
        .entry(d.map_or_else(|| "none".to_owned(), |c| c.to_string()))
        .or_default()
}

impl<'r> Tally<'r> {
    pub(crate) fn new(regions: &'r Regions) -> Tally<'r> {
        Tally {
            regions,
            dests: BTreeMap::new(),
            refusals: BTreeMap::new(),
            hours: BTreeMap::new(),
            decisions: 0,
            allowed: 0,
            cross_border: 0,
            domestic: 0,
            public: 0,
            refused: 0,
            auth: 0,
            rejected: 0,
            bytes_out: 0,
            bytes_in: 0,
            cross_border_bytes: 0,
            first: None,
            last: None,
        }
    }

    /// Counts one decision; `ended` says how an allowed one ended.
    pub(crate) fn add(&mut self, s: &Seen<'_>, ended: Ended<'_>) {
        self.decisions += 1;
        if let Some(t) = s.time {
            self.first = Some(self.first.map_or(t, |f| f.min(t)));
            self.last = Some(self.last.map_or(t, |l| l.max(t)));
        }
        let hour = s.time.and_then(|t| i64::try_from(t.div_euclid(HOUR)).ok());
        if s.decision == Effect::Deny {
            self.refuse(
                s,
                hour,
                (s.rule, s.article, s.instrument),
                s.reason,
                s.status,
            );
            return;
        }
        match ended {
            Ended::Refused(rule, article, reason, status) => {
                self.refuse(s, hour, (rule, article, None), reason, status);
            }
            Ended::Moved(out, inn) => self.allow(s, hour, out, inn),
        }
    }

    fn allow(&mut self, s: &Seen<'_>, hour: Option<i64>, bytes_out: u64, bytes_in: u64) {
        self.allowed += 1;
        self.bytes_out += bytes_out;
        self.bytes_in += bytes_in;
        if !s.personal {
            self.public += 1;
        } else if s
            .destination
            .is_some_and(|d| self.regions.leaves(s.origins, d))
        {
            self.cross_border += 1;
            self.cross_border_bytes += bytes_out + bytes_in;
        } else {
            self.domestic += 1;
        }
        if let Some(h) = hour {
            self.hours.entry(h).or_default().0 += 1;
        }
        let d = dest_entry(&mut self.dests, s.destination);
        d.allow += 1;
        d.bytes_out += bytes_out;
        d.bytes_in += bytes_in;
        // Found without allocating: a destination has few bases.
        let b = match d
            .bases
            .iter_mut()
            .find(|((r, a), _)| r == s.rule && a == s.article)
        {
            Some((_, b)) => b,
            None => d
                .bases
                .entry((s.rule.to_owned(), s.article.to_owned()))
                .or_default(),
        };
        b.1 += 1;
        if let Some(i) = s.instrument {
            b.0 = Some(i.clone());
        }
        if let Some(ds) = s.dataset
            && !d.datasets.contains(ds)
        {
            d.datasets.insert(ds.to_owned());
        }
        for c in s.categories {
            if !d.categories.contains(c.as_str()) {
                d.categories.insert(c.as_str().to_owned());
            }
        }
        if let Some((purpose, org)) = s.caller {
            if !d.purposes.contains(purpose) {
                d.purposes.insert(purpose.to_owned());
            }
            if !d.organisations.contains(org) {
                d.organisations.insert(org.to_owned());
            }
        }
    }

    fn refuse(
        &mut self,
        s: &Seen<'_>,
        hour: Option<i64>,
        (rule, article, instrument): (&str, &str, Option<&Instrument>),
        reason: &str,
        status: u16,
    ) {
        match status {
            401 => {
                self.auth += 1;
                if let Some(h) = hour {
                    self.hours.entry(h).or_default().2 += 1;
                }
                return;
            }
            403 | 451 => {}
            _ => {
                self.rejected += 1;
                return;
            }
        }
        self.refused += 1;
        if let Some(h) = hour {
            self.hours.entry(h).or_default().1 += 1;
        }
        let r = match self.refusals.get_mut(rule) {
            Some(r) => r,
            None => self.refusals.entry(rule.to_owned()).or_default(),
        };
        r.count += 1;
        if r.article != article {
            r.article = article.to_owned();
        }
        if let Some(i) = instrument {
            r.instrument = Some(i.clone());
        }
        r.status = u64::from(status);
        match r.reasons.get_mut(reason) {
            Some(n) => *n += 1,
            None => {
                r.reasons.insert(reason.to_owned(), 1);
            }
        }
        let dest = s
            .destination
            .map_or_else(|| "none".to_owned(), |c| c.to_string());
        if !r.destinations.contains(&dest) {
            r.destinations.insert(dest);
        }
        dest_entry(&mut self.dests, s.destination).deny += 1;
    }

    /// The overview's JSON.
    pub(crate) fn finish(self) -> Value {
        let Tally {
            dests,
            refusals,
            hours,
            ..
        } = self;
        let stamp = |n: i128| {
            time::OffsetDateTime::from_unix_timestamp_nanos(n)
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
        };
        let hour_name = |h: i64| {
            stamp(i128::from(h) * HOUR)
                .and_then(|s| s.get(..13).map(str::to_owned))
                .unwrap_or_default()
        };
        // Hourly buckets for short ranges, daily ones beyond three days.
        let days: BTreeSet<i64> = hours.keys().map(|h| h.div_euclid(24)).collect();
        let (unit, buckets): (&str, Vec<Value>) = if days.len() > 3 {
            let mut by_day: BTreeMap<i64, (u64, u64, u64)> = BTreeMap::new();
            for (h, (a, d, u)) in &hours {
                let e = by_day.entry(h.div_euclid(24)).or_default();
                e.0 += a;
                e.1 += d;
                e.2 += u;
            }
            let v = by_day
                .into_iter()
                .map(|(day, (a, d, u))| {
                    let t = hour_name(day * 24);
                    json!({ "t": t.get(..10).unwrap_or(&t), "allow": a, "deny": d, "auth": u })
                })
                .collect();
            ("day", v)
        } else {
            let v = hours
                .into_iter()
                .map(
                    |(h, (a, d, u))| json!({ "t": hour_name(h), "allow": a, "deny": d, "auth": u }),
                )
                .collect();
            ("hour", v)
        };

        let mut destinations: Vec<Value> = dests
            .into_iter()
            .map(|(country, d)| {
                json!({
                    "country": country,
                    "allow": d.allow,
                    "deny": d.deny,
                    "bytes_out": d.bytes_out,
                    "bytes_in": d.bytes_in,
                    "bases": d.bases.into_iter().map(|((rule, article), (instrument, n))| json!({
                        "rule": rule, "article": article, "instrument": instrument, "count": n,
                    })).collect::<Vec<_>>(),
                    "datasets": d.datasets,
                    "categories": d.categories,
                    "purposes": d.purposes,
                    "organisations": d.organisations,
                })
            })
            .collect();
        destinations.sort_by_key(|d| {
            std::cmp::Reverse(d["allow"].as_u64().unwrap_or(0) + d["deny"].as_u64().unwrap_or(0))
        });
        let mut refusals: Vec<Value> = refusals
            .into_iter()
            .map(|(rule, r)| {
                let mut reasons: Vec<(String, u64)> = r.reasons.into_iter().collect();
                reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                json!({
                    "rule": rule,
                    "article": r.article,
                    "instrument": r.instrument,
                    "status": r.status,
                    "count": r.count,
                    "reason": reasons.first().map(|(s, _)| s.clone()).unwrap_or_default(),
                    "reasons": reasons.into_iter().map(|(reason, count)| json!({"reason": reason, "count": count})).collect::<Vec<_>>(),
                    "destinations": r.destinations,
                })
            })
            .collect();
        refusals.sort_by_key(|r| std::cmp::Reverse(r["count"].as_u64().unwrap_or(0)));
        json!({
            "first": self.first.and_then(stamp),
            "last": self.last.and_then(stamp),
            "totals": {
                "decisions": self.decisions,
                "allowed": self.allowed,
                "allowed_cross_border": self.cross_border,
                "allowed_domestic": self.domestic,
                "allowed_public": self.public,
                "refused": self.refused,
                "auth_failures": self.auth,
                "rejected": self.rejected,
                "bytes_out": self.bytes_out,
                "bytes_in": self.bytes_in,
                "cross_border_bytes": self.cross_border_bytes,
            },
            "timeline": { "unit": unit, "buckets": buckets },
            "destinations": destinations,
            "refusals": refusals,
        })
    }
}

/// An allowed decision waiting for its completion, owned.
struct Waiting {
    time: Option<i128>,
    destination: Option<Country>,
    origins: Vec<Country>,
    personal: bool,
    status: u16,
    rule: String,
    article: String,
    instrument: Option<Instrument>,
    dataset: Option<String>,
    categories: Vec<Category>,
    caller: Option<(String, String)>,
}

impl Waiting {
    fn of(d: &DecisionView<'_>) -> Waiting {
        Waiting {
            time: d.time().map(time::OffsetDateTime::unix_timestamp_nanos),
            destination: d.destination,
            origins: d.origins.clone(),
            personal: d.is_personal(),
            status: d.status,
            rule: d.rule.to_string(),
            article: d.article.to_string(),
            instrument: d.instrument.clone(),
            dataset: d.dataset.as_deref().map(str::to_owned),
            categories: d.categories().to_vec(),
            caller: d
                .caller
                .as_ref()
                .map(|c| (c.purpose.to_string(), c.org.to_string())),
        }
    }

    fn seen(&self) -> Seen<'_> {
        Seen {
            time: self.time,
            destination: self.destination,
            origins: &self.origins,
            personal: self.personal,
            decision: Effect::Allow,
            status: self.status,
            rule: &self.rule,
            article: &self.article,
            reason: "",
            instrument: self.instrument.as_ref(),
            dataset: self.dataset.as_deref(),
            categories: &self.categories,
            caller: self.caller.as_ref().map(|(p, o)| (p.as_str(), o.as_str())),
        }
    }
}

/// How a completion ends its allowed decision.
fn ended<'a>(c: &'a CompletionView<'_>, w: &'a Waiting) -> Ended<'a> {
    if !c.refused() {
        return Ended::Moved(c.bytes_out, c.bytes_in);
    }
    match &c.recheck {
        Some(r) => Ended::Refused(&r.rule, &r.article, &r.reason, c.status),
        None => Ended::Refused(
            &w.rule,
            &w.article,
            c.detail.as_deref().unwrap_or(""),
            c.status,
        ),
    }
}

/// Aggregates the decisions of `logs` that match `filter` (their completions, read within
/// the filter's period, add their bytes), streaming them through [`Source::for_each`].
///
/// A completion with outcome `refused` (the upstream's metadata changed the tags and the
/// decision taken again refused the transfer) makes its allowed decision a refusal, counted
/// under the rule, article and reason of that decision (its `recheck`).
pub fn build(source: &Source, filter: &Filter) -> Result<Value, String> {
    let compiled = filter.compile()?;
    let mut t = Tally::new(compiled.regions());
    let period = Filter {
        from: filter.from.clone(),
        to: filter.to.clone(),
        ..Filter::default()
    };
    let mut waiting: HashMap<String, Waiting> = HashMap::new();
    source.for_each(&period, |rec| {
        match RecordView::from_value(&rec) {
            Ok(RecordView::Decision(d)) if compiled.matches(&rec) => {
                if d.decision == Effect::Allow {
                    waiting.insert(d.request_id.to_string(), Waiting::of(&d));
                } else {
                    let time = d.time().map(time::OffsetDateTime::unix_timestamp_nanos);
                    let caller = d.caller.as_ref().map(|c| (&*c.purpose, &*c.org));
                    let s = Seen {
                        time,
                        destination: d.destination,
                        origins: &d.origins,
                        personal: d.is_personal(),
                        decision: d.decision,
                        status: d.status,
                        rule: &d.rule,
                        article: &d.article,
                        reason: &d.reason,
                        instrument: d.instrument.as_ref(),
                        dataset: d.dataset.as_deref(),
                        categories: d.categories(),
                        caller,
                    };
                    t.add(&s, Ended::Moved(0, 0));
                }
            }
            Ok(RecordView::Completion(c)) => {
                if let Some(w) = waiting.remove(&*c.request_id) {
                    t.add(&w.seen(), ended(&c, &w));
                }
            }
            _ => {}
        }
        true
    })?;
    // Allowed decisions whose completion is not in the range (or not written yet).
    for w in waiting.into_values() {
        t.add(&w.seen(), Ended::Moved(0, 0));
    }
    Ok(t.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn log(lines: &[Value]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        for l in lines {
            writeln!(f, "{l}").unwrap();
        }
        f
    }

    fn decision(id: &str, time: &str, decision: &str, dest: &str, rule: &str) -> Value {
        json!({"kind":"decision","time":time,"request_id":id,"decision":decision,
            "destination":dest,"rule":rule,"article":"GDPR Art. 45","reason":"because",
            "status": if decision == "deny" { 451 } else { 0 },
            "dataset":"eu-patients","tags":{"categories":["health"]},
            "caller":{"sub":"alice","org":"acme","jurisdiction":dest,"purpose":"training"}})
    }

    #[test]
    fn aggregates_by_destination_with_bytes_and_refusals() {
        let f = log(&[
            decision("r1", "2025-03-01T10:00:00Z", "allow", "CH", "eu.adequacy"),
            json!({"kind":"completion","request_id":"r1","bytes_out":100,"bytes_in":0}),
            decision(
                "r2",
                "2025-03-01T11:00:00Z",
                "deny",
                "US",
                "eu.default-deny",
            ),
            decision("r3", "2025-03-01T11:30:00Z", "allow", "CH", "eu.adequacy"),
            json!({"kind":"completion","request_id":"r3","bytes_out":50,"bytes_in":7}),
            json!({"kind":"event","event":"start"}),
        ]);
        let r = build(
            &Source::Files(vec![f.path().to_path_buf()]),
            &Filter::default(),
        )
        .unwrap();
        assert_eq!(r["totals"]["decisions"], 3);
        assert_eq!(r["totals"]["bytes_out"], 150);
        assert_eq!(r["destinations"][0]["country"], "CH");
        assert_eq!(r["destinations"][0]["allow"], 2);
        assert_eq!(r["destinations"][0]["bases"][0]["count"], 2);
        assert_eq!(r["destinations"][0]["organisations"][0], "acme");
        assert_eq!(r["refusals"][0]["rule"], "eu.default-deny");
        assert_eq!(r["refusals"][0]["status"], 451);
        assert_eq!(r["timeline"]["unit"], "hour");
        assert_eq!(r["timeline"]["buckets"].as_array().unwrap().len(), 2);
        // No caller identity in the report.
        assert!(!r.to_string().contains("alice"));
    }

    #[test]
    fn a_transfer_refused_on_recheck_counts_as_refused() {
        let f = log(&[
            decision("r1", "2025-03-01T10:00:00Z", "allow", "CH", "eu.adequacy"),
            json!({"kind":"completion","request_id":"r1","bytes_out":0,"status":451,
                "outcome":"refused","recheck":{"decision":"deny","rule":"eu.no-basis",
                "article":"GDPR Art. 44","reason":"special categories"}}),
            decision("r2", "2025-03-01T10:30:00Z", "allow", "CH", "eu.adequacy"),
        ]);
        let r = build(
            &Source::Files(vec![f.path().to_path_buf()]),
            &Filter::default(),
        )
        .unwrap();
        assert_eq!(r["totals"]["decisions"], 2);
        assert_eq!(r["totals"]["allowed"], 1);
        assert_eq!(r["totals"]["refused"], 1);
        assert_eq!(r["destinations"][0]["allow"], 1);
        assert_eq!(r["destinations"][0]["deny"], 1);
        assert_eq!(r["destinations"][0]["bases"][0]["count"], 1);
        assert_eq!(r["refusals"][0]["rule"], "eu.no-basis");
        assert_eq!(r["refusals"][0]["reason"], "special categories");
        assert_eq!(r["refusals"][0]["status"], 451);
        assert_eq!(r["timeline"]["buckets"][0]["deny"], 1);
    }

    #[test]
    fn respects_the_time_range() {
        let f = log(&[
            decision("r1", "2025-03-01T10:00:00Z", "allow", "CH", "a"),
            decision("r2", "2025-03-09T10:00:00Z", "allow", "CH", "a"),
        ]);
        let filter = Filter {
            from: Some("2025-03-05".into()),
            ..Filter::default()
        };
        let r = build(&Source::Files(vec![f.path().to_path_buf()]), &filter).unwrap();
        assert_eq!(r["totals"]["decisions"], 1);
    }
}
