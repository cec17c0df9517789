//! Hot reload: on SIGHUP, or when any input of the state in force changes (the config,
//! catalog, registry, policy pack, key and JWKS files, certificates), the whole state is
//! rebuilt from a set of files that has stopped changing, validated, checked against the
//! pack's own test cases, then swapped in atomically with a `reload` audit event naming
//! what changed. A set that fails any of this is refused with a `reload-refused` event
//! carrying every diagnostic, and the old set keeps serving.
//!
//! A set is stable when two reads of every input, one [`SETTLE`] apart, agree: a file
//! written in pieces with pauses shorter than that is never loaded half-written. A set
//! still changing after [`MAX_WAIT`] is refused, and waited for again.

mod fingerprint;
mod inputs;
mod worker;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::audit::{Record, record::EventRecord, record::now_rfc3339};
use crate::config::{Config, Diagnostic, Diagnostics, Overrides};
use crate::proxy::Gateway;
use crate::snapshot::Snapshot;

/// How far apart the two reads that must agree are; also the longest pause a writer may
/// make between two pieces of a file.
pub const SETTLE: Duration = Duration::from_millis(1000);

/// Longest wait for a changing set to settle before the change is refused.
pub const MAX_WAIT: Duration = Duration::from_secs(10);

/// The inputs of a config as read before its snapshot is built: what the reloader
/// compares the files with, so a change made while the gateway was starting is not
/// missed.
#[derive(Clone, Debug)]
pub struct Baseline(fingerprint::Fingerprint);

impl Baseline {
    pub fn read(cfg: &Config) -> Baseline {
        Baseline(fingerprint::Fingerprint::of(&inputs::Inputs::of(cfg)))
    }
}

/// Starts reloading on SIGHUP and on file changes, for as long as the process runs.
/// `path` and `overrides` are those the gateway was started with, `baseline` was read
/// before the snapshot in force was built. Needs a tokio runtime.
pub fn spawn(gw: Arc<Gateway>, path: PathBuf, overrides: Overrides, baseline: Baseline) {
    let (tx, rx) = std::sync::mpsc::channel();
    let hup = tx.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let mut s = match signal(SignalKind::hangup()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP");
                return;
            }
        };
        while s.recv().await.is_some() {
            if hup.send(worker::Msg::Hangup).is_err() {
                return;
            }
        }
    });
    let rt = tokio::runtime::Handle::current();
    let w = worker::Worker::new(gw, path, overrides, baseline.0, (tx, rx));
    let started = std::thread::Builder::new()
        .name("bordergate-reload".into())
        .spawn(move || {
            // Building a snapshot may need the runtime (upstream clients).
            let _rt = rt.enter();
            w.run();
        });
    if let Err(e) = started {
        tracing::error!(error = %e, "cannot start the reloader; restart to apply changes");
    }
}

/// Why a reload was attempted: the trigger and the files that changed.
#[derive(Clone, Debug)]
struct Cause {
    /// `SIGHUP` or `file change`.
    trigger: &'static str,
    /// "`path` changed", one per file.
    changes: Vec<String>,
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.changes.is_empty() {
            write!(f, "{}; no input changed", self.trigger)
        } else {
            write!(f, "{}: {}", self.trigger, self.changes.join(", "))
        }
    }
}

/// Loads the config at `path`, builds its snapshot and runs the pack's own test cases:
/// the snapshot a reload may swap in, or every reason it may not.
pub fn build(path: &Path, overrides: &Overrides) -> Result<Snapshot, Diagnostics> {
    let snapshot = Config::load_with(path, overrides).and_then(Snapshot::build)?;
    let dir = &snapshot.config.policies;
    let report = crate::policy::testing::run_pack(dir)?;
    if report.failures.is_empty() {
        Ok(snapshot)
    } else {
        Err(Diagnostics(
            report
                .failures
                .iter()
                .map(|f| Diagnostic::new(dir, None, format!("policy test case fails: {f}")))
                .collect(),
        ))
    }
}

fn event(name: &str, detail: String, version: &str) -> Record {
    Record::Event(EventRecord {
        time: now_rfc3339(),
        event: name.to_string(),
        detail,
        policy_version: Some(version.to_string()),
    })
}

/// Puts `s` in force. The `reload` event is queued before the swap, so it precedes in
/// the log every decision taken with the new set.
fn commit(gw: &Gateway, s: Snapshot, cause: &Cause) -> Arc<str> {
    let v = s.policies.version.clone();
    gw.audit().append_nowait(event(
        "reload",
        format!("new configuration and policies in force ({cause})"),
        &v,
    ));
    gw.swap_state(s);
    crate::metrics::global().reload(true);
    tracing::info!(policy_version = %v, %cause, "reloaded");
    v
}

/// Records that the set described by `why` was not put in force.
fn refuse(gw: &Gateway, why: &Diagnostics, cause: &Cause) {
    crate::metrics::global().reload(false);
    let old = gw.state().policies.version.to_string();
    tracing::error!(errors = %why, %cause, "reload refused; the previous set keeps serving");
    gw.audit().append_nowait(event(
        "reload-refused",
        format!("the previous set keeps serving ({cause}):\n{why}"),
        &old,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    /// A work dir with a plain-HTTP config using the policy pack at `policies`.
    fn work_dir(policies: &Path) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("store")).unwrap();
        std::fs::write(d.join("hs.secret"), "0123456789abcdef0123456789abcdef\n").unwrap();
        for f in ["catalog.yaml", "registry.yaml"] {
            std::fs::copy(root().join("examples/quickstart").join(f), d.join(f)).unwrap();
        }
        let text = format!(
            "listen: {{address: '127.0.0.1:0', plaintext: true}}
auth: {{issuer: i, audience: a, keys: [{{kid: k, alg: HS256, secret: {{file: hs.secret}}}}]}}
upstreams: [{{name: eu, url: 'file://store', jurisdiction: DE}}]
routes: [{{prefix: /datasets/, upstream: eu}}]
catalog: catalog.yaml
policies: {}
registry: registry.yaml
audit: {{path: audit.log}}
",
            policies.display()
        );
        std::fs::write(d.join("gateway.yaml"), text).unwrap();
        let cfg = d.join("gateway.yaml");
        (dir, cfg)
    }

    #[test]
    fn a_set_builds_when_its_pack_tests_pass() {
        let (_d, cfg) = work_dir(&root().join("policies"));
        let s = build(&cfg, &Overrides::default()).unwrap_or_else(|d| panic!("{d}"));
        assert!(s.policies.version.starts_with("sha256:"));
    }

    #[test]
    fn a_pack_without_tests_has_no_cases_and_a_failing_case_refuses_the_set() {
        let pack = tempfile::tempdir().unwrap();
        let p = pack.path();
        for f in ["eu.yaml", "uk.yaml"] {
            std::fs::copy(root().join("policies").join(f), p.join(f)).unwrap();
        }
        std::fs::create_dir(p.join("tests")).unwrap();
        let (_d, cfg) = work_dir(p);
        build(&cfg, &Overrides::default()).unwrap_or_else(|d| panic!("an empty tests/: {d}"));
        std::fs::remove_dir(p.join("tests")).unwrap();
        build(&cfg, &Overrides::default()).unwrap_or_else(|d| panic!("no tests/: {d}"));

        std::fs::create_dir(p.join("tests")).unwrap();
        std::fs::write(p.join("tests/registry.yaml"), "organisations: []\n").unwrap();
        std::fs::write(
            p.join("tests/eu.yaml"),
            "cases:\n  - { name: australia is adequate, to: AU, date: 2026-03-01, \
             data: { origins: [DE], categories: [personal] }, expect: allow }\n",
        )
        .unwrap();
        let e = build(&cfg, &Overrides::default()).unwrap_err();
        assert_eq!(e.0.len(), 1, "{e}");
        let e = e.to_string();
        assert!(e.contains("policy test case fails"), "{e}");
        assert!(
            e.contains("`australia is adequate`: expected Allow, got Deny"),
            "{e}"
        );
    }
}
