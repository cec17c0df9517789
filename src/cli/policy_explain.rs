//! `bordergate policy explain | what-if | diff`: argument handling and output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::catalog::Catalog;
use crate::model::{Country, Direction, check_purpose};
use crate::policy::{PolicySet, Query, diff as pdiff, explain as pexplain, whatif};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Catalog id of the dataset or model.
    #[arg(long)]
    dataset: String,
    /// Where the data would be processed (ISO country code).
    #[arg(long)]
    jurisdiction: String,
    /// The importing organisation (registry id).
    #[arg(long)]
    org: String,
    #[arg(long)]
    purpose: String,
    /// Decide as of this day (YYYY-MM-DD; default today).
    #[arg(long)]
    date: Option<String>,
    /// PIPL exporter (registry id) when the catalog entry names none; the volume
    /// considered is counted from the config's audit log.
    #[arg(long)]
    exporter: Option<String>,
    /// Gateway config whose catalog, policies and registry are used.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args, Debug)]
pub struct WhatIfArgs {
    /// The audit log to replay.
    #[arg(long)]
    audit: PathBuf,
    /// The policy directory to replay against.
    #[arg(long)]
    policies: PathBuf,
    /// Registry (default: registry.yaml in the policy directory, else the config's).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Decide every record as of this day instead of the day it was recorded.
    #[arg(long)]
    as_of: Option<String>,
    /// Gateway config, for the operators of upload upstreams.
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
    /// Compare as of this day (default today).
    #[arg(long)]
    date: Option<String>,
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
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
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

fn explain_inner(a: Args) -> Result<ExitCode, ExitCode> {
    let cfg = super::load_config(&super::config_path(a.config))?;
    let date = parse_date(a.date.as_deref())?;
    let dest = Country::parse(&a.jurisdiction).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    check_purpose(&a.purpose).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })?;
    let catalog = Catalog::load(&cfg.catalog).map_err(|d| {
        eprintln!("{d}");
        ExitCode::from(2)
    })?;
    let entry = catalog.get(&a.dataset).ok_or_else(|| {
        eprintln!(
            "error: unknown catalog id `{}` in `{}`",
            a.dataset.escape_default(),
            cfg.catalog.display()
        );
        ExitCode::from(2)
    })?;
    let mut set = load_set(&cfg.policies, &cfg.registry_path())?;
    if set.organisation(&a.org).is_none() {
        eprintln!(
            "warning: `{}` is not in the transfer-mechanism registry; it holds no mechanism",
            a.org.escape_default()
        );
    }
    if let Some(w) = &entry.withdrawn {
        eprintln!(
            "note: `{}` was withdrawn on {} ({}); the gateway refuses it before policies are asked",
            entry.id, w.date, w.reason
        );
    }
    // PIPL volumes: counted from the audit trail as the gateway would at start-up.
    let year = date.year();
    let export = crate::pipl::Export::of(
        &catalog,
        &entry.tags,
        dest,
        Direction::Download,
        Some(&entry.id),
        a.exporter.as_deref(),
        None,
        year,
    );
    let volume = export.as_ref().map(|e| {
        let counter = crate::pipl::ExportCounter::new();
        let operators: HashMap<String, String> = cfg
            .upstreams
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.operator.clone()?)))
            .collect();
        if (cfg.audit.path.is_file() || cfg.audit.path.is_dir())
            && let Err(err) = counter.seed(
                std::slice::from_ref(&cfg.audit.path),
                &catalog,
                &operators,
                year,
            )
        {
            eprintln!("warning: PIPL volumes not counted from the audit log: {err}");
        }
        counter.volume(e)
    });
    let q = Query {
        tags: &entry.tags,
        purpose: &a.purpose,
        importer: Some(&a.org),
        destination: dest,
        direction: Direction::Download,
        date,
        volume: volume.as_ref(),
    };
    let e = pexplain::explain(&mut set, &q);
    if a.json {
        return Ok(print_json(&e));
    }
    println!(
        "dataset:  {} (origins {:?}, categories {:?})",
        entry.id,
        entry.tags.origins,
        entry
            .tags
            .categories
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
    );
    println!(
        "request:  org `{}` in {dest}, purpose `{}`, as of {date}",
        a.org, a.purpose
    );
    print!("{}", pexplain::render(&e));
    Ok(ExitCode::SUCCESS)
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
    let opts = whatif::Options {
        as_of,
        operators,
        keep: a.limit,
        threads: 2,
    };
    let started = std::time::Instant::now();
    let r = whatif::replay(&set, &a.audit, &opts).map_err(|e| {
        eprintln!("error: cannot read `{}`: {e}", a.audit.display());
        ExitCode::from(2)
    })?;
    if a.json {
        return Ok(print_json(&r));
    }
    print!("{}", whatif::render(&r));
    eprintln!("replayed in {:.2?}", started.elapsed());
    Ok(ExitCode::SUCCESS)
}

pub fn diff(a: DiffArgs) -> ExitCode {
    match diff_inner(a) {
        Ok(c) | Err(c) => c,
    }
}

fn diff_inner(a: DiffArgs) -> Result<ExitCode, ExitCode> {
    let date = parse_date(a.date.as_deref())?;
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
    print!("{}", pdiff::render(&r));
    Ok(ExitCode::SUCCESS)
}
