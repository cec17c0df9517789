//! The page's overview beside the Art. 30 record in `/audit/report`: every decision (not
//! only transfers to third countries) counted over time, per destination and per refusing rule.
//!
//! The record of transfers itself is [`crate::audit::report`]; this only feeds the charts.
//! No caller identity appears in it: organisations, datasets, categories and purposes only.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::{Value, json};

use crate::audit::query::Filter;
use crate::audit::record::view::{CompletionView, DecisionView, RecordView};
use crate::audit::source::Source;
use crate::model::{Category, Effect, Instrument};

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
    /// The reason of the latest refusal by this rule.
    reason: String,
    destinations: BTreeSet<String>,
}

/// An allowed decision waiting for its completion, which says whether it moved data.
struct Allowed {
    dest: String,
    hour: String,
    rule: String,
    article: String,
    instrument: Option<Instrument>,
    dataset: Option<String>,
    categories: Vec<Category>,
    /// (purpose, organisation), when the caller is known.
    caller: Option<(String, String)>,
}

/// The counts being gathered.
#[derive(Default)]
struct Tally {
    dests: BTreeMap<String, Dest>,
    refusals: BTreeMap<String, Refusal>,
    /// Hour (`2025-03-01T10`) → (allowed, refused).
    hours: BTreeMap<String, (u64, u64)>,
    /// Allowed decisions by request id, until their completion.
    waiting: HashMap<String, Allowed>,
    allowed: u64,
    refused: u64,
    bytes_out: u64,
    bytes_in: u64,
    first: Option<String>,
    last: Option<String>,
}

fn dest_key(d: &DecisionView<'_>) -> String {
    d.destination
        .map_or_else(|| "none".to_owned(), |c| c.to_string())
}

impl Tally {
    fn decision(&mut self, d: &DecisionView<'_>) {
        let time = &*d.time;
        if self.first.is_none() {
            self.first = Some(time.to_owned());
        }
        self.last = Some(time.to_owned());
        let dest = dest_key(d);
        let hour = time.get(..13).unwrap_or(time).to_owned();
        if d.decision == Effect::Deny {
            let i = d.instrument.as_ref();
            self.refuse(dest, hour, (&d.rule, &d.article, i), &d.reason, d.status);
            return;
        }
        let allowed = Allowed {
            dest,
            hour,
            rule: d.rule.to_string(),
            article: d.article.to_string(),
            instrument: d.instrument.clone(),
            dataset: d.dataset.as_deref().map(str::to_owned),
            categories: d.categories().to_vec(),
            caller: d
                .caller
                .as_ref()
                .map(|c| (c.purpose.to_string(), c.org.to_string())),
        };
        self.waiting.insert(d.request_id.to_string(), allowed);
    }

    fn completion(&mut self, c: &CompletionView<'_>) {
        let Some(a) = self.waiting.remove(&*c.request_id) else {
            return;
        };
        if !c.refused() {
            self.allow(a, c.bytes_out, c.bytes_in);
            return;
        }
        let (rule, article, instrument, reason) = match &c.recheck {
            Some(r) => (r.rule.as_str(), r.article.as_str(), None, r.reason.as_str()),
            None => (
                a.rule.as_str(),
                a.article.as_str(),
                a.instrument.as_ref(),
                c.detail.as_deref().unwrap_or(""),
            ),
        };
        self.refuse(
            a.dest.clone(),
            a.hour.clone(),
            (rule, article, instrument),
            reason,
            c.status,
        );
    }

    fn allow(&mut self, a: Allowed, bytes_out: u64, bytes_in: u64) {
        self.allowed += 1;
        self.bytes_out += bytes_out;
        self.bytes_in += bytes_in;
        self.hours.entry(a.hour).or_default().0 += 1;
        let d = self.dests.entry(a.dest).or_default();
        d.allow += 1;
        d.bytes_out += bytes_out;
        d.bytes_in += bytes_in;
        let b = d.bases.entry((a.rule, a.article)).or_default();
        b.1 += 1;
        if a.instrument.is_some() {
            b.0 = a.instrument;
        }
        d.datasets.extend(a.dataset);
        d.categories
            .extend(a.categories.iter().map(|c| c.as_str().to_owned()));
        if let Some((purpose, org)) = a.caller {
            d.purposes.insert(purpose);
            d.organisations.insert(org);
        }
    }

    fn refuse(
        &mut self,
        dest: String,
        hour: String,
        (rule, article, instrument): (&str, &str, Option<&Instrument>),
        reason: &str,
        status: u16,
    ) {
        self.refused += 1;
        self.hours.entry(hour).or_default().1 += 1;
        let r = self.refusals.entry(rule.to_owned()).or_default();
        r.count += 1;
        r.article = article.to_owned();
        r.instrument = instrument.cloned();
        r.reason = reason.to_owned();
        r.status = u64::from(status);
        r.destinations.insert(dest.clone());
        self.dests.entry(dest).or_default().deny += 1;
    }
}

/// Aggregates the decisions of `logs` that match `filter` (completions add their bytes),
/// streaming them through [`Source::for_each`] (log files or the PostgreSQL store).
///
/// A completion with outcome `refused` (the upstream's metadata changed the tags and the
/// decision taken again refused the transfer) makes its allowed decision a refusal, counted
/// under the rule, article and reason of that decision (its `recheck`).
pub fn build(source: &Source, filter: &Filter) -> Result<Value, String> {
    let mut t = Tally::default();
    source.for_each(filter, |rec| {
        match RecordView::from_value(&rec) {
            Ok(RecordView::Decision(d)) => t.decision(&d),
            Ok(RecordView::Completion(c)) => t.completion(&c),
            _ => {}
        }
        true
    })?;
    // Allowed decisions whose completion is not in the range (or not written yet).
    for a in std::mem::take(&mut t.waiting).into_values() {
        t.allow(a, 0, 0);
    }
    let Tally {
        dests,
        refusals,
        hours,
        allowed,
        refused,
        bytes_out,
        bytes_in,
        first,
        last,
        ..
    } = t;

    // Hourly buckets for short ranges, daily ones beyond three days.
    let days: BTreeSet<&str> = hours.keys().filter_map(|h| h.get(..10)).collect();
    let (unit, timeline) = if days.len() > 3 {
        let mut by_day: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (h, (a, d)) in &hours {
            let e = by_day
                .entry(h.get(..10).unwrap_or(h).to_owned())
                .or_default();
            e.0 += a;
            e.1 += d;
        }
        ("day", by_day)
    } else {
        ("hour", hours)
    };
    let timeline: Vec<Value> = timeline
        .into_iter()
        .map(|(t, (a, d))| json!({ "t": t, "allow": a, "deny": d }))
        .collect();

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
            json!({
                "rule": rule,
                "article": r.article,
                "instrument": r.instrument,
                "status": r.status,
                "count": r.count,
                "reason": r.reason,
                "destinations": r.destinations,
            })
        })
        .collect();
    refusals.sort_by_key(|r| std::cmp::Reverse(r["count"].as_u64().unwrap_or(0)));
    Ok(json!({
        "first": first,
        "last": last,
        "totals": {
            "decisions": allowed + refused,
            "allowed": allowed,
            "refused": refused,
            "bytes_out": bytes_out,
            "bytes_in": bytes_in,
        },
        "timeline": { "unit": unit, "buckets": timeline },
        "destinations": destinations,
        "refusals": refusals,
    }))
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
