//! Reading the audit log back: record filters and a streaming query over log files.
//!
//! (Minimal version written for the admin listener; the full one replaces it.)

use std::io::{BufRead, BufReader};
use std::path::PathBuf;

use serde_json::Value;

/// Which records a query returns; every field set must match.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    /// Records at or after this RFC 3339 time (or date).
    pub from: Option<String>,
    /// Records before this RFC 3339 time (or date).
    pub to: Option<String>,
    pub decision: Option<String>,
    pub org: Option<String>,
    pub sub: Option<String>,
    pub dataset: Option<String>,
    pub origin: Option<String>,
    pub destination: Option<String>,
    pub rule: Option<String>,
    pub article: Option<String>,
    pub purpose: Option<String>,
    pub request_id: Option<String>,
    /// `decision`, `completion` or `event`.
    pub kind: Option<String>,
}

fn field<'a>(rec: &'a Value, path: &[&str]) -> Option<&'a str> {
    let mut v = rec;
    for p in path {
        v = v.get(p)?;
    }
    v.as_str()
}

fn eq(want: &Option<String>, got: Option<&str>) -> bool {
    match want.as_deref().filter(|w| !w.is_empty()) {
        None => true,
        Some(w) => got == Some(w),
    }
}

impl Filter {
    /// True if `rec` (one parsed log line) passes every condition set.
    pub fn matches(&self, rec: &Value) -> bool {
        let time = field(rec, &["time"]).unwrap_or("");
        if let Some(from) = self.from.as_deref().filter(|s| !s.is_empty())
            && time < from
        {
            return false;
        }
        if let Some(to) = self.to.as_deref().filter(|s| !s.is_empty())
            && time >= to
        {
            return false;
        }
        if let Some(o) = self.origin.as_deref().filter(|s| !s.is_empty()) {
            let has = rec
                .get("origins")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|c| c.as_str() == Some(o)));
            if !has {
                return false;
            }
        }
        eq(&self.kind, field(rec, &["kind"]))
            && eq(&self.decision, field(rec, &["decision"]))
            && eq(&self.org, field(rec, &["caller", "org"]))
            && eq(&self.sub, field(rec, &["caller", "sub"]))
            && eq(&self.purpose, field(rec, &["caller", "purpose"]))
            && eq(&self.dataset, field(rec, &["dataset"]))
            && eq(&self.destination, field(rec, &["destination"]))
            && eq(&self.rule, field(rec, &["rule"]))
            && eq(&self.article, field(rec, &["article"]))
            && eq(&self.request_id, field(rec, &["request_id"]))
    }
}

/// Streams the logs at `paths` in order and returns up to `limit` matching records.
pub fn query(paths: &[PathBuf], filter: &Filter, limit: usize) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for p in paths {
        let f =
            std::fs::File::open(p).map_err(|e| format!("cannot open `{}`: {e}", p.display()))?;
        for line in BufReader::new(f).lines() {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
            if line.is_empty() {
                continue;
            }
            let Ok(rec) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if filter.matches(&rec) {
                out.push(rec);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_by_fields_and_time() {
        let rec = serde_json::json!({"kind":"decision","time":"2025-03-01T10:00:00Z","decision":"deny",
            "caller":{"org":"acme","sub":"p1","purpose":"training"},"origins":["DE"],"destination":"US"});
        let f = Filter {
            decision: Some("deny".into()),
            origin: Some("DE".into()),
            from: Some("2025-03-01".into()),
            ..Filter::default()
        };
        assert!(f.matches(&rec));
        let f = Filter {
            to: Some("2025-03-01".into()),
            ..Filter::default()
        };
        assert!(!f.matches(&rec));
        let f = Filter {
            org: Some("other".into()),
            ..Filter::default()
        };
        assert!(!f.matches(&rec));
    }
}
