//! What a state is built from — every file and directory a config names — and how to
//! watch it: the directories to watch and the paths whose change matters, found by
//! resolving every symlink on the way, so that an edit in place, a rename over the file,
//! a delete and re-create, a retargeted symlink or a Kubernetes `..data` swap are all seen.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

use crate::config::{Config, SecretRef};

/// Most symlinks followed while resolving one path (as the kernel's `ELOOP` limit).
const MAX_LINKS: usize = 40;
/// Deepest directory level read below a watched tree.
const MAX_DEPTH: usize = 8;
/// Most files read from one watched tree.
const MAX_TREE_FILES: usize = 10_000;

/// The inputs of a state, each as the config names it (relative paths stay relative to
/// the working directory, as the loaders read them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Files read whole: the config, catalog, registry, keys, JWKS, certificates.
    pub files: BTreeSet<PathBuf>,
    /// Directories read recursively: the policy pack (law files, `org/`, `tests/`).
    pub trees: BTreeSet<PathBuf>,
}

impl Inputs {
    /// Every file and directory `cfg` (and its snapshot) is built from.
    pub fn of(cfg: &Config) -> Inputs {
        let mut files = vec![cfg.source.clone(), cfg.catalog.clone(), cfg.registry_path()];
        let secret = |s: Option<&SecretRef>| match s {
            Some(SecretRef::File(p)) => Some(p.clone()),
            _ => None,
        };
        for k in &cfg.auth.keys {
            files.extend(secret(k.secret.as_ref()));
            files.extend(k.public_key.clone());
        }
        files.extend(cfg.auth.jwks.clone());
        files.extend(cfg.auth.jwks_ca.clone());
        if let Some(k) = &cfg.auth.s3_keys {
            files.push(k.path.clone());
            files.extend(secret(Some(&k.derivation_secret)));
        }
        let tls = [
            cfg.listen.tls.as_ref(),
            cfg.admin.as_ref().and_then(|a| a.tls.as_ref()),
        ];
        for t in tls.into_iter().flatten() {
            files.extend([t.cert.clone(), t.key.clone()]);
            files.extend(t.client_ca.clone());
        }
        for u in &cfg.upstreams {
            files.extend(
                u.ca.iter()
                    .chain(&u.client_cert)
                    .chain(&u.client_key)
                    .cloned(),
            );
            if let Some(s3) = &u.s3 {
                files.extend(secret(Some(&s3.access_key)));
                files.extend(secret(Some(&s3.secret_key)));
            }
        }
        files.extend(cfg.audit.checkpoint_key.clone());
        files.extend(cfg.alerts.as_ref().and_then(|a| a.ca.clone()));
        Inputs {
            files: files
                .into_iter()
                .filter(|p| !p.as_os_str().is_empty())
                .collect(),
            trees: BTreeSet::from([cfg.policies.clone()]),
        }
    }

    /// Adds the inputs of another config (the one on disk beside the one in force).
    pub fn merge(&mut self, other: Inputs) {
        self.files.extend(other.files);
        self.trees.extend(other.trees);
    }

    /// Every file read: the files, and the policy files (`*.yaml`, `*.yml`, not hidden)
    /// found in the trees, through symlinks. A tree that cannot be read is listed itself.
    pub fn read_list(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.files.iter().cloned().collect();
        for t in &self.trees {
            if std::fs::read_dir(t).is_err() {
                out.push(t.clone());
                continue;
            }
            let mut found = Vec::new();
            walk(t, 0, &mut found);
            out.extend(found);
        }
        out.sort();
        out.dedup();
        out
    }
}

/// The policy files below `dir`, following symlinks, skipping hidden entries (editor
/// files, Kubernetes' `..data` and timestamped directories: their files are reached
/// through the visible symlinks).
fn walk(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = rd
        .filter_map(|e| e.ok())
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if out.len() >= MAX_TREE_FILES {
            return;
        }
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() && depth < MAX_DEPTH => walk(&p, depth + 1, out),
            Ok(m) if m.is_file() && is_policy_file(&p) => out.push(p),
            _ => {}
        }
    }
}

fn is_policy_file(p: &Path) -> bool {
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// Names editors write beside the file they edit; never an input.
fn is_editor_noise(p: &Path) -> bool {
    let n = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    n.ends_with('~') || n.ends_with(".swp") || n.ends_with(".swx") || n == "4913"
}

/// What to watch for a set of inputs, and which changed paths matter.
#[derive(Debug, Default)]
pub struct Plan {
    /// Directory (resolved) → watched recursively.
    pub watches: BTreeMap<PathBuf, bool>,
    /// Paths (resolved parent + name) whose change alters an input: the files, and every
    /// symlink they are reached through.
    triggers: HashSet<PathBuf>,
    /// The trees (resolved): any change below them may alter an input.
    trees: Vec<PathBuf>,
}

impl Plan {
    pub fn of(inputs: &Inputs) -> Plan {
        let mut plan = Plan::default();
        for t in &inputs.trees {
            let c = chain(t);
            if let Some(root) = c.last()
                && root.is_dir()
            {
                plan.trees.push(root.clone());
                plan.watches.insert(root.clone(), true);
            }
            plan.add_chain(c);
        }
        for f in &inputs.files {
            plan.add_chain(chain(f));
        }
        // Files of a tree reached through a symlink pointing elsewhere.
        for f in inputs.read_list() {
            if !inputs.files.contains(&f)
                && std::fs::symlink_metadata(&f).is_ok_and(|m| m.file_type().is_symlink())
            {
                plan.add_chain(chain(&f));
            }
        }
        // A tree's recursive watch already covers the directories inside it.
        let trees = plan.trees.clone();
        plan.watches
            .retain(|d, recursive| *recursive || !trees.iter().any(|t| d.starts_with(t)));
        plan
    }

    fn add_chain(&mut self, chain: Vec<PathBuf>) {
        for p in chain {
            if let Some(d) = p.parent()
                && d.is_dir()
            {
                self.watches.entry(d.to_path_buf()).or_insert(false);
            }
            self.triggers.insert(p);
        }
    }

    /// True if a change to `p` (a path from a file event) may alter an input.
    pub fn relevant(&self, p: &Path) -> bool {
        if is_editor_noise(p) {
            return false;
        }
        // Events name a watched (resolved) directory joined with an entry: most need no
        // lookup on disk.
        let k = match p.parent() {
            Some(d) if self.watches.contains_key(d) => p.to_path_buf(),
            _ => resolved_key(p),
        };
        self.triggers.contains(&k)
            || self.watches.contains_key(&k)
            || self.trees.iter().any(|t| k.starts_with(t))
    }
}

/// `p` as its resolved directory joined with its own name (the name itself, perhaps a
/// symlink or already gone, is not followed).
fn resolved_key(p: &Path) -> PathBuf {
    let abs = absolute(p);
    match (abs.parent(), abs.file_name()) {
        (Some(d), Some(n)) => std::fs::canonicalize(d)
            .map(|d| d.join(n))
            .unwrap_or_else(|_| abs.clone()),
        _ => abs,
    }
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(d) => d.join(p),
        Err(_) => p.to_path_buf(),
    }
}

/// Every path whose change alters what reading `path` yields: each symlink met while
/// resolving it, then the path finally reached, each as a resolved directory joined with
/// a name. What does not exist (yet) is taken as written.
pub fn chain(path: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut resolved = PathBuf::from("/");
    let mut todo: VecDeque<OsString> = VecDeque::new();
    push_front(&mut todo, &mut resolved, &absolute(path));
    let mut links = 0;
    while let Some(c) = todo.pop_front() {
        if c == ".." {
            resolved.pop();
            continue;
        }
        let candidate = resolved.join(&c);
        let link = match std::fs::symlink_metadata(&candidate) {
            Ok(m) if m.file_type().is_symlink() => std::fs::read_link(&candidate).ok(),
            Ok(_) => {
                resolved = candidate;
                continue;
            }
            Err(_) => None,
        };
        let missing = link.is_none();
        out.push(candidate.clone());
        links += 1;
        match link {
            Some(target) if links <= MAX_LINKS => push_front(&mut todo, &mut resolved, &target),
            _ => {
                // Gone, unreadable or a loop: the rest as written.
                resolved = candidate;
                for rest in todo.drain(..) {
                    resolved.push(rest);
                }
                if missing {
                    out.pop();
                }
                break;
            }
        }
    }
    out.push(resolved);
    out.dedup();
    out
}

/// Puts the components of `p` before those still to resolve; an absolute `p` restarts
/// from the root.
fn push_front(todo: &mut VecDeque<OsString>, resolved: &mut PathBuf, p: &Path) {
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                *resolved = PathBuf::from("/");
                parts.clear();
            }
            Component::CurDir => {}
            Component::ParentDir => parts.push(OsString::from("..")),
            Component::Normal(n) => parts.push(n.to_os_string()),
        }
    }
    for part in parts.into_iter().rev() {
        todo.push_front(part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn canon(p: &Path) -> PathBuf {
        std::fs::canonicalize(p).unwrap()
    }

    /// A path to `abs` relative to the working directory, as an operator types it.
    fn relative_to_cwd(abs: &Path) -> PathBuf {
        let cwd = canon(&std::env::current_dir().unwrap());
        let mut rel = PathBuf::new();
        for _ in cwd.components().skip(1) {
            rel.push("..");
        }
        rel.join(abs.strip_prefix("/").unwrap())
    }

    #[test]
    fn every_file_a_config_names_is_an_input() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let text = "\
listen: {address: '127.0.0.1:8080', tls: {cert: tls/cert.pem, key: tls/key.pem}}
auth:
  issuer: i
  audience: a
  keys:
    - {kid: hs, alg: HS256, secret: {file: keys/hs.secret}}
    - {kid: ed, alg: EdDSA, public_key: keys/ed.pem}
  jwks: keys/jwks.json
upstreams: [{name: u, url: 'http://127.0.0.1:9', jurisdiction: DE, ca: up-ca.pem}]
routes: [{prefix: /d, upstream: u}]
catalog: catalog.yaml
policies: policies
audit: {path: audit.log}
";
        let cfg = Config::from_text(&d.join("gateway.yaml"), text, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
        let i = Inputs::of(&cfg);
        for f in [
            "gateway.yaml",
            "catalog.yaml",
            "policies/registry.yaml",
            "keys/hs.secret",
            "keys/ed.pem",
            "keys/jwks.json",
            "tls/cert.pem",
            "tls/key.pem",
            "up-ca.pem",
        ] {
            assert!(i.files.contains(&d.join(f)), "{f} in {:?}", i.files);
        }
        assert!(
            !i.files.contains(&d.join("audit.log")),
            "the log is written, not read"
        );
        assert_eq!(i.trees, BTreeSet::from([d.join("policies")]));
    }

    #[test]
    fn a_relative_path_matches_the_absolute_paths_events_carry() {
        let dir = tempfile::tempdir().unwrap();
        let d = canon(dir.path());
        std::fs::write(d.join("registry.yaml"), "organisations: []\n").unwrap();
        std::fs::create_dir(d.join("policies")).unwrap();
        let rel = relative_to_cwd(&d);
        assert!(rel.is_relative());
        let inputs = Inputs {
            files: BTreeSet::from([rel.join("registry.yaml")]),
            trees: BTreeSet::from([rel.join("policies")]),
        };
        let plan = Plan::of(&inputs);
        assert_eq!(plan.watches.get(&d), Some(&false), "{:?}", plan.watches);
        assert_eq!(plan.watches.get(&d.join("policies")), Some(&true));
        assert!(plan.relevant(&d.join("registry.yaml")));
        assert!(plan.relevant(&d.join("policies/org/acme.yaml")));
        assert!(!plan.relevant(&d.join("audit.log")));
        assert!(!plan.relevant(&d.join("policies/.eu.yaml.swp")));
    }

    #[test]
    fn a_kubernetes_data_swap_is_a_change_of_the_file() {
        // The layout kubelet gives a ConfigMap volume.
        let dir = tempfile::tempdir().unwrap();
        let d = canon(dir.path());
        std::fs::create_dir(d.join("..2024_01_01")).unwrap();
        std::fs::write(d.join("..2024_01_01/catalog.yaml"), "entries: []\n").unwrap();
        symlink("..2024_01_01", d.join("..data")).unwrap();
        symlink("..data/catalog.yaml", d.join("catalog.yaml")).unwrap();
        let c = chain(&d.join("catalog.yaml"));
        assert_eq!(
            c,
            vec![
                d.join("catalog.yaml"),
                d.join("..data"),
                d.join("..2024_01_01/catalog.yaml")
            ]
        );
        let plan = Plan::of(&Inputs {
            files: BTreeSet::from([d.join("catalog.yaml")]),
            trees: BTreeSet::new(),
        });
        assert!(plan.watches.contains_key(&d));
        assert!(plan.watches.contains_key(&d.join("..2024_01_01")));
        assert!(
            plan.relevant(&d.join("..data")),
            "the swap renames `..data`"
        );
        assert!(plan.relevant(&d.join("..2024_01_01/catalog.yaml")));
        assert!(!plan.relevant(&d.join("..data_tmp")));
    }

    #[test]
    fn a_chain_through_a_missing_or_looping_link_ends() {
        let dir = tempfile::tempdir().unwrap();
        let d = canon(dir.path());
        assert_eq!(chain(&d.join("gone/x.yaml")), vec![d.join("gone/x.yaml")]);
        symlink("b", d.join("a")).unwrap();
        symlink("a", d.join("b")).unwrap();
        let c = chain(&d.join("a"));
        assert!(
            c.contains(&d.join("a")) && c.contains(&d.join("b")),
            "{c:?}"
        );
        symlink("nowhere", d.join("dangling")).unwrap();
        assert_eq!(
            chain(&d.join("dangling")),
            vec![d.join("dangling"), d.join("nowhere")]
        );
    }

    #[test]
    fn a_tree_lists_policy_files_through_symlinks_and_skips_hidden_ones() {
        let dir = tempfile::tempdir().unwrap();
        let d = canon(dir.path());
        let p = d.join("policies");
        std::fs::create_dir_all(p.join("org")).unwrap();
        std::fs::create_dir_all(p.join("..2024")).unwrap();
        std::fs::write(p.join("..2024/eu.yaml"), "x").unwrap();
        symlink("..2024/eu.yaml", p.join("eu.yaml")).unwrap();
        std::fs::write(p.join("org/acme.yml"), "x").unwrap();
        std::fs::write(p.join("README.md"), "x").unwrap();
        std::fs::write(p.join(".eu.yaml.swp"), "x").unwrap();
        let inputs = Inputs {
            files: BTreeSet::new(),
            trees: BTreeSet::from([p.clone()]),
        };
        assert_eq!(
            inputs.read_list(),
            vec![p.join("eu.yaml"), p.join("org/acme.yml")]
        );
        let missing = Inputs {
            files: BTreeSet::new(),
            trees: BTreeSet::from([d.join("nope")]),
        };
        assert_eq!(missing.read_list(), vec![d.join("nope")]);
    }
}
