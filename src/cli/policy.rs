//! `bordergate policy`: test, explain, what-if and diff for policy authors.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::policy::testing;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Run the YAML test cases in DIR/tests/ against the policies of DIR, with rule coverage.
    Test {
        /// Policy directory (default: policies).
        dir: Option<PathBuf>,
    },
    /// Decide one request and show the full trace.
    Explain(super::policy_explain::Args),
    /// Replay an audit log against another policy set and list the decisions that change.
    WhatIf(super::policy_explain::WhatIfArgs),
    /// Which origin × destination × category × mechanism combinations change outcome.
    Diff(super::policy_explain::DiffArgs),
}

pub fn run(c: Command) -> ExitCode {
    match c {
        Command::Test { dir } => test(dir.unwrap_or_else(|| PathBuf::from("policies"))),
        Command::Explain(a) => super::policy_explain::explain(a),
        Command::WhatIf(a) => super::policy_explain::what_if(a),
        Command::Diff(a) => super::policy_explain::diff(a),
    }
}

fn test(dir: PathBuf) -> ExitCode {
    match testing::run(&dir) {
        Ok(r) => {
            let mut text = r.render();
            if r.ok() {
                text.push_str("ok: every case passed and every rule is covered\n");
                super::emit(&text)
            } else {
                super::emit_or(&text, ExitCode::from(1))
            }
        }
        Err(d) => {
            eprintln!("{d}");
            eprintln!("error: {} problem(s) found", d.0.len());
            ExitCode::from(2)
        }
    }
}
