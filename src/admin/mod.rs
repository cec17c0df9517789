//! The admin listener: health, metrics, the audit endpoints and the compliance officer's
//! page, on a port of its own (TLS, the gateway's JWT keys, role-checked).
//!
//! Endpoints (GET; HEAD is answered like GET):
//!
//! | path               | who                              | answers |
//! |--------------------|----------------------------------|---------|
//! | `/livez`           | anyone                           | `200 ok` while the process serves |
//! | `/readyz`          | anyone                           | 200 or 503 JSON: config loaded, audit log writable, `jwks_url` keys fresh |
//! | `/metrics`         | anyone                           | OpenMetrics text ([`crate::metrics`]) |
//! | `/audit/records`   | token with role `compliance-officer` | JSON records; query parameters are the [`Filter`] fields plus `limit` and `order=asc\|desc` |
//! | `/audit/verify`    | token with role `compliance-officer` | JSON [`LogReport`] of [`Source::verify`] over every segment, checkpoint signatures checked with the key of `audit.checkpoint_key` |
//! | `/audit/overview`  | token with role `compliance-officer` | the page's [`overview`] of the decisions the [`Filter`] fields match, from the [`index`] |
//! | `/audit/report`    | token with role `compliance-officer` | the Art. 30 record of [`report_from`] for the [`Filter`] fields, `format=json\|html\|md\|csv` (JSON adds the page's [`overview`]) |
//! | `/fleet`           | token with role `compliance-officer` | JSON: this replica (name, region, policy version) and, with `audit.sink: postgres`, the fleet of [`crate::fleet`]: every replica's version, whether they drift |
//! | `/policy/explain`  | token with role `compliance-officer` | the decision a transfer would get now, explained, from the serving snapshot through [`crate::transfer::question`] (the gateway's own classification and decision): `path`, `dataset`, or tags given directly (`origin=DE`, optional `category=personal,health`, `permits=…`, `derogation=…`), `jurisdiction`, `org`, `purpose`, optional `upload=true`, `lineage=a,b`, `upstream=NAME`, `as_of=YYYY-MM-DD` (a past or future day, decided as `policy explain --as-of` decides it); the JSON of `policy explain --json` |
//! | `/`, `/ui/app.js`, `/ui/app.css` | anyone (the page asks for a token) | the officer's page, assets built in |
//! | `/oidc/login`, `/oidc/callback`, `/oidc/session`, `POST /oidc/logout` | anyone | with `admin.oidc`: sign-in through the identity provider ([`oidc`]); its session cookie stands for a token on the endpoints above |
//!
//! The audit endpoints read every segment of the log: the rotated ones
//! ([`crate::audit::segments::rotated`]) and the active file, listed afresh per request;
//! with `audit.sink: postgres`, the store ([`crate::audit::source::Source`]), the same way.
//! Without a valid token the audit endpoints answer 401, with a token lacking the role 403.
//! The proxy port never routes any of these paths.

pub mod index;
pub mod oidc;
pub mod overview;
mod server;
mod ui;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::audit::AuditStatus;
use crate::audit::checkpoint::{PublicKey, Signer};
use crate::audit::query::{Filter, expand};
use crate::audit::report::report_from;
use crate::audit::source::{PgStore, Source};
use crate::audit::verify::{LogReport, ProblemKind, VerifyOptions};
use crate::proxy::Gateway;
use crate::respond::{Kind, Problem};

pub use server::serve;

/// The role a token must carry for the audit endpoints.
pub const OFFICER_ROLE: &str = "compliance-officer";

/// Filter fields `/audit/records` accepts as query parameters.
const FILTER_KEYS: &[&str] = &[
    "from",
    "to",
    "decision",
    "org",
    "sub",
    "dataset",
    "origin",
    "destination",
    "rule",
    "article",
    "purpose",
    "request_id",
    "kind",
    "category",
    "third_countries",
];

/// Default start of a report period with no `from`.
const EPOCH: &str = "1970-01-01";

/// Query parameters, decoded, in order.
type Params = Vec<(String, String)>;
/// An error answer: status and detail.
type Failure = Problem;

/// The body type of every admin response.
pub type AdminBody = Full<Bytes>;

/// Where the log is and how to check it.
#[derive(Clone, Debug)]
pub struct AuditSource {
    /// The active log file (`audit.path`); its rotated segments sit beside it.
    pub active: PathBuf,
    /// The checkpoint public key (from `audit.checkpoint_key`), no receipts, and as
    /// [`VerifyOptions::checkpoint_grace`] the checkpoint interval plus slack: a log that
    /// started since and has no checkpoint yet is reported as pending, not as damage.
    pub verify: VerifyOptions,
    /// With `audit.sink: postgres`: the store, read instead of `active`.
    pub postgres: Option<PgStore>,
}

impl AuditSource {
    /// The source the `audit:` config section describes; derives the public key from the
    /// checkpoint signing key when one is configured.
    pub fn from_config(c: &crate::config::AuditConfig) -> Result<AuditSource, String> {
        let pubkey = match &c.checkpoint_key {
            Some(p) => Some(PublicKey::from_raw(Signer::load(p)?.public_key())),
            None => None,
        };
        let postgres = match (c.sink, &c.postgres) {
            (crate::config::AuditSinkKind::Postgres, Some(p)) => Some(PgStore {
                conn: p.connection_string()?,
                table: p.table.clone(),
            }),
            _ => None,
        };
        Ok(AuditSource {
            postgres,
            active: c.path.clone(),
            verify: VerifyOptions {
                pubkey,
                receipts: Vec::new(),
                checkpoint_grace: Duration::from_secs(c.checkpoint_interval_secs.saturating_add(5)),
            },
        })
    }

    /// A plain log file: no checkpoint key.
    pub fn file(active: PathBuf) -> AuditSource {
        AuditSource {
            active,
            verify: VerifyOptions::default(),
            postgres: None,
        }
    }

    /// What the audit endpoints read: the store, or every file of the log.
    pub fn source(&self) -> Result<Source, String> {
        match &self.postgres {
            Some(p) => Ok(Source::Postgres(p.clone())),
            None => self.files().map(Source::Files),
        }
    }

    /// Every file of the log in chain order: rotated segments, oldest first, then the active file.
    pub fn files(&self) -> Result<Vec<PathBuf>, String> {
        let mut paths: Vec<PathBuf> = crate::audit::segments::rotated(&self.active)?
            .into_iter()
            .map(|(_, p)| p)
            .collect();
        if self.active.exists() || paths.is_empty() {
            paths.push(self.active.clone());
        }
        expand(&paths)
    }
}

/// What the admin listener serves from.
pub struct Admin {
    gateway: Arc<Gateway>,
    source: AuditSource,
    max_records: usize,
    /// With `admin.oidc`: sign-in through the identity provider.
    oidc: Option<oidc::Oidc>,
    /// The officer's index of a file log (the PostgreSQL store is read as it streams).
    index: Option<Arc<index::Index>>,
}

impl Admin {
    /// The admin listener's state; a file log's index is built in the background at once.
    pub fn new(gateway: Arc<Gateway>, source: AuditSource, max_records: usize) -> Admin {
        let index = source.postgres.is_none().then(|| {
            let index = Arc::new(index::Index::default());
            let (i, src) = (index.clone(), source.clone());
            std::thread::spawn(move || {
                let started = std::time::Instant::now();
                match src.files().and_then(|f| i.refresh(&f)) {
                    Ok(()) => tracing::info!(
                        decisions = i.len(),
                        ms = started.elapsed().as_millis() as u64,
                        "officer's index built"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot build the officer's index yet"),
                }
            });
            index
        });
        Admin {
            gateway,
            source,
            max_records: max_records.max(1),
            oidc: None,
            index,
        }
    }

    /// Signs officers in through the identity provider as well.
    pub fn with_oidc(mut self, oidc: Option<oidc::Oidc>) -> Admin {
        self.oidc = oidc;
        self
    }

    /// The regimes of the serving policy pack, for the filters.
    fn regions(&self) -> Arc<crate::audit::place::Regions> {
        Arc::new(crate::audit::place::Regions::from_policies(
            &self.gateway.state().policies,
        ))
    }

    /// Answers one admin request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<AdminBody> {
        if req.uri().path().starts_with("/oidc/") {
            return oidc::route(self.oidc.as_ref(), &req).await;
        }
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            return answer(
                Problem::new(Kind::MethodNotAllowed, "only GET and HEAD are served here")
                    .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD")),
            );
        }
        let path = req.uri().path();
        let q = req.uri().query().unwrap_or("");
        match path {
            "/livez" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            "/readyz" => self.readyz(),
            "/metrics" => self.metrics(),
            "/" | "/index.html" => ui::page(),
            p if p.starts_with("/ui/") => ui::asset(p),
            p if p.starts_with("/audit/") || p == "/policy/explain" || p == "/fleet" => {
                if let Err(r) = self.officer(req.headers()) {
                    return *r;
                }
                let params = match parse_query(q) {
                    Ok(p) => p,
                    Err(e) => return answer(bad(e)),
                };
                let result = match p {
                    "/audit/records" => self.records(params).await,
                    "/audit/overview" => self.overview(params).await,
                    "/audit/verify" => self.verify(params).await,
                    "/audit/report" => self.report(params).await,
                    "/policy/explain" => self.explain(params).await,
                    "/fleet" => Ok(self.fleet()),
                    _ => return answer(Problem::new(Kind::NotFound, "no such audit endpoint")),
                };
                result.unwrap_or_else(answer)
            }
            _ => answer(Problem::new(Kind::NotFound, "no such admin endpoint")),
        }
    }

    /// Checks the bearer token and the officer role; without a token, the sign-in's
    /// session cookie.
    fn officer(&self, headers: &http::HeaderMap) -> Result<(), Box<Response<AdminBody>>> {
        if !headers.contains_key(header::AUTHORIZATION)
            && let Some(session) = self.oidc.as_ref().and_then(|o| o.session(headers))
        {
            return session.map(|_| ()).map_err(|p| Box::new(answer(p)));
        }
        let state = self.gateway.state();
        match state.auth.authenticate_headers(headers) {
            Err(e) => {
                let mut p = Problem::from(&e);
                p.headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"bordergate-admin\""),
                );
                Err(Box::new(answer(p)))
            }
            Ok(a) if a.role.as_deref() == Some(OFFICER_ROLE) => Ok(()),
            Ok(_) => Err(Box::new(answer(Problem::new(
                Kind::RoleRequired,
                format!("the audit endpoints need a token with role `{OFFICER_ROLE}`"),
            )))),
        }
    }

    fn readyz(&self) -> Response<AdminBody> {
        let state = self.gateway.state();
        let status = self.gateway.audit().status();
        let (ready, audit) = match readiness(status) {
            (true, _) if !self.gateway.trail_ready() => (false, "reading-trail"),
            r => r,
        };
        // With `auth.jwks_url`: not ready until its keys are fetched, nor once stale.
        let keys = state.auth.readiness();
        let ready = ready && keys.is_ok();
        let me = self.replica();
        let body = json!({
            "ready": ready,
            "config": "loaded",
            "replica": &*me.name,
            "region": me.region.as_deref(),
            "policy_version": state.policies.version.as_ref(),
            "audit": audit,
            "keys": match &keys {
                Ok(()) => "ok",
                Err(why) => why.as_str(),
            },
        });
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(code, &body)
    }

    /// The replica the audit records name (the config's, for a log opened without one).
    fn replica(&self) -> crate::config::Replica {
        self.gateway
            .audit()
            .replica()
            .cloned()
            .unwrap_or_else(|| self.gateway.state().config.replica())
    }

    /// `/fleet`: this replica and the fleet the last check saw.
    fn fleet(&self) -> Response<AdminBody> {
        let me = self.replica();
        let state = self.gateway.state();
        let fleet = self.gateway.fleet().get();
        let body = json!({
            "replica": &*me.name,
            "region": me.region.as_deref(),
            "policy_version": state.policies.version.as_ref(),
            "fleet": fleet.as_deref(),
        });
        json_response(StatusCode::OK, &body)
    }

    fn metrics(&self) -> Response<AdminBody> {
        let state = self.gateway.state();
        let today = time::OffsetDateTime::now_utc().date();
        let soon = today + time::Duration::days(30);
        let fleet = self.gateway.fleet().get();
        let mut scrape = crate::metrics::Scrape {
            audit_healthy: self.gateway.audit().status() == AuditStatus::Ok,
            replica: self.replica().name.to_string(),
            policy_version: state.policies.version.to_string(),
            fleet: fleet.map(|f| crate::metrics::FleetScrape {
                versions: f.versions.len() as u64,
                live: f.live().count() as u64,
            }),
            ..Default::default()
        };
        for m in state
            .policies
            .organisations()
            .into_iter()
            .flat_map(|o| &o.mechanisms)
        {
            match m.valid_until {
                Some(d) if d < today => scrape.bases_expired += 1,
                Some(d) if d <= soon => scrape.bases_expiring_30d += 1,
                _ => {}
            }
        }
        match crate::metrics::render(crate::metrics::global(), scrape) {
            Ok(s) => text(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                s,
            ),
            Err(_) => answer(Problem::new(Kind::Internal, "cannot render the metrics")),
        }
    }

    /// `/policy/explain`: the serving snapshot's answer to a transfer question.
    async fn explain(&self, params: Params) -> Result<Response<AdminBody>, Failure> {
        use crate::transfer::question::{About, Question};
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let snap = self.gateway.state();
        for (k, _) in &params {
            if ![
                "path",
                "dataset",
                "jurisdiction",
                "org",
                "purpose",
                "upload",
                "lineage",
                "as_of",
                "origin",
                "category",
                "permits",
                "derogation",
                "upstream",
            ]
            .contains(&k.as_str())
            {
                return Err(unknown(k));
            }
        }
        let need = |v: Option<String>, k: &str| v.ok_or_else(|| bad(format!("`{k}` is required")));
        let list = |k: &str| -> Option<Vec<String>> {
            get(k).map(|l| {
                l.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
        };
        let tagged = ["category", "permits", "derogation"]
            .into_iter()
            .find(|k| get(k).is_some());
        let about = match (get("path"), get("dataset"), list("origin")) {
            (Some(p), None, None) => About::Path(p),
            (None, Some(d), None) => About::Dataset(d),
            (None, None, Some(origins)) => About::Tags(
                crate::model::Tags::given(
                    &origins,
                    list("category").as_deref(),
                    list("permits").as_deref(),
                    &list("derogation").unwrap_or_default(),
                )
                .map_err(bad)?,
            ),
            _ => {
                return Err(bad(
                    "give exactly one of `path`, `dataset` and `origin` (tags given directly)"
                        .into(),
                ));
            }
        };
        if let Some(k) = tagged.filter(|_| !matches!(about, About::Tags(_))) {
            return Err(bad(format!(
                "`{k}` describes tags given directly: give it with `origin`"
            )));
        }
        if get("upstream").is_some() && matches!(about, About::Path(_)) {
            return Err(bad(
                "`upstream` is for a question without `path` (a path is routed)".into(),
            ));
        }
        let jurisdiction =
            crate::model::Country::parse(&need(get("jurisdiction"), "jurisdiction")?)
                .map_err(bad)?;
        let purpose = need(get("purpose"), "purpose")?;
        crate::model::check_purpose(&purpose).map_err(bad)?;
        let as_of = match get("as_of") {
            Some(d) => time::Date::parse(
                &d,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .map_err(|_| {
                bad(format!(
                    "`as_of` `{}` is not a date like 2026-01-31",
                    d.escape_default()
                ))
            })?,
            None => time::OffsetDateTime::now_utc().date(),
        };
        let q = Question {
            about,
            caller: crate::model::Caller {
                sub: "admin-explain".into(),
                org: need(get("org"), "org")?,
                jurisdiction,
                purpose,
                claimed_jurisdiction: None,
            },
            direction: if get("upload").as_deref() == Some("true") {
                crate::model::Direction::Upload
            } else {
                crate::model::Direction::Download
            },
            lineage: list("lineage").unwrap_or_default(),
            upstream: get("upstream"),
            as_of,
            exporter: None,
            jurisdiction_claim: snap.config.auth.jurisdiction_claim,
        };
        // PIPL volumes of another year than the counter's are counted from the trail, as
        // `policy explain --as-of` counts them.
        let year = as_of.year();
        let other_year;
        let counter = if year == crate::pipl::year_of(time::OffsetDateTime::now_utc()) {
            self.gateway.exports()
        } else {
            other_year = self.count_year(&snap, year).await?;
            &other_year
        };
        // Remedies are tried on a copy: the serving set is never touched.
        let mut policies = snap.policies.clone();
        let a = crate::transfer::question::answer(
            &q,
            &snap.catalog,
            &snap.routes,
            &mut policies,
            counter,
        )
        .map_err(bad)?;
        Ok(json_response(
            StatusCode::OK,
            &crate::transfer::question::to_json(&a),
        ))
    }

    /// The PIPL export volumes of `year`, counted from the fleet's ledger or the audit trail.
    async fn count_year(
        &self,
        snap: &std::sync::Arc<crate::snapshot::Snapshot>,
        year: i32,
    ) -> Result<crate::pipl::ExportCounter, Failure> {
        let counter = crate::pipl::ExportCounter::new();
        let failed = |e: String| {
            Problem::new(
                Kind::Internal,
                format!("cannot count the PIPL export volumes of {year}: {e}"),
            )
        };
        match self.gateway.ledger() {
            Some(ledger) => {
                ledger
                    .seed(&counter, year)
                    .await
                    .map_err(|e| failed(e.to_string()))?;
                Ok(counter)
            }
            None => {
                let snap = snap.clone();
                tokio::task::spawn_blocking(move || {
                    crate::pipl::seed_from_trail(
                        &counter,
                        &snap.catalog,
                        &snap.operators,
                        &snap.config.audit.path,
                        year,
                    )
                    .map(|_| counter)
                })
                .await
                .map_err(|e| failed(e.to_string()))?
                .map_err(failed)
            }
        }
    }

    /// `/audit/overview`: the cards, charts and refusals of the page, for the filters.
    async fn overview(&self, params: Params) -> Result<Response<AdminBody>, Failure> {
        let (filter, rest) = filter_from(params, self.regions())?;
        if let Some((k, _)) = rest.first() {
            return Err(unknown(k));
        }
        let v = self.overview_of(filter).await?;
        Ok(json_response(StatusCode::OK, &v))
    }

    /// The overview of the decisions `filter` matches: from the index, or streamed.
    async fn overview_of(&self, filter: Filter) -> Result<Value, Failure> {
        let index = self.index.clone();
        let source = self.source.clone();
        blocking("overview", move || {
            let c = filter.compile()?;
            match index {
                Some(i) if !c.needs_lines() => i.overview(&source.files()?, &c),
                _ => overview::build(&source.source()?, &filter),
            }
        })
        .await
    }

    async fn records(&self, params: Params) -> Result<Response<AdminBody>, Failure> {
        let (filter, rest) = filter_from(params, self.regions())?;
        let mut limit = self.max_records;
        let mut desc = false;
        for (k, v) in rest {
            match k.as_str() {
                "limit" => {
                    let n: usize = v.parse().map_err(|_| {
                        bad(format!(
                            "`limit` must be a positive number, not `{}`",
                            v.escape_default()
                        ))
                    })?;
                    limit = n.clamp(1, self.max_records);
                }
                "order" => match v.as_str() {
                    "asc" => desc = false,
                    "desc" => desc = true,
                    _ => {
                        return Err(bad(format!(
                            "`order` must be `asc` or `desc`, not `{}`",
                            v.escape_default()
                        )));
                    }
                },
                _ => return Err(unknown(&k)),
            }
        }
        let logs = self.source.source().map_err(internal)?;
        let index = self.index.clone();
        let source = self.source.clone();
        let (records, total) = blocking("query", move || {
            let c = filter.compile()?;
            match index {
                Some(i) if !c.needs_lines() => i.records(&source.files()?, &c, limit, desc),
                _ => {
                    drop(c);
                    matching(&logs, &filter, limit, desc)
                }
            }
        })
        .await?;
        Ok(json_response(
            StatusCode::OK,
            &json!({
                "count": records.len(),
                "total": total,
                "truncated": total > records.len(),
                "records": records,
            }),
        ))
    }

    async fn verify(&self, params: Params) -> Result<Response<AdminBody>, Failure> {
        if let Some((k, _)) = params.first() {
            return Err(unknown(k));
        }
        let logs = self.source.source().map_err(internal)?;
        let opts = self.source.verify.clone();
        let v = blocking("verify", move || Ok(verify_json(logs.verify(&opts), &opts))).await?;
        Ok(json_response(StatusCode::OK, &v))
    }

    async fn report(&self, params: Params) -> Result<Response<AdminBody>, Failure> {
        let (mut filter, rest) = filter_from(params, self.regions())?;
        let mut format = "json".to_owned();
        for (k, v) in rest {
            match k.as_str() {
                "format" => format = v,
                _ => return Err(unknown(&k)),
            }
        }
        if !matches!(format.as_str(), "json" | "html" | "md" | "csv") {
            return Err(bad(format!(
                "`format` must be `json`, `html`, `md` or `csv`, not `{}`",
                format.escape_default()
            )));
        }
        filter.from.get_or_insert_with(|| EPOCH.to_owned());
        filter
            .to
            .get_or_insert_with(|| time::OffsetDateTime::now_utc().date().to_string());
        filter.compile().map_err(bad)?;
        let overview = if format == "json" {
            Some(self.overview_of(filter.clone()).await?)
        } else {
            None
        };
        let logs = self.source.source().map_err(internal)?;
        let opts = self.source.verify.clone();
        blocking("report", move || {
            let r = report_from(&logs, &filter, None, &opts)?;
            let name = |ext: &str| format!("art30-{}-{}.{ext}", r.from, r.to);
            Ok(match format.as_str() {
                "html" => report_page(r.to_html()),
                "md" => download(
                    text(
                        StatusCode::OK,
                        "text/markdown; charset=utf-8",
                        r.to_markdown(),
                    ),
                    &name("md"),
                ),
                "csv" => download(
                    text(StatusCode::OK, "text/csv; charset=utf-8", r.to_csv()),
                    &name("csv"),
                ),
                _ => {
                    let ok = r.verification.is_ok();
                    let summary = r.verification.summary();
                    let mut v = serde_json::to_value(&r).map_err(|e| e.to_string())?;
                    v["verification"]["ok"] = json!(ok);
                    v["verification"]["summary"] = json!(summary);
                    let ov = overview.unwrap_or_default();
                    for k in ["first", "last", "totals", "timeline", "destinations"] {
                        v[k] = ov[k].clone();
                    }
                    v["refusals_by_rule"] = ov["refusals"].clone();
                    json_response(StatusCode::OK, &v)
                }
            })
        })
        .await
    }
}

/// Names the file a report is saved as.
fn download(mut r: Response<AdminBody>, name: &str) -> Response<AdminBody> {
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .collect();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{safe}\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// Runs blocking log work off the async threads.
async fn blocking<T: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Failure> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| internal(format!("the {what} task failed")))?
        .map_err(internal)
}

/// The `/audit/verify` answer: the [`LogReport`], its verdict, and the signature status.
fn verify_json(r: LogReport, opts: &VerifyOptions) -> Value {
    let bad_signatures = r
        .damage
        .iter()
        .filter(|d| d.kind == ProblemKind::BadCheckpointSignature)
        .count();
    let signatures = match &opts.pubkey {
        None => json!({ "checked": false, "status": "unchecked" }),
        Some(key) => {
            let status = if bad_signatures > 0 {
                "invalid"
            } else if r.checkpoint_pending {
                "pending"
            } else {
                "valid"
            };
            json!({
                "checked": true,
                "status": status,
                "key_id": key.id,
                "valid": r.checkpoints,
                "invalid": bad_signatures,
                "signed_to": r.signed_to,
                "unsigned_after": match (r.signed_to, r.last_seq) {
                    (Some(s), Some(l)) => l.saturating_sub(s),
                    (None, Some(l)) => l,
                    _ => 0,
                },
            })
        }
    };
    let ok = r.is_ok();
    let summary = r.summary();
    let mut v = serde_json::to_value(&r).unwrap_or_else(|_| json!({}));
    v["ok"] = json!(ok);
    v["summary"] = json!(summary);
    v["signatures"] = signatures;
    v["verified_at"] = json!(crate::audit::record::now_rfc3339());
    v
}

/// The HTML report: a page of its own with inline styles only.
fn report_page(html: String) -> Response<AdminBody> {
    let mut r = text(StatusCode::OK, "text/html; charset=utf-8", html);
    r.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    r
}

/// Whether the gateway is ready, and the audit state's name.
pub fn readiness(status: AuditStatus) -> (bool, &'static str) {
    match status {
        AuditStatus::Ok => (true, "ok"),
        AuditStatus::WriteFailing => (false, "write-failing"),
        AuditStatus::Poisoned => (false, "poisoned"),
        AuditStatus::Stopped => (false, "stopped"),
    }
}

fn bad(msg: String) -> Problem {
    Problem::new(Kind::BadRequest, msg)
}

fn unknown(k: &str) -> Failure {
    bad(format!("unknown query parameter `{}`", k.escape_default()))
}

fn internal(msg: String) -> Problem {
    tracing::error!(error = %msg, "admin request failed");
    Problem::new(Kind::Internal, msg)
}

/// Splits query parameters into the filter and the rest.
fn filter_from(
    params: Vec<(String, String)>,
    regions: Arc<crate::audit::place::Regions>,
) -> Result<(Filter, Params), Failure> {
    let mut map = serde_json::Map::new();
    let mut rest = Vec::new();
    for (k, v) in params {
        if FILTER_KEYS.contains(&k.as_str()) {
            if v.is_empty() {
                continue;
            }
            if map.insert(k.clone(), Value::String(v)).is_some() {
                return Err(bad(format!("query parameter `{k}` is given twice")));
            }
        } else {
            rest.push((k, v));
        }
    }
    let mut filter: Filter = serde_json::from_value(Value::Object(map))
        .map_err(|e| bad(format!("invalid filter: {e}")))?;
    filter.regions = Some(regions);
    filter.compile().map_err(bad)?;
    Ok((filter, rest))
}

/// Up to `limit` matching records, the newest (newest first) when `desc` else the oldest,
/// and how many match in all.
fn matching(
    logs: &Source,
    filter: &Filter,
    limit: usize,
    desc: bool,
) -> Result<(Vec<Value>, usize), String> {
    let mut ring: VecDeque<Value> = VecDeque::with_capacity(limit.min(4096));
    let mut total = 0;
    logs.for_each(filter, |rec| {
        total += 1;
        if desc {
            if ring.len() == limit {
                ring.pop_front();
            }
            ring.push_back(rec);
        } else if ring.len() < limit {
            ring.push_back(rec);
        }
        true
    })?;
    Ok(if desc {
        (ring.into_iter().rev().collect(), total)
    } else {
        (ring.into(), total)
    })
}

/// Parses `a=1&b=x%20y` (percent-decoding, `+` as space). Names may repeat.
pub fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in q.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad percent-encoding in `{}`", s.escape_default()))?;
                out.push(hex);
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out)
        .map_err(|_| format!("query parameter `{}` is not UTF-8", s.escape_default()))
}

fn text(status: StatusCode, ctype: &'static str, body: String) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

fn json_response(status: StatusCode, v: &Value) -> Response<AdminBody> {
    text(
        status,
        "application/json",
        serde_json::to_string(v).unwrap_or_else(|_| "{}".into()),
    )
}

/// A problem answer of the admin listener (the one table in [`crate::respond`]).
fn answer(p: Problem) -> Response<AdminBody> {
    p.into_response_with(false)
}

/// Serves the admin listener on `listener` (bound by `serve` before the audit log is
/// opened) in the background, with the snapshot's admin TLS. Returns its URL.
pub fn spawn(
    listener: tokio::net::TcpListener,
    gateway: Arc<Gateway>,
    source: AuditSource,
    max_records: usize,
    oidc: Option<oidc::Oidc>,
) -> String {
    let tls = gateway.state().admin_tls.clone().map(|initial| {
        let gw = gateway.clone();
        crate::net::Tls::new(move || {
            gw.state()
                .admin_tls
                .clone()
                .unwrap_or_else(|| initial.clone())
        })
    });
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "?".into());
    let admin = Arc::new(Admin::new(gateway, source, max_records).with_oidc(oidc));
    tokio::spawn(serve(admin, listener, tls, std::future::pending()));
    format!("{scheme}://{local}")
}
