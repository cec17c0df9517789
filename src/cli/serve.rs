//! `bordergate serve`: run the gateway until SIGTERM or SIGINT; reload on SIGHUP and on
//! file changes (see [`crate::reload`]).
//!
//! Start-up order: load and build the whole [`Snapshot`] (every file validated), bind the
//! ports, and only then open the audit log — a gateway that cannot start writes nothing
//! to it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Record, record::EventRecord, record::now_rfc3339};
use crate::config::{Config, Overrides};
use crate::proxy::Gateway;
use crate::snapshot::Snapshot;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Gateway config file (default: the quickstart).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Listen on this address instead of the config's (e.g. 127.0.0.1:0 for any free port).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Write the audit log here instead of the config's path.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Serve the admin listener on this address instead of the config's `admin.address`.
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// This replica's name instead of the config's `name` (default: the host name).
    #[arg(long)]
    name: Option<String>,
    /// This replica's region instead of the config's `region`.
    #[arg(long)]
    region: Option<String>,
}

/// The service log on stderr: `BORDERGATE_LOG` (an `EnvFilter`, default `info`; rustls'
/// per-connection warnings such as a client sending an IP address as SNI are kept at
/// `error`), `BORDERGATE_LOG_FORMAT=json` for JSON lines, colour only on a terminal and
/// never with `NO_COLOR` set.
fn init_logging() {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("BORDERGATE_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    let json = std::env::var("BORDERGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        let _ = b.json().try_init();
    } else {
        let _ = b.try_init();
    }
}

pub fn run(a: Args) -> ExitCode {
    init_logging();
    let path = super::config_path(a.config);
    let overrides = Overrides {
        listen: a.listen,
        audit_path: a.audit_log,
        admin_listen: a.admin_listen,
        name: a.name,
        region: a.region,
    };
    let cfg = match super::load_config_with(&path, &overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The log opened at start is written until exit: a reload keeps its path, and the
    // replica keeps the name and region its records carry.
    let replica = cfg.replica();
    let overrides = Overrides {
        audit_path: Some(cfg.audit.path.clone()).filter(|p| !p.as_os_str().is_empty()),
        name: Some(replica.name.to_string()),
        region: replica.region.as_deref().map(str::to_owned),
        ..overrides
    };
    if let Err(e) = super::ensure_dev_material(&cfg) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(serve(path, cfg, overrides))
}

async fn bind(addr: SocketAddr, what: &str) -> Result<tokio::net::TcpListener, ExitCode> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        eprintln!("error: cannot listen on {addr}{what}: {e}");
        ExitCode::from(2)
    })
}

/// Reads what the gateway must know from its trail before it forwards anything: the PIPL
/// export volumes of the year (counts lower than the truth could exempt an export that needs
/// a mechanism) and the recent personal-data downloads (without them an upload could launder
/// data downloaded before the restart). From the file, or from the fleet's PostgreSQL store.
/// True when the audit sink is PostgreSQL and its database does not answer.
async fn pg_outage(audit_cfg: &crate::config::AuditConfig) -> bool {
    match (&audit_cfg.sink, &audit_cfg.postgres) {
        (crate::config::AuditSinkKind::Postgres, Some(pg)) => match pg.connection_string() {
            Ok(conn) => !crate::audit::postgres::reachable(&conn).await,
            Err(_) => false,
        },
        _ => false,
    }
}

async fn seed_trail(
    gateway: &Gateway,
    audit_cfg: &crate::config::AuditConfig,
) -> Result<(), String> {
    let year = crate::pipl::year_of(time::OffsetDateTime::now_utc());
    let started = std::time::Instant::now();
    let snap = gateway.state();
    let n = match gateway.ledger() {
        Some(ledger) => ledger
            .seed(gateway.exports(), year)
            .await
            .map_err(|e| e.to_string())?,
        None => crate::pipl::seed_from_trail(
            gateway.exports(),
            &snap.catalog,
            &snap.operators,
            &audit_cfg.path,
            year,
        )
        .map_err(|e| format!("cannot count PIPL export volumes from the audit trail: {e}"))?,
    };
    tracing::info!(counted = n, year, elapsed = ?started.elapsed(), "PIPL export volumes counted");
    if let Some(since) = snap.config.lineage.since(time::OffsetDateTime::now_utc()) {
        let started = std::time::Instant::now();
        let index = gateway.recent_downloads();
        let n = match (&audit_cfg.sink, &audit_cfg.postgres) {
            (crate::config::AuditSinkKind::Postgres, Some(pg)) => {
                let conn = pg.connection_string()?;
                index.seed_postgres(&conn, &pg.table, since).await
            }
            _ => crate::lineage::seed_from_trail(index, &audit_cfg.path, since),
        }
        .map_err(|e| {
            format!("cannot read recent personal-data downloads from the audit trail: {e}")
        })?;
        tracing::info!(downloads = n, window_days = snap.config.lineage.window_days, elapsed = ?started.elapsed(), "recent personal-data downloads read from the audit trail");
    }
    Ok(())
}

async fn serve(path: PathBuf, cfg: Config, overrides: Overrides) -> ExitCode {
    match start(path, cfg, overrides).await {
        Ok(code) | Err(code) => code,
    }
}

async fn start(path: PathBuf, cfg: Config, overrides: Overrides) -> Result<ExitCode, ExitCode> {
    let alerts_cfg = cfg.alerts.clone();
    let admin_cfg = cfg.admin.clone();
    let audit_cfg = cfg.audit.clone();
    let fleet_cfg = cfg.fleet_check();
    let replica = cfg.replica();
    let header_timeout = Duration::from_secs(cfg.limits.header_timeout_secs.max(1));
    let grace = Duration::from_secs(cfg.listen.grace_secs);
    let mode = cfg.mode;
    // Read before the build: a change from here on is reloaded.
    let baseline = crate::reload::Baseline::read(&cfg);
    let snap = Snapshot::build(cfg).map_err(|d| {
        eprintln!("{d}");
        eprintln!("error: {} problem(s) found; not starting", d.0.len());
        ExitCode::from(2)
    })?;
    let audit_source = crate::admin::AuditSource::from_config(&audit_cfg).map_err(|e| {
        eprintln!("error: admin listener: {e}");
        ExitCode::from(2)
    })?;
    let oidc = match admin_cfg.as_ref().and_then(|a| a.oidc.as_ref()) {
        Some(o) => Some(crate::admin::oidc::Oidc::from_config(o).map_err(|e| {
            eprintln!("error: admin sign-in (`admin.oidc`): {e}");
            ExitCode::from(2)
        })?),
        None => None,
    };

    // The ports, before the log: a gateway that cannot listen writes nothing to it.
    let addr = snap.config.listen.address;
    let listener = bind(addr, "").await?;
    let admin_listener = match &admin_cfg {
        Some(a) => Some(bind(a.address, " (admin)").await?),
        None => None,
    };

    let stamp = crate::audit::Stamp {
        replica: Some(replica.clone()),
        policy_version: Some(snap.policies.version.to_string()),
    };
    let audit = match AuditLog::open_config(&audit_cfg, snap.checkpoint_signer.clone(), &stamp) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: `{}`: {e}", audit_cfg.describe());
            if matches!(e, crate::audit::AuditError::Corrupt(_))
                && audit_cfg.sink == crate::config::AuditSinkKind::File
            {
                eprintln!(
                    "help: `bordergate audit repair {}` seals the damaged log (kept as evidence) and starts a new segment that records the repair",
                    audit_cfg.path.display()
                );
            }
            if let Some(hook) = &snap.webhook {
                hook.post(&format!(
                    "bordergate did not start: audit log `{}`: {e}",
                    audit_cfg.describe()
                ))
                .await;
            }
            return Err(ExitCode::from(2));
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let initial_tls = snap.tls.clone();
    let scheme = if initial_tls.is_some() {
        "https"
    } else {
        "http"
    };
    let version = snap.policies.version.to_string();
    let webhook = snap.webhook.clone();
    let mut gateway = Gateway::new(snap, audit);
    // On the PostgreSQL sink the fleet shares its PIPL volumes through the database.
    if let (crate::config::AuditSinkKind::Postgres, Some(pg)) =
        (&audit_cfg.sink, &audit_cfg.postgres)
    {
        let ledger = pg
            .connection_string()
            .and_then(|conn| crate::pipl::pg::Ledger::new(&conn, &pg.table, Some(&replica.name)));
        match ledger {
            Ok(l) => gateway = gateway.with_ledger(l),
            Err(e) => {
                eprintln!("error: cannot count PIPL export volumes: {e}");
                gateway.audit().shutdown().await;
                return Err(ExitCode::from(2));
            }
        }
    }
    let gateway = Arc::new(gateway);
    // The certificate of each new connection is the current snapshot's (a reload renews it).
    let tls = initial_tls.map(|initial| {
        let gw = gateway.clone();
        crate::net::Tls::new(move || gw.state().tls.clone().unwrap_or_else(|| initial.clone()))
    });
    match seed_trail(&gateway, &audit_cfg).await {
        Ok(()) => {}
        // A replica may start while the fleet's database is down: it refuses transfers and
        // stays unready until it has read what it needs, then serves.
        Err(e) if pg_outage(&audit_cfg).await => {
            tracing::error!(error = %e, "the audit database is unreachable; not ready until the trail is read");
            gateway.set_trail_ready(false);
            let (gw, cfg) = (gateway.clone(), audit_cfg.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    match seed_trail(&gw, &cfg).await {
                        Ok(()) => {
                            gw.set_trail_ready(true);
                            tracing::info!("the audit trail is read; ready");
                            return;
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot read the audit trail yet"),
                    }
                }
            });
        }
        Err(e) => {
            eprintln!("error: {e}; not starting");
            gateway.audit().shutdown().await;
            return Err(ExitCode::from(2));
        }
    }
    gateway.audit().append_nowait(event(
        "listen",
        &format!("{scheme}://{local} mode={}", mode.as_str()),
        &version,
    ));
    // The line tests and scripts wait for.
    println!("bordergate listening on {scheme}://{local}");
    tracing::info!(%local, policy_version = %version, replica = %replica.name, "bordergate listening");
    if let (Some(admin), Some(l)) = (admin_cfg, admin_listener) {
        let url = crate::admin::spawn(l, gateway.clone(), audit_source, admin.max_records, oidc);
        println!("bordergate admin listening on {url}");
    }
    if let (Some(al), Some(hook)) = (alerts_cfg, webhook) {
        crate::alerts::spawn(al, hook, gateway.clone());
    }

    if let (Some(f), Some(pg)) = (fleet_cfg, &audit_cfg.postgres) {
        match pg.connection_string() {
            Ok(conn) => crate::fleet::check::spawn(
                gateway.clone(),
                crate::fleet::check::Target {
                    conn,
                    table: pg.table.clone(),
                    me: replica.name.clone(),
                },
                f,
            ),
            Err(e) => tracing::error!(error = %e, "cannot start the fleet check"),
        }
    }
    crate::reload::spawn(gateway.clone(), path, overrides, baseline);
    crate::proxy::server::serve(
        gateway,
        listener,
        tls,
        header_timeout,
        grace,
        shutdown_signal(),
    )
    .await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

fn event(name: &str, detail: &str, version: &str) -> Record {
    Record::Event(EventRecord {
        time: now_rfc3339(),
        event: name.to_string(),
        detail: detail.to_string(),
        policy_version: Some(version.to_string()),
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {},
                _ = i.recv() => {},
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
