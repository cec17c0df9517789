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
use crate::config::{Config, Diagnostics};
use crate::policy::PolicySet;
use crate::proxy::upstream::Upstream;
use crate::respond::{Kind, Problem};
use crate::transfer::Place;
use http::{HeaderValue, header};

/// A path prefix routed to an upstream.
#[derive(Clone, Debug)]
pub struct Route {
    /// Without its trailing slash (`""` for `/`).
    pub prefix: String,
    /// Index into [`Snapshot::upstreams`] (and the config's `upstreams`).
    pub upstream: usize,
    /// The upstream's name, jurisdiction and operator.
    pub upstream_name: String,
    pub jurisdiction: crate::model::Country,
    pub operator: Option<String>,
    pub public: bool,
    pub uploads: bool,
}

impl Route {
    /// What classification needs to know of the route.
    pub fn place(&self) -> Place<'_> {
        Place {
            upstream: &self.upstream_name,
            jurisdiction: self.jurisdiction,
            operator: self.operator.as_deref(),
            public: self.public,
        }
    }
}

/// The routing table of a config: longest prefix first. The gateway and `policy explain`
/// route with the same table.
#[derive(Clone, Debug, Default)]
pub struct Routes(Vec<Route>);

impl Routes {
    pub fn from_config(config: &Config) -> Routes {
        let mut routes: Vec<Route> = config
            .routes
            .iter()
            .filter_map(|r| {
                let idx = config.upstreams.iter().position(|u| u.name == r.upstream)?;
                let u = &config.upstreams[idx];
                Some(Route {
                    prefix: r.prefix.trim_end_matches('/').to_string(),
                    upstream: idx,
                    upstream_name: u.name.clone(),
                    jurisdiction: u.jurisdiction,
                    operator: u.operator.clone(),
                    public: r.public,
                    uploads: r.uploads,
                })
            })
            .collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        Routes(routes)
    }

    /// The route of a decoded, normalised path.
    pub fn find(&self, path: &str) -> Option<&Route> {
        self.0
            .iter()
            .find(|r| crate::catalog::path::segment_prefix_match(&r.prefix, path))
    }

    /// The route of `path` for a request in `direction`, or the refusal the gateway answers:
    /// no route (403, not in the catalog), an upload to a route without uploads (405).
    pub fn route_for(
        &self,
        path: &str,
        direction: crate::model::Direction,
    ) -> Result<&Route, (Option<&Route>, Problem)> {
        let Some(route) = self.find(path) else {
            return Err((
                None,
                Problem::new(
                    Kind::NotInCatalog,
                    "the path matches no route or catalog entry",
                ),
            ));
        };
        if direction == crate::model::Direction::Upload && !route.uploads {
            return Err((
                Some(route),
                Problem::new(Kind::MethodNotAllowed, "this route does not accept uploads")
                    .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD")),
            ));
        }
        Ok(route)
    }

    /// The route to upstream `name` for a request in `direction`, for a question with no
    /// path (`policy explain --upstream`): a route that accepts uploads for an upload. `None`:
    /// no route leads to the upstream.
    pub fn to_upstream(
        &self,
        name: &str,
        direction: crate::model::Direction,
    ) -> Option<Result<&Route, Problem>> {
        let mut routes = self.0.iter().filter(|r| r.upstream_name == name).peekable();
        let first = routes.peek().copied()?;
        if direction == crate::model::Direction::Download {
            return Some(Ok(first));
        }
        Some(routes.find(|r| r.uploads).ok_or_else(|| {
            Problem::new(
                Kind::MethodNotAllowed,
                "no route to this upstream accepts uploads",
            )
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"))
        }))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Every route, longest prefix first.
    pub fn iter(&self) -> impl Iterator<Item = &Route> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Upstream name → registry id of its operator, for every upstream that names one.
pub fn operators(config: &Config) -> HashMap<String, String> {
    config
        .upstreams
        .iter()
        .filter_map(|u| Some((u.name.clone(), u.operator.clone()?)))
        .collect()
}

/// Everything a request is decided and forwarded with; immutable once built.
pub struct Snapshot {
    pub config: Config,
    pub auth: Authenticator,
    /// The S3 access keys (`auth.s3_keys`), for SigV4-signed requests.
    pub s3_keys: Option<crate::s3::KeyStore>,
    pub catalog: Catalog,
    pub policies: PolicySet,
    pub routes: Routes,
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
    /// Pseudonymisation keys per origin region (`transform.keys`, the environment).
    pub keyring: Arc<crate::transform::Keyring>,
    /// Redaction patterns for free text (`transform.redact`).
    pub redactor: Arc<crate::transform::Redactor>,
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

/// The keyring and redaction patterns of the config; problems go to `errors`.
fn transform_inputs(
    config: &Config,
    errors: &mut Vec<crate::config::Diagnostic>,
) -> (
    Arc<crate::transform::Keyring>,
    Arc<crate::transform::Redactor>,
) {
    if let (true, Some(p)) = (config.transform.generate_dev_keys, &config.transform.keys)
        && let Err(e) = crate::transform::keys::ensure_dev_keys(p)
    {
        errors.push(config.diagnostic("transform.keys", e));
    }
    let keyring =
        crate::transform::Keyring::load(config.transform.keys.as_deref(), std::env::vars())
            .unwrap_or_else(|es| {
                for e in es {
                    errors.push(config.diagnostic("transform.keys", e));
                }
                crate::transform::Keyring::default()
            });
    let redactor = match &config.transform.redact {
        None => crate::transform::Redactor::standard(),
        Some(p) => crate::transform::Redactor::new(p).unwrap_or_else(|e| {
            errors.push(config.diagnostic("transform.redact", e));
            crate::transform::Redactor::standard()
        }),
    };
    (Arc::new(keyring), Arc::new(redactor))
}

/// Checks the schema of every catalog entry with a prefix in a `file://` store against
/// the real files (http upstreams are checked at each fetch, failing closed).
fn check_schemas(
    config: &Config,
    catalog: &Catalog,
    routes: &Routes,
    upstreams: &[Upstream],
    errors: &mut Vec<crate::config::Diagnostic>,
) {
    for e in catalog.entries() {
        let (Some(schema), crate::catalog::Matcher::Prefix(prefix)) = (&e.schema, &e.matcher)
        else {
            continue;
        };
        let Some(route) = routes.find(prefix) else {
            continue;
        };
        let Some(crate::proxy::upstream::Target::File(store)) =
            upstreams.get(route.upstream).map(|u| &u.target)
        else {
            continue;
        };
        let dir = store.root().join(prefix.trim_start_matches('/'));
        for m in crate::catalog::schema::check_dir(&e.id, schema, &dir) {
            errors.push(crate::config::Diagnostic::new(
                &config.catalog,
                Some(e.line),
                m,
            ));
        }
    }
}

impl Snapshot {
    /// Builds a snapshot from a loaded config, reporting every error in every file.
    pub fn build(config: Config) -> Result<Snapshot, Diagnostics> {
        let mut errors = Vec::new();
        let auth = Authenticator::from_config(&config.auth)
            .map(|a| a.with_max_token_bytes(config.limits.max_token_bytes))
            .map_err(|e| errors.push(config.diagnostic("auth", e)))
            .ok();
        let s3_keys = match &config.auth.s3_keys {
            Some(k) => crate::s3::KeyStore::load(k)
                .map(Some)
                .map_err(|e| errors.push(config.diagnostic("auth.s3_keys", e)))
                .unwrap_or(None),
            None => None,
        };
        let mut upstreams = Vec::new();
        for (i, u) in config.upstreams.iter().enumerate() {
            match Upstream::from_config(u) {
                Ok(up) => upstreams.push(up),
                Err(e) => errors.push(config.diagnostic(&format!("upstreams[{i}]"), e)),
            }
        }
        let tls = match &config.listen.tls {
            Some(t) => crate::tls::server_config(t)
                .map_err(|e| {
                    errors.push(config.diagnostic("listen.tls", format!("`listen.tls`: {e}")))
                })
                .ok(),
            None => None,
        };
        let admin_tls = match &config.admin {
            Some(a) if !a.plaintext => {
                let (key, t) = match &a.tls {
                    Some(t) => ("admin.tls", Some(t)),
                    None => ("listen.tls", config.listen.tls.as_ref()),
                };
                match t {
                    Some(t) => crate::tls::server_config(t)
                        .map_err(|e| {
                            errors.push(config.diagnostic(key, format!("admin listener: {e}")))
                        })
                        .ok(),
                    None => None,
                }
            }
            _ => None,
        };
        let checkpoint_signer = match &config.audit.checkpoint_key {
            Some(p) => Signer::load(p)
                .map_err(|e| {
                    errors.push(config.diagnostic(
                        "audit.checkpoint_key",
                        format!("`audit.checkpoint_key`: {e}"),
                    ))
                })
                .ok(),
            None => None,
        };
        let webhook = match &config.alerts {
            Some(a) => Webhook::new(a)
                .map_err(|e| errors.push(config.diagnostic("alerts.webhook_url", e)))
                .ok(),
            None => None,
        };
        let catalog = Catalog::load(&config.catalog)
            .map_err(|d| errors.extend(d.0))
            .ok();
        let policies = PolicySet::load(&config.policies, &config.registry_path())
            .map_err(|d| errors.extend(d.0))
            .ok();
        let routes = Routes::from_config(&config);
        let operators = operators(&config);
        let (keyring, redactor) = transform_inputs(&config, &mut errors);
        if let Some(c) = &catalog {
            check_schemas(&config, c, &routes, &upstreams, &mut errors);
        }
        match (auth, catalog, policies) {
            (Some(auth), Some(catalog), Some(policies)) if errors.is_empty() => Ok(Snapshot {
                config,
                auth,
                s3_keys,
                catalog,
                policies,
                routes,
                upstreams,
                tls,
                admin_tls,
                checkpoint_signer,
                webhook,
                operators,
                keyring,
                redactor,
            }),
            _ => Err(Diagnostics(errors)),
        }
    }

    /// The upstream a route leads to.
    pub fn upstream(&self, route: &Route) -> Option<&Upstream> {
        self.upstreams.get(route.upstream)
    }
}
