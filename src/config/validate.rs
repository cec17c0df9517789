//! Validation of a parsed config: everything that can be checked without reading another
//! file or opening a socket. Every problem is reported, each on the line of the key it is
//! about; certificates, keys, the catalog and the policies are checked when the running
//! state is built from them.

use std::collections::HashSet;

use jsonwebtoken::AlgorithmFamily;

use super::{
    AdminConfig, AuditConfig, AuditSinkKind, AuthConfig, Config, Diagnostic, FileDiagnostics,
    SecretRef, TlsListen, dsn_has_password, suggestion, valid_table_name,
};

impl Config {
    /// Every problem of the config that needs no I/O, section by section.
    pub fn validate(&self) -> Vec<Diagnostic> {
        let mut out = self.diagnostics();
        self.check_replica(&mut out);
        self.check_listeners(&mut out);
        check_auth(&self.auth, &mut out);
        self.check_upstreams_and_routes(&mut out);
        if let Some(a) = &self.alerts
            && a.webhook_url.parse::<http::Uri>().map_or(true, |u| {
                !matches!(u.scheme_str(), Some("http" | "https")) || u.authority().is_none()
            })
        {
            out.at(
                "alerts.webhook_url",
                format!(
                    "`alerts.webhook_url` `{}` is not an http(s) URL",
                    a.webhook_url
                ),
            );
        }
        check_audit(&self.audit, &mut out);
        if self.lineage.window_days > 3650 {
            out.at(
                "lineage.window_days",
                format!(
                    "`lineage.window_days` {} is more than 3650 (ten years)",
                    self.lineage.window_days
                ),
            );
        }
        if self.lineage.max_principals == 0 {
            out.at(
                "lineage.max_principals",
                "`lineage.max_principals` must be at least 1".to_string(),
            );
        }
        out.into_vec()
    }

    fn check_replica(&self, out: &mut FileDiagnostics<'_>) {
        use super::replica::{name_problem, region_problem};
        if let Some(p) = self.name.as_deref().and_then(name_problem) {
            out.at("name", p);
        }
        if let Some(p) = self.region.as_deref().and_then(region_problem) {
            out.at("region", p);
        }
        if let Some(f) = &self.fleet {
            if self.audit.sink != AuditSinkKind::Postgres {
                out.at(
                    "fleet",
                    "`fleet` needs `audit.sink: postgres` (the table the replicas share)",
                );
            }
            if f.lookback_days == 0 || f.lookback_days > 3650 {
                out.at(
                    "fleet.lookback_days",
                    format!(
                        "`fleet.lookback_days` {} must be 1 to 3650",
                        f.lookback_days
                    ),
                );
            }
        }
    }

    fn check_listeners(&self, out: &mut FileDiagnostics<'_>) {
        let listen = &self.listen;
        if listen.tls.is_none() && !listen.plaintext {
            out.at(
                "listen",
                "`listen` has no `tls`; set `plaintext: true` to serve plain HTTP on purpose",
            );
        }
        if listen.tls.is_some() && listen.plaintext {
            out.at(
                "listen.plaintext",
                "`listen` has both `tls` and `plaintext: true`; choose one",
            );
        }
        if let Some(tls) = &listen.tls {
            check_tls(tls, "listen.tls", out);
        }
        if let Some(a) = &self.admin {
            self.check_admin(a, out);
        }
    }

    fn check_admin(&self, a: &AdminConfig, out: &mut FileDiagnostics<'_>) {
        let tls = a.tls.is_some() || self.listen.tls.is_some();
        if a.plaintext && a.tls.is_some() {
            out.at(
                "admin.plaintext",
                "`admin` has both `tls` and `plaintext: true`; choose one",
            );
        } else if !tls && !a.plaintext {
            out.at("admin", "`admin` has no `tls` (and neither has `listen`); set `plaintext: true` to serve plain HTTP on purpose");
        }
        if let Some(t) = &a.tls {
            check_tls(t, "admin.tls", out);
        }
        if a.address == self.listen.address && a.address.port() != 0 {
            out.at(
                "admin.address",
                format!(
                    "`admin.address` `{}` is the proxy's address; the admin listener needs a port of its own",
                    a.address
                ),
            );
        }
        if a.max_records == 0 {
            out.at(
                "admin.max_records",
                "`admin.max_records` must be at least 1",
            );
        }
        if let Some(o) = &a.oidc {
            o.check(out);
        }
    }

    fn check_upstreams_and_routes(&self, out: &mut FileDiagnostics<'_>) {
        let mut names = HashSet::new();
        for (i, u) in self.upstreams.iter().enumerate() {
            let at = format!("upstreams[{i}]");
            if !names.insert(u.name.as_str()) {
                out.at(
                    &format!("{at}.name"),
                    format!("duplicate upstream `{}`", u.name),
                );
            }
            let url = format!("{at}.url");
            let file = u.url.starts_with("file://");
            if !(file || u.url.starts_with("http://") || u.url.starts_with("https://")) {
                out.at(
                    &url,
                    format!(
                        "upstream `{}` url `{}` is not http://, https:// or file://",
                        u.name, u.url
                    ),
                );
            } else if !file && u.url.parse::<http::Uri>().is_err() {
                // An absolute `http::Uri` always has a host.
                out.at(
                    &url,
                    format!("upstream `{}` url `{}` is not a valid URL", u.name, u.url),
                );
            }
            for (j, o) in u.follow_redirects_to.iter().enumerate() {
                if let Err(e) = crate::proxy::upstream::redirect_origin(o) {
                    out.at(
                        &format!("{at}.follow_redirects_to[{j}]"),
                        format!("upstream `{}` follow_redirects_to: {e}", u.name),
                    );
                }
            }
            if u.s3.is_some() {
                if file {
                    out.at(
                        &format!("{at}.s3"),
                        format!("upstream `{}` has `s3` but a file:// url", u.name),
                    );
                }
                if !cfg!(feature = "s3") {
                    out.at(
                        &format!("{at}.s3"),
                        format!(
                            "upstream `{}` has `s3`, which needs bordergate built with the `s3` feature",
                            u.name
                        ),
                    );
                }
            }
        }
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if !r.prefix.starts_with('/') {
                out.at(
                    &format!("{at}.prefix"),
                    format!("route prefix `{}` must start with `/`", r.prefix),
                );
            }
            if !prefixes.insert(r.prefix.trim_end_matches('/')) {
                out.at(
                    &format!("{at}.prefix"),
                    format!("duplicate route prefix `{}`", r.prefix),
                );
            }
            if !names.contains(r.upstream.as_str()) {
                let hint = suggestion(&r.upstream, self.upstreams.iter().map(|u| u.name.as_str()));
                out.at(
                    &format!("{at}.upstream"),
                    format!(
                        "route `{}` names unknown upstream `{}`{hint}",
                        r.prefix, r.upstream
                    ),
                );
            }
        }
    }
}

fn check_tls(tls: &TlsListen, at: &str, out: &mut FileDiagnostics<'_>) {
    if tls.require_client_cert && tls.client_ca.is_none() {
        out.at(
            &format!("{at}.require_client_cert"),
            "`require_client_cert` needs `client_ca`",
        );
    }
}

fn check_auth(auth: &AuthConfig, out: &mut FileDiagnostics<'_>) {
    if auth.leeway_secs > 300 {
        out.at(
            "auth.leeway_secs",
            format!(
                "auth leeway `{}` s is more than the 300 s allowed",
                auth.leeway_secs
            ),
        );
    }
    if auth.keys.is_empty() && auth.jwks.is_none() && auth.jwks_url.is_none() {
        out.at(
            "auth",
            "`auth` has no `keys`, no `jwks` and no `jwks_url`: no token could ever be valid",
        );
    }
    check_jwks_url(auth, out);
    let mut kids = HashSet::new();
    for (i, k) in auth.keys.iter().enumerate() {
        let at = format!("auth.keys[{i}]");
        if let Some(kid) = &k.kid
            && !kids.insert(kid.as_str())
        {
            out.at(&format!("{at}.kid"), format!("duplicate key id `{kid}`"));
        }
        if k.generate_dev_secret && !matches!(k.secret, Some(SecretRef::File(_))) {
            out.at(
                &format!("{at}.generate_dev_secret"),
                "`generate_dev_secret` needs `secret: {file: …}`",
            );
        }
        let alg = match crate::auth::parse_alg(&k.alg) {
            Ok(a) => a,
            Err(e) => {
                out.at(&format!("{at}.alg"), e);
                continue;
            }
        };
        let (needs, refuses) = match alg.family() {
            AlgorithmFamily::Hmac => (
                ("secret", k.secret.is_some()),
                ("public_key", k.public_key.is_some()),
            ),
            _ => (
                ("public_key", k.public_key.is_some()),
                ("secret", k.secret.is_some()),
            ),
        };
        if !needs.1 {
            out.at(
                &at,
                format!("key with alg `{}` needs a `{}`", k.alg, needs.0),
            );
        }
        if refuses.1 {
            out.at(
                &format!("{at}.{}", refuses.0),
                format!(
                    "key with alg `{}` takes a `{}`, not a `{}`",
                    k.alg, needs.0, refuses.0
                ),
            );
        }
    }
}

/// The JWKS endpoint and its refresh settings.
fn check_jwks_url(auth: &AuthConfig, out: &mut FileDiagnostics<'_>) {
    if let Some(j) = &auth.jwks
        && j.to_string_lossy().contains("://")
    {
        out.at(
            "auth.jwks",
            format!(
                "`auth.jwks` is a file path; to fetch keys from `{}` use `jwks_url`",
                j.display()
            ),
        );
    }
    let Some(url) = &auth.jwks_url else {
        if auth.jwks_ca.is_some() {
            out.at(
                "auth.jwks_ca",
                "`jwks_ca` is set but there is no `jwks_url`",
            );
        }
        return;
    };
    if let Err(e) = crate::auth::check_jwks_url(url) {
        out.at("auth.jwks_url", e);
    }
    let (min, max) = (auth.jwks_refresh_min_secs, auth.jwks_refresh_max_secs);
    if min == 0 {
        out.at(
            "auth.jwks_refresh_min_secs",
            "`jwks_refresh_min_secs` must be at least 1",
        );
    }
    if max < min {
        out.at(
            "auth.jwks_refresh_max_secs",
            format!("`jwks_refresh_max_secs` ({max}) is less than `jwks_refresh_min_secs` ({min})"),
        );
    }
    if auth.jwks_unknown_kid_cooldown_secs == 0 {
        out.at(
            "auth.jwks_unknown_kid_cooldown_secs",
            "`jwks_unknown_kid_cooldown_secs` must be at least 1: every token naming an unknown key would cause a fetch",
        );
    }
    if auth.jwks_max_stale_secs < max {
        out.at(
            "auth.jwks_max_stale_secs",
            format!(
                "`jwks_max_stale_secs` ({}) is less than `jwks_refresh_max_secs` ({max}): the keys would go stale between two refreshes",
                auth.jwks_max_stale_secs
            ),
        );
    }
}

fn check_audit(a: &AuditConfig, out: &mut FileDiagnostics<'_>) {
    if a.batch_max == 0 {
        out.at("audit.batch_max", "`audit.batch_max` must be at least 1");
    }
    for (key, zero) in [
        ("checkpoint_every", a.checkpoint_every == 0),
        ("checkpoint_interval_secs", a.checkpoint_interval_secs == 0),
        ("rotate_bytes", a.rotate_bytes == Some(0)),
        ("rotate_secs", a.rotate_secs == Some(0)),
    ] {
        if zero {
            out.at(
                &format!("audit.{key}"),
                format!("`audit.{key}` must be at least 1"),
            );
        }
    }
    check_audit_sink(a, out);
}

/// The sink's own settings: `path` for the file sink, `postgres` for postgres.
fn check_audit_sink(a: &AuditConfig, out: &mut FileDiagnostics<'_>) {
    if a.generate_checkpoint_key && a.checkpoint_key.is_none() {
        out.at(
            "audit.generate_checkpoint_key",
            "`generate_checkpoint_key` needs `checkpoint_key` (where to create it)",
        );
    }
    match a.sink {
        AuditSinkKind::File => {
            if a.path.as_os_str().is_empty() {
                out.at("audit.sink", "`audit.path` is required by `sink: file`");
            }
        }
        AuditSinkKind::Postgres => {
            let Some(pg) = &a.postgres else {
                out.at(
                    "audit.sink",
                    "`audit.sink: postgres` needs an `audit.postgres` section",
                );
                return;
            };
            match (&pg.url, &pg.dsn) {
                (Some(_), Some(_)) => out.at(
                    "audit.postgres.dsn",
                    "`audit.postgres` has both `url` and `dsn`; choose one",
                ),
                (None, None) => out.at("audit.postgres", "`audit.postgres` needs `url` or `dsn`"),
                (None, Some(d)) if dsn_has_password(d) => out.at(
                    "audit.postgres.dsn",
                    "`audit.postgres.dsn` holds a password; give it as `url: {env: …}` or `url: {file: …}`",
                ),
                _ => {}
            }
            if !valid_table_name(&pg.table) {
                out.at(
                    "audit.postgres.table",
                    format!(
                        "`audit.postgres.table` `{}` is not a lower-case SQL name (a-z, 0-9, _)",
                        pg.table
                    ),
                );
            }
            let file_only = [
                ("rotate_bytes", a.rotate_bytes.is_some()),
                ("rotate_secs", a.rotate_secs.is_some()),
                ("retain_segments", a.retain_segments.is_some()),
                ("retain_days", a.retain_days.is_some()),
            ];
            if let Some((key, _)) = file_only.iter().find(|(_, set)| *set) {
                out.at(
                    &format!("audit.{key}"),
                    "rotation and retention apply to `sink: file` only (an append-only table is pruned by its administrator); remove them with `sink: postgres`",
                );
            }
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
