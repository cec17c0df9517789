//! `bordergate certs dev`: development TLS certificate and HS256 secret.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Generate the development certificate, key and HS256 secret the config names, if missing.
    /// Never for production: the certificate is self-signed.
    Dev {
        /// Gateway config file.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub fn run(c: Command) -> ExitCode {
    let Command::Dev { config } = c;
    let path = super::config_path(config);
    let cfg = match super::load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    match super::ensure_dev_material(&cfg) {
        Ok(()) => {
            if let Some(tls) = &cfg.listen.tls {
                println!("certificate: {}", tls.cert.display());
                println!("key:         {}", tls.key.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
