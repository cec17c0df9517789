//! Validation of a parsed config: everything that can be checked without reading another
//! file or opening a socket.

use super::{Config, Diagnostic, SecretRef};

impl Config {
    pub(super) fn validate(&self) -> Vec<Diagnostic> {
        let mut errs = Vec::new();
        let mut err = |m: String| errs.push(Diagnostic::new(&self.source, None, m));
        if self.listen.tls.is_none() && !self.listen.plaintext {
            err(
                "`listen` has no `tls`; set `plaintext: true` to serve plain HTTP on purpose"
                    .into(),
            );
        }
        if self.listen.tls.is_some() && self.listen.plaintext {
            err("`listen` has both `tls` and `plaintext: true`; choose one".into());
        }
        if let Some(tls) = &self.listen.tls
            && tls.require_client_cert
            && tls.client_ca.is_none()
        {
            err("`require_client_cert` needs `client_ca`".into());
        }
        if self.auth.leeway_secs > 300 {
            err(format!(
                "auth leeway `{}` s is more than the 300 s allowed",
                self.auth.leeway_secs
            ));
        }
        if self.auth.keys.is_empty() && self.auth.jwks.is_none() {
            err("`auth` has no `keys` and no `jwks`: no token could ever be valid".into());
        }
        for k in &self.auth.keys {
            let hs = k.alg.starts_with("HS");
            if hs && k.secret.is_none() {
                err(format!("key with alg `{}` needs a `secret`", k.alg));
            }
            if !hs && k.public_key.is_none() {
                err(format!("key with alg `{}` needs a `public_key`", k.alg));
            }
            if k.generate_dev_secret && !matches!(k.secret, Some(SecretRef::File(_))) {
                err("`generate_dev_secret` needs `secret: {file: …}`".into());
            }
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.upstreams {
            if !names.insert(u.name.as_str()) {
                err(format!("duplicate upstream `{}`", u.name));
            }
            let ok = u.url.starts_with("http://")
                || u.url.starts_with("https://")
                || u.url.starts_with("file://");
            if !ok {
                err(format!(
                    "upstream `{}` url `{}` is not http://, https:// or file://",
                    u.name, u.url
                ));
            } else if !u.url.starts_with("file://") && u.url.parse::<http::Uri>().is_err() {
                err(format!(
                    "upstream `{}` url `{}` is not a valid URL",
                    u.name, u.url
                ));
            }
            for o in &u.follow_redirects_to {
                if let Err(e) = crate::proxy::upstream::redirect_origin(o) {
                    err(format!("upstream `{}` follow_redirects_to: {e}", u.name));
                }
            }
            if u.s3.is_some() && u.url.starts_with("file://") {
                err(format!("upstream `{}` has `s3` but a file:// url", u.name));
            }
        }
        let mut prefixes = std::collections::HashSet::new();
        for r in &self.routes {
            if !r.prefix.starts_with('/') {
                err(format!("route prefix `{}` must start with `/`", r.prefix));
            }
            if !prefixes.insert(r.prefix.trim_end_matches('/')) {
                err(format!("duplicate route prefix `{}`", r.prefix));
            }
            if !names.contains(r.upstream.as_str()) {
                err(format!(
                    "route `{}` names unknown upstream `{}`",
                    r.prefix, r.upstream
                ));
            }
        }
        if let Some(a) = &self.alerts
            && a.webhook_url.parse::<http::Uri>().map_or(true, |u| {
                !matches!(u.scheme_str(), Some("http" | "https")) || u.authority().is_none()
            })
        {
            err(format!(
                "`alerts.webhook_url` `{}` is not an http(s) URL",
                a.webhook_url
            ));
        }
        if self.audit.batch_max == 0 {
            err("`audit.batch_max` must be at least 1".into());
        }
        if let Some(a) = &self.admin {
            let tls = a.tls.is_some() || self.listen.tls.is_some();
            if a.plaintext && a.tls.is_some() {
                err("`admin` has both `tls` and `plaintext: true`; choose one".into());
            } else if !tls && !a.plaintext {
                err("`admin` has no `tls` (and neither has `listen`); set `plaintext: true` to serve plain HTTP on purpose".into());
            }
            if a.address == self.listen.address && a.address.port() != 0 {
                err(format!(
                    "`admin.address` `{}` is the proxy's address; the admin listener needs a port of its own",
                    a.address
                ));
            }
            if a.max_records == 0 {
                err("`admin.max_records` must be at least 1".into());
            }
        }
        if self.audit.checkpoint_every == 0 || self.audit.checkpoint_interval_secs == 0 {
            err(
                "`audit.checkpoint_every` and `audit.checkpoint_interval_secs` must be at least 1"
                    .into(),
            );
        }
        if self.audit.rotate_bytes == Some(0) || self.audit.rotate_secs == Some(0) {
            err("`audit.rotate_bytes` and `audit.rotate_secs` must be at least 1".into());
        }
        for e in self.audit.sink_problems() {
            err(e);
        }
        errs
    }
}
