//! The `bordergate` command line: one file per subcommand.

mod audit;
mod certs;
mod check;
mod policy;
mod policy_explain;
#[cfg(test)]
mod reference;
mod s3key;
mod serve;
mod token;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{Config, Overrides, SecretRef};

/// The quickstart configuration, used when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "examples/quickstart/gateway.yaml";

#[derive(Parser, Debug)]
#[command(
    name = "bordergate",
    version,
    about = "GDPR-aware cross-border data governance gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the gateway.
    Serve(serve::Args),
    /// Validate the config, catalog, policies and registry; report every error.
    Check(check::Args),
    /// Mint a development token with the configured HS256 secret.
    Token(token::Args),
    /// Development certificates and secrets.
    #[command(subcommand)]
    Certs(certs::Command),
    /// Work with audit logs.
    #[command(subcommand)]
    Audit(audit::Command),
    /// Policy tools: test, explain, what-if, diff.
    #[command(subcommand)]
    Policy(policy::Command),
    /// S3 access keys for SDKs that sign with SigV4: create, list, revoke.
    #[command(subcommand, name = "s3-key")]
    S3Key(s3key::Command),
}

/// Parses the command line and runs the subcommand.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::tls::install_crypto_provider();
    match cli.command {
        Command::Serve(a) => serve::run(a),
        Command::Check(a) => check::run(a),
        Command::Token(a) => token::run(a),
        Command::Certs(c) => certs::run(c),
        Command::Audit(c) => audit::run(c),
        Command::Policy(c) => policy::run(c),
        Command::S3Key(c) => s3key::run(c),
    }
}

/// Writes `text` to stdout. A closed pipe (`bordergate … | head -1`) is not an error: the
/// reader has what it wanted, so the command ends quietly with `ok`.
fn emit_or(text: &str, ok: ExitCode) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ok,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ok,
        Err(e) => {
            eprintln!("error: cannot write the output: {e}");
            ExitCode::from(2)
        }
    }
}

/// [`emit_or`] for a command that succeeded.
fn emit(text: &str) -> ExitCode {
    emit_or(text, ExitCode::SUCCESS)
}

/// Loads the config, printing every diagnostic on failure.
fn load_config(path: &Path) -> Result<Config, ExitCode> {
    load_config_with(path, &Overrides::default())
}

/// [`load_config`] with the command line's overrides.
fn load_config_with(path: &Path, overrides: &Overrides) -> Result<Config, ExitCode> {
    Config::load_with(path, overrides).map_err(|d| {
        eprintln!("{d}");
        eprintln!(
            "error: `{}` is not valid ({} problem(s))",
            path.display(),
            d.0.len()
        );
        ExitCode::from(2)
    })
}

/// The config to use: the one given, else the quickstart — in the current directory (the
/// repository root), else in the repository this binary was built from, so `bordergate
/// token` and `serve` work from any directory of a checkout.
fn config_path(p: Option<PathBuf>) -> PathBuf {
    if let Some(p) = p {
        return p;
    }
    let here = PathBuf::from(DEFAULT_CONFIG);
    if here.is_file() {
        return here;
    }
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG);
    if built.is_file() {
        return built;
    }
    eprintln!(
        "note: no `--config` given and `{DEFAULT_CONFIG}` is not in the current directory; run from the repository root or give `--config FILE`"
    );
    here
}

/// Creates the development certificate and HS256 secret the config asks for, if missing.
fn ensure_dev_material(cfg: &Config) -> Result<(), String> {
    if let Some(tls) = &cfg.listen.tls
        && tls.generate_dev_cert
        && crate::tls::generate_dev_cert(&tls.cert, &tls.key)?
    {
        eprintln!("generated development certificate `{}`", tls.cert.display());
    }
    for k in &cfg.auth.keys {
        if k.generate_dev_secret
            && let Some(SecretRef::File(p)) = &k.secret
            && crate::auth::ensure_dev_secret(p)
                .map_err(|e| format!("cannot write `{}`: {e}", p.display()))?
        {
            eprintln!("generated development secret `{}`", p.display());
        }
    }
    if let Some(k) = &cfg.auth.s3_keys
        && k.generate_dev_secret
        && let SecretRef::File(p) = &k.derivation_secret
        && crate::auth::ensure_dev_secret(p)
            .map_err(|e| format!("cannot write `{}`: {e}", p.display()))?
    {
        eprintln!(
            "generated development S3 key derivation secret `{}`",
            p.display()
        );
    }
    if cfg.audit.generate_checkpoint_key
        && let Some(k) = &cfg.audit.checkpoint_key
        && !k.exists()
    {
        if let Some(dir) = k.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        }
        audit::write_keypair(k)?;
    }
    Ok(())
}
