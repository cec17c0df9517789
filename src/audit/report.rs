//! The GDPR Art. 30(1)(e) record of transfers to third countries, built from the log, and its renderers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;

use super::pseudo::Pseudonymiser;
use super::query::{Filter, for_each};
use super::verify::{LogReport, VerifyOptions, verify_log};

/// EEA member states: transfers among them are not transfers to third countries.
const EEA: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IS",
    "IT", "LI", "LT", "LU", "LV", "MT", "NL", "NO", "PL", "PT", "RO", "SE", "SI", "SK",
];

/// Transfers to one destination on one legal basis.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub destination: String,
    pub article: String,
    pub rule: String,
    pub datasets: BTreeSet<String>,
    pub categories: BTreeSet<String>,
    pub purposes: BTreeSet<String>,
    pub organisations: BTreeSet<String>,
    pub origins: BTreeSet<String>,
    /// Requests allowed.
    pub requests: u64,
    /// Bytes moved (from completion records).
    pub bytes: u64,
}

/// Refused transfers to one destination for one reason.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Refusal {
    pub destination: String,
    pub rule: String,
    pub article: String,
    pub reason: String,
    pub count: u64,
}

/// The record of transfers for a period, headed by the verification of the log it came from.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub generated: String,
    pub files: Vec<String>,
    pub verification: LogReport,
    pub transfers: Vec<Row>,
    pub refusals: Vec<Refusal>,
    pub pseudonymised: bool,
}

/// True if moving data from `origins` to `dest` is a transfer to a third country.
fn third_country(origins: &[&str], dest: &str) -> bool {
    origins.iter().any(|o| {
        if EEA.contains(o) {
            !EEA.contains(&dest)
        } else {
            *o != dest
        }
    })
}

/// Builds the report for `[from, to]` (dates or RFC 3339 times) over the log `paths`.
pub fn report(paths: &[PathBuf], from: &str, to: &str) -> Result<Report, String> {
    report_with(paths, from, to, None, &VerifyOptions::default())
}

/// [`report`], pseudonymising organisations (when `pseudo.orgs`) and checking checkpoints
/// and receipts as `verify` says.
pub fn report_with(
    paths: &[PathBuf],
    from: &str,
    to: &str,
    pseudo: Option<&Pseudonymiser>,
    verify: &VerifyOptions,
) -> Result<Report, String> {
    let verification = verify_log(paths, verify);
    let filter = Filter {
        from: Some(from.to_owned()),
        to: Some(to.to_owned()),
        ..Filter::default()
    };
    let mut rows: BTreeMap<(String, String, String), Row> = BTreeMap::new();
    let mut refusals: BTreeMap<(String, String, String), Refusal> = BTreeMap::new();
    // Allowed transfer decision seq → its row, for the completion bytes.
    let mut by_seq: HashMap<u64, (String, String, String)> = HashMap::new();
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    for_each(paths, &filter, |v| {
        match v.get("kind").and_then(Value::as_str) {
            Some("decision") => {
                let dest = s(&v, "destination");
                let origins: Vec<&str> = v
                    .get("origins")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if dest.is_empty() || !third_country(&origins, &dest) {
                    return true;
                }
                let key = (dest.clone(), s(&v, "article"), s(&v, "rule"));
                if s(&v, "decision") == "deny" {
                    let r = refusals
                        .entry((dest.clone(), s(&v, "rule"), s(&v, "reason")))
                        .or_insert_with(|| Refusal {
                            destination: dest.clone(),
                            rule: s(&v, "rule"),
                            article: s(&v, "article"),
                            reason: s(&v, "reason"),
                            count: 0,
                        });
                    r.count += 1;
                    return true;
                }
                // Art. 30(1)(e) lists transfers of personal data: data whose categories are
                // all non-personal (public, anonymous) is not part of the record.
                let personal = v
                    .pointer("/tags/categories")
                    .and_then(Value::as_array)
                    .is_none_or(|cats| {
                        cats.iter()
                            .filter_map(Value::as_str)
                            .any(|c| c != "public" && c != "anonymous")
                    });
                if !personal {
                    return true;
                }
                let row = rows.entry(key.clone()).or_insert_with(|| Row {
                    destination: key.0.clone(),
                    article: key.1.clone(),
                    rule: key.2.clone(),
                    ..Row::default()
                });
                row.requests += 1;
                row.origins.extend(origins.iter().map(|o| o.to_string()));
                if let Some(d) = v.get("dataset").and_then(Value::as_str) {
                    row.datasets.insert(d.to_owned());
                }
                if let Some(c) = v.pointer("/tags/categories").and_then(Value::as_array) {
                    row.categories
                        .extend(c.iter().filter_map(Value::as_str).map(str::to_owned));
                }
                if let Some(p) = v.pointer("/caller/purpose").and_then(Value::as_str) {
                    row.purposes.insert(p.to_owned());
                }
                if let Some(o) = v.pointer("/caller/org").and_then(Value::as_str) {
                    let o = match pseudo {
                        Some(p) if p.orgs => p.pseudonym(o),
                        _ => o.to_owned(),
                    };
                    row.organisations.insert(o);
                }
                if let Some(seq) = v.get("seq").and_then(Value::as_u64) {
                    by_seq.insert(seq, key);
                }
            }
            Some("completion") => {
                let seq = v.get("decision_seq").and_then(Value::as_u64);
                if let Some(key) = seq.and_then(|s| by_seq.get(&s))
                    && let Some(row) = rows.get_mut(key)
                {
                    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
                    row.bytes += n("bytes_out") + n("bytes_in");
                }
            }
            _ => {}
        }
        true
    })?;
    let files = crate::audit::query::expand(paths)?
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    Ok(Report {
        from: from.to_owned(),
        to: to.to_owned(),
        generated: super::record::now_rfc3339(),
        files,
        verification,
        transfers: rows.into_values().collect(),
        refusals: refusals.into_values().collect(),
        pseudonymised: pseudo.is_some_and(|p| p.orgs),
    })
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
        let _ = writeln!(o, "Generated: {}  ", self.generated);
        let _ = writeln!(o, "Log: {}  ", self.files.join(", "));
        let _ = writeln!(o, "Log verification: **{}**\n", verification_line(self));
        for d in &self.verification.damage {
            let _ = writeln!(o, "- {d}");
        }
        let _ = writeln!(o, "## Transfers\n");
        if self.transfers.is_empty() {
            let _ = writeln!(o, "No transfers to third countries in this period.\n");
        } else {
            let _ = writeln!(
                o,
                "| Destination | Legal basis | Rule | Origins | Datasets | Data categories | Purposes | Organisations | Requests | Bytes |"
            );
            let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---:|---:|");
            for r in &self.transfers {
                let _ = writeln!(
                    o,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.destination,
                    md(&r.article),
                    md(&r.rule),
                    join(&r.origins),
                    md(&join(&r.datasets)),
                    join(&r.categories),
                    join(&r.purposes),
                    md(&join(&r.organisations)),
                    r.requests,
                    r.bytes
                );
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
             <p>Period: {} to {}<br>Generated: {}<br>Log: {}</p><p class=\"{}\"><strong>Log verification: {}</strong></p>",
            esc(&self.from),
            esc(&self.to),
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
        o.push_str("<h2>Transfers</h2><table><tr><th>Destination</th><th>Legal basis</th><th>Rule</th><th>Origins</th><th>Datasets</th><th>Data categories</th><th>Purposes</th><th>Organisations</th><th>Requests</th><th>Bytes</th></tr>");
        for r in &self.transfers {
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&r.destination),
                esc(&r.article),
                esc(&r.rule),
                esc(&join(&r.origins)),
                esc(&join(&r.datasets)),
                esc(&join(&r.categories)),
                esc(&join(&r.purposes)),
                esc(&join(&r.organisations)),
                r.requests,
                r.bytes
            );
        }
        o.push_str("</table><h2>Refusals</h2><table><tr><th>Destination</th><th>Rule</th><th>Article</th><th>Reason</th><th>Count</th></tr>");
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
        o.push_str("type,destination,article,rule,origins,datasets,categories,purposes,organisations,requests,bytes,reason\n");
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
mod tests {
    use super::*;

    #[test]
    fn third_countries() {
        assert!(third_country(&["DE"], "US"));
        assert!(!third_country(&["DE"], "FR"));
        assert!(third_country(&["GB"], "US"));
        assert!(!third_country(&["GB"], "GB"));
        assert!(third_country(&["DE", "FR"], "CH"));
    }

    #[test]
    fn csv_quotes_and_defuses() {
        let mut o = String::new();
        push_csv(&mut o, &["a,b".into(), "=1+1".into(), "say \"hi\"".into()]);
        assert_eq!(o, "\"a,b\",'=1+1,\"say \"\"hi\"\"\"\n");
    }
}
