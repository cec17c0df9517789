//! `bordergate check`: validate everything the gateway would load.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::snapshot::Snapshot;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Gateway config file.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Report bases ending within this many days (default: the config's
    /// `policy_horizon_days`, 90).
    #[arg(long)]
    horizon_days: Option<u32>,
}

pub fn run(a: Args) -> ExitCode {
    let path = super::config_path(a.config);
    // A config that cannot be read is an input error, not a finding.
    if let Err(d) = crate::config::read_yaml(&path) {
        eprintln!("error: {d}");
        return ExitCode::from(2);
    }
    // Problems in the files are what `check` finds: exit 1, like those `Snapshot::build` finds.
    let cfg = match crate::config::Config::load(&path) {
        Ok(c) => c,
        Err(mut d) => {
            // The other files are checked too, so one run names every problem.
            d.0.extend(named_files(&path));
            eprintln!("{d}");
            eprintln!("error: {} problem(s) found", d.0.len());
            return ExitCode::from(1);
        }
    };
    if let Err(e) = super::ensure_dev_material(&cfg) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let horizon = a.horizon_days.unwrap_or(cfg.policy_horizon_days);
    match Snapshot::build(cfg) {
        Ok(s) => {
            let today = time::OffsetDateTime::now_utc().date();
            for e in s.policies.expiring(today, horizon) {
                println!(
                    "warning: {} `{}` ends {} (in {} day(s))",
                    if e.kind == "rule" {
                        "basis"
                    } else {
                        "mechanism"
                    },
                    e.id,
                    e.ends,
                    e.days_left
                );
            }
            println!(
                "ok: `{}` is valid: {} catalog entries, {} routes, policy version {}",
                path.display(),
                s.catalog.len(),
                s.routes.len(),
                s.policies.version
            );
            ExitCode::SUCCESS
        }
        Err(d) => {
            eprintln!("{d}");
            eprintln!("error: {} problem(s) found", d.0.len());
            ExitCode::from(1)
        }
    }
}

/// The problems of the catalog, policies and registry a config names, read from its raw
/// YAML: for a config that does not load, whose own problems stop the full build.
fn named_files(path: &Path) -> Vec<crate::config::Diagnostic> {
    let Ok(text) = crate::config::read_yaml(path) else {
        return Vec::new();
    };
    let Ok(v) = crate::config::parse_yaml::<serde_json::Value>(path, &text) else {
        return Vec::new();
    };
    let base = path.parent().unwrap_or(Path::new("."));
    let named = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_str)
            .map(|p| base.join(p))
    };
    let mut out = Vec::new();
    if let Some(c) = named("catalog")
        && let Err(d) = crate::catalog::Catalog::load(&c)
    {
        out.extend(d.0);
    }
    if let Some(p) = named("policies") {
        let registry = named("registry").unwrap_or_else(|| p.join("registry.yaml"));
        if let Err(d) = crate::policy::PolicySet::load(&p, &registry) {
            out.extend(d.0);
        }
    }
    out
}
