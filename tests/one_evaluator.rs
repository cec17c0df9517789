//! One evaluator for every question: each case of the pack's test vectors
//! (`policies/tests/*.yaml`, the cases `policy test` runs) is put to `policy explain --json`
//! (by dataset or path and by tags given directly, as of the case's day and as of today),
//! to a real gateway's admin API (`/policy/explain`, the same questions) and, as of today,
//! as a real request with a token for the case's caller: a GET of the case's data, or for an
//! upload a PUT to an upstream in the case's destination operated by its importer. A PIPL
//! volume case finds its exporter's earlier exports in the gateway's audit trail. Every
//! answer must name the outcome, the rule and the instrument `policy test` decides; no case
//! is left out. Then a few direct cases: data withdrawn from a future day, an upload with
//! its lineage, tags given directly.

#![allow(clippy::unwrap_used)]

mod common;
#[path = "support/admin.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use bordergate::audit::record::now_rfc3339;
use bordergate::audit::{AuditLog, DecisionRecord, Record};
use bordergate::model::{Caller, Country, Direction, Effect, Tags};
use bordergate::policy::PolicySet;
use bordergate::policy::testing::{Case, load_cases};
use bordergate::policy::volume::{VolumeInfo, counts_towards};
use bordergate::transfer::Transfer;
use common::{BIN, Options};
use serde_json::Value;
use support::{Admined, CUSTOMERS, start};

/// An organisation no registry lists: the caller of a case that names no importer.
const UNLISTED: &str = "unlisted-org";

/// What an answer says: the effect and the deciding rule.
type Said = (String, String);

fn effect(e: Effect) -> String {
    match e {
        Effect::Allow => "allow".into(),
        Effect::Deny => "deny".into(),
    }
}

fn said(v: &Value, what: &str) -> Said {
    let d = &v["decision"];
    let (Some(e), Some(r)) = (d["effect"].as_str(), d["rule"].as_str()) else {
        panic!("{what}: no decision in {v}");
    };
    (e.to_string(), r.to_string())
}

/// The catalog id of case `i`.
fn id(i: usize) -> String {
    format!("vector-{i}")
}

fn quoted(items: impl IntoIterator<Item = String>) -> String {
    items
        .into_iter()
        .map(|s| format!("\"{s}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One catalog entry per case, holding exactly the case's tags (and, for a PIPL volume
/// case, its subjects, important data and `exporter`).
fn entry(i: usize, c: &Case, exporter: Option<&str>) -> String {
    let t = &c.tags;
    let mut e = String::new();
    let _ = writeln!(e, "  - id: {}", id(i));
    let _ = writeln!(e, "    kind: dataset");
    let _ = writeln!(e, "    match: {{ prefix: /datasets/{}/ }}", id(i));
    let _ = writeln!(
        e,
        "    origins: [{}]",
        quoted(t.origins.iter().map(|o| o.to_string()))
    );
    let _ = writeln!(
        e,
        "    categories: [{}]",
        quoted(t.categories.iter().map(|c| c.as_str().to_string()))
    );
    if let Some(p) = &t.purposes {
        let _ = writeln!(e, "    purposes: [{}]", quoted(p.iter().cloned()));
    }
    // A schema for `data.csv` (`a,b`): a case allowed only minimised is minimised.
    let _ = writeln!(
        e,
        "    schema: {{ columns: [{{ name: a, kind: identifier }}, {{ name: b, kind: non-personal }}] }}"
    );
    if !t.derogations.is_empty() {
        let _ = writeln!(
            e,
            "    derogations: [{}]",
            quoted(t.derogations.iter().cloned())
        );
    }
    if let Some(v) = &c.volume {
        if let Some(n) = v.subjects {
            let _ = writeln!(e, "    subjects: {n}");
        }
        if let Some(x) = exporter {
            let _ = writeln!(e, "    exporter: {x}");
        }
        if v.important_data {
            let _ = writeln!(e, "    important_data: true");
        }
    }
    e
}

fn org(c: &Case) -> &str {
    c.org.as_deref().unwrap_or(UNLISTED)
}

/// `policy explain --json` against the gateway's config.
fn explain(a: &Admined, args: &[String]) -> Value {
    let out = Command::new(BIN)
        .args(["policy", "explain", "--json", "--config"])
        .arg(&a.gw.config)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "policy explain {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The admin API's `/policy/explain` with `query`.
async fn admin(a: &Admined, officer: &str, query: &str) -> Value {
    let r = a
        .get(&format!("/policy/explain?{query}"), Some(officer))
        .await;
    assert_eq!(r.status(), 200, "{query}");
    r.json().await.unwrap()
}

/// A real request: the status and what the `Bordergate-Decision` header (or, without one,
/// the request's decision record) says.
async fn request(
    a: &Admined,
    method: &str,
    path: &str,
    token: &str,
    lineage: Option<&str>,
) -> (u16, Said) {
    let (status, s, _) = request_named(a, method, path, token, lineage).await;
    (status, s)
}

/// [`request`], with the instrument id the `Bordergate-Instrument` header names (`none`).
async fn request_named(
    a: &Admined,
    method: &str,
    path: &str,
    token: &str,
    lineage: Option<&str>,
) -> (u16, Said, String) {
    let c = a.gw.client();
    let mut r = match method {
        "PUT" => c.put(a.gw.url(path)).body("weights"),
        _ => c.get(a.gw.url(path)),
    }
    .bearer_auth(token);
    if let Some(l) = lineage {
        r = r.header("bordergate-lineage", l);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let header = r
        .headers()
        .get("bordergate-decision")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let instrument = r
        .headers()
        .get("bordergate-instrument")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .map_or("none".to_string(), |h| {
            h.split(';').next().unwrap_or("").trim().to_string()
        });
    let body = r.text().await.unwrap();
    let said = match header {
        Some(h) => {
            let (e, rest) = h.split_once(';').unwrap();
            let rule = rest
                .split("rule=\"")
                .nth(1)
                .and_then(|s| s.split('"').next())
                .unwrap();
            (e.trim().to_string(), rule.to_string())
        }
        // Refused before any decision (routing): the rule the record names.
        None => {
            let p: Value = serde_json::from_str(&body).unwrap();
            let d = a.gw.decision(&id);
            assert_eq!(d["decision"], "deny", "{p}");
            ("deny".into(), d["rule"].as_str().unwrap().to_string())
        }
    };
    (status, said, instrument)
}

/// The instrument id an answer's decision names (`none`).
fn instrument_of(v: &Value) -> String {
    v["decision"]["instrument"]["id"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// A token for `org` in `jurisdiction` with `purpose`, signed with the gateway's key.
fn token(a: &Admined, sub: &str, org: &str, jurisdiction: &str, purpose: &str) -> String {
    let now = common::now();
    let claims = format!(
        r#"{{"sub":"{sub}","org":"{org}","jurisdiction":"{jurisdiction}","purpose":"{purpose}","iss":"bordergate-dev","aud":"bordergate","iat":{now},"exp":{}}}"#,
        now + 600
    );
    common::hs256_jwt(&a.gw.secret(), r#"{"alg":"HS256","kid":"dev"}"#, &claims)
}

/// The caller's flags of `policy explain` and the parameters of `/policy/explain`.
fn caller_args(p: &Posed<'_>) -> Vec<String> {
    [
        "--jurisdiction",
        &p.c.destination.to_string(),
        "--org",
        p.org(),
        "--purpose",
        &p.c.purpose,
    ]
    .map(str::to_string)
    .to_vec()
}

fn caller_query(p: &Posed<'_>) -> String {
    format!(
        "jurisdiction={}&org={}&purpose={}",
        p.c.destination,
        p.org(),
        p.c.purpose
    )
}

/// The tags of a case as `policy explain` flags and as admin parameters.
fn tag_args(c: &Case) -> (Vec<String>, String) {
    let t = &c.tags;
    let join = |v: Vec<String>| v.join(",");
    let origins = join(t.origins.iter().map(|o| o.to_string()).collect());
    let cats = join(
        t.categories
            .iter()
            .map(|c| c.as_str().to_string())
            .collect(),
    );
    let mut args = vec![
        "--origin".to_string(),
        origins.clone(),
        "--category".into(),
        cats.clone(),
    ];
    let mut query = format!("origin={origins}&category={cats}");
    if let Some(p) = &t.purposes {
        let p = join(p.iter().cloned().collect());
        args.extend(["--permits".into(), p.clone()]);
        let _ = write!(query, "&permits={p}");
    }
    if !t.derogations.is_empty() {
        let d = join(t.derogations.iter().cloned().collect());
        args.extend(["--derogation".into(), d.clone()]);
        let _ = write!(query, "&derogation={d}");
    }
    (args, query)
}

/// The organisation uploading an upload case's data (no registry lists it).
const UPLOADER: &str = "uploader-org";

/// A case as it is put to a live gateway.
struct Posed<'c> {
    i: usize,
    c: &'c Case,
    /// A PIPL volume case's exporter: a copy of the case's (same country, same CIIO flag),
    /// one per case, so that the gateway's counter holds each case's volume apart.
    exporter: Option<String>,
}

impl Posed<'_> {
    fn upload(&self) -> bool {
        self.c.direction == Direction::Upload
    }

    /// The volume the gateway counts for the case in `year`: the case's, for its exporter.
    fn volume(&self, year: i32) -> Option<VolumeInfo> {
        self.c.volume.as_ref().map(|v| VolumeInfo {
            exporter: self.exporter.clone(),
            year,
            ..v.clone()
        })
    }

    /// The path a request for the case takes: the case's dataset, or for an upload a file
    /// under the route to the case's upstream.
    fn path(&self) -> String {
        if self.upload() {
            format!("/up/{}/data.bin", self.i)
        } else {
            format!("/datasets/{}/data.csv", id(self.i))
        }
    }

    /// The caller: the case's importer on download; on upload an uploader in the
    /// destination (the importer is the upstream's operator).
    fn org(&self) -> &str {
        if self.upload() { UPLOADER } else { org(self.c) }
    }

    /// The upstream and route an upload case is sent through: stored in the case's
    /// destination, operated by the case's importer.
    fn upstream(&self, root: &std::path::Path) -> (String, String) {
        let i = self.i;
        let mut up = format!(
            "  - name: up-{i}\n    url: file://{}\n    jurisdiction: {}\n",
            root.display(),
            self.c.destination
        );
        if let Some(o) = &self.c.org {
            let _ = writeln!(up, "    operator: {o}");
        }
        let route = format!("  - prefix: /up/{i}/\n    upstream: up-{i}\n    uploads: true\n");
        (up, route)
    }
}

/// The exports a volume case supposes its exporter made this year before it, as counting
/// units: catalog id, tags, and the subjects of a unit made for it (`None`: the case's own
/// entry, which was counted already).
fn earlier_exports(p: &Posed<'_>) -> Vec<(String, Tags, Option<u64>)> {
    let Some(v) = &p.c.volume else {
        return Vec::new();
    };
    let (mut ns, mut s) = (v.non_sensitive, v.sensitive);
    let mut out = Vec::new();
    if v.already_counted {
        let n = v.subjects.expect("a case counted before says its subjects");
        let (to_ns, to_s) = counts_towards(&p.c.tags);
        if to_ns {
            ns = ns
                .checked_sub(n)
                .expect("counted subjects within the total");
        }
        if to_s {
            s = s.checked_sub(n).expect("counted subjects within the total");
        }
        out.push((id(p.i), p.c.tags.clone(), None));
    }
    let cn = |cat: &str| Tags::given(&["CN".to_string()], Some(&[cat.to_string()]), None, &[]);
    if ns > 0 {
        out.push((
            format!("seed-{}-ns", p.i),
            cn("personal").unwrap(),
            Some(ns),
        ));
    }
    if s > 0 {
        out.push((format!("seed-{}-s", p.i), cn("health").unwrap(), Some(s)));
    }
    out
}

/// The catalog entry of a unit made for an earlier export.
fn earlier_entry(unit: &str, tags: &Tags, subjects: u64, exporter: &str) -> String {
    format!(
        "  - id: {unit}\n    kind: dataset\n    match: {{ prefix: /seeds/{unit}/ }}\n    origins: [CN]\n    categories: [{}]\n    purposes: [analytics]\n    subjects: {subjects}\n    exporter: {exporter}\n",
        quoted(tags.categories.iter().map(|c| c.as_str().to_string()))
    )
}

/// The decision record the gateway writes for an allowed export of `unit` by `exporter`.
fn export_record(n: usize, time: String, unit: &str, tags: &Tags, exporter: &str) -> Record {
    let au = Country::parse("AU").unwrap();
    Record::Decision(Box::new(DecisionRecord {
        transform: None,
        credential: None,
        time,
        request_id: format!("earlier-export-{n}"),
        caller: Some(Caller {
            sub: "earlier-pipeline".into(),
            org: "none-xx".into(),
            jurisdiction: au,
            purpose: "analytics".into(),
            claimed_jurisdiction: None,
        }),
        method: "GET".into(),
        path: format!("/seeds/{unit}/data.csv"),
        dataset: Some(unit.to_string()),
        tags: Some(tags.clone()),
        origins: tags.origins.iter().copied().collect(),
        destination: Some(au),
        direction: Direction::Download,
        decision: Effect::Allow,
        enforced: true,
        status: 0,
        rule: "cn.volume-exempt".into(),
        article: "Provisions on Promoting and Regulating Cross-Border Data Flows Art. 5(4)".into(),
        reason: "an export before the test vector".into(),
        policy_version: String::new(),
        upstream: Some("eu-store".into()),
        exporter: Some(exporter.to_string()),
        client_request_id: None,
        undeclared_recent: None,
        instrument: None,
    }))
}

/// Every case of the pack is posed: downloads by dataset and by tags, uploads by path (to
/// an upstream in the case's destination, operated by its importer) and by tags sent to
/// that upstream, PIPL volume cases by dataset, with the gateway's trail holding the
/// exports the case supposes its exporter made this year (and in the case's year), written
/// by the project's own audit writer before the gateway starts: the gateway's counter
/// seeds from them as it does after a restart, `policy explain` counts them from the trail.
/// Tags given directly carry no `subjects`, so a volume case is not asked that way.
#[tokio::test]
async fn every_test_vector_gets_one_answer_from_every_tool_and_the_gateway() {
    let policies = common::repo().join("policies");
    let cases = load_cases(&policies).unwrap();
    let now = time::OffsetDateTime::now_utc();
    let today = now.date();
    let this_year = bordergate::pipl::year_of(now);
    let mut by_registry: BTreeMap<PathBuf, Vec<Posed<'_>>> = BTreeMap::new();
    for (i, c) in cases.iter().enumerate() {
        let exporter = c
            .volume
            .as_ref()
            .and_then(|v| v.exporter.as_ref())
            .map(|e| format!("{e}-v{i}"));
        by_registry
            .entry(c.registry.clone())
            .or_default()
            .push(Posed { i, c, exporter });
    }
    let mut disagreements = Vec::new();
    let (mut checked, mut posed, mut volumes, mut uploads) = (0, 0, 0, 0);
    for (registry, group) in &by_registry {
        let keep = tempfile::tempdir().unwrap();
        // The registry, with each volume case's copy of its exporter.
        let base = PolicySet::load(&policies, registry).unwrap();
        let mut reg = std::fs::read_to_string(registry).unwrap();
        if !reg.ends_with('\n') {
            reg.push('\n');
        }
        for p in group {
            let (Some(x), Some(of)) = (
                &p.exporter,
                p.c.volume.as_ref().and_then(|v| v.exporter.as_deref()),
            ) else {
                continue;
            };
            if let Some(o) = base.organisation(of) {
                let _ = writeln!(
                    reg,
                    "  - {{ id: {x}, name: \"{of}, for one test vector\", country: {}, ciio: {} }}",
                    o.country, o.ciio
                );
            }
        }
        let registry = keep.path().join("registry.yaml");
        std::fs::write(&registry, reg).unwrap();
        let set = PolicySet::load(&policies, &registry).unwrap();
        // The catalog, the upload upstreams and routes, the earlier exports.
        let (mut catalog, mut upstreams, mut routes) =
            (String::new(), String::new(), String::new());
        let mut earlier = Vec::new();
        let files = keep.path().join("uploads");
        for p in group {
            catalog.push_str(&entry(p.i, p.c, p.exporter.as_deref()));
            if p.upload() {
                let _ = write!(
                    catalog,
                    "  - id: store-{i}\n    kind: store\n    match: {{ prefix: /up/{i}/ }}\n",
                    i = p.i
                );
                let (up, route) = p.upstream(&files);
                upstreams.push_str(&up);
                routes.push_str(&route);
            }
            let units = earlier_exports(p);
            if units.is_empty() {
                continue;
            }
            let x = p
                .exporter
                .as_deref()
                .expect("a case supposing earlier exports names its exporter");
            for (unit, tags, subjects) in &units {
                if let Some(n) = subjects {
                    catalog.push_str(&earlier_entry(unit, tags, *n, x));
                }
            }
            let mut years = vec![p.c.date.year(), this_year];
            years.sort_unstable();
            years.dedup();
            for y in years {
                for (unit, tags, _) in &units {
                    earlier.push((y, unit.clone(), tags.clone(), x.to_string()));
                }
            }
        }
        std::fs::create_dir_all(&files).unwrap();
        let audit = keep.path().join("audit.log");
        if !earlier.is_empty() {
            earlier.sort_by_key(|e| e.0);
            let log = AuditLog::open(&audit, 64).unwrap();
            for (n, (y, unit, tags, x)) in earlier.iter().enumerate() {
                // 1 January, noon UTC, is 1 January in China too.
                let time = if *y == this_year {
                    now_rfc3339()
                } else {
                    format!("{y}-01-01T12:00:00.000000000Z")
                };
                log.append(export_record(n, time, unit, tags, x))
                    .await
                    .unwrap();
            }
            log.shutdown().await;
        }
        let a = start(Options {
            extra_catalog: catalog,
            extra_upstreams: upstreams,
            extra_routes: routes,
            // The vectors' importers sit anywhere: the caller's claim is taken as it is.
            extra_keys: "  jurisdiction_claim: trust\n".into(),
            // Keys for the cases allowed only minimised (pseudonymised).
            extra_config: "transform:\n  keys: keys.yaml\n  generate_dev_keys: true\n".into(),
            registry: Some(registry.clone()),
            audit_path: Some(audit),
            ..Options::default()
        });
        let officer = a.officer();
        for p in group {
            let (i, c) = (p.i, p.c);
            posed += 1;
            volumes += usize::from(c.volume.is_some());
            uploads += usize::from(p.upload());
            if !p.upload() {
                std::fs::create_dir_all(a.gw.store.join(format!("datasets/{}", id(i)))).unwrap();
                std::fs::write(a.gw.store.join(p.path().trim_start_matches('/')), "a,b\n").unwrap();
            }
            let t = Transfer::of_tags(
                c.tags.clone(),
                c.direction,
                c.destination,
                c.org.as_deref(),
                &c.purpose,
            );
            let what = format!("{}:{} `{}`", c.file.display(), c.line, c.name);
            let mut answers: Vec<(String, Said)> = Vec::new();
            let mut named: Vec<(String, String)> = Vec::new();
            for (day, as_of) in [(c.date, Some(c.date)), (today, None)] {
                // `policy test`'s own decision (the case's expectation when it names one),
                // with the volume the gateway counts in that year.
                let year = if as_of.is_some() {
                    c.date.year()
                } else {
                    this_year
                };
                let volume = p.volume(year);
                let d = t.decide(&set, day, volume.as_ref());
                let expected = (effect(d.effect), d.rule.clone());
                let instrument = d
                    .instrument
                    .as_deref()
                    .map_or("none".to_string(), |i| i.id.clone());
                if as_of.is_some() {
                    assert_eq!(d.effect, c.expect, "{what}: `policy test` disagrees");
                    if let Some(r) = &c.rule {
                        assert_eq!(&d.rule, r, "{what}: `policy test` disagrees");
                    }
                }
                answers.clear();
                named.clear();
                let mut date_arg = as_of
                    .map(|d| vec!["--as-of".to_string(), d.to_string()])
                    .unwrap_or_default();
                let date_q = as_of.map(|d| format!("&as_of={d}")).unwrap_or_default();
                let mut note = |tool: &str, v: Value| {
                    answers.push((tool.to_string(), said(&v, &what)));
                    named.push((tool.to_string(), instrument_of(&v)));
                };
                let (mut tagged, tag_q) = tag_args(c);
                let caller_q = caller_query(p);
                if p.upload() {
                    date_arg.extend(caller_args(p));
                    let mut by_path = vec![
                        "--path".to_string(),
                        p.path(),
                        "--upload".into(),
                        "--lineage".into(),
                        id(i),
                    ];
                    by_path.extend(date_arg.clone());
                    note("explain --path --upload", explain(&a, &by_path));
                    tagged.extend([
                        "--upload".to_string(),
                        "--upstream".into(),
                        format!("up-{i}"),
                    ]);
                    tagged.extend(date_arg);
                    note("explain --origin --upload", explain(&a, &tagged));
                    let q = format!(
                        "path={}&upload=true&lineage={}&{caller_q}{date_q}",
                        p.path(),
                        id(i)
                    );
                    note("admin ?path&upload", admin(&a, &officer, &q).await);
                    let q = format!("{tag_q}&upload=true&upstream=up-{i}&{caller_q}{date_q}");
                    note("admin ?origin&upload", admin(&a, &officer, &q).await);
                } else {
                    date_arg.extend(caller_args(p));
                    let mut by_id = vec!["--dataset".to_string(), id(i)];
                    by_id.extend(date_arg.clone());
                    note("explain --dataset", explain(&a, &by_id));
                    let q = format!("dataset={}&{caller_q}{date_q}", id(i));
                    note("admin ?dataset", admin(&a, &officer, &q).await);
                    if c.volume.is_none() {
                        tagged.extend(date_arg);
                        note("explain --origin", explain(&a, &tagged));
                        let q = format!("{tag_q}&{caller_q}{date_q}");
                        note("admin ?origin", admin(&a, &officer, &q).await);
                    }
                }
                if as_of.is_none() {
                    let tok = token(
                        &a,
                        &format!("vector-{i}"),
                        p.org(),
                        &c.destination.to_string(),
                        &c.purpose,
                    );
                    let (method, lineage) = if p.upload() {
                        ("PUT", Some(id(i)))
                    } else {
                        ("GET", None)
                    };
                    let (status, s, n) =
                        request_named(&a, method, &p.path(), &tok, lineage.as_deref()).await;
                    assert!(
                        (s.0 == "allow") == (200..300).contains(&status),
                        "{what}: {status} for {s:?}"
                    );
                    answers.push(("gateway".into(), s));
                    named.push(("gateway".into(), n));
                }
                for (tool, got) in &answers {
                    if *got != expected {
                        disagreements.push(format!(
                            "{what} as of {day}: {tool} says {got:?}, `policy test` {expected:?}"
                        ));
                    }
                }
                for (tool, got) in &named {
                    if *got != instrument {
                        disagreements.push(format!(
                            "{what} as of {day}: {tool} names instrument `{got}`, `policy test` `{instrument}`"
                        ));
                    }
                }
                checked += 1;
            }
        }
    }
    assert!(
        disagreements.is_empty(),
        "{} of {checked} questions disagree:\n{}",
        disagreements.len(),
        disagreements.join("\n")
    );
    let left = cases.len() - posed;
    assert_eq!(left, 0, "{left} vectors left out");
    assert!(
        volumes > 0 && uploads > 0,
        "{volumes} volume and {uploads} upload vectors"
    );
    eprintln!(
        "{posed} of {} vectors asked on their day and today ({checked} questions; {volumes} PIPL volume, {uploads} upload); 0 left out",
        cases.len()
    );
}

const WITHDRAWN: &str = "  - id: erased-later
    kind: dataset
    match: { prefix: /datasets/erased-later/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
    withdrawn: { date: 2999-01-01, reason: contract ends }
  - id: erased-before
    kind: dataset
    match: { prefix: /datasets/erased-before/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
    withdrawn: { date: 2026-01-15, reason: erasure request }
";

/// A dataset withdrawn from a day is allowed before it and refused from it, by every tool;
/// the live gateway refuses data withdrawn in the past and serves data withdrawn later.
#[tokio::test]
async fn a_withdrawal_decides_from_its_day_in_every_tool() {
    let a = start(Options {
        extra_catalog: WITHDRAWN.into(),
        ..Options::default()
    });
    for d in ["erased-later", "erased-before"] {
        std::fs::create_dir_all(a.gw.store.join(format!("datasets/{d}"))).unwrap();
        std::fs::write(a.gw.store.join(format!("datasets/{d}/a.csv")), "a\n").unwrap();
    }
    let officer = a.officer();
    let caller = [
        "--jurisdiction",
        "FR",
        "--org",
        "acme-de",
        "--purpose",
        "analytics",
    ];
    let ask = |dataset: &str, day: Option<&str>| {
        let mut args: Vec<String> = ["--dataset", dataset]
            .iter()
            .chain(caller.iter())
            .map(|s| s.to_string())
            .collect();
        if let Some(d) = day {
            args.extend(["--as-of".to_string(), d.to_string()]);
        }
        args
    };
    let allow = ("allow".to_string(), "eu.intra-eea".to_string());
    let withdrawn = ("deny".to_string(), "catalog.withdrawn".to_string());
    for (dataset, day, want) in [
        ("erased-later", None, &allow),
        ("erased-later", Some("2998-12-31"), &allow),
        ("erased-later", Some("2999-01-01"), &withdrawn),
        ("erased-before", Some("2026-01-14"), &allow),
        ("erased-before", Some("2026-01-15"), &withdrawn),
        ("erased-before", None, &withdrawn),
    ] {
        let v = explain(&a, &ask(dataset, day));
        assert_eq!(&said(&v, dataset), want, "explain {dataset} {day:?}: {v}");
        if want == &withdrawn {
            let reason = v["decision"]["reason"].as_str().unwrap();
            assert!(reason.contains("was withdrawn on"), "{reason}");
        }
        let q = format!(
            "dataset={dataset}&jurisdiction=FR&org=acme-de&purpose=analytics{}",
            day.map(|d| format!("&as_of={d}")).unwrap_or_default()
        );
        let v = admin(&a, &officer, &q).await;
        assert_eq!(&said(&v, dataset), want, "admin {q}: {v}");
        // By path too: the gateway's own routing and resolution.
        let path = format!("/datasets/{dataset}/a.csv");
        let mut by_path: Vec<String> = ["--path", &path]
            .iter()
            .chain(caller.iter())
            .map(|s| s.to_string())
            .collect();
        if let Some(d) = day {
            by_path.extend(["--as-of".to_string(), d.to_string()]);
        }
        assert_eq!(&said(&explain(&a, &by_path), &path), want, "{path} {day:?}");
    }
    // Today: the live gateway agrees.
    let tok = token(&a, "fr-reader", "acme-de", "FR", "analytics");
    let (status, s) = request(&a, "GET", "/datasets/erased-later/a.csv", &tok, None).await;
    assert_eq!((status, &s), (200, &allow));
    let (status, s) = request(&a, "GET", "/datasets/erased-before/a.csv", &tok, None).await;
    assert_eq!((status, &s), (451, &withdrawn));
    // Replayed by `policy what-if` with the config's catalog: each flips on its day.
    let what_if = |day: &str| -> Value {
        let out = Command::new(BIN)
            .args(["policy", "what-if", "--json", "--policies"])
            .arg(common::repo().join("policies"))
            .arg("--config")
            .arg(&a.gw.config)
            .args(["--as-of", day])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let changes = |v: &Value| -> Vec<(String, String, String)> {
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["dataset"].as_str().unwrap_or("-").to_string(),
                    c["new_effect"].as_str().unwrap().to_string(),
                    c["new_rule"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let later = what_if("2999-01-01");
    assert_eq!(
        changes(&later),
        [(
            "erased-later".to_string(),
            "deny".to_string(),
            "catalog.withdrawn".to_string()
        )],
        "{later}"
    );
    // A reader that leaves early ends what-if and audit tools quietly.
    for args in [
        vec![
            "policy",
            "what-if",
            "--policies",
            "policies",
            "--as-of",
            "2999-01-01",
        ],
        vec!["audit", "query", "--format", "table"],
        vec!["audit", "report", "--from", "2026-01-01"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(&args)
            .arg("--config")
            .arg(&a.gw.config)
            .current_dir(common::repo())
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
    let before = what_if("2026-01-14");
    assert_eq!(
        changes(&before),
        [(
            "erased-before".to_string(),
            "allow".to_string(),
            "eu.intra-eea".to_string()
        )],
        "{before}"
    );
}

/// A model's anonymity assessment counts from its day: before it the model is the personal
/// data it was trained on, in every tool; the live gateway (after the day) serves it.
#[tokio::test]
async fn an_anonymity_assessment_counts_from_its_day_in_every_tool() {
    let a = start(Options {
        extra_catalog: "  - id: assessed-bot
    kind: model
    match: { prefix: /models/assessed-bot/ }
    derived_from: [eu-customers]
    categories: [anonymous]
    anonymity_assessment: { date: 2025-06-01, assessor: dpo, reference: DPIA-9 }
"
        .into(),
        ..Options::default()
    });
    std::fs::create_dir_all(a.gw.store.join("models/assessed-bot")).unwrap();
    std::fs::write(a.gw.store.join("models/assessed-bot/m.bin"), "w").unwrap();
    let officer = a.officer();
    let mut answers = Vec::new();
    for day in ["2025-05-31", "2025-06-01"] {
        let args = [
            "--dataset",
            "assessed-bot",
            "--jurisdiction",
            "US",
            "--org",
            "acme-us",
            "--purpose",
            "analytics",
            "--as-of",
            day,
        ]
        .map(str::to_string);
        let cli = said(&explain(&a, &args), day);
        let q = format!(
            "dataset=assessed-bot&jurisdiction=US&org=acme-us&purpose=analytics&as_of={day}"
        );
        let api = said(&admin(&a, &officer, &q).await, day);
        assert_eq!(cli, api, "{day}");
        answers.push(cli);
    }
    assert_eq!(answers[0].0, "deny", "{answers:?}");
    assert_eq!(answers[1].0, "allow", "{answers:?}");
    let tok = token(&a, "us-reader", "acme-us", "US", "analytics");
    let (status, live) = request(&a, "GET", "/models/assessed-bot/m.bin", &tok, None).await;
    assert_eq!((status, &live), (200, &answers[1]));
}

/// A dated derogation counts on its days only, in every tool: consent recorded from 2020 to
/// 2999 allows a transfer to Australia today, and as of 2019 nothing does.
#[tokio::test]
async fn a_dated_derogation_counts_on_its_days_in_every_tool() {
    let a = start(Options {
        extra_catalog: "  - id: consented
    kind: dataset
    match: { prefix: /datasets/consented/ }
    origins: [DE]
    categories: [personal]
    purposes: [analytics]
    derogations: [{ kind: explicit-consent, from: 2020-01-01, until: 2999-12-31 }]
"
        .into(),
        extra_keys: "  jurisdiction_claim: trust\n".into(),
        ..Options::default()
    });
    std::fs::create_dir_all(a.gw.store.join("datasets/consented")).unwrap();
    std::fs::write(a.gw.store.join("datasets/consented/a.csv"), "a\n").unwrap();
    let officer = a.officer();
    let consent = (
        "allow".to_string(),
        "eu.derogation.explicit-consent".to_string(),
    );
    let none = ("deny".to_string(), "eu.chapter-v.no-basis".to_string());
    for (day, want) in [
        (Some("2019-12-31"), &none),
        (Some("2020-01-01"), &consent),
        (Some("2999-12-31"), &consent),
        (Some("3000-01-01"), &none),
        (None, &consent),
    ] {
        let mut args = [
            "--dataset",
            "consented",
            "--jurisdiction",
            "AU",
            "--org",
            "acme-au",
            "--purpose",
            "analytics",
        ]
        .map(str::to_string)
        .to_vec();
        let mut q = "dataset=consented&jurisdiction=AU&org=acme-au&purpose=analytics".to_string();
        if let Some(d) = day {
            args.extend(["--as-of".to_string(), d.to_string()]);
            q.push_str(&format!("&as_of={d}"));
        }
        assert_eq!(&said(&explain(&a, &args), "cli"), want, "explain {day:?}");
        assert_eq!(
            &said(&admin(&a, &officer, &q).await, "admin"),
            want,
            "admin {day:?}"
        );
    }
    let tok = token(&a, "au-reader", "acme-au", "AU", "analytics");
    let (status, live) = request(&a, "GET", "/datasets/consented/a.csv", &tok, None).await;
    assert_eq!((status, &live), (200, &consent));
}

/// PIPL volumes are counted alike by `policy explain` (from the trail) and the admin API
/// (its live counter for this year, the trail for another): after 60,000 individuals are
/// exported, another 50,000 need a standard contract this year, while a question about
/// last year counts nobody.
#[tokio::test]
async fn pipl_volumes_count_alike_in_explain_and_the_admin_api() {
    let keep = tempfile::tempdir().unwrap();
    let mut reg =
        std::fs::read_to_string(common::repo().join("examples/quickstart/registry.yaml")).unwrap();
    reg.push_str(
        "
  - id: acme-cn
    name: Acme China (exporting data handler, not a CIIO)
    country: CN
  - id: plain-au
    name: Importer without a PIPL mechanism
    country: AU
",
    );
    let registry = keep.path().join("registry.yaml");
    std::fs::write(&registry, reg).unwrap();
    let up = common::Upstream::start(std::sync::Arc::new(|_s: &common::Seen| {
        http::Response::builder()
            .status(200)
            .body(bytes::Bytes::from_static(b"id\n1\n"))
            .unwrap()
    }))
    .await;
    let a = start(Options {
        extra_upstreams: format!(
            "  - name: cn-store\n    url: {}\n    jurisdiction: CN\n    operator: acme-cn\n",
            up.url()
        ),
        extra_routes: "  - prefix: /cn/\n    upstream: cn-store\n".into(),
        extra_catalog: "  - id: cn-a
    kind: dataset
    match: { prefix: /cn/a/ }
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 60000
  - id: cn-b
    kind: dataset
    match: { prefix: /cn/b/ }
    origins: [CN]
    categories: [personal]
    purposes: [training]
    subjects: 50000
"
        .into(),
        registry: Some(registry),
        ..Options::default()
    });
    let officer = a.officer();
    let tok = token(&a, "pipeline", "plain-au", "AU", "training");
    let (status, first) = request(&a, "GET", "/cn/a/part-1.csv", &tok, None).await;
    assert_eq!(
        first,
        ("allow".to_string(), "cn.volume-exempt".to_string()),
        "{status}"
    );
    let this_year = bordergate::pipl::year_of(time::OffsetDateTime::now_utc());
    for (day, want) in [
        // Not the 31st: the PIPL year is China's (UTC+8), which starts on 31 December at
        // 16:00 UTC.
        (format!("{this_year}-12-30"), ("deny", "cn.art38.no-basis")),
        (
            format!("{}-06-01", this_year - 1),
            ("allow", "cn.volume-exempt"),
        ),
    ] {
        let want = (want.0.to_string(), want.1.to_string());
        let args = [
            "--dataset",
            "cn-b",
            "--jurisdiction",
            "AU",
            "--org",
            "plain-au",
            "--purpose",
            "training",
            "--as-of",
            &day,
        ]
        .map(str::to_string);
        let cli = explain(&a, &args);
        assert_eq!(said(&cli, &day), want, "explain {day}: {cli}");
        let q = format!("dataset=cn-b&jurisdiction=AU&org=plain-au&purpose=training&as_of={day}");
        let api = admin(&a, &officer, &q).await;
        assert_eq!(said(&api, &day), want, "admin {day}: {api}");
        assert_eq!(cli["volume"], api["volume"], "{day}");
    }
}

/// An upload with its declared lineage, asked by path, by dataset-free tags sent to the
/// upstream, on the admin API and as a real PUT: one answer.
#[tokio::test]
async fn an_upload_with_lineage_gets_one_answer() {
    let a = start(Options::default());
    let officer = a.officer();
    for (lineage, want) in [
        ("eu-customers", ("deny", "eu.chapter-v.no-basis")),
        ("public-wiki", ("allow", "eu.out-of-scope")),
    ] {
        let want = (want.0.to_string(), want.1.to_string());
        let caller = [
            "--jurisdiction",
            "DE",
            "--org",
            "acme-de",
            "--purpose",
            "analytics",
        ];
        let mut by_path: Vec<String> = [
            "--path",
            "/registry/us/model.bin",
            "--upload",
            "--lineage",
            lineage,
        ]
        .iter()
        .chain(caller.iter())
        .map(|s| s.to_string())
        .collect();
        let v = explain(&a, &by_path);
        assert_eq!(said(&v, lineage), want, "{v}");
        assert_eq!(v["transfer"]["destination"], "US");
        assert_eq!(v["transfer"]["importer"], "acme-us");
        by_path.extend(["--as-of".to_string(), "2026-03-01".to_string()]);
        assert_eq!(said(&explain(&a, &by_path), lineage), want);
        let q = format!(
            "path=/registry/us/model.bin&upload=true&lineage={lineage}&jurisdiction=DE&org=acme-de&purpose=analytics"
        );
        assert_eq!(said(&admin(&a, &officer, &q).await, lineage), want);
        let tok = token(
            &a,
            &format!("uploader-{lineage}"),
            "acme-de",
            "DE",
            "analytics",
        );
        let (status, s) = request(
            &a,
            "PUT",
            &format!("/registry/us/{lineage}.bin"),
            &tok,
            Some(lineage),
        )
        .await;
        assert_eq!(s, want, "PUT {lineage}: {status}");
    }
    // An upload that declares nothing is refused across the border by every tool.
    let v = explain(
        &a,
        &[
            "--path",
            "/registry/us/x.bin",
            "--upload",
            "--jurisdiction",
            "DE",
            "--org",
            "acme-de",
            "--purpose",
            "analytics",
        ]
        .map(str::to_string),
    );
    assert_eq!(v["decision"]["rule"], "upload.lineage-undeclared");
    // Tags given directly, sent to an upstream by name: the upstream's jurisdiction is the
    // destination, its operator the importer.
    let v = explain(
        &a,
        &[
            "--origin",
            "DE",
            "--category",
            "personal",
            "--upload",
            "--upstream",
            "us-registry",
            "--jurisdiction",
            "DE",
            "--org",
            "acme-de",
            "--purpose",
            "analytics",
        ]
        .map(str::to_string),
    );
    assert_eq!(v["decision"]["rule"], "eu.chapter-v.no-basis", "{v}");
    assert_eq!(v["transfer"]["destination"], "US");
    let q = "origin=DE&category=personal&upload=true&upstream=us-registry&jurisdiction=DE&org=acme-de&purpose=analytics";
    let w = admin(&a, &officer, q).await;
    assert_eq!(w["decision"]["rule"], v["decision"]["rule"]);
    // No route to `eu-store` accepts uploads: refused as the gateway refuses a PUT there.
    let tagged = |upstream: &str| -> Vec<String> {
        [
            "--origin",
            "DE",
            "--upload",
            "--upstream",
            upstream,
            "--jurisdiction",
            "DE",
            "--org",
            "acme-de",
            "--purpose",
            "analytics",
        ]
        .map(str::to_string)
        .to_vec()
    };
    let v = explain(&a, &tagged("eu-store"));
    assert_eq!(v["status"], 405, "{v}");
    let tok = token(&a, "uploader-eu", "acme-de", "DE", "analytics");
    let (status, s) = request(
        &a,
        "PUT",
        "/datasets/eu-customers/new.csv",
        &tok,
        Some("eu-customers"),
    )
    .await;
    assert_eq!(
        (status, s.1.as_str()),
        (405, v["decision"]["rule"].as_str().unwrap())
    );
    // An upstream no route leads to, and an upload of tags with no upstream, cannot be asked.
    for args in [
        tagged("nowhere"),
        tagged("eu-store")
            .into_iter()
            .filter(|a| a != "--upstream" && a != "eu-store")
            .collect(),
    ] {
        let out = Command::new(BIN)
            .args(["policy", "explain", "--config"])
            .arg(&a.gw.config)
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("upstream"), "{err}");
    }
}

/// Tags given directly decide as a catalog entry with those tags does; `--derived-from`
/// adds the tags of what the data came from; asked through the gateway's snapshot too.
#[tokio::test]
async fn tags_given_directly_decide_like_the_catalog_entry_they_describe() {
    let a = start(Options::default());
    let officer = a.officer();
    let caller = [
        "--jurisdiction",
        "US",
        "--org",
        "acme-us",
        "--purpose",
        "research",
    ];
    let with = |extra: &[&str]| -> Vec<String> {
        extra
            .iter()
            .chain(caller.iter())
            .map(|s| s.to_string())
            .collect()
    };
    // eu-clinical: FR, personal + health, research.
    let by_id = said(&explain(&a, &with(&["--dataset", "eu-clinical"])), "id");
    let by_tags = said(
        &explain(
            &a,
            &with(&[
                "--origin",
                "FR",
                "--category",
                "personal,health",
                "--permits",
                "research",
            ]),
        ),
        "tags",
    );
    assert_eq!(by_id, by_tags);
    let v = admin(
        &a,
        &officer,
        "origin=FR&category=personal,health&permits=research&jurisdiction=US&org=acme-us&purpose=research",
    )
    .await;
    assert_eq!(said(&v, "admin"), by_id);
    let tok = token(&a, "us-researcher", "acme-us", "US", "research");
    let (_, live) = request(&a, "GET", "/datasets/eu-clinical/records.csv", &tok, None).await;
    assert_eq!(live, by_id);
    // Public data derived from eu-clinical carries its tags.
    let public = said(
        &explain(&a, &with(&["--origin", "US", "--category", "public"])),
        "public",
    );
    assert_eq!(public, ("allow".to_string(), "us.out-of-scope".to_string()));
    let derived = explain(
        &a,
        &with(&[
            "--origin",
            "US",
            "--category",
            "public",
            "--derived-from",
            "eu-clinical",
        ]),
    );
    assert_eq!(said(&derived, "derived").0, "deny", "{derived}");
    assert_eq!(derived["transfer"]["tags"]["lineage"][0], "eu-clinical");
    // Flags that describe tags need `--origin`; a bad date names the flag's format.
    let out = Command::new(BIN)
        .args(["policy", "explain", "--config"])
        .arg(&a.gw.config)
        .args(with(&["--dataset", "eu-clinical", "--category", "public"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["policy", "explain", "--config"])
        .arg(&a.gw.config)
        .args(with(&["--dataset", "eu-clinical", "--as-of", "2026-13-01"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expected YYYY-MM-DD"));
}

/// `bordergate policy … | head -1`: a reader that leaves early ends the command quietly.
#[test]
fn a_closed_pipe_ends_the_policy_tools_quietly() {
    let repo = common::repo();
    let cases: [&[&str]; 4] = [
        &["policy", "test"],
        &[
            "policy",
            "explain",
            "--dataset",
            "eu-customers",
            "--jurisdiction",
            "US",
            "--org",
            "acme-us",
            "--purpose",
            "analytics",
        ],
        &[
            "policy",
            "explain",
            "--json",
            "--origin",
            "DE",
            "--jurisdiction",
            "US",
            "--org",
            "acme-us",
            "--purpose",
            "analytics",
        ],
        &["policy", "diff", "policies", "policies"],
    ];
    for args in cases {
        // The read end is closed before the command writes: every write is EPIPE.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .current_dir(&repo)
            .stdout(writer)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {err}");
    }
}

/// `policy explain` flags asking about `dataset` for `org` in `jurisdiction` (purpose
/// analytics), as of `day` when given.
fn dataset_args(dataset: &str, jurisdiction: &str, org: &str, day: Option<&str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "--dataset",
        dataset,
        "--jurisdiction",
        jurisdiction,
        "--org",
        org,
        "--purpose",
        "analytics",
    ]
    .map(str::to_string)
    .to_vec();
    if let Some(d) = day {
        args.extend(["--as-of".to_string(), d.to_string()]);
    }
    args
}

/// What a refusal names: the status, the `Bordergate-Instrument` header, the problem body's
/// `instrument.id` and the decision record's.
async fn refusal_named(a: &Admined, path: &str, token: &str) -> (u16, String, Value, Value) {
    let r =
        a.gw.client()
            .get(a.gw.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
    let status = r.status().as_u16();
    let header = r
        .headers()
        .get("bordergate-instrument")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body: Value = r.json().await.unwrap();
    let record = a.gw.decision(&id);
    (status, header, body, record)
}

/// Refusals the engine decides itself — no basis, a scope over recipients that the
/// importer's undeclared regime cannot meet, withdrawn data, a jurisdiction claim the
/// registry contradicts — name the instrument they rest on (the GDPR) in the header, the
/// body and the record, and `policy explain` names it too.
#[tokio::test]
async fn refusals_the_engine_decides_name_their_instrument() {
    let a = start(Options {
        extra_catalog: WITHDRAWN.into(),
        ..Options::default()
    });
    std::fs::create_dir_all(a.gw.store.join("datasets/erased-before")).unwrap();
    std::fs::write(a.gw.store.join("datasets/erased-before/a.csv"), "a\n").unwrap();
    let gdpr = "Regulation (EU) 2016/679";
    for (path, org, j, rule, status) in [
        (CUSTOMERS, "acme-us", "US", "eu.chapter-v.no-basis", 451),
        // Canada's adequacy decision covers PIPEDA organisations; this one declares none.
        (CUSTOMERS, "unlisted-ca", "CA", "eu.chapter-v.no-basis", 451),
        (
            "/datasets/erased-before/a.csv",
            "acme-de",
            "FR",
            "catalog.withdrawn",
            451,
        ),
        // The registry places acme-us in the US.
        (
            CUSTOMERS,
            "acme-us",
            "DE",
            "auth.jurisdiction-mismatch",
            403,
        ),
    ] {
        let tok = token(&a, "reader", org, j, "analytics");
        let (got, header, body, record) = refusal_named(&a, path, &tok).await;
        let what = format!("{path} for {org} in {j}");
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(record["rule"], rule, "{what}: {record}");
        assert_eq!(header, "eu.gdpr", "{what}");
        assert_eq!(body["instrument"]["id"], "eu.gdpr", "{what}: {body}");
        assert_eq!(body["instrument"]["kind"], "statute", "{what}: {body}");
        assert!(
            body["instrument"]["reference"]
                .as_str()
                .unwrap()
                .contains(gdpr),
            "{what}: {body}"
        );
        assert_eq!(record["instrument"], body["instrument"], "{what}: {record}");
        let dataset = path.split('/').nth(2).unwrap();
        let v = explain(&a, &dataset_args(dataset, j, org, None));
        assert_eq!(v["decision"]["rule"], rule, "{what}: {v}");
        assert_eq!(instrument_of(&v), "eu.gdpr", "{what}: {v}");
    }
}

/// A model whose anonymity assessment is dated after today is, today, the personal data it
/// was trained on. A public mirror's answer naming that model by its content digest is
/// decided again on the upstream's answer (the post-forward re-decision): with the catalog
/// as of the request's day, as the first decision is, so the re-decision refuses what the
/// undated catalog (assessment in force) would have let through.
#[tokio::test]
async fn the_re_decision_on_the_upstreams_answer_takes_the_catalog_as_of_the_requests_day() {
    let weights: &[u8] = b"weights of a model trained on eu-customers";
    let hex: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, weights)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let etag = format!("\"{hex}\"");
    let up = common::Upstream::start(std::sync::Arc::new(move |_s: &common::Seen| {
        http::Response::builder()
            .status(200)
            .header("etag", etag.as_str())
            .body(bytes::Bytes::from_static(b"weights"))
            .unwrap()
    }))
    .await;
    let a = start(Options {
        extra_upstreams: format!(
            "  - name: mirror\n    url: {}\n    jurisdiction: IE\n",
            up.url()
        ),
        extra_routes: "  - prefix: /mirror/\n    upstream: mirror\n".into(),
        extra_catalog: format!(
            "  - id: public-mirror
    kind: dataset
    match: {{ prefix: /mirror/ }}
    origins: [IE]
    categories: [public]
  - id: later-assessed-bot
    kind: model
    match: {{ prefix: /models/later-assessed-bot/ }}
    derived_from: [eu-customers]
    categories: [anonymous]
    anonymity_assessment: {{ date: 2999-01-01, assessor: dpo, reference: DPIA-10 }}
    digests: [\"sha256:{hex}\"]
"
        ),
        ..Options::default()
    });
    // Before any answer, the mirror's public data is allowed to a US organisation with no
    // mechanism; the answer names the model, which today carries eu-customers' tags.
    let tok = token(&a, "mirror-reader", "acme-us", "US", "analytics");
    let r =
        a.gw.client()
            .get(a.gw.url("/mirror/weights.bin"))
            .bearer_auth(&tok)
            .send()
            .await
            .unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    let body = r.text().await.unwrap();
    assert_eq!(status, 451, "{body}");
    assert!(!body.contains("weights"), "{body}");
    assert_eq!(a.gw.decision(&id)["decision"], "allow");
    let c = a.gw.completion(&id).await;
    assert_eq!(c["outcome"], "refused", "{c}");
    assert_eq!(c["recheck"]["decision"], "deny", "{c}");
    assert_eq!(c["recheck"]["rule"], "eu.chapter-v.no-basis", "{c}");
    // The model itself, asked directly as of today and as of the assessment's day.
    let ask = |day: Option<&str>| {
        let args = dataset_args("later-assessed-bot", "US", "acme-us", day);
        said(&explain(&a, &args), "model")
    };
    assert_eq!(ask(None).1, "eu.chapter-v.no-basis");
    assert_eq!(ask(Some("2999-01-01")).0, "allow");
}
