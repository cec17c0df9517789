//! The page's overview beside the Art. 30 record in `/audit/report`: every decision (not
//! only transfers to third countries) counted over time, per destination and per refusing rule.
//!
//! The record of transfers itself is [`crate::audit::report`]; this only feeds the charts.
//! No caller identity appears in it: organisations, datasets, categories and purposes only.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::audit::query::{Filter, for_each};

#[derive(Default)]
struct Dest {
    allow: u64,
    deny: u64,
    bytes_out: u64,
    bytes_in: u64,
    /// (rule, article) → allowed transfers.
    bases: BTreeMap<(String, String), u64>,
    datasets: BTreeSet<String>,
    categories: BTreeSet<String>,
    purposes: BTreeSet<String>,
    organisations: BTreeSet<String>,
}

#[derive(Default)]
struct Refusal {
    count: u64,
    article: String,
    status: u64,
    /// The reason of the latest refusal by this rule.
    reason: String,
    destinations: BTreeSet<String>,
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v.get(k).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: Option<&Value>) -> impl Iterator<Item = String> + '_ {
    v.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|x| x.as_str().map(str::to_owned))
}

/// Aggregates the decisions of `logs` that match `filter` (completions add their bytes),
/// streaming them through [`crate::audit::query::for_each`].
pub fn build(logs: &[PathBuf], filter: &Filter) -> Result<Value, String> {
    let mut dests: BTreeMap<String, Dest> = BTreeMap::new();
    let mut refusals: BTreeMap<String, Refusal> = BTreeMap::new();
    let mut hours: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    // Allowed decisions waiting for their completion: request id → destination.
    let mut pending: HashMap<String, String> = HashMap::new();
    let (mut allowed, mut refused, mut bytes_out, mut bytes_in) = (0u64, 0u64, 0u64, 0u64);
    let mut first: Option<String> = None;
    let mut last: Option<String> = None;
    for_each(logs, filter, |rec| {
        match s(&rec, "kind") {
            "decision" => {
                let time = s(&rec, "time");
                if first.is_none() {
                    first = Some(time.to_owned());
                }
                last = Some(time.to_owned());
                let dest_key = match s(&rec, "destination") {
                    "" => "none".to_owned(),
                    d => d.to_owned(),
                };
                let allow = s(&rec, "decision") == "allow";
                let hour = hours
                    .entry(time.get(..13).unwrap_or(time).to_owned())
                    .or_default();
                let d = dests.entry(dest_key.clone()).or_default();
                if allow {
                    allowed += 1;
                    hour.0 += 1;
                    d.allow += 1;
                    *d.bases
                        .entry((s(&rec, "rule").to_owned(), s(&rec, "article").to_owned()))
                        .or_default() += 1;
                    if let Some(ds) = rec.get("dataset").and_then(Value::as_str) {
                        d.datasets.insert(ds.to_owned());
                    }
                    let tags = rec.get("tags");
                    d.categories
                        .extend(strings(tags.and_then(|t| t.get("categories"))));
                    if let Some(c) = rec.get("caller") {
                        d.purposes.insert(s(c, "purpose").to_owned());
                        d.organisations.insert(s(c, "org").to_owned());
                    }
                    pending.insert(s(&rec, "request_id").to_owned(), dest_key);
                } else {
                    refused += 1;
                    hour.1 += 1;
                    d.deny += 1;
                    let r = refusals.entry(s(&rec, "rule").to_owned()).or_default();
                    r.count += 1;
                    r.article = s(&rec, "article").to_owned();
                    r.reason = s(&rec, "reason").to_owned();
                    r.status = rec.get("status").and_then(Value::as_u64).unwrap_or(0);
                    r.destinations.insert(dests_label(&rec));
                }
            }
            "completion" => {
                if let Some(dest) = pending.remove(s(&rec, "request_id")) {
                    let out = rec.get("bytes_out").and_then(Value::as_u64).unwrap_or(0);
                    let inn = rec.get("bytes_in").and_then(Value::as_u64).unwrap_or(0);
                    bytes_out += out;
                    bytes_in += inn;
                    if let Some(d) = dests.get_mut(&dest) {
                        d.bytes_out += out;
                        d.bytes_in += inn;
                    }
                }
            }
            _ => {}
        }
        true
    })?;

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
                "bases": d.bases.into_iter().map(|((rule, article), n)| json!({
                    "rule": rule, "article": article, "count": n,
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

fn dests_label(rec: &Value) -> String {
    match s(rec, "destination") {
        "" => "none".to_owned(),
        d => d.to_owned(),
    }
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
        let r = build(&[f.path().to_path_buf()], &Filter::default()).unwrap();
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
    fn respects_the_time_range() {
        let f = log(&[
            decision("r1", "2025-03-01T10:00:00Z", "allow", "CH", "a"),
            decision("r2", "2025-03-09T10:00:00Z", "allow", "CH", "a"),
        ]);
        let filter = Filter {
            from: Some("2025-03-05".into()),
            ..Filter::default()
        };
        let r = build(&[f.path().to_path_buf()], &filter).unwrap();
        assert_eq!(r["totals"]["decisions"], 1);
    }
}
