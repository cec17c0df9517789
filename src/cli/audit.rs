//! `bordergate audit …`: verify audit logs.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check the whole hash chain; exit 0 if intact, 1 naming the first bad record.
    Verify {
        /// The audit log (JSON Lines).
        file: PathBuf,
    },
}

pub fn run(c: Command) -> ExitCode {
    match c {
        Command::Verify { file } => {
            let report = crate::audit::verify_file(&file);
            if report.is_ok() {
                println!("{report}");
                ExitCode::SUCCESS
            } else {
                eprintln!("{report}");
                ExitCode::from(1)
            }
        }
    }
}
