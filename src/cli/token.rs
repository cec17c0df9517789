//! `bordergate token`: mint a development token with the configured HS256 secret.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::SecretRef;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Subject (the calling pipeline or person).
    #[arg(long)]
    sub: String,
    /// Organisation id, as in the transfer-mechanism registry.
    #[arg(long)]
    org: String,
    /// ISO 3166-1 alpha-2 country where the caller will process the data.
    #[arg(long)]
    jurisdiction: String,
    /// Purpose of processing (e.g. analytics, training, research).
    #[arg(long)]
    purpose: String,
    /// Lifetime, e.g. 30m, 1h, 2d.
    #[arg(long, default_value = "1h")]
    ttl: String,
    /// Role claim, e.g. `compliance-officer` for the admin listener's audit endpoints.
    #[arg(long)]
    role: Option<String>,
    /// Gateway config file (its first HS* key signs the token).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

pub fn run(a: Args) -> ExitCode {
    let path = super::config_path(a.config);
    let cfg = match super::load_config(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if let Err(e) = super::ensure_dev_material(&cfg) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let ttl = match crate::auth::parse_duration(&a.ttl) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let max = cfg.auth.max_token_lifetime_secs;
    if max > 0 && ttl.as_secs() > max {
        eprintln!(
            "error: --ttl {} is longer than the {max} s `auth.max_token_lifetime_secs` allows; the gateway would refuse the token",
            a.ttl
        );
        return ExitCode::from(2);
    }
    let Some(key) = cfg
        .auth
        .keys
        .iter()
        .find(|k| k.alg.eq_ignore_ascii_case("HS256"))
    else {
        eprintln!(
            "error: `{}` has no HS256 key to sign development tokens",
            path.display()
        );
        return ExitCode::from(2);
    };
    let secret = match key.secret.as_ref().map(SecretRef::read) {
        Some(Ok(s)) => s,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        None => {
            eprintln!("error: the HS256 key has no secret");
            return ExitCode::from(2);
        }
    };
    match crate::auth::mint_token_with_role(
        &secret,
        &cfg.auth.issuer,
        &cfg.auth.audience,
        &a.sub,
        &a.org,
        &a.jurisdiction,
        &a.purpose,
        ttl,
        a.role.as_deref(),
    ) {
        Ok(t) => {
            println!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
