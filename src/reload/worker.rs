//! The reload worker: one thread that takes SIGHUPs and file events in turn, waits for
//! the inputs to settle, builds, and puts in force or refuses — so two reloads never race
//! to swap. It keeps the watches on what the current inputs resolve to.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use super::fingerprint::Fingerprint;
use super::inputs::{Inputs, Plan};
use super::{Cause, MAX_WAIT, SETTLE};
use crate::config::{Config, Diagnostic, Diagnostics, Overrides};
use crate::proxy::Gateway;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Msg {
    /// A watched path changed.
    Changed,
    /// SIGHUP: reload even if nothing changed.
    Hangup,
}

/// Why waiting for a set to settle ended without one.
#[derive(Debug, PartialEq, Eq)]
pub enum Unsettled {
    /// Still changing after [`MAX_WAIT`]; the files that changed during the last window.
    Changing(Vec<String>),
    /// Nothing can send events any more.
    Closed,
}

/// Waits until two reads of the inputs, `window` apart, agree, and returns the last
/// one; events arriving meanwhile are taken in. A SIGHUP ends the wait at once (the
/// operator says the files are ready) and sets `hangup`. Gives up once `deadline` has
/// passed.
pub fn settle(
    rx: &Receiver<Msg>,
    window: Duration,
    deadline: Instant,
    hangup: &mut bool,
    mut read: impl FnMut() -> Fingerprint,
) -> Result<Fingerprint, Unsettled> {
    let mut before = read();
    loop {
        let end = Instant::now() + window;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(Msg::Hangup) => {
                    *hangup = true;
                    return Ok(read());
                }
                Ok(Msg::Changed) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(Unsettled::Closed),
            }
        }
        let after = read();
        if after == before {
            return Ok(after);
        }
        if Instant::now() >= deadline {
            return Err(Unsettled::Changing(after.changes(&before)));
        }
        before = after;
    }
}

pub struct Worker {
    gw: Arc<Gateway>,
    path: PathBuf,
    overrides: Overrides,
    /// To look again after the watches moved.
    tx: Sender<Msg>,
    rx: Receiver<Msg>,
    watcher: Option<RecommendedWatcher>,
    /// What the watcher's callback decides relevance with.
    plan: Arc<ArcSwap<Plan>>,
    /// Directories watched now (→ recursively).
    watching: std::collections::BTreeMap<PathBuf, bool>,
    /// The inputs of the set in force, as read when it was built.
    in_force: Fingerprint,
    /// The last set refused, not to be refused again until it changes.
    refused: Option<Fingerprint>,
}

impl Worker {
    pub fn new(
        gw: Arc<Gateway>,
        path: PathBuf,
        overrides: Overrides,
        baseline: Fingerprint,
        (tx, rx): (Sender<Msg>, Receiver<Msg>),
    ) -> Worker {
        let plan = Arc::new(ArcSwap::from_pointee(Plan::default()));
        let (events, filter) = (tx.clone(), plan.clone());
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let look = match res {
                Ok(ev) => {
                    // Events were lost (queue overflow): any input may have changed.
                    ev.need_rescan()
                        || !ev.kind.is_access()
                            && ev.paths.iter().any(|p| filter.load().relevant(p))
                }
                // The fingerprint tells whether anything changed.
                Err(_) => true,
            };
            if look {
                let _ = events.send(Msg::Changed);
            }
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch files; reload with SIGHUP");
                None
            }
        };
        Worker {
            gw,
            path,
            overrides,
            tx,
            rx,
            watcher,
            plan,
            watching: Default::default(),
            in_force: baseline,
            refused: None,
        }
    }

    pub fn run(mut self) {
        self.rewatch();
        // Changed since the set in force was read, before anything watched.
        if self.read() != self.in_force {
            let _ = self.tx.send(Msg::Changed);
        }
        while let Ok(msg) = self.rx.recv() {
            self.cycle(msg == Msg::Hangup);
        }
    }

    /// The inputs of the set in force and of the config now on disk (when it loads).
    fn inputs(&self) -> Inputs {
        let mut i = Inputs::of(&self.gw.state().config);
        i.files.insert(self.path.clone());
        if let Ok(cfg) = Config::load_with(&self.path, &self.overrides) {
            i.merge(Inputs::of(&cfg));
        }
        i
    }

    fn read(&self) -> Fingerprint {
        Fingerprint::of(&self.inputs())
    }

    /// One reload: settle (unless SIGHUP), build, check the set did not change while it
    /// was read, then put it in force or refuse it.
    fn cycle(&mut self, mut hangup: bool) {
        let started = Instant::now();
        let deadline = started + MAX_WAIT;
        let mut settled = if hangup {
            Ok(self.read())
        } else {
            self.settle(deadline, &mut hangup)
        };
        let last = loop {
            let now = match settled {
                Ok(f) => f,
                Err(Unsettled::Closed) => return,
                Err(Unsettled::Changing(changes)) => {
                    let why = Diagnostics(vec![Diagnostic::new(
                        &self.path,
                        None,
                        format!(
                            "the files kept changing for {} s; waiting for them to settle",
                            MAX_WAIT.as_secs()
                        ),
                    )]);
                    let cause = Cause {
                        trigger: "file change",
                        changes,
                    };
                    super::refuse(&self.gw, &why, &cause);
                    // Keep waiting: the writer may be done by now.
                    let _ = self.tx.send(Msg::Changed);
                    break None;
                }
            };
            if !hangup && (now == self.in_force || self.refused.as_ref() == Some(&now)) {
                tracing::debug!("inputs unchanged; nothing to reload");
                break Some(now);
            }
            let cause = Cause {
                trigger: if hangup { "SIGHUP" } else { "file change" },
                changes: now.changes(&self.in_force),
            };
            let built = super::build(&self.path, &self.overrides);
            let after = self.read();
            if after != now {
                tracing::info!("inputs changed while they were read; waiting for them to settle");
                settled = self.settle(deadline, &mut hangup);
                continue;
            }
            match built {
                Ok(s) => {
                    super::commit(&self.gw, s, &cause);
                    // Inputs only the previous config named are no longer inputs.
                    let now = now.restricted(&self.inputs().read_list());
                    self.in_force = now.clone();
                    self.refused = None;
                    break Some(now);
                }
                Err(d) => {
                    super::refuse(&self.gw, &d, &cause);
                    self.refused = Some(now.clone());
                    break Some(now);
                }
            }
        };
        self.rewatch();
        // A change made before the new watches were in place would go unseen.
        if let Some(last) = last
            && self.read() != last
        {
            let _ = self.tx.send(Msg::Changed);
        }
    }

    fn settle(&self, deadline: Instant, hangup: &mut bool) -> Result<Fingerprint, Unsettled> {
        settle(&self.rx, SETTLE, deadline, hangup, || self.read())
    }

    /// Watches what the inputs resolve to now (a swap may have moved them), and no more.
    fn rewatch(&mut self) {
        let plan = Plan::of(&self.inputs());
        if let Some(w) = &mut self.watcher {
            for (dir, recursive) in &self.watching {
                if plan.watches.get(dir) != Some(recursive) {
                    let _ = w.unwatch(dir);
                }
            }
            // Watching again re-arms a directory that was replaced.
            for (dir, recursive) in &plan.watches {
                let mode = if *recursive {
                    RecursiveMode::Recursive
                } else {
                    RecursiveMode::NonRecursive
                };
                if let Err(e) = w.watch(dir, mode)
                    && !self.watching.contains_key(dir)
                {
                    tracing::warn!(path = %dir.display(), error = %e, "cannot watch for changes");
                }
            }
        }
        self.watching = plan.watches.clone();
        self.plan.store(Arc::new(plan));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn a_file_written_in_two_pieces_settles_on_the_whole() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("org.yaml");
        std::fs::write(&f, "rules:\n").unwrap();
        let inputs = Inputs {
            files: BTreeSet::from([f.clone()]),
            trees: BTreeSet::new(),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let writer = {
            let f = f.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut w = std::fs::File::create(&f).unwrap();
                w.write_all(b"rules:\n  - a\n").unwrap();
                tx.send(Msg::Changed).unwrap();
                std::thread::sleep(Duration::from_millis(150));
                w.write_all(b"  - b\n").unwrap();
                tx.send(Msg::Changed).unwrap();
                tx
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let mut hangup = false;
        let deadline = Instant::now() + Duration::from_secs(5);
        let got = settle(
            &rx,
            Duration::from_millis(300),
            deadline,
            &mut hangup,
            || Fingerprint::of(&inputs),
        )
        .unwrap();
        let tx = writer.join().unwrap();
        assert_eq!(
            std::fs::read_to_string(&f).unwrap(),
            "rules:\n  - a\n  - b\n"
        );
        assert_eq!(got, Fingerprint::of(&inputs), "settled on the whole file");
        assert!(!hangup);

        // A file that never stops changing is given up on at the deadline.
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_millis(100);
        let r = settle(
            &rx,
            Duration::from_millis(30),
            deadline,
            &mut hangup,
            || {
                n += 1;
                std::fs::write(&f, format!("rules: [{n}]\n")).unwrap();
                Fingerprint::of(&inputs)
            },
        );
        assert!(matches!(r, Err(Unsettled::Changing(c)) if c.len() == 1));
        // A SIGHUP ends the wait.
        tx.send(Msg::Hangup).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let asked = Instant::now();
        let r = settle(&rx, Duration::from_secs(30), deadline, &mut hangup, || {
            Fingerprint::default()
        });
        assert!(hangup && asked.elapsed() < Duration::from_secs(5));
        assert_eq!(r, Ok(Fingerprint::default()));
        drop(tx);
        let r = settle(&rx, Duration::from_secs(30), deadline, &mut hangup, || {
            Fingerprint::default()
        });
        assert_eq!(r, Err(Unsettled::Closed));
    }
}
