//! The snapshot: everything a gateway serves with — config, keys, catalog, policies,
//! routes, upstreams, TLS, the checkpoint key, the alerts webhook — built and validated in
//! one place ([`Snapshot::build`]) for `serve`, `check` and reload alike, so `check` cannot
//! pass a set that `serve` refuses. Requests read the current snapshot without locks; a
//! reload swaps it whole.

use std::collections::HashMap;
use std::sync::Arc;

use crate::alerts::Webhook;
use crate::audit::checkpoint::Signer;
use crate::auth::Authenticator;
use crate::catalog::Catalog;
use crate::config::{Config, Diagnostic, Diagnostics};
use crate::policy::PolicySet;
use crate::proxy::upstream::Upstream;
use crate::transfer::Place;

/// A path prefix routed to an upstream.
#[derive(Clone, Debug)]
pub struct Route {
    /// Without its trailing slash (`""` for `/`).
    pub prefix: String,
    /// Index into [`Snapshot::upstreams`].
    pub upstream: usize,
    pub public: bool,
    pub uploads: bool,
}

/// Everything a request is decided and forwarded with; immutable once built.
pub struct Snapshot {
    pub config: Config,
    pub auth: Authenticator,
    pub catalog: Catalog,
    pub policies: PolicySet,
    /// Longest prefix first.
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
    /// The proxy listener's TLS (none: plain HTTP, `plaintext: true`).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The admin listener's TLS (its own `tls`, else the proxy's; none: plain or no admin).
    pub admin_tls: Option<Arc<rustls::ServerConfig>>,
    /// The key that signs audit checkpoints (`audit.checkpoint_key`).
    pub checkpoint_signer: Option<Signer>,
    /// The alerts webhook (`alerts:`).
    pub webhook: Option<Webhook>,
    /// Upstream name → registry id of its operator (PIPL exporters, upload importers).
    pub operators: HashMap<String, String>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("config", &self.config.source)
            .field("policy_version", &self.policies.version)
            .field("catalog_entries", &self.catalog.len())
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Builds a snapshot from a loaded config, reporting every error in every file.
    pub fn build(config: Config) -> Result<Snapshot, Diagnostics> {
        let mut errors = Vec::new();
        let src = config.source.clone();
        let mut err = |e: String| errors.push(Diagnostic::new(&src, None, e));
        let auth = Authenticator::from_config(&config.auth)
            .map(|a| a.with_max_token_bytes(config.limits.max_token_bytes))
            .map_err(&mut err)
            .ok();
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            match Upstream::from_config(u) {
                Ok(up) => upstreams.push(up),
                Err(e) => err(e),
            }
        }
        let tls = match &config.listen.tls {
            Some(t) => crate::tls::server_config(t)
                .map_err(|e| err(format!("`listen.tls`: {e}")))
                .ok(),
            None => None,
        };
        let admin_tls = match &config.admin {
            Some(a) if !a.plaintext => match a.tls.as_ref().or(config.listen.tls.as_ref()) {
                Some(t) => crate::tls::server_config(t)
                    .map_err(|e| err(format!("`admin.tls`: {e}")))
                    .ok(),
                None => None,
            },
            _ => None,
        };
        let checkpoint_signer = match &config.audit.checkpoint_key {
            Some(p) => Signer::load(p)
                .map_err(|e| err(format!("`audit.checkpoint_key`: {e}")))
                .ok(),
            None => None,
        };
        let webhook = match &config.alerts {
            Some(a) => Webhook::new(a)
                .map_err(|e| err(format!("`alerts`: {e}")))
                .ok(),
            None => None,
        };
        let catalog = Catalog::load(&config.catalog)
            .map_err(|d| errors.extend(d.0))
            .ok();
        let policies = PolicySet::load(&config.policies, &config.registry_path())
            .map_err(|d| errors.extend(d.0))
            .ok();
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|r| {
                let idx = config.upstreams.iter().position(|u| u.name == r.upstream)?;
                Some(Route {
                    prefix: r.prefix.trim_end_matches('/').to_string(),
                    upstream: idx,
                    public: r.public,
                    uploads: r.uploads,
                })
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let operators = config
            .upstreams
            .iter()
            .filter_map(|u| Some((u.name.clone(), u.operator.clone()?)))
            .collect();
        match (auth, catalog, policies) {
            (Some(auth), Some(catalog), Some(policies)) if errors.is_empty() => Ok(Snapshot {
                config,
                auth,
                catalog,
                policies,
                routes,
                upstreams,
                tls,
                admin_tls,
                checkpoint_signer,
                webhook,
                operators,
            }),
            _ => Err(Diagnostics(errors)),
        }
    }

    /// The route of a decoded, normalised path, and its upstream.
    pub fn route(&self, path: &str) -> Option<(&Route, &Upstream)> {
        let r = self
            .routes
            .iter()
            .find(|r| crate::config::segment_prefix_match(&r.prefix, path))?;
        Some((r, self.upstreams.get(r.upstream)?))
    }

    /// What classification needs to know of a route.
    pub fn place<'a>(&'a self, route: &Route, up: &'a Upstream) -> Place<'a> {
        Place {
            upstream: &up.name,
            jurisdiction: up.jurisdiction,
            operator: up.operator.as_deref(),
            public: route.public,
        }
    }
}
