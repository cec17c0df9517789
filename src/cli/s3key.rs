//! `bordergate s3-key`: issue, list and revoke the S3 access keys SDKs sign with
//! (`auth.s3_keys`). A key's secret is derived, never stored, and shown once on creation.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::{Config, S3KeysConfig};
use crate::model::{Caller, Country, check_purpose};
use crate::s3::keys::{self, KeyStore};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Issue a key for a pipeline: prints `AWS_ACCESS_KEY_ID=…` and `AWS_SECRET_ACCESS_KEY=…`.
    Create(CreateArgs),
    /// List the issued keys (never their secrets).
    List(ConfigArg),
    /// Revoke a key: the gateway refuses it from its next reload.
    Revoke(RevokeArgs),
}

#[derive(clap::Args, Debug)]
pub struct ConfigArg {
    /// Gateway config file (its `auth.s3_keys` names the key file).
    #[arg(long, short)]
    config: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Subject (the calling pipeline).
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
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(clap::Args, Debug)]
pub struct RevokeArgs {
    /// The access key id (`BGK…`).
    access_key_id: String,
    #[command(flatten)]
    config: ConfigArg,
}

fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// The config and its `auth.s3_keys`, with a development derivation secret made if asked.
fn setup(c: &ConfigArg) -> Result<(Config, S3KeysConfig), ExitCode> {
    let path = super::config_path(c.config.clone());
    let cfg = super::load_config(&path)?;
    let Some(k) = cfg.auth.s3_keys.clone() else {
        return Err(fail(format!(
            "`{}` has no `auth.s3_keys`: add `path` and `derivation_secret` to issue S3 keys",
            path.display()
        )));
    };
    super::ensure_dev_material(&cfg).map_err(fail)?;
    Ok((cfg, k))
}

pub fn run(c: Command) -> ExitCode {
    match run_inner(c) {
        Ok(code) | Err(code) => code,
    }
}

fn run_inner(c: Command) -> Result<ExitCode, ExitCode> {
    match c {
        Command::Create(a) => {
            let (_, k) = setup(&a.config)?;
            let caller = Caller {
                jurisdiction: Country::parse(&a.jurisdiction).map_err(fail)?,
                sub: a.sub,
                org: a.org,
                purpose: a.purpose,
                claimed_jurisdiction: None,
            };
            check_purpose(&caller.purpose).map_err(fail)?;
            let store = KeyStore::load(&k).map_err(fail)?;
            let mut file = keys::read_file(&k.path).map_err(fail)?;
            let (rec, secret) = store.issue(&caller, &now()).map_err(fail)?;
            keys::caller_of(&rec).map_err(fail)?;
            let id = rec.access_key_id.clone();
            file.keys.push(rec);
            keys::write_file(&k.path, &file).map_err(fail)?;
            eprintln!(
                "issued S3 access key `{id}` for sub `{}`; the secret is shown only now",
                caller.sub
            );
            Ok(super::emit(&format!(
                "AWS_ACCESS_KEY_ID={id}\nAWS_SECRET_ACCESS_KEY={secret}\n"
            )))
        }
        Command::List(a) => {
            let (_, k) = setup(&a)?;
            let file = keys::read_file(&k.path).map_err(fail)?;
            let mut out =
                String::from("ACCESS KEY ID\tSUB\tORG\tJURISDICTION\tPURPOSE\tCREATED\tREVOKED\n");
            for r in &file.keys {
                out.push_str(&format!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\n",
                    r.access_key_id,
                    r.sub.escape_default(),
                    r.org.escape_default(),
                    r.jurisdiction,
                    r.purpose,
                    r.created,
                    r.revoked.as_deref().unwrap_or("-")
                ));
            }
            Ok(super::emit(&out))
        }
        Command::Revoke(a) => {
            let (_, k) = setup(&a.config)?;
            let mut file = keys::read_file(&k.path).map_err(fail)?;
            let Some(r) = file
                .keys
                .iter_mut()
                .find(|r| r.access_key_id == a.access_key_id)
            else {
                return Err(fail(format!(
                    "no access key `{}` in `{}`",
                    a.access_key_id.escape_default(),
                    k.path.display()
                )));
            };
            if r.revoked.is_none() {
                r.revoked = Some(now());
            }
            keys::write_file(&k.path, &file).map_err(fail)?;
            eprintln!("revoked S3 access key `{}`", a.access_key_id);
            Ok(ExitCode::SUCCESS)
        }
    }
}
