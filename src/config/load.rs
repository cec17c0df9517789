//! Loading the config file: read and parse it, record the line of every key, resolve
//! relative paths against its directory, validate.

use std::path::{Path, PathBuf};

use super::{Config, Diagnostics, Lines, SecretRef, parse_yaml, read_yaml};

impl Config {
    /// Loads the file, resolves relative paths against its directory and validates it,
    /// reporting every problem with its line.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let text = read_yaml(path).map_err(|d| Diagnostics(vec![d]))?;
        Config::from_text(path, &text)
    }

    /// Parses and validates config text read from `path` (which relative paths are
    /// resolved against and messages name).
    pub fn from_text(path: &Path, text: &str) -> Result<Config, Diagnostics> {
        let mut cfg: Config = parse_yaml(path, text).map_err(|d| Diagnostics(vec![d]))?;
        cfg.source = path.to_path_buf();
        cfg.lines = Lines::parse(text);
        let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
        cfg.resolve_paths(&base);
        let errors = cfg.validate();
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
        if let Some(j) = &mut self.auth.jwks {
            fix(j);
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
        if let Some(ca) = self.alerts.as_mut().and_then(|a| a.ca.as_mut()) {
            fix(ca);
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

    fn load(text: &str) -> Result<Config, Diagnostics> {
        Config::from_text(Path::new("/etc/bg/gateway.yaml"), text)
    }

    #[test]
    fn relative_paths_are_read_from_the_config_directory() {
        let cfg = load(MINIMAL).unwrap();
        assert_eq!(cfg.catalog, Path::new("/etc/bg/catalog.yaml"));
        assert_eq!(
            cfg.registry_path(),
            Path::new("/etc/bg/policies/registry.yaml")
        );
        assert_eq!(cfg.audit.path, Path::new("/etc/bg/audit.log"));
        assert_eq!(cfg.line_of("routes[0].upstream"), Some(7));
    }
}
