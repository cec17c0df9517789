//! Reading the log: record filters and a streaming search over one or more logs or segment directories.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime, Time};

use super::place::{Categories, Place, Regions};
use crate::model::{Category, Country};

/// What to look for; every field set must match (fields are ANDed). Values compare
/// case-insensitively; `article` matches a substring (`46` finds `GDPR Art. 46(2)(c)`).
/// `origin` and `destination` take a country or a regime of the policy pack (see
/// [`crate::audit::place`]); an unknown one is an error, not an empty answer.
///
/// The one filter of `audit query`, `audit report`, the admin API and the officer's page.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct Filter {
    /// Earliest record time: RFC 3339 or a date (`2025-01-31`, from its start).
    pub from: Option<String>,
    /// Latest record time: RFC 3339 (inclusive) or a date (to its end).
    pub to: Option<String>,
    /// `allow` or `deny`.
    pub decision: Option<String>,
    pub org: Option<String>,
    /// The caller (token `sub`).
    pub sub: Option<String>,
    pub dataset: Option<String>,
    /// One of the data's origin countries, or a regime one of them belongs to.
    pub origin: Option<String>,
    /// The destination country, or a regime it belongs to.
    pub destination: Option<String>,
    pub rule: Option<String>,
    pub article: Option<String>,
    pub purpose: Option<String>,
    pub request_id: Option<String>,
    /// `decision`, `completion` or `event`.
    pub kind: Option<String>,
    /// Data categories: `personal`, `special`, `public` or a category (`health`), any of a
    /// comma-separated list. Matches decisions only.
    pub category: Option<String>,
    /// `true`: only transfers that leave the regime of their origin (third countries).
    pub third_countries: Option<String>,
    /// The regimes `origin`, `destination` and `third_countries` are read against: the
    /// policy pack's; without one, [`Regions::builtin`].
    #[serde(skip)]
    pub regions: Option<Arc<Regions>>,
}

/// A record's text fields a filter compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Text {
    Kind,
    Decision,
    Org,
    Sub,
    Dataset,
    Rule,
    Article,
    Purpose,
    RequestId,
}

/// What a filter reads of a record: the JSON of a line, or a row of the officer's index
/// ([`crate::admin::index`]). One matcher ([`Compiled::matches_fields`]) serves both.
pub trait Fields {
    fn text(&self, f: Text) -> Option<&str>;
    /// Unix time in nanoseconds.
    fn time_nanos(&self) -> Option<i128>;
    fn destination(&self) -> Option<Country>;
    fn origins(&self) -> std::borrow::Cow<'_, [Country]>;
    /// The data's categories; `None`: the record has no tags.
    fn categories(&self) -> Option<std::borrow::Cow<'_, [Category]>>;
}

impl Fields for Value {
    fn text(&self, f: Text) -> Option<&str> {
        let ptr = match f {
            Text::Kind => "/kind",
            Text::Decision => "/decision",
            Text::Org => "/caller/org",
            Text::Sub => "/caller/sub",
            Text::Dataset => "/dataset",
            Text::Rule => "/rule",
            Text::Article => "/article",
            Text::Purpose => "/caller/purpose",
            Text::RequestId => "/request_id",
        };
        self.pointer(ptr).and_then(Value::as_str)
    }
    fn time_nanos(&self) -> Option<i128> {
        let t = self.get("time").and_then(Value::as_str)?;
        OffsetDateTime::parse(t, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp_nanos)
    }
    fn destination(&self) -> Option<Country> {
        let d = self.get("destination").and_then(Value::as_str)?;
        Country::parse(&d.to_ascii_uppercase()).ok()
    }
    fn origins(&self) -> std::borrow::Cow<'_, [Country]> {
        self.get("origins")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_str)
                    .filter_map(|c| Country::parse(&c.to_ascii_uppercase()).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
    fn categories(&self) -> Option<std::borrow::Cow<'_, [Category]>> {
        let cats = self.pointer("/tags/categories")?.as_array()?;
        Some(
            cats.iter()
                .filter_map(|c| serde_json::from_value::<Category>(c.clone()).ok())
                .collect(),
        )
    }
}

impl Filter {
    /// True if `rec` (one log line as JSON) passes every filter set. A filter whose time
    /// bound cannot be read matches nothing (use [`Filter::compile`] to learn why).
    pub fn matches(&self, rec: &Value) -> bool {
        match self.compile() {
            Ok(c) => c.matches(rec),
            Err(_) => false,
        }
    }

    /// Checks the filter once (time bounds parsed) for use on many records.
    pub fn compile(&self) -> Result<Compiled<'_>, String> {
        let from = self
            .from
            .as_deref()
            .map(|s| parse_bound(s, false))
            .transpose()?;
        let to = self
            .to
            .as_deref()
            .map(|s| parse_bound(s, true))
            .transpose()?;
        // Literal values every matching line must contain, to skip JSON parsing of most lines.
        let mut needles = Vec::new();
        for v in [
            &self.org,
            &self.sub,
            &self.dataset,
            &self.rule,
            &self.request_id,
            &self.purpose,
        ]
        .into_iter()
        .flatten()
        {
            let escaped = serde_json::to_string(v).map_err(|e| e.to_string())?;
            let pattern = format!("(?i){}", regex::escape(&escaped));
            needles.push(
                regex::bytes::Regex::new(&pattern)
                    .map_err(|e| format!("cannot search for `{v}`: {e}"))?,
            );
        }
        let regions = self
            .regions
            .clone()
            .unwrap_or_else(|| Arc::new(Regions::builtin()));
        let origin = self
            .origin
            .as_deref()
            .map(|o| regions.place("origin", o))
            .transpose()?;
        let destination = self
            .destination
            .as_deref()
            .map(|o| regions.place("destination", o))
            .transpose()?;
        let categories = self
            .category
            .as_deref()
            .map(Categories::parse)
            .transpose()?;
        let third = match self.third_countries.as_deref().map(str::to_ascii_lowercase) {
            None => false,
            Some(v) => match v.as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" | "" => false,
                _ => {
                    return Err(format!(
                        "`third_countries` must be `true` or `false`, not `{}`",
                        v.escape_default()
                    ));
                }
            },
        };
        Ok(Compiled {
            f: self,
            from: from.map(OffsetDateTime::unix_timestamp_nanos),
            to: to.map(OffsetDateTime::unix_timestamp_nanos),
            from_time: from,
            to_time: to,
            needles,
            origin,
            destination,
            categories,
            third,
            regions,
        })
    }

    /// True if no field is set.
    pub fn is_empty(&self) -> bool {
        [
            &self.from,
            &self.to,
            &self.decision,
            &self.org,
            &self.sub,
            &self.dataset,
            &self.origin,
            &self.destination,
            &self.rule,
            &self.article,
            &self.purpose,
            &self.request_id,
            &self.kind,
            &self.category,
            &self.third_countries,
        ]
        .iter()
        .all(|f| f.is_none())
    }
}

/// A filter ready to be applied to many records.
#[derive(Debug)]
pub struct Compiled<'a> {
    f: &'a Filter,
    /// Inclusive lower bound, Unix nanoseconds.
    from: Option<i128>,
    /// Exclusive upper bound, Unix nanoseconds.
    to: Option<i128>,
    from_time: Option<OffsetDateTime>,
    to_time: Option<OffsetDateTime>,
    needles: Vec<regex::bytes::Regex>,
    origin: Option<Place>,
    destination: Option<Place>,
    categories: Option<Categories>,
    third: bool,
    regions: Arc<Regions>,
}

impl Compiled<'_> {
    /// The time bounds: inclusive lower, exclusive upper.
    pub(crate) fn bounds(&self) -> (Option<OffsetDateTime>, Option<OffsetDateTime>) {
        (self.from_time, self.to_time)
    }

    /// The regimes the filter reads places against.
    pub fn regions(&self) -> &Regions {
        &self.regions
    }

    /// True if the filter asks for something only a full record can tell (a request id,
    /// a kind other than `decision`): the officer's index answers the others.
    pub(crate) fn needs_lines(&self) -> bool {
        self.f.request_id.is_some()
            || self
                .f
                .kind
                .as_deref()
                .is_some_and(|k| !k.eq_ignore_ascii_case("decision"))
    }

    /// A quick test on the raw line: false means the line cannot match.
    pub fn may_match(&self, line: &[u8]) -> bool {
        self.needles.iter().all(|r| r.is_match(line))
    }

    pub fn matches(&self, rec: &Value) -> bool {
        self.matches_fields(rec)
    }

    /// True if the time `t` (Unix nanoseconds) is within the bounds.
    pub(crate) fn in_time(&self, t: Option<i128>) -> bool {
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        let Some(t) = t else {
            return false;
        };
        !(self.from.is_some_and(|from| t < from) || self.to.is_some_and(|to| t >= to))
    }

    /// [`Compiled::matches`] over any record's [`Fields`].
    pub fn matches_fields(&self, rec: &(impl Fields + ?Sized)) -> bool {
        let f = self.f;
        let eq = |want: &Option<String>, t: Text| match want {
            None => true,
            Some(w) => rec.text(t).is_some_and(|v| v.eq_ignore_ascii_case(w)),
        };
        if !(eq(&f.kind, Text::Kind)
            && eq(&f.decision, Text::Decision)
            && eq(&f.org, Text::Org)
            && eq(&f.sub, Text::Sub)
            && eq(&f.dataset, Text::Dataset)
            && eq(&f.rule, Text::Rule)
            && eq(&f.purpose, Text::Purpose)
            && eq(&f.request_id, Text::RequestId))
        {
            return false;
        }
        if let Some(a) = &f.article {
            let a = a.to_ascii_lowercase();
            if !rec
                .text(Text::Article)
                .is_some_and(|v| v.to_ascii_lowercase().contains(&a))
            {
                return false;
            }
        }
        if let Some(d) = &self.destination
            && !rec.destination().is_some_and(|c| d.contains(c))
        {
            return false;
        }
        if self.origin.is_some() || self.third {
            let origins = rec.origins();
            if let Some(o) = &self.origin
                && !origins.iter().any(|c| o.contains(*c))
            {
                return false;
            }
            if self.third
                && !rec
                    .destination()
                    .is_some_and(|d| self.regions.leaves(&origins, d))
            {
                return false;
            }
        }
        if let Some(c) = &self.categories {
            if rec.text(Text::Kind) != Some("decision") {
                return false;
            }
            if !c.matches(rec.categories().as_deref()) {
                return false;
            }
        }
        self.in_time(if self.from.is_some() || self.to.is_some() {
            rec.time_nanos()
        } else {
            None
        })
    }
}

/// Parses a time bound: RFC 3339, or a date (its start; for an upper bound, the next day's
/// start). Returns the inclusive lower or the exclusive upper bound.
pub fn parse_bound(s: &str, upper: bool) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(if upper {
            t + time::Duration::nanoseconds(1)
        } else {
            t
        });
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let d = Date::parse(s, &fmt).map_err(|_| {
        format!(
            "`{}` is not a date (2025-01-31) or an RFC 3339 time (2025-01-31T12:00:00Z)",
            s.escape_default()
        )
    })?;
    let d = if upper {
        d.next_day()
            .ok_or_else(|| format!("`{s}` is out of range"))?
    } else {
        d
    };
    Ok(d.with_time(Time::MIDNIGHT).assume_utc())
}

/// The files to read for `paths`: a file as given, a directory as its log segments in
/// chain order (see [`crate::audit::segments`]).
pub fn expand(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            out.extend(super::segments::list_dir(p)?);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Calls `each` with every record of `paths` (in order) that matches `filter`, streaming;
/// `each` returns false to stop. Lines that are not JSON are skipped (`verify` names them).
pub fn for_each(
    paths: &[PathBuf],
    filter: &Filter,
    mut each: impl FnMut(Value) -> bool,
) -> Result<(), String> {
    let c = filter.compile()?;
    for path in expand(paths)? {
        let file =
            File::open(&path).map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
        let more = scan(file, &c, &mut each)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        if !more {
            break;
        }
    }
    Ok(())
}

/// Calls `each` with every record of the log text `file` that matches `c` (lines that are
/// not JSON are skipped); false if `each` asked to stop. Files and the PostgreSQL store
/// ([`crate::audit::source`]) are both read through here.
pub(crate) fn scan(
    file: impl Read,
    c: &Compiled<'_>,
    each: &mut impl FnMut(Value) -> bool,
) -> std::io::Result<bool> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut line = Vec::with_capacity(1024);
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(true);
        }
        if !c.may_match(&line) {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<Value>(&line) else {
            continue;
        };
        if c.matches(&v) && !each(v) {
            return Ok(false);
        }
    }
}

/// The last `limit` records of `paths` matching `filter`, oldest first.
pub fn query(paths: &[PathBuf], filter: &Filter, limit: usize) -> Result<Vec<Value>, String> {
    last_of(limit, |each| for_each(paths, filter, each))
}

/// The last `limit` records `run` passes to its callback, oldest first.
pub(crate) fn last_of(
    limit: usize,
    run: impl FnOnce(&mut dyn FnMut(Value) -> bool) -> Result<(), String>,
) -> Result<Vec<Value>, String> {
    let mut ring = VecDeque::with_capacity(limit.min(4096));
    if limit == 0 {
        return Ok(Vec::new());
    }
    run(&mut |v| {
        if ring.len() == limit {
            ring.pop_front();
        }
        ring.push_back(v);
        true
    })?;
    Ok(ring.into())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(t: &str, sub: &str, dest: &str) -> Value {
        json!({"seq":1,"kind":"decision","time":t,"request_id":"r1",
            "caller":{"sub":sub,"org":"acme","jurisdiction":dest,"purpose":"training"},
            "dataset":"eu/patients","origins":["DE","FR"],"destination":dest,"decision":"allow",
            "rule":"gdpr-scc","article":"GDPR Art. 46(2)(c)"})
    }

    #[test]
    fn fields_and_time_bounds_filter() {
        let r = rec("2025-03-01T10:00:00.5Z", "alice", "US");
        let f = |f: Filter| f.matches(&r);
        assert!(f(Filter::default()));
        assert!(f(Filter {
            sub: Some("ALICE".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            sub: Some("bob".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            origin: Some("fr".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            origin: Some("IT".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            article: Some("46(2)".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            from: Some("2025-03-01".into()),
            to: Some("2025-03-01".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            from: Some("2025-03-02".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            to: Some("2025-03-01T10:00:00Z".into()),
            ..Filter::default()
        }));
        assert!(f(Filter {
            to: Some("2025-03-01T10:00:00.5Z".into()),
            ..Filter::default()
        }));
        assert!(!f(Filter {
            from: Some("yesterday".into()),
            ..Filter::default()
        }));
        assert!(
            Filter {
                from: Some("yesterday".into()),
                ..Filter::default()
            }
            .compile()
            .is_err()
        );
        assert!(!f(Filter {
            kind: Some("completion".into()),
            ..Filter::default()
        }));
    }

    #[test]
    fn query_keeps_the_last_matches_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.log");
        let mut text = String::new();
        for i in 0..10 {
            let mut r = rec(
                "2025-03-01T10:00:00Z",
                if i % 2 == 0 { "alice" } else { "bob" },
                "US",
            );
            r["seq"] = json!(i);
            text.push_str(&r.to_string());
            text.push('\n');
        }
        text.push_str("not json\n");
        std::fs::write(&p, text).unwrap();
        let f = Filter {
            sub: Some("alice".into()),
            ..Filter::default()
        };
        let got = query(std::slice::from_ref(&p), &f, 2).unwrap();
        let seqs: Vec<_> = got.iter().map(|v| v["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, [6, 8]);
        assert_eq!(query(&[p], &Filter::default(), 100).unwrap().len(), 10);
    }
}
