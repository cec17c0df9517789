//! The fingerprint of a state's inputs: the SHA-256 of every file read, read through
//! symlinks. Two equal fingerprints a moment apart mean the set stopped changing; two
//! different ones name the files that changed.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::inputs::Inputs;

/// File → digest of its content (`None`: missing or unreadable).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint(BTreeMap<PathBuf, Option<[u8; 32]>>);

impl Fingerprint {
    /// Reads every input now.
    pub fn of(inputs: &Inputs) -> Fingerprint {
        Fingerprint(
            inputs
                .read_list()
                .into_iter()
                .map(|p| {
                    let d = digest(&p);
                    (p, d)
                })
                .collect(),
        )
    }

    /// Only the entries of `files`.
    pub fn restricted(&self, files: &[PathBuf]) -> Fingerprint {
        Fingerprint(
            files
                .iter()
                .filter_map(|f| Some((f.clone(), *self.0.get(f)?)))
                .collect(),
        )
    }

    /// What differs from `before`, one entry per file: "`path` changed" (or added,
    /// removed), in path order.
    pub fn changes(&self, before: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let mut paths: Vec<&PathBuf> = self.0.keys().chain(before.0.keys()).collect();
        paths.sort();
        paths.dedup();
        for p in paths {
            let what = match (
                before.0.get(p).copied().flatten(),
                self.0.get(p).copied().flatten(),
            ) {
                (a, b) if a == b => continue,
                (None, Some(_)) => "added",
                (Some(_), None) => "removed",
                _ => "changed",
            };
            out.push(format!("`{}` {what}", p.display()));
        }
        out
    }
}

fn digest(p: &Path) -> Option<[u8; 32]> {
    let mut f = std::fs::File::open(p).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => ctx.update(buf.get(..n)?),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    ctx.finish().as_ref().try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn changes_name_each_file_added_changed_or_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let p = d.join("policies");
        std::fs::create_dir(&p).unwrap();
        std::fs::write(p.join("eu.yaml"), "a").unwrap();
        std::fs::write(p.join("uk.yaml"), "a").unwrap();
        std::fs::write(d.join("catalog.yaml"), "a").unwrap();
        let inputs = Inputs {
            files: BTreeSet::from([d.join("catalog.yaml"), d.join("key.pem")]),
            trees: BTreeSet::from([p.clone()]),
        };
        let before = Fingerprint::of(&inputs);
        assert_eq!(Fingerprint::of(&inputs), before, "reading twice agrees");
        assert!(before.changes(&before).is_empty());

        std::fs::write(p.join("eu.yaml"), "b").unwrap();
        std::fs::remove_file(p.join("uk.yaml")).unwrap();
        std::fs::write(d.join("key.pem"), "k").unwrap();
        std::fs::write(p.join("README.md"), "not an input").unwrap();
        // Rewritten with the same bytes: not a change.
        std::fs::write(d.join("catalog.yaml"), "a").unwrap();
        let after = Fingerprint::of(&inputs);
        let catalog = [d.join("catalog.yaml")];
        assert_eq!(after.restricted(&catalog), before.restricted(&catalog));
        assert_eq!(after.restricted(&catalog).changes(&after).len(), 2);
        assert_eq!(
            after.changes(&before),
            vec![
                format!("`{}` added", d.join("key.pem").display()),
                format!("`{}` changed", p.join("eu.yaml").display()),
                format!("`{}` removed", p.join("uk.yaml").display()),
            ]
        );
    }
}
