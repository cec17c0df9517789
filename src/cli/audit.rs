//! `bordergate audit …`: keygen, verify, query and report on audit logs.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::audit::checkpoint::{self, PublicKey};
use crate::audit::place::Regions;
use crate::audit::pseudo::Pseudonymiser;
use crate::audit::query::Filter;
use crate::audit::report::{push_csv, report_from};
use crate::audit::source::{PgStore, Source, is_postgres_url};
use crate::audit::verify::{VerifyOptions, parse_receipt, verify_log};

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Check the hash chain of a log (files, or a directory of segments, in order), the links
    /// between segments, retention removals and, with `--pubkey`, every checkpoint signature.
    /// Exit 0 if intact, 1 naming every kind of damage and where it starts.
    Verify {
        /// Log files or directories, oldest first (or one `postgres://…` URL).
        #[arg(required_unless_present = "postgres")]
        files: Vec<PathBuf>,
        /// Verify the PostgreSQL store at this connection string (URL or `key=value`) instead.
        #[arg(long, env = "BORDERGATE_AUDIT_POSTGRES", hide_env_values = true)]
        postgres: Option<String>,
        /// The records table of `--postgres`.
        #[arg(long, default_value = "bordergate_audit")]
        table: String,
        /// Ed25519 public key (base64, or a file holding it) that signs the checkpoints.
        #[arg(long)]
        pubkey: Option<String>,
        /// A file of `Audit-Receipt` header values, one per line: each record must still be there.
        #[arg(long)]
        receipts: Option<PathBuf>,
        /// With `--pubkey`: a log that started less than SECS ago may have no checkpoint yet
        /// (its first one is pending, as the admin endpoint reports it; the gateway allows
        /// `audit.checkpoint_interval_secs` + 5).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        checkpoint_grace: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal a forked or damaged log and start a new segment, keeping the evidence: the
    /// damaged file is renamed `<log>.damaged-<time>` (never deleted) and the new segment's
    /// first record, a `repair` event, names it, the last record that chained correctly and
    /// the damage found; `audit verify` then reports a recorded repair. Refused while a
    /// gateway writes the log. Exit 0 when repaired or intact.
    Repair {
        /// The active log file (the config's `audit.path`).
        log: PathBuf,
        /// Who repairs, for the record (default: `$USER`).
        #[arg(long)]
        by: Option<String>,
    },
    /// Write every record of the PostgreSQL store, in order, as a JSON Lines log to stdout
    /// (for `audit query`, `audit report`, `policy what-if` …).
    Export {
        /// Connection string (URL or `key=value`).
        #[arg(long, env = "BORDERGATE_AUDIT_POSTGRES", hide_env_values = true)]
        postgres: String,
        #[arg(long, default_value = "bordergate_audit")]
        table: String,
    },
    /// Create or upgrade the PostgreSQL store: tables, indexes, the triggers that refuse
    /// UPDATE, DELETE and TRUNCATE, and (with `--grant`) SELECT and INSERT — nothing else —
    /// for the role the gateways connect as. Run it as an administrative role; idempotent.
    Migrate {
        /// Connection string (URL or `key=value`) of an administrative role.
        #[arg(long, env = "BORDERGATE_AUDIT_POSTGRES", hide_env_values = true)]
        postgres: String,
        #[arg(long, default_value = "bordergate_audit")]
        table: String,
        /// The role the gateways connect as (it must exist).
        #[arg(long, value_name = "ROLE")]
        grant: Option<String>,
    },
    /// Create a checkpoint signing key (PKCS#8) and print its public key (also written to FILE.pub).
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Print the records matching the filters.
    Query(Box<QueryArgs>),
    /// The GDPR Art. 30(1)(e) record of transfers to third countries for a period.
    Report(Box<ReportArgs>),
}

/// Where `query` and `report` read: files, the PostgreSQL store, or the log a config names.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    /// Read the PostgreSQL store at this connection string (URL or `key=value`; also
    /// `--audit`, as `policy what-if` spells it); a `postgres://…` URL given instead of the
    /// files does the same.
    #[arg(
        long,
        visible_alias = "audit",
        env = "BORDERGATE_AUDIT_POSTGRES",
        hide_env_values = true
    )]
    postgres: Option<String>,
    /// The records table of `--postgres`.
    #[arg(long, default_value = "bordergate_audit")]
    table: String,
    /// Read the log this gateway config writes (its `audit:` file and segments, or its
    /// PostgreSQL store); wins over `--postgres`.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl StoreArgs {
    /// Files named win, then `--config`, then `--postgres` (which may come from the environment).
    fn source(&self, files: &[PathBuf]) -> Result<Source, String> {
        if let [f] = files
            && let Some(url) = f.to_str().filter(|s| is_postgres_url(s))
        {
            return Ok(self.store(url));
        }
        if !files.is_empty() {
            return Ok(Source::Files(files.to_vec()));
        }
        if let Some(c) = &self.config {
            return source_of_config(c);
        }
        match &self.postgres {
            Some(url) => Ok(self.store(url)),
            None => Err("name the log files, `--postgres` or `--config`".into()),
        }
    }

    fn store(&self, url: &str) -> Source {
        Source::Postgres(PgStore {
            conn: url.to_owned(),
            table: self.table.clone(),
        })
    }
}

/// The log the gateway config at `path` writes.
fn source_of_config(path: &Path) -> Result<Source, String> {
    let cfg = crate::config::Config::load_with(path, &crate::config::Overrides::default())
        .map_err(|d| {
            format!(
                "{d}\n`{}` is not valid ({} problem(s))",
                path.display(),
                d.0.len()
            )
        })?;
    Source::from_config(&cfg.audit).map_err(|e| format!("`{}`: {e}", cfg.audit.describe()))
}

#[derive(clap::Args, Debug)]
pub struct QueryArgs {
    /// Log files or directories, oldest first (or one `postgres://…` URL).
    #[arg(required_unless_present_any = ["postgres", "config"])]
    files: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// From (RFC 3339 or date).
    #[arg(long)]
    from: Option<String>,
    /// To (RFC 3339, or a date: up to its end).
    #[arg(long)]
    to: Option<String>,
    #[command(flatten)]
    filter: FilterArgs,
    /// Output format; default: a table on a terminal, JSON Lines otherwise. JSON Lines are
    /// the records as written; a table or CSV shows a forwarded decision with the status
    /// its completion recorded (`fwd` when none is in the range).
    #[arg(long, value_parser = ["table", "jsonl", "csv"])]
    format: Option<String>,
    /// Only the last N matches.
    #[arg(long)]
    limit: Option<usize>,
    #[command(flatten)]
    pseudo: PseudoArgs,
}

/// The record filters `query` and `report` share (and the admin API takes as parameters).
#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    /// allow or deny.
    #[arg(long)]
    decision: Option<String>,
    #[arg(long)]
    org: Option<String>,
    /// The caller (token `sub`).
    #[arg(long)]
    sub: Option<String>,
    #[arg(long)]
    dataset: Option<String>,
    /// An origin country (`DE`) or a regime of the policy pack (`EU`, `EEA`, `UK`, …).
    #[arg(long)]
    origin: Option<String>,
    /// A destination country (`US`) or a regime of the policy pack.
    #[arg(long)]
    destination: Option<String>,
    #[arg(long)]
    rule: Option<String>,
    /// A part of the legal article (`46(2)(c)`).
    #[arg(long)]
    article: Option<String>,
    #[arg(long)]
    purpose: Option<String>,
    #[arg(long)]
    request_id: Option<String>,
    /// decision, completion, event or checkpoint.
    #[arg(long)]
    kind: Option<String>,
    /// Data categories: personal, special, public, or a category (health); comma-separated.
    #[arg(long)]
    category: Option<String>,
    /// Only transfers leaving the regime of their origin (to third countries).
    #[arg(long)]
    third_countries: bool,
    /// The policy pack whose regimes `--origin`/`--destination` name (default: the
    /// `--config`'s, else `policies/` when present; without a pack only EU/EEA are known).
    #[arg(long, value_name = "DIR")]
    policies: Option<PathBuf>,
    /// The registry to load with `--policies` (default: its registry.yaml, else the quickstart's).
    #[arg(long, requires = "policies")]
    registry: Option<PathBuf>,
}

impl FilterArgs {
    /// The filter, with the regimes of the policy pack.
    fn filter(
        &self,
        from: Option<String>,
        to: Option<String>,
        config: Option<&Path>,
    ) -> Result<Filter, String> {
        let f = Filter {
            from,
            to,
            decision: self.decision.clone(),
            org: self.org.clone(),
            sub: self.sub.clone(),
            dataset: self.dataset.clone(),
            origin: self.origin.clone(),
            destination: self.destination.clone(),
            rule: self.rule.clone(),
            article: self.article.clone(),
            purpose: self.purpose.clone(),
            request_id: self.request_id.clone(),
            kind: self.kind.clone(),
            category: self.category.clone(),
            third_countries: self.third_countries.then(|| "true".to_owned()),
            regions: self.regions(config)?.map(std::sync::Arc::new),
        };
        f.compile()?;
        Ok(f)
    }

    /// The pack's regimes, when a pack is named or found.
    fn regions(&self, config: Option<&Path>) -> Result<Option<Regions>, String> {
        let load = |dir: &Path, reg: &Path| {
            crate::policy::PolicySet::load(dir, reg)
                .map(|p| Regions::from_policies(&p))
                .map_err(|d| format!("{d}\nthe policy pack `{}` is not valid", dir.display()))
        };
        if let Some(dir) = &self.policies {
            let reg = self.registry.clone().unwrap_or_else(|| {
                let r = dir.join("registry.yaml");
                if r.exists() {
                    r
                } else {
                    PathBuf::from("examples/quickstart/registry.yaml")
                }
            });
            return load(dir, &reg).map(Some);
        }
        if let Some(c) = config {
            let cfg = crate::config::Config::load_with(c, &crate::config::Overrides::default())
                .map_err(|d| format!("{d}\n`{}` is not valid", c.display()))?;
            return load(&cfg.policies, &cfg.registry_path()).map(Some);
        }
        let (dir, reg) = (
            Path::new("policies"),
            Path::new("examples/quickstart/registry.yaml"),
        );
        // The repository's pack, when run from its root; else only the built-in EEA.
        Ok(if dir.is_dir() && reg.is_file() {
            load(dir, reg).ok()
        } else {
            None
        })
    }
}

#[derive(clap::Args, Debug)]
pub struct PseudoArgs {
    /// Replace callers (token `sub`) by a keyed hash.
    #[arg(long, requires = "key_file")]
    pseudonymise: bool,
    /// Also replace organisations.
    #[arg(long, requires = "pseudonymise")]
    pseudonymise_org: bool,
    /// The pseudonymisation key (a file of at least 16 bytes; keep it secret).
    #[arg(long)]
    key_file: Option<PathBuf>,
}

impl PseudoArgs {
    fn load(&self) -> Result<Option<Pseudonymiser>, String> {
        match (&self.key_file, self.pseudonymise) {
            (Some(k), true) => Pseudonymiser::load(k, self.pseudonymise_org).map(Some),
            _ => Ok(None),
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Log files or directories, oldest first (or one `postgres://…` URL).
    #[arg(required_unless_present_any = ["postgres", "config"])]
    files: Vec<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
    /// First day (or RFC 3339 time); default: the log's beginning.
    #[arg(long, default_value = "1970-01-01")]
    from: String,
    /// Last day, inclusive (or RFC 3339 time); default: today.
    #[arg(long)]
    to: Option<String>,
    #[arg(long, default_value = "md", value_parser = ["md", "html", "csv", "json"])]
    format: String,
    #[command(flatten)]
    filter: FilterArgs,
    /// Check checkpoint signatures with this public key for the verification header.
    #[arg(long)]
    pubkey: Option<String>,
    /// With `--pubkey`: a log that started less than SECS ago may have no checkpoint yet.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    checkpoint_grace: u64,
    #[command(flatten)]
    pseudo: PseudoArgs,
}

pub fn run(c: Command) -> ExitCode {
    let result = match c {
        Command::Verify {
            files,
            postgres,
            table,
            pubkey,
            receipts,
            checkpoint_grace,
            json,
        } => {
            // Files named on the command line win over `BORDERGATE_AUDIT_POSTGRES`.
            let url = match files.as_slice() {
                [] => postgres,
                [f] => f.to_str().filter(|s| is_postgres_url(s)).map(str::to_owned),
                _ => None,
            };
            match url {
                Some(u) => {
                    verify_postgres(&u, &table, pubkey.as_deref(), receipts.as_deref(), json)
                }
                None => {
                    let grace = Duration::from_secs(checkpoint_grace);
                    verify(&files, pubkey.as_deref(), receipts.as_deref(), grace, json)
                }
            }
        }
        Command::Repair { log, by } => repair(&log, by),
        Command::Export { postgres, table } => export(&postgres, &table),
        Command::Migrate {
            postgres,
            table,
            grant,
        } => crate::audit::postgres::dump::migrate(&postgres, &table, grant.as_deref()).map(|v| {
            let to = grant
                .map(|g| format!("; role `{g}` may SELECT and INSERT only"))
                .unwrap_or_default();
            println!("`{table}` is at schema version {v}{to}");
            ExitCode::SUCCESS
        }),
        Command::Keygen { out } => keygen(&out),
        Command::Query(a) => query(*a),
        Command::Report(a) => report(*a),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn verify(
    files: &[PathBuf],
    pubkey: Option<&str>,
    receipts: Option<&Path>,
    checkpoint_grace: Duration,
    json: bool,
) -> Result<ExitCode, String> {
    let mut opts = VerifyOptions {
        pubkey: pubkey.map(PublicKey::parse_or_load).transpose()?,
        receipts: Vec::new(),
        checkpoint_grace,
    };
    if let Some(r) = receipts {
        let text = std::fs::read_to_string(r)
            .map_err(|e| format!("cannot read `{}`: {e}", r.display()))?;
        for (i, l) in text.lines().enumerate() {
            let l = l.trim();
            let l = l.strip_prefix("Audit-Receipt:").unwrap_or(l).trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            opts.receipts
                .push(parse_receipt(l).map_err(|e| format!("{}:{}: {e}", r.display(), i + 1))?);
        }
    }
    let rep = verify_log(files, &opts);
    let text = if json {
        format!(
            "{}\n",
            serde_json::to_string_pretty(&rep).map_err(|e| e.to_string())?
        )
    } else if rep.is_ok() {
        rep.to_string()
    } else {
        eprint!("{rep}");
        String::new()
    };
    let _ = super::emit(&text);
    Ok(if rep.is_ok() {
        ExitCode::SUCCESS
    } else if rep
        .damage
        .iter()
        .all(|d| d.kind == crate::audit::ProblemKind::Unreadable)
    {
        // Nothing could be read: the command could not run, which says nothing of the log.
        ExitCode::from(2)
    } else {
        ExitCode::from(1)
    })
}

/// Reads a receipts file: `Audit-Receipt` header values, one per line.
fn read_receipts(r: &Path) -> Result<Vec<(Option<String>, u64, String)>, String> {
    let text =
        std::fs::read_to_string(r).map_err(|e| format!("cannot read `{}`: {e}", r.display()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let l = l.trim();
        let l = l.strip_prefix("Audit-Receipt:").unwrap_or(l).trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let (seq, hash) =
            parse_receipt(l).map_err(|e| format!("{}:{}: {e}", r.display(), i + 1))?;
        let chain = l
            .split(';')
            .find_map(|p| p.trim().strip_prefix("chain="))
            .map(|c| c.trim().to_owned());
        out.push((chain, seq, hash));
    }
    Ok(out)
}

fn verify_postgres(
    url: &str,
    table: &str,
    pubkey: Option<&str>,
    receipts: Option<&Path>,
    json: bool,
) -> Result<ExitCode, String> {
    let opts = crate::audit::postgres::dump::PgVerifyOptions {
        pubkey: pubkey.map(PublicKey::parse_or_load).transpose()?,
        receipts: receipts.map(read_receipts).transpose()?.unwrap_or_default(),
    };
    let rep = crate::audit::postgres::dump::verify_postgres_with(url, table, &opts)?;
    if json {
        let problems: Vec<Value> = rep
            .all_problems()
            .into_iter()
            .map(|(chain, p)| {
                serde_json::json!({"chain": chain, "kind": p.kind.as_str(), "seq": p.seq, "message": p.message})
            })
            .collect();
        let chains: Vec<Value> = rep
            .chains
            .iter()
            .map(|c| {
                serde_json::json!({
                    "chain": c.chain,
                    "ok": c.report.is_ok(),
                    "records": c.report.records,
                    "last_seq": c.report.last_seq,
                    "last_hash": c.report.last_hash,
                    "checkpoints": c.checkpoints,
                })
            })
            .collect();
        let v = serde_json::json!({
            "ok": rep.is_ok(),
            "table": rep.table,
            "records": rep.records(),
            "chains": chains,
            "receipts_checked": rep.receipts_checked,
            "problems": problems,
        });
        let _ = super::emit(&format!(
            "{}\n",
            serde_json::to_string_pretty(&v).map_err(|e| e.to_string())?
        ));
    } else if rep.is_ok() {
        let _ = super::emit(&rep.to_string());
    } else {
        eprint!("{rep}");
    }
    Ok(if rep.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn repair(log: &Path, by: Option<String>) -> Result<ExitCode, String> {
    use crate::audit::repair::Repair;
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| "unknown".into());
    match crate::audit::repair::repair(log, &by)? {
        Repair::Intact(rep) => Ok(super::emit(&format!(
            "nothing to repair: `{}` verifies\n{}\n",
            log.display(),
            rep.summary()
        ))),
        Repair::Sealed {
            sealed,
            last_good_seq,
            damage,
            seq,
        } => {
            let mut text = format!(
                "repaired `{}`: the damaged log is sealed as `{}` (kept as evidence); a new segment starts at seq {seq} with a repair record continuing from seq {last_good_seq}\n",
                log.display(),
                sealed.display()
            );
            for d in damage {
                text.push_str(&format!("  damage: {d}\n"));
            }
            Ok(super::emit(&text))
        }
    }
}

fn export(url: &str, table: &str) -> Result<ExitCode, String> {
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout());
    let n = crate::audit::postgres::dump::export_postgres(url, table, &mut out)?;
    eprintln!("exported {n} records from `{table}`");
    Ok(ExitCode::SUCCESS)
}

fn keygen(out: &Path) -> Result<ExitCode, String> {
    if out.exists() {
        return Err(format!("`{}` exists; not overwriting a key", out.display()));
    }
    let public = write_keypair(out)?;
    println!("{}", public.to_base64());
    Ok(ExitCode::SUCCESS)
}

/// Writes a new checkpoint signing key to `out` (0600) and its public key to `out.pub`.
pub(super) fn write_keypair(out: &Path) -> Result<PublicKey, String> {
    let (der, public) = checkpoint::generate()?;
    write_private(out, &der).map_err(|e| format!("cannot write `{}`: {e}", out.display()))?;
    let mut pub_path = out.as_os_str().to_owned();
    pub_path.push(".pub");
    let pub_path = PathBuf::from(pub_path);
    std::fs::write(&pub_path, format!("{}\n", public.to_base64()))
        .map_err(|e| format!("cannot write `{}`: {e}", pub_path.display()))?;
    eprintln!(
        "wrote the signing key `{}` and the public key `{}` (key id {})",
        out.display(),
        pub_path.display(),
        public.id
    );
    Ok(public)
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

const COLUMNS: &[(&str, &str)] = &[
    ("seq", "/seq"),
    ("time", "/time"),
    ("kind", "/kind"),
    ("decision", "/decision"),
    ("status", "/status"),
    ("sub", "/caller/sub"),
    ("org", "/caller/org"),
    ("purpose", "/caller/purpose"),
    ("dataset", "/dataset"),
    ("origins", "/origins"),
    ("dest", "/destination"),
    ("rule", "/rule"),
    ("article", "/article"),
    ("request_id", "/request_id"),
    ("event", "/event"),
    ("outcome", "/outcome"),
    ("bytes_out", "/bytes_out"),
];

/// Where a table or CSV row of a forwarded decision takes the status its completion
/// recorded (the decision record itself says 0: the answer was not known yet).
const ANSWERED: &str = "/answered";

fn cell(v: &Value, ptr: &str) -> String {
    // A decision's status 0 means "forwarded": its completion holds the upstream's status;
    // `fwd` when that completion was not read (outside the time range, not written yet).
    if ptr == "/status"
        && v.get("kind").and_then(Value::as_str) == Some("decision")
        && v.get("status").and_then(Value::as_u64) == Some(0)
    {
        return match v.pointer(ANSWERED).and_then(Value::as_u64) {
            Some(s) => s.to_string(),
            None => "fwd".into(),
        };
    }
    match v.pointer(ptr) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join(" "),
        Some(x) => x.to_string(),
    }
}

fn query(a: QueryArgs) -> Result<ExitCode, String> {
    let filter = a
        .filter
        .filter(a.from.clone(), a.to.clone(), a.store.config.as_deref())?;
    let pseudo = a.pseudo.load()?;
    let source = a.store.source(&a.files)?;
    let stdout = std::io::stdout();
    let format = a.format.unwrap_or_else(|| {
        if stdout.is_terminal() {
            "table"
        } else {
            "jsonl"
        }
        .to_owned()
    });
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut sink = Sink::new(&format);
    let mut io_err = None;
    let mut emit = |mut v: Value| {
        if let Some(p) = &pseudo {
            p.apply(&mut v);
        }
        if let Err(e) = sink.push(&mut out, v) {
            io_err = Some(e);
            return false;
        }
        true
    };
    if format == "jsonl" {
        // The records as written.
        match a.limit {
            Some(n) => {
                for v in source.query(&filter, n)? {
                    if !emit(v) {
                        break;
                    }
                }
            }
            None => source.for_each(&filter, &mut emit)?,
        }
    } else {
        // A table or CSV shows a forwarded decision with the status its completion
        // recorded: every record of the time range is read, completions included, and
        // rows wait (in order) for their completion, a bounded number of them.
        let compiled = filter.compile()?;
        let wide = Filter {
            from: filter.from.clone(),
            to: filter.to.clone(),
            ..Filter::default()
        };
        let mut rows = Answered::new(a.limit);
        let mut open = true;
        source.for_each(&wide, |v| {
            if v.get("kind").and_then(Value::as_str) == Some("completion") {
                rows.completed(&v);
            }
            if compiled.matches(&v) {
                rows.push(v);
            }
            if a.limit.is_none() {
                while let Some(v) = rows.ready() {
                    open = emit(v);
                    if !open {
                        return false;
                    }
                }
            }
            true
        })?;
        // The rows left, at the end of the log.
        while open && let Some(v) = rows.pop() {
            open = emit(v);
        }
    }
    if let Some(e) = io_err {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(ExitCode::SUCCESS);
        }
        return Err(format!("cannot write the output: {e}"));
    }
    sink.finish(&mut out)
        .and_then(|_| out.flush())
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                Ok(())
            } else {
                Err(format!("cannot write the output: {e}"))
            }
        })?;
    Ok(ExitCode::SUCCESS)
}

/// Rows of a table or CSV in log order, each forwarded decision held until its completion
/// names the status (at most [`Answered::WAIT`] rows wait; then they go out as `fwd`).
/// With a limit, only the last `limit` rows are kept, all to the end of the log.
struct Answered {
    rows: std::collections::VecDeque<Value>,
    /// Request id → the position (in all rows pushed) of its forwarded decision.
    waiting: std::collections::HashMap<String, u64>,
    /// Rows popped so far: the position of `rows[0]`.
    popped: u64,
    limit: Option<usize>,
}

impl Answered {
    const WAIT: usize = 50_000;

    fn new(limit: Option<usize>) -> Answered {
        Answered {
            rows: std::collections::VecDeque::new(),
            waiting: std::collections::HashMap::new(),
            popped: 0,
            limit,
        }
    }

    fn forwarded(v: &Value) -> Option<&str> {
        (v.get("kind").and_then(Value::as_str) == Some("decision")
            && v.get("status").and_then(Value::as_u64) == Some(0))
        .then(|| v.get("request_id").and_then(Value::as_str))
        .flatten()
    }

    fn push(&mut self, v: Value) {
        if let Some(id) = Self::forwarded(&v) {
            self.waiting
                .insert(id.to_owned(), self.popped + self.rows.len() as u64);
        }
        self.rows.push_back(v);
        if self.limit.is_some_and(|n| self.rows.len() > n) {
            self.pop();
        }
    }

    /// A completion: the decision waiting for it takes its status.
    fn completed(&mut self, c: &Value) {
        let Some(id) = c.get("request_id").and_then(Value::as_str) else {
            return;
        };
        let Some(at) = self.waiting.remove(id) else {
            return;
        };
        let status = c.get("status").cloned().unwrap_or(Value::Null);
        if let Some(row) = at
            .checked_sub(self.popped)
            .and_then(|i| self.rows.get_mut(i as usize))
            && let Some(o) = row.as_object_mut()
        {
            o.insert(ANSWERED[1..].to_owned(), status);
        }
    }

    fn pop(&mut self) -> Option<Value> {
        let v = self.rows.pop_front()?;
        self.popped += 1;
        if let Some(id) = Self::forwarded(&v)
            && self.waiting.get(id) == Some(&(self.popped - 1))
        {
            self.waiting.remove(id);
        }
        Some(v)
    }

    /// The first row, once it waits for nothing (or has waited long enough).
    fn ready(&mut self) -> Option<Value> {
        let front = self.rows.front()?;
        let waits = Self::forwarded(front).is_some_and(|id| {
            self.waiting.get(id) == Some(&self.popped) && front.pointer(ANSWERED).is_none()
        });
        if waits && self.rows.len() <= Self::WAIT {
            return None;
        }
        self.pop()
    }
}

/// Writes records as JSON Lines, CSV, or an aligned table (aligned per block of rows, so
/// it streams).
struct Sink {
    format: String,
    header: bool,
    block: Vec<Vec<String>>,
}

const BLOCK: usize = 200;

impl Sink {
    fn new(format: &str) -> Sink {
        Sink {
            format: format.to_owned(),
            header: false,
            block: Vec::new(),
        }
    }

    fn push(&mut self, out: &mut impl Write, v: Value) -> std::io::Result<()> {
        match self.format.as_str() {
            "jsonl" => {
                serde_json::to_writer(&mut *out, &v)?;
                out.write_all(b"\n")
            }
            "csv" => {
                let mut s = String::new();
                if !self.header {
                    self.header = true;
                    let names: Vec<String> = COLUMNS.iter().map(|c| c.0.to_owned()).collect();
                    push_csv(&mut s, &names);
                }
                let cells: Vec<String> = COLUMNS.iter().map(|c| cell(&v, c.1)).collect();
                push_csv(&mut s, &cells);
                out.write_all(s.as_bytes())
            }
            _ => {
                self.block
                    .push(COLUMNS.iter().map(|c| cell(&v, c.1)).collect());
                if self.block.len() >= BLOCK {
                    self.flush_table(out)?;
                }
                Ok(())
            }
        }
    }

    fn finish(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.format == "table" {
            self.flush_table(out)?;
        }
        Ok(())
    }

    fn flush_table(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if self.block.is_empty() {
            return Ok(());
        }
        // Columns empty in the whole block are left out.
        let used: Vec<usize> = (0..COLUMNS.len())
            .filter(|&i| self.block.iter().any(|r| !r[i].is_empty()))
            .collect();
        let width = |i: usize| {
            self.block
                .iter()
                .map(|r| r[i].chars().count())
                .chain([COLUMNS[i].0.len()])
                .max()
                .unwrap_or(0)
                .min(48)
        };
        let widths: Vec<usize> = used.iter().map(|&i| width(i)).collect();
        let line = |cells: Vec<&str>| {
            let mut s = String::new();
            for (c, w) in cells.iter().zip(&widths) {
                let c: String = c.chars().take(*w).collect();
                s.push_str(&format!("{c:<w$}  ", w = *w));
            }
            s.trim_end().to_owned() + "\n"
        };
        let head = line(used.iter().map(|&i| COLUMNS[i].0).collect());
        out.write_all(head.as_bytes())?;
        for r in self.block.drain(..) {
            let l = line(used.iter().map(|&i| r[i].as_str()).collect());
            out.write_all(l.as_bytes())?;
        }
        Ok(())
    }
}

fn report(a: ReportArgs) -> Result<ExitCode, String> {
    let pseudo = a.pseudo.load()?;
    let opts = VerifyOptions {
        pubkey: a
            .pubkey
            .as_deref()
            .map(PublicKey::parse_or_load)
            .transpose()?,
        receipts: Vec::new(),
        checkpoint_grace: Duration::from_secs(a.checkpoint_grace),
    };
    let to = a.to.clone().unwrap_or_else(|| {
        let d = time::OffsetDateTime::now_utc().date();
        format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
    });
    let source = a.store.source(&a.files)?;
    let filter = a.filter.filter(
        Some(a.from.clone()),
        Some(to.clone()),
        a.store.config.as_deref(),
    )?;
    let r = report_from(&source, &filter, pseudo.as_ref(), &opts)?;
    let text = match a.format.as_str() {
        "html" => r.to_html(),
        "csv" => r.to_csv(),
        "json" => serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?,
        _ => r.to_markdown(),
    };
    Ok(super::emit_or(
        &text,
        if r.verification.is_ok() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        },
    ))
}
