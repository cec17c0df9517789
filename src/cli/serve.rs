//! `bordergate serve`: run the gateway until SIGTERM or SIGINT; reload on SIGHUP and on
//! file changes (see [`crate::reload`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{AuditLog, Record, record::EventRecord, record::now_rfc3339};
use crate::config::{Config, Overrides};
use crate::proxy::{Gateway, State};

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
}

fn init_logging() {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("BORDERGATE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var("BORDERGATE_LOG_FORMAT").is_ok_and(|v| v == "json");
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
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
    };
    let cfg = match super::load_config_with(&path, &overrides) {
        Ok(c) => c,
        Err(code) => return code,
    };
    // The log opened at start is written until exit: a reload keeps its path.
    let overrides = Overrides {
        audit_path: Some(cfg.audit.path.clone()).filter(|p| !p.as_os_str().is_empty()),
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

async fn serve(path: PathBuf, cfg: Config, overrides: Overrides) -> ExitCode {
    let tls = match &cfg.listen.tls {
        Some(t) => match crate::tls::server_config(t) {
            Ok(c) => Some(tokio_rustls::TlsAcceptor::from(c)),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let alerts_cfg = cfg.alerts.clone();
    let audit = match AuditLog::open_config(&cfg.audit) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: `{}`: {e}", cfg.audit.describe());
            if let Some(al) = &alerts_cfg {
                let text = format!(
                    "bordergate did not start: audit log `{}`: {e}",
                    cfg.audit.describe()
                );
                crate::alerts::notify(al, &text).await;
            }
            return ExitCode::from(2);
        }
    };
    let addr = cfg.listen.address;
    let header_timeout = Duration::from_secs(cfg.limits.header_timeout_secs.max(1));
    let grace = Duration::from_secs(cfg.listen.grace_secs);
    let mode = cfg.mode;
    let admin_cfg = cfg.admin.clone().map(|a| (a, cfg.listen.tls.clone()));
    let audit_source = crate::admin::AuditSource::from_config(&cfg.audit);
    let audit_path = cfg.audit.path.clone();
    let state = match State::build(cfg) {
        Ok(s) => s,
        Err(d) => {
            eprintln!("{d}");
            eprintln!("error: {} problem(s) found; not starting", d.0.len());
            audit.shutdown().await;
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("error: cannot listen on {addr}: {e}");
            audit.shutdown().await;
            return ExitCode::from(2);
        }
    };
    let local = listener.local_addr().unwrap_or(addr);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let version = state.policies.version.to_string();
    let gateway = Arc::new(Gateway::new(state, audit));
    if let Err(e) = seed_pipl_volumes(&gateway, &audit_path) {
        // Counts lower than the truth could exempt an export that needs a mechanism.
        eprintln!("error: cannot count PIPL export volumes from the audit trail: {e}");
        gateway.audit().shutdown().await;
        return ExitCode::from(2);
    }
    gateway.audit().append_nowait(event(
        "listen",
        &format!("{scheme}://{local} mode={mode:?}"),
        &version,
    ));
    // The line tests and scripts wait for.
    println!("bordergate listening on {scheme}://{local}");
    tracing::info!(%local, policy_version = %version, "bordergate listening");
    if let Some((admin, proxy_tls)) = admin_cfg {
        let spawned = match audit_source {
            Ok(source) => {
                crate::admin::spawn(&admin, proxy_tls.as_ref(), gateway.clone(), source).await
            }
            Err(e) => Err(format!("admin listener: {e}")),
        };
        match spawned {
            Ok(url) => println!("bordergate admin listening on {url}"),
            Err(e) => {
                eprintln!("error: {e}");
                gateway.audit().shutdown().await;
                return ExitCode::from(2);
            }
        }
    }

    if let Some(al) = alerts_cfg
        && let Err(e) = crate::alerts::spawn(al, gateway.clone())
    {
        eprintln!("error: {e}");
        gateway.audit().shutdown().await;
        return ExitCode::from(2);
    }

    tokio::spawn(crate::reload::on_sighup(
        gateway.clone(),
        path.clone(),
        overrides.clone(),
    ));
    // Kept alive until the server stops.
    let _watcher = match crate::reload::watch(gateway.clone(), path, overrides) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP");
            None
        }
    };
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
    ExitCode::SUCCESS
}

/// Counts this year's PIPL exports from the audit trail, so the volume bands survive a restart.
fn seed_pipl_volumes(gateway: &Gateway, audit_path: &std::path::Path) -> Result<(), String> {
    // Only a log file or a segment directory holds records (not, say, a device).
    if !(audit_path.is_file() || audit_path.is_dir()) {
        return Ok(());
    }
    let state = gateway.state();
    let operators: std::collections::HashMap<String, String> = state
        .config
        .upstreams
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.operator.clone()?)))
        .collect();
    let year = crate::pipl::year_of(time::OffsetDateTime::now_utc());
    let started = std::time::Instant::now();
    // Rotated segments (oldest first) and the active file.
    let files = crate::admin::AuditSource::file(audit_path.to_path_buf()).files()?;
    let n = gateway
        .exports()
        .seed(&files, &state.catalog, &operators, year)?;
    tracing::info!(records = n, year, elapsed = ?started.elapsed(), "PIPL export volumes counted from the audit trail");
    Ok(())
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
