//! `bordergate policy explain | what-if | diff`: argument handling and output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::fmt::Write as _;

use crate::audit::source::{PgStore, Source, is_postgres_url};
use crate::catalog::Catalog;
use crate::model::{Caller, Country, Direction, Tags, check_purpose};
use crate::policy::{PolicySet, diff as pdiff, explain as pexplain, whatif};
use crate::snapshot::Routes;
use crate::transfer::question::{self, About, Answer, Question};

use super::emit;

/// What `policy explain` decides: a dataset, a request path, or tags given directly.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("subject").required(true).args(["dataset", "path", "origin"])))]
pub struct Args {
    /// Catalog id of the dataset or model.
    #[arg(long)]
    dataset: Option<String>,
    /// A request path, routed and resolved in the catalog exactly as the gateway does.
    #[arg(long)]
    path: Option<String>,
    /// Tags given directly: the data's origin countries (comma-separated ISO codes).
    #[arg(long, value_delimiter = ',')]
    origin: Option<Vec<String>>,
    /// With `--origin`: the data's categories (comma-separated; default `personal`).
    #[arg(long, value_delimiter = ',', requires = "origin")]
    category: Option<Vec<String>>,
    /// With `--origin`: the purposes the data permits (comma-separated; default any).
    #[arg(long, value_delimiter = ',', requires = "origin")]
    permits: Option<Vec<String>>,
    /// With `--origin`: Art. 49(1) derogations recorded on the data (comma-separated).
    #[arg(long, value_delimiter = ',', requires = "origin")]
    derogation: Vec<String>,
    /// Decide an upload (PUT/POST) instead of a download: to `--path`, or of `--dataset` or
    /// the tags given to `--upstream` (default: the route of the dataset's prefix).
    #[arg(long)]
    upload: bool,
    /// Catalog ids the upload declares it was derived from (comma-separated); with
    /// `--origin`, the entries the data was derived from (it carries their tags too).
    #[arg(long, visible_alias = "derived-from", value_delimiter = ',')]
    lineage: Vec<String>,
    /// The upstream (config name) that receives the upload or serves the data, when no
    /// `--path` says: its jurisdiction is an upload's destination, its operator the importer.
    #[arg(long, conflicts_with = "path")]
    upstream: Option<String>,
    /// Where the caller will process the data (ISO country code).
    #[arg(long)]
    jurisdiction: String,
    /// The caller's organisation (registry id).
    #[arg(long)]
    org: String,
    /// The caller's purpose (a token's `purpose` claim).
    #[arg(long)]
    purpose: String,
    /// Decide as of this day (YYYY-MM-DD; default today). `--date` is an older spelling.
    #[arg(long, alias = "date")]
    as_of: Option<String>,
    /// PIPL exporter (registry id) when neither the catalog entry nor the route's upstream
    /// names one; the volume considered is counted from the config's audit log.
    #[arg(long)]
    exporter: Option<String>,
    /// Gateway config whose catalog, routes, policies and registry are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WhatIfArgs {
    /// The audit log to replay (a file, a directory of segments, or a `postgres://…` URL);
    /// default: the log `--config` writes, else `--postgres`.
    #[arg(long, required_unless_present_any = ["postgres", "config"])]
    audit: Option<PathBuf>,
    /// Replay the PostgreSQL store at this connection string (URL or `key=value`).
    #[arg(long, env = "BORDERGATE_AUDIT_POSTGRES", hide_env_values = true)]
    postgres: Option<String>,
    /// The records table of `--postgres` or a `postgres://…` `--audit`.
    #[arg(long, default_value = "bordergate_audit")]
    table: String,
    /// The policy directory to replay against.
    #[arg(long)]
    policies: PathBuf,
    /// Registry (default: registry.yaml in the policy directory, else the config's).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Decide every record as of this day instead of the day it was recorded.
    #[arg(long)]
    as_of: Option<String>,
    /// Gateway config, for the operators of upload upstreams, the catalog's withdrawals
    /// (decided from their day) and the log it writes.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Show at most this many changed transfers in detail.
    #[arg(long, default_value_t = 50)]
    limit: usize,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The old policy directory.
    old: PathBuf,
    /// The new policy directory.
    new: PathBuf,
    /// Registry for both sets (default: examples/quickstart/registry.yaml); the grid's
    /// importer is synthetic, so it matters little.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Compare as of this day (YYYY-MM-DD; default today). `--date` is an older spelling.
    #[arg(long, alias = "date")]
    as_of: Option<String>,
    /// Only these destinations (comma-separated codes; default: every country).
    #[arg(long, value_delimiter = ',')]
    destinations: Option<Vec<String>>,
    #[arg(long)]
    json: bool,
}

fn parse_date(s: Option<&str>) -> Result<time::Date, ExitCode> {
    match s {
        None => Ok(time::OffsetDateTime::now_utc().date()),
        Some(s) => {
            let fmt = time::macros::format_description!("[year]-[month]-[day]");
            time::Date::parse(s, fmt).map_err(|_| {
                eprintln!(
                    "error: invalid date `{}` (expected YYYY-MM-DD)",
                    s.escape_default()
                );
                ExitCode::from(2)
            })
        }
    }
}

fn load_set(dir: &Path, registry: &Path) -> Result<PolicySet, ExitCode> {
    PolicySet::load(dir, registry).map_err(|d| {
        eprintln!("{d}");
        eprintln!(
            "error: {} problem(s) found in `{}`",
            d.0.len(),
            dir.display()
        );
        ExitCode::from(2)
    })
}

fn print_json<T: serde::Serialize>(v: &T) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => emit(&format!("{s}\n")),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

pub fn explain(a: Args) -> ExitCode {
    match explain_inner(a) {
        Ok(c) | Err(c) => c,
    }
}

fn usage(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// The tags of `--origin`, `--category`, `--permits`, `--derogation`.
fn given_tags(a: &Args) -> Result<Tags, ExitCode> {
    Tags::given(
        a.origin.as_deref().unwrap_or_default(),
        a.category.as_deref(),
        a.permits.as_deref(),
        &a.derogation,
    )
    .map_err(usage)
}

fn explain_inner(a: Args) -> Result<ExitCode, ExitCode> {
    let cfg = super::load_config(&super::config_path(a.config.clone()))?;
    let date = parse_date(a.as_of.as_deref())?;
    let dest = Country::parse(&a.jurisdiction).map_err(usage)?;
    check_purpose(&a.purpose).map_err(usage)?;
    let catalog = Catalog::load(&cfg.catalog).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(2)
    })?;
    let mut set = load_set(&cfg.policies, &cfg.registry_path())?;
    if set.organisation(&a.org).is_none() {
        eprintln!(
            "warning: `{}` is not in the transfer-mechanism registry; it holds no mechanism",
            a.org.escape_default()
        );
    }
    if a.origin.is_none()
        && (a.category.is_some() || a.permits.is_some() || !a.derogation.is_empty())
    {
        return Err(usage(
            "`--category`, `--permits` and `--derogation` describe tags given directly: give them with `--origin`",
        ));
    }
    if a.upload && a.path.is_none() && a.dataset.is_none() && a.upstream.is_none() {
        return Err(usage(
            "`--upload` of tags given directly needs the upstream it goes to: give `--upstream NAME`",
        ));
    }
    let about = match (&a.path, &a.dataset) {
        (Some(p), _) => About::Path(p.clone()),
        (None, Some(id)) => About::Dataset(id.clone()),
        (None, None) => About::Tags(given_tags(&a)?),
    };
    let q = Question {
        about,
        caller: Caller {
            sub: "policy-explain".into(),
            org: a.org.clone(),
            jurisdiction: dest,
            purpose: a.purpose.clone(),
            claimed_jurisdiction: None,
        },
        direction: if a.upload {
            Direction::Upload
        } else {
            Direction::Download
        },
        lineage: a.lineage.clone(),
        upstream: a.upstream.clone(),
        as_of: date,
        exporter: a.exporter.clone(),
        jurisdiction_claim: cfg.auth.jurisdiction_claim,
    };
    // PIPL volumes: counted as the gateway counts them at start-up (the audit trail, or the
    // fleet's ledger on the PostgreSQL sink).
    let counter = crate::pipl::ExportCounter::new();
    let counted = match (&cfg.audit.sink, &cfg.audit.postgres) {
        (crate::config::AuditSinkKind::Postgres, Some(pg)) => {
            seed_from_ledger(&counter, pg, date.year())
        }
        _ => crate::pipl::seed_from_trail(
            &counter,
            &catalog,
            &crate::snapshot::operators(&cfg),
            &cfg.audit.path,
            date.year(),
        )
        .map(|_| ()),
    };
    if let Err(err) = counted {
        eprintln!("warning: PIPL volumes not counted from the audit log: {err}");
    }
    let routes = Routes::from_config(&cfg);
    let answer = question::answer(&q, &catalog, &routes, &mut set, &counter)
        .map_err(|e| usage(format!("{e} (catalog `{}`)", cfg.catalog.display())))?;
    if a.json {
        return Ok(print_json(&question::to_json(&answer)));
    }
    let (t, e) = match &answer {
        Answer::Refused(p) => {
            let instrument = p.instrument.as_deref().map_or_else(String::new, |i| {
                format!("instrument: {}\n", crate::policy::instrument::summary(i))
            });
            return Ok(emit(&format!(
                "decision: Deny (refused before classification)\nrule:     {}\nstatus:   {}\nreason:   {}\n{instrument}",
                p.record_rule(),
                p.status().as_u16(),
                p.detail
            )));
        }
        Answer::Explained {
            transfer,
            explanation,
        } => (transfer, explanation),
    };
    let mut text = String::new();
    let _ = writeln!(
        text,
        "dataset:  {} (origins {}, categories {})",
        t.dataset.as_deref().unwrap_or("(tags given)"),
        t.tags
            .origins
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        t.tags
            .categories
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        text,
        "request:  {} by org `{}` in {dest} to {}, purpose `{}`, as of {date}",
        match t.direction {
            Direction::Download => "download",
            Direction::Upload => "upload",
        },
        a.org,
        t.destination,
        a.purpose
    );
    text.push_str(&pexplain::render(e));
    Ok(emit(&text))
}

pub fn what_if(a: WhatIfArgs) -> ExitCode {
    match what_if_inner(a) {
        Ok(c) | Err(c) => c,
    }
}

fn what_if_inner(a: WhatIfArgs) -> Result<ExitCode, ExitCode> {
    let as_of = match &a.as_of {
        Some(s) => Some(parse_date(Some(s))?),
        None => None,
    };
    let cfg = match &a.config {
        Some(p) => Some(super::load_config(p)?),
        None => None,
    };
    let registry = a
        .registry
        .clone()
        .or_else(|| {
            let r = a.policies.join("registry.yaml");
            r.is_file().then_some(r)
        })
        .or_else(|| cfg.as_ref().map(|c| c.registry_path()))
        .unwrap_or_else(|| PathBuf::from("examples/quickstart/registry.yaml"));
    let set = load_set(&a.policies, &registry)?;
    let operators: HashMap<String, String> = cfg
        .iter()
        .flat_map(|c| c.upstreams.iter())
        .filter_map(|u| Some((u.name.clone(), u.operator.clone()?)))
        .collect();
    // The catalog's withdrawals are decided as the gateway decides them, on their day.
    let withdrawals = match &cfg {
        Some(c) => crate::transfer::withdrawals(&Catalog::load(&c.catalog).map_err(|d| {
            eprintln!("{d}");
            ExitCode::from(2)
        })?),
        None => HashMap::new(),
    };
    let opts = whatif::Options {
        as_of,
        operators,
        keep: a.limit,
        threads: 2,
        withdrawals,
    };
    let started = std::time::Instant::now();
    let fail = |e: String| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    let store = |conn: &str| {
        Source::Postgres(PgStore {
            conn: conn.to_owned(),
            table: a.table.clone(),
        })
    };
    // `--audit` wins, then the log of `--config`, then `--postgres` (maybe from the environment).
    let source = match (&a.audit, &a.config, &a.postgres) {
        (Some(p), _, _) => match p.to_str().filter(|s| is_postgres_url(s)) {
            Some(url) => store(url),
            None => Source::Files(vec![p.clone()]),
        },
        (None, Some(c), _) => match &cfg {
            Some(cfg) => Source::from_config(&cfg.audit)
                .map_err(|e| fail(format!("`{}`: {e}", c.display())))?,
            None => return Err(fail(format!("`{}` was not loaded", c.display()))),
        },
        (None, None, Some(url)) => store(url),
        (None, None, None) => {
            return Err(fail(
                "name the log with `--audit`, `--config` or `--postgres`".into(),
            ));
        }
    };
    // The file reader's and the store's errors name what they could not read.
    let log = source.reader().map_err(fail)?;
    let r = whatif::replay_reader(&set, log, &opts).map_err(|e| fail(e.to_string()))?;
    if a.json {
        return Ok(print_json(&r));
    }
    let code = emit(&whatif::render(&r));
    eprintln!("replayed in {:.2?}", started.elapsed());
    Ok(code)
}

pub fn diff(a: DiffArgs) -> ExitCode {
    match diff_inner(a) {
        Ok(c) | Err(c) => c,
    }
}

fn diff_inner(a: DiffArgs) -> Result<ExitCode, ExitCode> {
    let date = parse_date(a.as_of.as_deref())?;
    let registry = a
        .registry
        .clone()
        .unwrap_or_else(|| PathBuf::from("examples/quickstart/registry.yaml"));
    let mut old = load_set(&a.old, &registry)?;
    let mut new = load_set(&a.new, &registry)?;
    let dests = match &a.destinations {
        Some(l) => Some(
            l.iter()
                .map(|c| Country::parse(c.trim()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                })?,
        ),
        None => None,
    };
    let r = pdiff::diff(&mut old, &mut new, date, dests.as_deref());
    if a.json {
        return Ok(print_json(&r));
    }
    Ok(emit(&pdiff::render(&r)))
}

/// Counts `year` from the PIPL ledger next to the PostgreSQL audit table `pg`.
fn seed_from_ledger(
    counter: &crate::pipl::ExportCounter,
    pg: &crate::config::PostgresAuditConfig,
    year: i32,
) -> Result<(), String> {
    let conn = pg.connection_string()?;
    let ledger = crate::pipl::pg::Ledger::new(&conn, &pg.table, None)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(ledger.seed(counter, year))
        .map(|_| ())
        .map_err(|e| e.to_string())
}
