//! A synthetic, correctly chained audit log of a European ML team's traffic, for the
//! officer page's browser test and benchmark: a million records in seconds.
//!
//! Each kind of request is serialised once with placeholders; a record is its template with
//! the time and ids spliced in, chained by [`super::line::encode_line`] (the writer's code).

use std::io::Write;
use std::path::Path;

use super::record::{CompletionRecord, DecisionRecord, Outcome, Record};
use crate::model::{Caller, Category, Country, Direction, Effect, Tags};

/// One kind of request: who, what, where to, and how it was decided.
struct Kind {
    sub: &'static str,
    org: &'static str,
    origin: &'static str,
    dest: &'static str,
    dataset: &'static str,
    category: Category,
    purpose: &'static str,
    effect: Effect,
    status: u16,
    rule: &'static str,
    article: &'static str,
    reason: &'static str,
}

const fn k(
    (sub, org, origin, dest): (&'static str, &'static str, &'static str, &'static str),
    (dataset, category, purpose): (&'static str, Category, &'static str),
    (effect, status): (Effect, u16),
    (rule, article, reason): (&'static str, &'static str, &'static str),
) -> Kind {
    Kind {
        sub,
        org,
        origin,
        dest,
        dataset,
        category,
        purpose,
        effect,
        status,
        rule,
        article,
        reason,
    }
}

const ALLOW: (Effect, u16) = (Effect::Allow, 0);
const NO_BASIS: &str = "eu.chapter-v.no-basis";
const ART44: &str = "GDPR Chapter V, Art. 44";

/// The traffic mix, cycled through.
const KINDS: &[Kind] = &[
    k(
        ("carol", "globex-us", "DE", "US"),
        ("eu-customers", Category::Personal, "analytics"),
        ALLOW,
        (
            "eu.adequacy.us-dpf",
            "GDPR Art. 45(3)",
            "globex-us is certified under the EU-US Data Privacy Framework",
        ),
    ),
    k(
        ("bob", "acme-us", "DE", "US"),
        ("eu-customers", Category::Personal, "training"),
        (Effect::Deny, 451),
        (
            NO_BASIS,
            ART44,
            "no adequacy decision, safeguard or derogation covers personal data from DE to US for acme-us",
        ),
    ),
    k(
        ("pipeline-7", "acme-de", "DE", "FR"),
        ("eu-customers", Category::Personal, "analytics"),
        ALLOW,
        (
            "eu.intra-eea",
            "GDPR Art. 1(3)",
            "DE and FR are both in the EEA; personal data moves freely",
        ),
    ),
    k(
        ("crawler", "acme-us", "IE", "US"),
        ("public-wiki", Category::Public, "training"),
        ALLOW,
        (
            "eu.out-of-scope",
            "GDPR Art. 2(1)",
            "public data is outside the GDPR's transfer rules",
        ),
    ),
    k(
        ("ops-br", "umbrella-us", "FR", "US"),
        ("eu-clinical", Category::Health, "research"),
        (Effect::Deny, 451),
        (
            NO_BASIS,
            ART44,
            "no adequacy decision, safeguard or derogation covers health data from FR to US for umbrella-us",
        ),
    ),
    k(
        ("uk-ds", "wayne-us", "GB", "US"),
        ("uk-retail", Category::Personal, "analytics"),
        ALLOW,
        (
            "uk.idta",
            "UK GDPR Art. 46(2)(d)",
            "wayne-us holds an International Data Transfer Agreement",
        ),
    ),
    k(
        ("dev-in", "initech-in", "NL", "IN"),
        ("eu-customers", Category::Personal, "training"),
        ALLOW,
        (
            "eu.scc",
            "GDPR Art. 46(2)(c)",
            "initech-in holds standard contractual clauses (module 1) for IN",
        ),
    ),
    k(
        ("", "", "DE", "US"),
        ("eu-customers", Category::Personal, ""),
        (Effect::Deny, 401),
        (
            "bordergate.auth",
            "bordergate authentication",
            "the token's signature is not valid",
        ),
    ),
    k(
        ("growth", "acme-de", "DE", "DE"),
        ("eu-clinical", Category::Health, "marketing"),
        (Effect::Deny, 403),
        (
            "eu.purpose-limitation",
            "GDPR Art. 5(1)(b)",
            "eu-clinical may not be used for marketing",
        ),
    ),
    k(
        ("eval-us", "globex-us", "ES", "US"),
        ("eu-clinical", Category::Health, "research"),
        ALLOW,
        (
            "eu.scc",
            "GDPR Art. 46(2)(c)",
            "globex-us holds standard contractual clauses (module 2) for US",
        ),
    ),
    k(
        ("jp-batch", "cyberdyne-jp", "DE", "JP"),
        ("eu-customers", Category::Personal, "analytics"),
        ALLOW,
        (
            "eu.adequacy.jp",
            "GDPR Art. 45(3)",
            "JP has an EU adequacy decision",
        ),
    ),
    k(
        ("ch-eval", "helvetia-us", "CH", "US"),
        ("ch-patients", Category::Personal, "evaluation"),
        ALLOW,
        (
            "ch.adequacy.us-dpf",
            "FADP Art. 16(1)",
            "helvetia-us is certified under the Swiss-US DPF",
        ),
    ),
    k(
        ("bob", "acme-us", "DE", "US"),
        ("eu-customers", Category::Personal, "analytics"),
        (Effect::Deny, 451),
        (NO_BASIS, ART44, "the SCCs of acme-us expired on 2025-06-30"),
    ),
];

const TIME: &str = "@@TIME@@";
const ID: &str = "@@ID@@";
const SEQ: &str = "999999999999";

/// A record's JSON cut at its placeholders.
struct Template(Vec<Vec<u8>>);

impl Template {
    fn of(json: &[u8]) -> Template {
        let text = String::from_utf8_lossy(json).into_owned();
        let mut parts = Vec::new();
        let mut rest = text.as_str();
        loop {
            let next = [TIME, ID, SEQ]
                .iter()
                .filter_map(|p| rest.find(p).map(|i| (i, p.len())))
                .min();
            match next {
                Some((i, n)) => {
                    parts.push(rest.as_bytes()[..i].to_vec());
                    rest = &rest[i + n..];
                }
                None => {
                    parts.push(rest.as_bytes().to_vec());
                    break;
                }
            }
        }
        Template(parts)
    }

    /// The template with `values` spliced into its placeholders, in order.
    fn fill(&self, out: &mut Vec<u8>, values: &[&str]) {
        out.clear();
        for (i, p) in self.0.iter().enumerate() {
            out.extend_from_slice(p);
            if let Some(v) = values.get(i).filter(|_| i + 1 < self.0.len()) {
                out.extend_from_slice(v.as_bytes());
            }
        }
    }
}

fn decision(k: &Kind) -> Result<Template, String> {
    let origin = Country::parse(k.origin)?;
    let dest = Country::parse(k.dest)?;
    let authenticated = k.status != 401;
    let rec = DecisionRecord {
        credential: None,
        transform: None,
        time: TIME.into(),
        request_id: ID.into(),
        caller: authenticated.then(|| Caller {
            sub: k.sub.into(),
            org: k.org.into(),
            jurisdiction: dest,
            purpose: k.purpose.into(),
            claimed_jurisdiction: None,
        }),
        method: "GET".into(),
        path: format!("/datasets/{}/part-{ID}.parquet", k.dataset),
        dataset: Some(k.dataset.into()),
        tags: Some(Tags {
            origins: [origin].into(),
            categories: [k.category].into(),
            ..Tags::default()
        }),
        origins: vec![origin],
        destination: authenticated.then_some(dest),
        direction: Direction::Download,
        decision: k.effect,
        enforced: true,
        status: k.status,
        rule: k.rule.into(),
        article: k.article.into(),
        reason: k.reason.into(),
        policy_version: "sha256:synthetic".into(),
        upstream: Some("eu-store".into()),
        exporter: None,
        client_request_id: None,
        undeclared_recent: None,
        instrument: None,
    };
    let json = serde_json::to_vec(&Record::Decision(Box::new(rec))).map_err(|e| e.to_string())?;
    Ok(Template::of(&json))
}

fn completion() -> Result<Template, String> {
    let rec = CompletionRecord {
        sent_sha256: None,
        time: TIME.into(),
        request_id: ID.into(),
        decision_seq: 999_999_999_999,
        status: 200,
        bytes_in: 0,
        bytes_out: 999_999_999_999,
        duration_ms: 120,
        outcome: Outcome::Complete,
        detail: None,
        recheck: None,
    };
    let json = serde_json::to_vec(&Record::Completion(rec)).map_err(|e| e.to_string())?;
    Ok(Template::of(&json))
}

/// Writes `records` records (decisions, and a completion after each allowed one) to `path`,
/// spread evenly over the `days` days before `end`. Returns the number of decisions.
pub fn officer_log(
    path: &Path,
    records: usize,
    end: time::OffsetDateTime,
    days: i64,
) -> Result<usize, String> {
    let decisions: Vec<Template> = KINDS.iter().map(decision).collect::<Result<_, _>>()?;
    let done = completion()?;
    let file = std::fs::File::create(path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    let mut out = std::io::BufWriter::with_capacity(8 << 20, file);
    let start = end - time::Duration::days(days);
    let span = (end - start).whole_milliseconds().max(1);
    let (mut json, mut line) = (Vec::with_capacity(2048), Vec::with_capacity(2048));
    let mut prev = [0u8; 32];
    let (mut seq, mut n_decisions, mut i) = (0u64, 0usize, 0usize);
    let fmt = time::format_description::well_known::Rfc3339;
    while (seq as usize) < records {
        // Mixed so that neighbouring records are of different kinds.
        let k = (i * 7 + i / KINDS.len()) % KINDS.len();
        let ms = span * i128::from(seq) / records.max(1) as i128;
        let t = start + time::Duration::milliseconds(i64::try_from(ms).unwrap_or(0));
        let ts = t.format(&fmt).map_err(|e| e.to_string())?;
        let id = format!("syn-{i:08}");
        decisions[k].fill(&mut json, &[&ts, &id, &id]);
        seq += 1;
        line.clear();
        prev = super::line::encode_line(&mut line, seq, &prev, &json);
        out.write_all(&line).map_err(|e| e.to_string())?;
        n_decisions += 1;
        if KINDS[k].effect == Effect::Allow && (seq as usize) < records {
            let bytes = (1_000_000 + (i as u64 * 734_113) % 40_000_000).to_string();
            let dseq = seq.to_string();
            // Placeholders in order: time, request id, decision seq, bytes out.
            done.fill(&mut json, &[&ts, &id, &dseq, &bytes]);
            seq += 1;
            line.clear();
            prev = super::line::encode_line(&mut line, seq, &prev, &json);
            out.write_all(&line).map_err(|e| e.to_string())?;
        }
        i += 1;
    }
    out.flush().map_err(|e| e.to_string())?;
    Ok(n_decisions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    #[test]
    fn the_log_chains_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.log");
        let end = time::OffsetDateTime::now_utc();
        let n = officer_log(&p, 400, end, 30).unwrap();
        assert!(n > 200 && n < 400, "{n}");
        let r = crate::audit::verify::verify_log(std::slice::from_ref(&p), &Default::default());
        assert!(r.is_ok(), "{}", r.summary());
        assert_eq!(r.records, 400);
        let recs = crate::audit::query::query(&[p], &Default::default(), 1000).unwrap();
        assert_eq!(recs[1]["kind"], "completion");
        assert_eq!(recs[1]["decision_seq"], 1);
        assert!(recs[1]["bytes_out"].as_u64().unwrap() >= 1_000_000);
        assert!(
            recs.iter()
                .any(|r| r["status"] == 401 && r["caller"].is_null())
        );
    }
}
