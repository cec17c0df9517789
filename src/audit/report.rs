//! The GDPR Art. 30(1)(e) record of transfers to third countries, built from the log, and its renderers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::pseudo::Pseudonymiser;
use super::query::Filter;
use super::record::view::{DecisionView, RecordView};
use super::source::Source;
use super::verify::{LogReport, VerifyOptions};
use crate::model::{Category, Country, Effect, Instrument};

/// Transfers to one destination on one legal basis.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub destination: String,
    pub article: String,
    pub rule: String,
    /// The instrument the rule rests on, as the decision records named it (none in logs
    /// written before decisions named their instrument).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<Instrument>,
    pub datasets: BTreeSet<String>,
    pub categories: BTreeSet<String>,
    pub purposes: BTreeSet<String>,
    pub organisations: BTreeSet<String>,
    pub origins: BTreeSet<String>,
    /// Requests allowed (and not refused after all: see [`report_with`]).
    pub requests: u64,
    /// Bytes moved (from completion records).
    pub bytes: u64,
    /// What was done to the data before it left (`drop=…; pseudonymise=…; key=…`); empty
    /// when it was sent whole. Minimised transfers are rows of their own.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub transformation: String,
}

/// Refused transfers to one destination for one reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Refusal {
    pub destination: String,
    pub rule: String,
    pub article: String,
    /// The instrument id of the refusal's rule.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<String>,
    pub reason: String,
    pub count: u64,
}

/// The record of transfers for a period, headed by the verification of the log it came from.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// The filters besides the period, as `name: value` (none: every transfer).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<String>,
    pub generated: String,
    pub files: Vec<String>,
    pub verification: LogReport,
    pub transfers: Vec<Row>,
    pub refusals: Vec<Refusal>,
    pub pseudonymised: bool,
}

/// Builds the report for `[from, to]` (dates or RFC 3339 times) over the log `paths`.
pub fn report(paths: &[PathBuf], from: &str, to: &str) -> Result<Report, String> {
    let filter = Filter {
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
        ..Filter::default()
    };
    report_from(
        &Source::Files(paths.to_vec()),
        &filter,
        None,
        &VerifyOptions::default(),
    )
}

/// An allowed decision waiting for its completion: its destination and origins, and, for a
/// transfer of personal data to a third country, what it adds to its row.
struct Allowed {
    destination: Country,
    origins: Vec<Country>,
    row: Option<Transfer>,
}

/// (destination, article, rule, instrument id and module) of a transfer row.
/// Destination, article, rule, instrument, and the transformation (empty: sent whole).
type RowKey = (String, String, String, String, String);

/// What one allowed transfer adds to its row.
struct Transfer {
    key: RowKey,
    instrument: Option<Instrument>,
    origins: Vec<Country>,
    dataset: Option<String>,
    categories: Vec<Category>,
    purpose: Option<String>,
    organisation: Option<String>,
}

/// The rows and refusals being gathered.
#[derive(Default)]
struct Tally {
    rows: BTreeMap<RowKey, Row>,
    refusals: BTreeMap<(String, String, String), Refusal>,
}

impl Tally {
    fn refusal(
        &mut self,
        destination: Country,
        rule: &str,
        article: &str,
        instrument: Option<&Instrument>,
        reason: &str,
    ) {
        let dest = destination.as_str();
        self.refusals
            .entry((dest.to_owned(), rule.to_owned(), reason.to_owned()))
            .or_insert_with(|| Refusal {
                destination: dest.to_owned(),
                rule: rule.to_owned(),
                article: article.to_owned(),
                instrument: instrument.map(|i| i.id.clone()),
                reason: reason.to_owned(),
                count: 0,
            })
            .count += 1;
    }

    fn transfer(&mut self, t: Transfer, bytes: u64) {
        let key = t.key;
        let row = self.rows.entry(key.clone()).or_insert_with(|| Row {
            destination: key.0,
            article: key.1,
            rule: key.2,
            transformation: key.4,
            instrument: t.instrument,
            ..Row::default()
        });
        row.requests += 1;
        row.bytes += bytes;
        row.origins.extend(t.origins.iter().map(Country::to_string));
        row.datasets.extend(t.dataset);
        row.categories
            .extend(t.categories.iter().map(|c| c.as_str().to_owned()));
        row.purposes.extend(t.purpose);
        row.organisations.extend(t.organisation);
    }
}

impl Transfer {
    fn of(d: &DecisionView<'_>, destination: Country, pseudo: Option<&Pseudonymiser>) -> Transfer {
        Transfer {
            key: (
                destination.to_string(),
                d.article.to_string(),
                d.rule.to_string(),
                d.instrument
                    .as_ref()
                    .map_or_else(String::new, instrument_key),
                d.transform
                    .as_ref()
                    .map_or_else(String::new, crate::transform::Applied::header),
            ),
            instrument: d.instrument.clone(),
            origins: d.origins.clone(),
            dataset: d.dataset.as_deref().map(str::to_owned),
            categories: d.categories().to_vec(),
            purpose: d.purpose().map(str::to_owned),
            organisation: d.org().map(|o| match pseudo {
                Some(p) if p.orgs => p.pseudonym(o),
                _ => o.to_owned(),
            }),
        }
    }
}

/// [`report`], pseudonymising organisations (when `pseudo.orgs`) and checking checkpoints
/// and receipts as `verify` says.
///
/// A completion with outcome `refused` (the upstream's metadata changed the tags and the
/// decision taken again refused the transfer) makes its allowed decision a refusal: it is
/// counted under the refusals with the rule, article and reason of that decision (its
/// `recheck`), when the rechecked origins make it a transfer to a third country, and not as
/// a transfer.
pub fn report_with(
    paths: &[PathBuf],
    from: &str,
    to: &str,
    pseudo: Option<&Pseudonymiser>,
    verify: &VerifyOptions,
) -> Result<Report, String> {
    let filter = Filter {
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
        ..Filter::default()
    };
    report_from(&Source::Files(paths.to_vec()), &filter, pseudo, verify)
}

/// [`report_with`] over any [`Source`] (log files or the PostgreSQL store), for the
/// decisions `filter` matches (its period, and every other filter of `audit query`): a
/// transfer's completion counts with its decision, whatever the filter says of it.
pub fn report_from(
    source: &Source,
    filter: &Filter,
    pseudo: Option<&Pseudonymiser>,
    verify: &VerifyOptions,
) -> Result<Report, String> {
    let compiled = filter.compile()?;
    let regions = compiled.regions();
    let third_country = |o: &[Country], d: Country| regions.leaves(o, d);
    let from = filter.from.clone().unwrap_or_else(|| "1970-01-01".into());
    let to = filter
        .to
        .clone()
        .unwrap_or_else(|| time::OffsetDateTime::now_utc().date().to_string());
    let verification = source.verify(verify);
    // Completions are read with the period only: the other filters ask about decisions.
    let period = Filter {
        from: filter.from.clone(),
        to: filter.to.clone(),
        regions: filter.regions.clone(),
        ..Filter::default()
    };
    let mut t = Tally::default();
    // Allowed decisions by seq, until their completion says how they ended.
    let mut waiting: HashMap<u64, Allowed> = HashMap::new();
    source.for_each(&period, |v| {
        match RecordView::from_value(&v) {
            Ok(RecordView::Decision(d)) => {
                if !compiled.matches(&v) {
                    return true;
                }
                let Some(dest) = d.destination else {
                    return true;
                };
                let third = third_country(&d.origins, dest);
                if d.decision == Effect::Deny {
                    if third {
                        t.refusal(dest, &d.rule, &d.article, d.instrument.as_ref(), &d.reason);
                    }
                    return true;
                }
                // Art. 30(1)(e) lists transfers of personal data: data whose categories are
                // all non-personal (public, anonymous) is not part of the record.
                let row = (third && d.is_personal()).then(|| Transfer::of(&d, dest, pseudo));
                match d.seq {
                    Some(seq) => {
                        waiting.insert(
                            seq,
                            Allowed {
                                destination: dest,
                                origins: d.origins.clone(),
                                row,
                            },
                        );
                    }
                    None => {
                        if let Some(row) = row {
                            t.transfer(row, 0);
                        }
                    }
                }
            }
            Ok(RecordView::Completion(c)) => {
                let Some(a) = c.decision_seq.and_then(|s| waiting.remove(&s)) else {
                    return true;
                };
                if c.refused() {
                    let origins = c.recheck.as_ref().map_or(&a.origins, |r| &r.origins);
                    if third_country(origins, a.destination) {
                        let (rule, article, reason) = match &c.recheck {
                            Some(r) => (r.rule.as_str(), r.article.as_str(), r.reason.as_str()),
                            None => ("", "", c.detail.as_deref().unwrap_or("")),
                        };
                        t.refusal(a.destination, rule, article, None, reason);
                    }
                } else if let Some(row) = a.row {
                    t.transfer(row, c.bytes_out + c.bytes_in);
                }
            }
            _ => {}
        }
        true
    })?;
    // Allowed transfers whose completion is not in the period (or not written yet).
    for row in waiting.into_values().filter_map(|a| a.row) {
        t.transfer(row, 0);
    }
    let files = source.names()?;
    Ok(Report {
        from,
        to,
        filters: filter_list(filter),
        generated: super::record::now_rfc3339(),
        files,
        verification,
        transfers: t.rows.into_values().collect(),
        refusals: t.refusals.into_values().collect(),
        pseudonymised: pseudo.is_some_and(|p| p.orgs),
    })
}

/// An instrument's id, with the SCC module when there is one.
fn instrument_key(i: &Instrument) -> String {
    match i.module {
        Some(m) => format!("{}; module {m}", i.id),
        None => i.id.clone(),
    }
}

/// The instrument as a report cell: title, date, official reference, SCC module.
fn instrument_cell(i: Option<&Instrument>) -> String {
    let Some(i) = i else {
        return String::new();
    };
    let mut s = i.title.clone();
    if let Some(d) = &i.date {
        let _ = write!(s, " of {d}");
    }
    let _ = write!(s, "; {}", i.reference);
    if let Some(m) = i.module {
        let _ = write!(s, "; module {m}");
    }
    let _ = write!(s, " [{}]", i.id);
    s
}

/// The filters of `f` besides the period, for the report's header.
fn filter_list(f: &Filter) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in [
        ("decision", &f.decision),
        ("organisation", &f.org),
        ("caller", &f.sub),
        ("dataset", &f.dataset),
        ("origin", &f.origin),
        ("destination", &f.destination),
        ("rule", &f.rule),
        ("article", &f.article),
        ("purpose", &f.purpose),
        ("request id", &f.request_id),
        ("category", &f.category),
    ] {
        if let Some(v) = v {
            out.push(format!("{k}: {v}"));
        }
    }
    if f.third_countries
        .as_deref()
        .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "true" | "1" | "yes" | "on"))
    {
        out.push("third countries only".into());
    }
    out
}

fn join(s: &BTreeSet<String>) -> String {
    s.iter().cloned().collect::<Vec<_>>().join(", ")
}

fn verification_line(r: &Report) -> String {
    r.verification.summary()
}

impl Report {
    /// Markdown.
    pub fn to_markdown(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "# Record of transfers to third countries (GDPR Art. 30(1)(e))\n"
        );
        let _ = writeln!(o, "Period: {} to {}  ", self.from, self.to);
        if !self.filters.is_empty() {
            let _ = writeln!(o, "Filters: {}  ", md(&self.filters.join("; ")));
        }
        let _ = writeln!(o, "Generated: {}  ", self.generated);
        let _ = writeln!(o, "Log: {}  ", self.files.join(", "));
        let _ = writeln!(o, "Log verification: **{}**\n", verification_line(self));
        for d in &self.verification.damage {
            let _ = writeln!(o, "- {d}");
        }
        let (minimised, whole): (Vec<&Row>, Vec<&Row>) = self
            .transfers
            .iter()
            .partition(|r| !r.transformation.is_empty());
        let _ = writeln!(o, "## Transfers\n");
        if whole.is_empty() && minimised.is_empty() {
            let _ = writeln!(o, "No transfers to third countries in this period.\n");
        }
        for (title, rows) in [
            ("", whole),
            ("## Transfers minimised in transit\n", minimised),
        ] {
            if rows.is_empty() {
                continue;
            }
            let _ = write!(o, "{title}");
            let extra = if title.is_empty() {
                ""
            } else {
                " Transformation |"
            };
            let _ = writeln!(
                o,
                "| Destination | Legal basis | Instrument | Rule | Origins | Datasets | Data categories | Purposes | Organisations | Requests | Bytes |{extra}"
            );
            let _ = writeln!(
                o,
                "|---|---|---|---|---|---|---|---|---|---:|---:|{}",
                if title.is_empty() { "" } else { "---|" }
            );
            for r in rows {
                let _ = write!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.destination,
                    md(&r.article),
                    md(&instrument_cell(r.instrument.as_ref())),
                    md(&r.rule),
                    join(&r.origins),
                    md(&join(&r.datasets)),
                    join(&r.categories),
                    join(&r.purposes),
                    md(&join(&r.organisations)),
                    r.requests,
                    r.bytes
                );
                if !title.is_empty() {
                    let _ = write!(o, " {} |", md(&r.transformation));
                }
                let _ = writeln!(o);
            }
            let _ = writeln!(o);
        }
        let _ = writeln!(o, "## Refusals\n");
        if self.refusals.is_empty() {
            let _ = writeln!(o, "No refused transfers in this period.");
        } else {
            let _ = writeln!(o, "| Destination | Rule | Article | Reason | Count |");
            let _ = writeln!(o, "|---|---|---|---|---:|");
            for r in &self.refusals {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} |",
                    r.destination,
                    md(&r.rule),
                    md(&r.article),
                    md(&r.reason),
                    r.count
                );
            }
        }
        o
    }

    /// A self-contained HTML page.
    pub fn to_html(&self) -> String {
        let mut o = String::from(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Record of transfers</title>\
             <style>body{font:14px system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}\
             th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}td.n{text-align:right}\
             .ok{color:#176a2c}.bad{color:#a3141c}</style></head><body>",
        );
        let _ = write!(
            o,
            "<h1>Record of transfers to third countries (GDPR Art. 30(1)(e))</h1>\
             <p>Period: {} to {}{}<br>Generated: {}<br>Log: {}</p><p class=\"{}\"><strong>Log verification: {}</strong></p>",
            esc(&self.from),
            esc(&self.to),
            if self.filters.is_empty() {
                String::new()
            } else {
                format!("<br>Filters: {}", esc(&self.filters.join("; ")))
            },
            esc(&self.generated),
            esc(&self.files.join(", ")),
            if self.verification.is_ok() {
                "ok"
            } else {
                "bad"
            },
            esc(&verification_line(self))
        );
        if !self.verification.damage.is_empty() {
            o.push_str("<ul>");
            for d in &self.verification.damage {
                let _ = write!(o, "<li>{}</li>", esc(&d.to_string()));
            }
            o.push_str("</ul>");
        }
        for (title, minimised) in [
            ("Transfers", false),
            ("Transfers minimised in transit", true),
        ] {
            let rows: Vec<&Row> = self
                .transfers
                .iter()
                .filter(|r| r.transformation.is_empty() != minimised)
                .collect();
            if minimised && rows.is_empty() {
                continue;
            }
            let _ = write!(
                o,
                "<h2>{title}</h2><table><tr><th>Destination</th><th>Legal basis</th><th>Instrument</th><th>Rule</th><th>Origins</th><th>Datasets</th><th>Data categories</th><th>Purposes</th><th>Organisations</th><th>Requests</th><th>Bytes</th>{}</tr>",
                if minimised {
                    "<th>Transformation</th>"
                } else {
                    ""
                }
            );
            for r in rows {
                let _ = write!(
                    o,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>",
                    esc(&r.destination),
                    esc(&r.article),
                    esc(&instrument_cell(r.instrument.as_ref())),
                    esc(&r.rule),
                    esc(&join(&r.origins)),
                    esc(&join(&r.datasets)),
                    esc(&join(&r.categories)),
                    esc(&join(&r.purposes)),
                    esc(&join(&r.organisations)),
                    r.requests,
                    r.bytes
                );
                if minimised {
                    let _ = write!(o, "<td>{}</td>", esc(&r.transformation));
                }
                o.push_str("</tr>");
            }
            o.push_str("</table>");
        }
        o.push_str("<h2>Refusals</h2><table><tr><th>Destination</th><th>Rule</th><th>Article</th><th>Reason</th><th>Count</th></tr>");
        for r in &self.refusals {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td></tr>",
                esc(&r.destination),
                esc(&r.rule),
                esc(&r.article),
                esc(&r.reason),
                r.count
            );
        }
        o.push_str("</table></body></html>\n");
        o
    }

    /// CSV: one line per transfer row, then one per refusal (`type` column tells them apart);
    /// the first line is a comment with the verification result.
    pub fn to_csv(&self) -> String {
        let mut o = format!("# log verification: {}\n", verification_line(self));
        if !self.filters.is_empty() {
            o.push_str("# filters: ");
            o.push_str(&self.filters.join("; ").replace(['\n', '\r'], " "));
            o.push('\n');
        }
        o.push_str("type,destination,article,rule,origins,datasets,categories,purposes,organisations,requests,bytes,reason,instrument,instrument_reference\n");
        for r in &self.transfers {
            let cells = [
                "transfer".to_owned(),
                r.destination.clone(),
                r.article.clone(),
                r.rule.clone(),
                join(&r.origins),
                join(&r.datasets),
                join(&r.categories),
                join(&r.purposes),
                join(&r.organisations),
                r.requests.to_string(),
                r.bytes.to_string(),
                String::new(),
                r.instrument
                    .as_ref()
                    .map_or_else(String::new, instrument_key),
                instrument_cell(r.instrument.as_ref()),
            ];
            push_csv(&mut o, &cells);
        }
        for r in &self.refusals {
            let cells = [
                "refusal".to_owned(),
                r.destination.clone(),
                r.article.clone(),
                r.rule.clone(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                r.count.to_string(),
                String::new(),
                r.reason.clone(),
                r.instrument.clone().unwrap_or_default(),
                String::new(),
            ];
            push_csv(&mut o, &cells);
        }
        o
    }
}

/// Appends one CSV line (RFC 4180 quoting; cells starting with `=+-@` are prefixed with `'`
/// so spreadsheets do not run them as formulas).
pub fn push_csv(o: &mut String, cells: &[String]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            o.push(',');
        }
        let c = if c.starts_with(['=', '+', '-', '@']) {
            format!("'{c}")
        } else {
            c.clone()
        };
        if c.contains([',', '"', '\n', '\r']) {
            o.push('"');
            o.push_str(&c.replace('"', "\"\""));
            o.push('"');
        } else {
            o.push_str(&c);
        }
    }
    o.push('\n');
}

fn md(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// Escapes text for HTML.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '&' => o.push_str("&amp;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            _ => o.push(c),
        }
    }
    o
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn a_transfer_refused_on_recheck_counts_as_a_refusal() {
        use serde_json::json;
        let d = |seq: u64, origin: &str, dest: &str, decision: &str| {
            json!({"seq":seq,"kind":"decision","time":"2026-03-01T10:00:00Z",
                "request_id":format!("r{seq}"),"dataset":"ehr","origins":[origin],
                "tags":{"origins":[origin],"categories":["health"]},"destination":dest,
                "decision":decision,"rule":"eu.scc","article":"GDPR Art. 46",
                "reason":"clauses","caller":{"org":"acme","purpose":"training"}})
        };
        let done = |seq: u64, outcome: &str, bytes: u64| {
            let mut v = json!({"seq":seq + 1,"kind":"completion","time":"2026-03-01T10:00:01Z",
                "decision_seq":seq,"bytes_out":bytes,"outcome":outcome});
            if outcome == "refused" {
                v["recheck"] = json!({"decision":"deny","rule":"eu.no-basis",
                    "article":"GDPR Art. 44","reason":"special categories","origins":["DE"],
                    "categories":["health"]});
            }
            v
        };
        let lines = [
            d(1, "DE", "US", "allow"),
            done(1, "complete", 100),
            d(3, "DE", "US", "allow"),
            done(3, "refused", 0),
            // Not a transfer to a third country until the recheck found German data.
            d(5, "CH", "CH", "allow"),
            done(5, "refused", 0),
            // Its completion is outside the period: a transfer all the same.
            d(7, "DE", "US", "allow"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        std::fs::write(&log, text).unwrap();
        let r = report(&[log], "2026-01-01", "2026-12-31").unwrap();
        assert_eq!(r.transfers.len(), 1);
        assert_eq!((r.transfers[0].requests, r.transfers[0].bytes), (2, 100));
        let refused: Vec<(&str, &str, u64)> = r
            .refusals
            .iter()
            .map(|x| (x.destination.as_str(), x.rule.as_str(), x.count))
            .collect();
        assert_eq!(
            refused,
            [("CH", "eu.no-basis", 1), ("US", "eu.no-basis", 1)]
        );
        assert_eq!(r.refusals[0].reason, "special categories");
    }

    #[test]
    fn csv_quotes_and_defuses() {
        let mut o = String::new();
        push_csv(&mut o, &["a,b".into(), "=1+1".into(), "say \"hi\"".into()]);
        assert_eq!(o, "\"a,b\",'=1+1,\"say \"\"hi\"\"\"\n");
    }
}
