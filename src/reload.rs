//! Hot reload: on SIGHUP or when a watched file changes, the whole state (config, catalog,
//! policies, registry) is rebuilt and validated, then swapped in atomically; an invalid
//! set is refused with a logged error and an audit event, and the old set keeps serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};

use crate::audit::{Record, record::EventRecord, record::now_rfc3339};
use crate::config::{Config, Diagnostics, Overrides};
use crate::proxy::Gateway;
use crate::snapshot::Snapshot;

/// How long file events are collected before one reload (editors write in several steps).
pub const DEBOUNCE: Duration = Duration::from_millis(250);

fn event(name: &str, detail: &str, version: &str) -> Record {
    Record::Event(EventRecord {
        time: now_rfc3339(),
        event: name.to_string(),
        detail: detail.to_string(),
        policy_version: Some(version.to_string()),
    })
}

/// Loads and validates a new state from `path` and swaps it in; on any error the old
/// state keeps serving. Returns the policy version in force afterwards.
pub fn reload(
    gw: &Gateway,
    path: &Path,
    o: &Overrides,
    cause: &str,
) -> Result<Arc<str>, Diagnostics> {
    let result = Config::load_with(path, o).and_then(Snapshot::build);
    match result {
        Ok(s) => {
            let v = s.policies.version.clone();
            gw.swap_state(s);
            crate::metrics::global().reload(true);
            tracing::info!(policy_version = %v, cause, "reloaded");
            gw.audit().append_nowait(event(
                "reload",
                &format!("new configuration and policies in force ({cause})"),
                &v,
            ));
            Ok(v)
        }
        Err(d) => {
            crate::metrics::global().reload(false);
            let old = gw.state().policies.version.to_string();
            tracing::error!(errors = %d, cause, "reload refused; the previous set keeps serving");
            gw.audit()
                .append_nowait(event("reload-refused", &d.to_string(), &old));
            Err(d)
        }
    }
}

/// Reloads on every SIGHUP until the process ends.
pub async fn on_sighup(gw: Arc<Gateway>, path: PathBuf, o: Overrides) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        let _ = reload(&gw, &path, &o, "SIGHUP");
    }
}

/// The files and directories a state is built from: (path, recursive).
fn watched(cfg: &Config) -> Vec<(PathBuf, bool)> {
    let mut v = vec![(cfg.policies.clone(), true)];
    for f in [cfg.source.clone(), cfg.catalog.clone(), cfg.registry_path()] {
        // Watch the directory: editors replace files by renaming.
        if let Some(d) = f.parent() {
            let d = if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            };
            v.push((d.to_path_buf(), false));
        }
    }
    v.sort();
    v.dedup();
    v
}

/// True if a changed path is one the state is built from.
fn relevant(p: &Path, cfg: &Config) -> bool {
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") {
        return false;
    }
    let same =
        |a: &Path, b: &Path| a == b || a.file_name() == b.file_name() && a.parent() == b.parent();
    p.starts_with(&cfg.policies)
        || same(p, &cfg.catalog)
        || same(p, &cfg.registry_path())
        || same(p, &cfg.source)
}

/// Watches the config, catalog, registry and policy directory; reloads (debounced) on
/// changes. The returned watcher must be kept alive.
pub fn watch(
    gw: Arc<Gateway>,
    path: PathBuf,
    o: Overrides,
) -> notify::Result<notify::RecommendedWatcher> {
    let cfg = gw.state().config.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let filter_cfg = cfg.clone();
    let mut w = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res
            && !ev.kind.is_access()
            && ev.paths.iter().any(|p| relevant(p, &filter_cfg))
        {
            let _ = tx.send(());
        }
    })?;
    for (p, recursive) in watched(&cfg) {
        let mode = if recursive {
            RecursiveMode::Recursive
        } else {
            RecursiveMode::NonRecursive
        };
        if let Err(e) = w.watch(&p, mode) {
            tracing::warn!(path = %p.display(), error = %e, "cannot watch for changes");
        }
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until the files have been quiet for a moment.
            loop {
                match tokio::time::timeout(DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            let gw = gw.clone();
            let path = path.clone();
            let o = o.clone();
            let _ =
                tokio::task::spawn_blocking(move || reload(&gw, &path, &o, "file change")).await;
        }
    });
    Ok(w)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watches_directories_of_every_input() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let cfg = match Config::load(&root.join("examples/quickstart/gateway.yaml")) {
            Ok(c) => c,
            Err(d) => panic!("{d}"),
        };
        let w = watched(&cfg);
        assert!(w.iter().any(|(p, r)| *r && *p == cfg.policies));
        assert!(
            w.iter()
                .any(|(p, r)| !*r && Some(p.as_path()) == cfg.catalog.parent())
        );
        assert!(relevant(&cfg.policies.join("eu.yaml"), &cfg));
        assert!(relevant(&cfg.policies.join("org/x.yaml"), &cfg));
        assert!(relevant(&cfg.catalog, &cfg));
        assert!(!relevant(&cfg.catalog.with_file_name("README.md"), &cfg));
        assert!(!relevant(&cfg.policies.join(".eu.yaml.swp"), &cfg));
    }
}
