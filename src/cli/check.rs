//! `bordergate check`: validate everything the gateway would load.

use std::path::PathBuf;
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
    // Problems in the files are what `check` finds: exit 1, like those `Snapshot::build` finds.
    let cfg = match crate::config::Config::load(&path) {
        Ok(c) => c,
        Err(d) => {
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
