//! Loading the config file: read and parse it, record the line of every key, resolve
//! relative paths against its directory, apply the command line's overrides, validate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::{Config, Diagnostic, Diagnostics, Lines, SecretRef, parse_yaml, read_yaml};

/// Settings given on the command line in place of the file's (`bordergate serve`); a
/// reload applies them again, so they hold for as long as the process runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    /// `--listen`: the proxy's address instead of `listen.address`.
    pub listen: Option<SocketAddr>,
    /// `--audit-log`: the audit log file instead of `audit.path`.
    pub audit_path: Option<PathBuf>,
    /// `--admin-listen`: the admin listener's address instead of `admin.address`.
    pub admin_listen: Option<SocketAddr>,
    /// `--name`: this replica's name instead of `name`.
    pub name: Option<String>,
    /// `--region`: this replica's region instead of `region`.
    pub region: Option<String>,
}

impl Overrides {
    /// Puts the overrides into `cfg`; an override the config has no place for is an error.
    pub fn apply(&self, cfg: &mut Config) -> Result<(), Diagnostic> {
        if let Some(l) = self.listen {
            cfg.listen.address = l;
        }
        if let Some(p) = &self.audit_path {
            cfg.audit.path = p.clone();
        }
        if let Some(n) = &self.name {
            cfg.name = Some(n.clone());
        }
        if let Some(r) = &self.region {
            cfg.region = Some(r.clone());
        }
        if let Some(l) = self.admin_listen {
            match cfg.admin.as_mut() {
                Some(admin) => admin.address = l,
                None => {
                    return Err(Diagnostic::new(
                        &cfg.source,
                        None,
                        "`--admin-listen` given but the config has no `admin:` section",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Config {
    /// Loads the file, resolves relative paths against its directory and validates it,
    /// reporting every problem with its line.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        Config::load_with(path, &Overrides::default())
    }

    /// [`Config::load`] with the command line's overrides applied before validation.
    pub fn load_with(path: &Path, overrides: &Overrides) -> Result<Config, Diagnostics> {
        let text = read_yaml(path).map_err(|d| Diagnostics(vec![d]))?;
        Config::from_text(path, &text, overrides)
    }

    /// Parses and validates config text read from `path` (which relative paths are
    /// resolved against and messages name).
    pub fn from_text(
        path: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Config, Diagnostics> {
        let mut cfg: Config = parse_yaml(path, text).map_err(|d| Diagnostics(vec![d]))?;
        cfg.source = path.to_path_buf();
        cfg.lines = Lines::parse(text);
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        cfg.resolve_paths(&base);
        let mut errors = Vec::new();
        if let Err(d) = overrides.apply(&mut cfg) {
            errors.push(d);
        }
        if cfg.name.is_none() {
            cfg.name = Some(super::default_name());
        }
        errors.extend(cfg.validate());
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(Diagnostics(errors))
        }
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(tls) = &mut self.listen.tls {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
        for k in &mut self.auth.keys {
            if let Some(SecretRef::File(p)) = &mut k.secret {
                fix(p);
            }
            if let Some(p) = &mut k.public_key {
                fix(p);
            }
        }
        // A URL given as `jwks` is left as written, for validation to name it.
        if let Some(j) = &mut self.auth.jwks
            && !j.to_string_lossy().contains("://")
        {
            fix(j);
        }
        if let Some(ca) = &mut self.auth.jwks_ca {
            fix(ca);
        }
        if let Some(k) = &mut self.auth.s3_keys {
            fix(&mut k.path);
            if let SecretRef::File(p) = &mut k.derivation_secret {
                fix(p);
            }
        }
        for u in &mut self.upstreams {
            if let Some(dir) = u.url.strip_prefix("file://") {
                let p = Path::new(dir);
                if p.is_relative() {
                    u.url = format!("file://{}", base.join(p).display());
                }
            }
            if let Some(s3) = &mut u.s3 {
                for r in [&mut s3.access_key, &mut s3.secret_key] {
                    if let SecretRef::File(p) = r {
                        fix(p);
                    }
                }
            }
            for p in [&mut u.ca, &mut u.client_cert, &mut u.client_key]
                .into_iter()
                .flatten()
            {
                fix(p);
            }
        }
        fix(&mut self.catalog);
        fix(&mut self.policies);
        match &mut self.registry {
            Some(r) => fix(r),
            None => self.registry = Some(self.policies.join("registry.yaml")),
        }
        if !self.audit.path.as_os_str().is_empty() {
            fix(&mut self.audit.path);
        }
        if let Some(SecretRef::File(p)) = self.audit.postgres.as_mut().and_then(|p| p.url.as_mut())
        {
            fix(p);
        }
        if let Some(p) = self.audit.postgres.as_mut().and_then(|p| p.spool.as_mut()) {
            fix(p);
        }
        if let Some(ca) = self.alerts.as_mut().and_then(|a| a.ca.as_mut()) {
            fix(ca);
        }
        if let Some(o) = self.admin.as_mut().and_then(|a| a.oidc.as_mut()) {
            for s in [Some(&mut o.session_secret), o.client_secret.as_mut()]
                .into_iter()
                .flatten()
            {
                if let SecretRef::File(p) = s {
                    fix(p);
                }
            }
            if let Some(ca) = &mut o.ca {
                fix(ca);
            }
        }
        if let Some(tls) = self.admin.as_mut().and_then(|a| a.tls.as_mut()) {
            fix(&mut tls.cert);
            fix(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                fix(ca);
            }
        }
        for p in [
            &mut self.audit.checkpoint_key,
            &mut self.audit.checkpoint_export,
            &mut self.transform.keys,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "\
listen: {address: '127.0.0.1:8080', plaintext: true}
auth:
  issuer: i
  audience: a
  keys: [{alg: HS256, secret: {env: X}}]
upstreams: [{name: u, url: 'http://127.0.0.1:9', jurisdiction: DE}]
routes: [{prefix: /d, upstream: u}]
catalog: catalog.yaml
policies: policies
audit: {path: audit.log}
";

    fn load(text: &str, o: &Overrides) -> Result<Config, Diagnostics> {
        Config::from_text(Path::new("/etc/bg/gateway.yaml"), text, o)
    }

    #[test]
    fn relative_paths_are_read_from_the_config_directory() {
        let cfg = load(MINIMAL, &Overrides::default()).unwrap();
        assert_eq!(cfg.catalog, Path::new("/etc/bg/catalog.yaml"));
        assert_eq!(
            cfg.registry_path(),
            Path::new("/etc/bg/policies/registry.yaml")
        );
        assert_eq!(cfg.audit.path, Path::new("/etc/bg/audit.log"));
        assert_eq!(cfg.line_of("routes[0].upstream"), Some(7));
    }

    #[test]
    fn overrides_replace_the_file_settings() {
        let with_admin =
            format!("{MINIMAL}admin: {{address: '127.0.0.1:9901', plaintext: true}}\n");
        let o = Overrides {
            listen: Some("127.0.0.1:0".parse().unwrap()),
            audit_path: Some("elsewhere.log".into()),
            admin_listen: Some("127.0.0.1:9902".parse().unwrap()),
            name: Some("gw-7".into()),
            region: Some("eu-west".into()),
        };
        let cfg = load(&with_admin, &o).unwrap();
        assert_eq!(&*cfg.replica().name, "gw-7");
        assert_eq!(cfg.replica().region.as_deref(), Some("eu-west"));
        assert_eq!(cfg.listen.address, o.listen.unwrap());
        // Relative to where the command runs, as the operator typed it.
        assert_eq!(cfg.audit.path, Path::new("elsewhere.log"));
        assert_eq!(cfg.admin.unwrap().address, o.admin_listen.unwrap());
    }

    #[test]
    fn a_replica_is_named_by_the_file_or_the_host() {
        let cfg = load(MINIMAL, &Overrides::default()).unwrap();
        assert_eq!(cfg.name.as_deref(), Some(&*crate::config::default_name()));
        assert_eq!(cfg.replica().region, None);
        assert!(cfg.fleet_check().is_none(), "a file sink has no fleet");

        let named = format!("{MINIMAL}name: gw-1\nregion: eu-central\n");
        let r = load(&named, &Overrides::default()).unwrap().replica();
        assert_eq!(
            (&*r.name, r.region.as_deref()),
            ("gw-1", Some("eu-central"))
        );

        let bad = format!("{MINIMAL}name: GW 1\nregion: \"\"\nfleet: {{check_secs: 5}}\n");
        let d = load(&bad, &Overrides::default()).unwrap_err().to_string();
        assert!(
            d.contains("gateway.yaml:11: `name` `GW 1` holds `G`"),
            "{d}"
        );
        assert!(
            d.contains("gateway.yaml:12: `region` `` must be 1 to 64"),
            "{d}"
        );
        assert!(
            d.contains("gateway.yaml:13: `fleet` needs `audit.sink: postgres`"),
            "{d}"
        );
        let o = Overrides {
            name: Some("-bad/".into()),
            ..Overrides::default()
        };
        let d = load(MINIMAL, &o).unwrap_err().to_string();
        assert!(d.contains("`name` `-bad/` holds `/`"), "{d}");
    }

    #[test]
    fn an_admin_address_without_an_admin_section_is_an_error() {
        let o = Overrides {
            admin_listen: Some("127.0.0.1:9902".parse().unwrap()),
            ..Overrides::default()
        };
        let d = load(MINIMAL, &o).unwrap_err();
        assert_eq!(d.0.len(), 1, "{d}");
        assert_eq!(
            d.to_string(),
            "/etc/bg/gateway.yaml: `--admin-listen` given but the config has no `admin:` section"
        );
    }
}
