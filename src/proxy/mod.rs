//! The request path: normalise, authenticate, resolve, decide, audit, forward.
//!
//! Every request is answered from one immutable [`State`] snapshot (config, keys,
//! catalog, policies, upstreams), read without locks and swapped whole on reload.

pub mod body;
pub mod filestore;
pub mod guard;
pub mod headers;
pub mod problem;
pub mod server;
pub mod sigv4;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::audit::{AuditError, AuditLog, DecisionRecord, Outcome, Receipt, Record};
use crate::auth::{AuthError, Authenticator};
use crate::catalog::Catalog;
use crate::config::{Config, Diagnostic, Diagnostics, Mode, segment_prefix_match};
use crate::model::{Caller, Category, Country, Decision, DenyGround, Direction, Effect, Tags};
use crate::policy::{PolicySet, Query};
use body::{Completion, Counted, Metered};
use problem::{Kind, Problem};
use upstream::{Target, Upstream, UpstreamFailure};

/// Errors carried inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway produces.
pub type ResBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// A path prefix routed to an upstream.
pub struct Route {
    pub prefix: String,
    pub upstream: usize,
    pub public: bool,
    pub uploads: bool,
}

/// Everything a request is decided and forwarded with; immutable once built.
pub struct State {
    pub config: Config,
    pub auth: Authenticator,
    pub catalog: Catalog,
    pub policies: PolicySet,
    /// Longest prefix first.
    pub routes: Vec<Route>,
    pub upstreams: Vec<Upstream>,
}

impl State {
    /// Builds a state from a loaded config, reporting every error in every file.
    pub fn build(config: Config) -> Result<State, Diagnostics> {
        let mut errors = Vec::new();
        let src = config.source.clone();
        let auth = Authenticator::from_config(&config.auth)
            .map(|a| a.with_max_token_bytes(config.limits.max_token_bytes))
            .map_err(|e| errors.push(Diagnostic::new(&src, None, e)))
            .ok();
        let catalog = Catalog::load(&config.catalog)
            .map_err(|d| errors.extend(d.0))
            .ok();
        let policies = PolicySet::load(&config.policies, &config.registry_path())
            .map_err(|d| errors.extend(d.0))
            .ok();
        let mut upstreams = Vec::new();
        for u in &config.upstreams {
            match Upstream::from_config(u) {
                Ok(up) => upstreams.push(up),
                Err(e) => errors.push(Diagnostic::new(&src, None, e)),
            }
        }
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
        match (auth, catalog, policies) {
            (Some(auth), Some(catalog), Some(policies)) if errors.is_empty() => Ok(State {
                config,
                auth,
                catalog,
                policies,
                routes,
                upstreams,
            }),
            _ => Err(Diagnostics(errors)),
        }
    }

    fn route(&self, path: &str) -> Option<&Route> {
        self.routes
            .iter()
            .find(|r| segment_prefix_match(&r.prefix, path))
    }
}

/// The gateway: the current state and the audit log.
pub struct Gateway {
    state: ArcSwap<State>,
    audit: AuditLog,
    /// PIPL cumulative export volumes; outlives state reloads.
    exports: crate::pipl::ExportCounter,
}

/// What is known about a request so far, for its decision record.
struct Attempt<'d> {
    /// The decision recorded, for the request metrics ([`crate::metrics::Decided`] as u8).
    decided: &'d AtomicU8,
    started: Instant,
    request_id: String,
    method: Method,
    path: String,
    caller: Option<Caller>,
    dataset: Option<String>,
    tags: Option<Tags>,
    destination: Option<Country>,
    direction: Direction,
    upstream: Option<String>,
    mode: Mode,
}

impl Attempt<'_> {
    fn record(
        &self,
        decision: Effect,
        status: u16,
        rule: &str,
        article: &str,
        reason: &str,
        version: &str,
    ) -> Record {
        self.decided.store(
            crate::metrics::Decided::of(decision) as u8,
            Ordering::Relaxed,
        );
        crate::metrics::global().decision(rule, self.destination);
        Record::Decision(Box::new(DecisionRecord {
            time: crate::audit::record::now_rfc3339(),
            request_id: self.request_id.clone(),
            caller: self.caller.clone(),
            method: self.method.as_str().to_string(),
            path: self.path.clone(),
            dataset: self.dataset.clone(),
            origins: self
                .tags
                .as_ref()
                .map(|t| t.origins.iter().copied().collect())
                .unwrap_or_default(),
            tags: self.tags.clone(),
            destination: self.destination,
            direction: self.direction,
            decision,
            enforced: self.mode == Mode::Enforce || decision == Effect::Allow,
            status,
            rule: rule.to_string(),
            article: article.to_string(),
            reason: reason.to_string(),
            policy_version: version.to_string(),
            upstream: self.upstream.clone(),
            exporter: None,
        }))
    }
}

/// Renders a path that failed normalisation for the audit log: printable ASCII only, bounded.
fn escaped_path(raw: &str) -> String {
    let mut s: String = raw.escape_default().take(512).collect();
    if raw.len() > 512 {
        s.push('…');
    }
    s
}

fn decision_header(d: &Decision, enforced: bool) -> Option<HeaderValue> {
    let effect = match d.effect {
        Effect::Allow => "allow",
        Effect::Deny => "deny",
    };
    let mut v = format!(
        "{effect}; rule=\"{}\"; article=\"{}\"",
        d.rule.replace(['"', '\\'], ""),
        d.article.replace(['"', '\\'], "")
    );
    if !enforced {
        v.push_str("; mode=shadow");
    }
    HeaderValue::from_str(&v).ok()
}

fn receipt_header(r: &Receipt) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("seq={}; hash={}", r.seq, r.hash)).ok()
}

/// Parses a comma-separated header into origins and categories an upstream adds.
fn upstream_tags(resp: &http::HeaderMap, origin_h: &str, cat_h: &str) -> Result<Tags, String> {
    let mut t = Tags::default();
    for v in resp.get_all(origin_h) {
        let s = v
            .to_str()
            .map_err(|_| format!("`{origin_h}` is not ASCII"))?;
        for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            t.origins.insert(Country::parse(c)?);
        }
    }
    for v in resp.get_all(cat_h) {
        let s = v.to_str().map_err(|_| format!("`{cat_h}` is not ASCII"))?;
        for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let cat = Category::ALL
                .iter()
                .find(|k| k.as_str() == c)
                .ok_or_else(|| format!("unknown category `{}`", c.escape_default()))?;
            t.categories.insert(*cat);
        }
    }
    Ok(t)
}

impl Gateway {
    pub fn new(state: State, audit: AuditLog) -> Gateway {
        Gateway {
            state: ArcSwap::from_pointee(state),
            audit,
            exports: crate::pipl::ExportCounter::new(),
        }
    }

    /// The PIPL export counter (seed it from the audit trail before serving).
    pub fn exports(&self) -> &crate::pipl::ExportCounter {
        &self.exports
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn state(&self) -> Arc<State> {
        self.state.load_full()
    }

    /// Replaces the state atomically; requests in flight finish on the old one.
    pub fn swap_state(&self, state: State) {
        self.state.store(Arc::new(state));
    }

    /// Writes the refusal's decision record, then answers with the problem (or 503 when
    /// the record cannot be made durable).
    async fn refuse(&self, a: &Attempt<'_>, version: &str, problem: Problem) -> Response<ResBody> {
        let head = a.method == Method::HEAD;
        let rule = problem.rule.clone().unwrap_or_else(|| {
            format!(
                "gateway.{}",
                problem.kind.map(|k| k.slug()).unwrap_or("refused")
            )
        });
        let article = problem.article.clone().unwrap_or_default();
        let rec = a.record(
            Effect::Deny,
            problem.status,
            &rule,
            &article,
            &problem.detail,
            version,
        );
        match self.audit.append(rec).await {
            Ok(r) => {
                let mut resp = problem.into_response(head);
                if let Some(v) = receipt_header(&r) {
                    resp.headers_mut().insert("audit-receipt", v);
                }
                resp
            }
            Err(e) => self.audit_failed(a, &e),
        }
    }

    fn audit_failed(&self, a: &Attempt, e: &AuditError) -> Response<ResBody> {
        tracing::error!(request_id = %a.request_id, error = %e, "audit record not durable; refusing");
        Problem::new(
            Kind::AuditUnavailable,
            "the audit record of this request could not be made durable, so nothing was forwarded",
            &a.request_id,
        )
        .into_response(a.method == Method::HEAD)
    }

    /// Handles one request end to end.
    pub async fn handle(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        proto: &'static str,
    ) -> Response<ResBody> {
        self.handle_with_cert(req, peer, proto, None).await
    }

    /// Handles one request whose connection presented `client_cert` (DER, the TLS
    /// client certificate), against which certificate-bound tokens (RFC 8705) are checked.
    pub async fn handle_with_cert(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        proto: &'static str,
        client_cert: Option<&[u8]>,
    ) -> Response<ResBody> {
        let started = Instant::now();
        let decided = AtomicU8::new(crate::metrics::Decided::None as u8);
        let resp = self
            .handle_inner(req, peer, proto, client_cert, &decided)
            .await;
        crate::metrics::global().request(
            crate::metrics::Decided::from_u8(decided.load(Ordering::Relaxed)),
            resp.status().as_u16(),
            started.elapsed(),
        );
        resp
    }

    async fn handle_inner(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        proto: &'static str,
        client_cert: Option<&[u8]>,
        decided: &AtomicU8,
    ) -> Response<ResBody> {
        let state = self.state.load_full();
        let version = state.policies.version.clone();
        let (parts, body) = req.into_parts();
        let mut a = Attempt {
            decided,
            started: Instant::now(),
            request_id: headers::request_id(&parts.headers),
            method: parts.method.clone(),
            path: String::new(),
            caller: None,
            dataset: None,
            tags: None,
            destination: None,
            direction: if matches!(parts.method, Method::PUT | Method::POST) {
                Direction::Upload
            } else {
                Direction::Download
            },
            upstream: None,
            mode: state.config.mode,
        };
        let raw_path = parts.uri.path();
        a.path = escaped_path(raw_path);

        // The request target: origin-form only on HTTP/1, bounded, unambiguous.
        if parts.version <= Version::HTTP_11 && parts.uri.authority().is_some() {
            let p = Problem::new(
                Kind::BadRequest,
                "absolute-form request targets are not accepted",
                &a.request_id,
            );
            return self.refuse(&a, &version, p).await;
        }
        let target_len = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str().len())
            .unwrap_or(0);
        if target_len > state.config.limits.max_uri_bytes {
            let p = Problem::new(
                Kind::UriTooLong,
                format!(
                    "request target is longer than the {} bytes allowed",
                    state.config.limits.max_uri_bytes
                ),
                &a.request_id,
            );
            return self.refuse(&a, &version, p).await;
        }
        if !matches!(
            parts.method,
            Method::GET | Method::HEAD | Method::PUT | Method::POST
        ) {
            let p = Problem::new(
                Kind::MethodNotAllowed,
                format!(
                    "method `{}` is not supported",
                    a.method.as_str().escape_default()
                ),
                &a.request_id,
            );
            let mut resp = self.refuse(&a, &version, p).await;
            resp.headers_mut().insert(
                header::ALLOW,
                HeaderValue::from_static("GET, HEAD, PUT, POST"),
            );
            return resp;
        }
        if let Err(r) = guard::check_head(&parts, &state.config.limits) {
            let p = Problem::new(r.kind, r.detail, &a.request_id);
            return self.refuse(&a, &version, p).await;
        }
        let path = match crate::catalog::path::normalize(raw_path) {
            Ok(p) => p,
            Err(e) => {
                let p = Problem::new(Kind::BadPath, e.to_string(), &a.request_id);
                return self.refuse(&a, &version, p).await;
            }
        };
        a.path = path.decoded.clone();

        // Who is asking.
        let caller = match state
            .auth
            .authenticate_headers(&parts.headers)
            .and_then(|auth| auth.check_certificate(client_cert).map(|()| auth))
        {
            Ok(auth) => auth.caller,
            Err(e) => return self.unauthenticated(&a, &version, &e).await,
        };
        a.caller = Some(caller.clone());

        // What the data is.
        let Some(route) = state.route(&path.decoded) else {
            let p = Problem::new(
                Kind::NotInCatalog,
                "the path matches no route or catalog entry",
                &a.request_id,
            );
            return self.refuse(&a, &version, p).await;
        };
        let up = &state.upstreams[route.upstream];
        a.upstream = Some(up.name.clone());
        if a.direction == Direction::Upload && !route.uploads {
            let p = Problem::new(
                Kind::MethodNotAllowed,
                "this route does not accept uploads",
                &a.request_id,
            );
            let mut resp = self.refuse(&a, &version, p).await;
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        // What the upstream is asked (an object store only answers a few calls).
        let upstream_pq = match up.path_and_query(
            &route.prefix,
            &parts.method,
            &path.encoded,
            parts.uri.query(),
        ) {
            Ok(pq) => pq,
            Err(e) => {
                let p = Problem::new(Kind::BadRequest, e, &a.request_id);
                return self.refuse(&a, &version, p).await;
            }
        };
        let resolution = state.catalog.resolve(&path.decoded);
        let mut tags: Tags = match (&resolution, route.public) {
            (Some(r), _) => {
                a.dataset = Some(r.entry.id.clone());
                if let Some(w) = &r.entry.withdrawn {
                    a.tags = Some(r.tags.as_ref().clone());
                    let p = Problem::new(
                        Kind::Withdrawn,
                        format!("`{}` was withdrawn on {}: {}", r.entry.id, w.date, w.reason),
                        &a.request_id,
                    )
                    .with_rule("catalog.withdrawn", "GDPR Art. 17", &version);
                    return self.refuse(&a, &version, p).await;
                }
                r.tags.as_ref().clone()
            }
            (None, true) => Tags {
                categories: [Category::Public].into(),
                ..Tags::default()
            },
            (None, false) => {
                let p = Problem::new(
                    Kind::NotInCatalog,
                    "the path matches no catalog entry",
                    &a.request_id,
                );
                return self.refuse(&a, &version, p).await;
            }
        };
        // Uploads: the artifact's tags come from its declared lineage.
        let (destination, importer) = match a.direction {
            Direction::Download => (caller.jurisdiction, Some(caller.org.as_str())),
            Direction::Upload => (up.jurisdiction, up.operator.as_deref()),
        };
        a.destination = Some(destination);
        match a.direction {
            Direction::Download => {
                if tags.origins.is_empty() {
                    // Data with no recorded origin is taken to originate where it is stored.
                    tags.origins.insert(up.jurisdiction);
                }
            }
            Direction::Upload => {
                let lineage_h = state.config.tags.lineage.as_str();
                let declared: Vec<String> = parts
                    .headers
                    .get_all(lineage_h)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|s| s.split(','))
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect();
                let is_store = resolution
                    .as_ref()
                    .is_some_and(|r| r.entry.kind == crate::catalog::EntryKind::Store);
                if is_store {
                    tags = Tags::default();
                }
                if declared.is_empty() {
                    if caller.jurisdiction != up.jurisdiction {
                        a.tags = Some(tags);
                        let p = Problem::new(
                            Kind::TransferRefused,
                            format!(
                                "the upload declares no lineage (`{lineage_h}` header), so its data cannot be classified and may not move from {} to {}",
                                caller.jurisdiction, up.jurisdiction
                            ),
                            &a.request_id,
                        )
                        .with_rule("upload.lineage-undeclared", "GDPR Chapter V, Art. 44", &version);
                        return self.refuse(&a, &version, p).await;
                    }
                    tags.origins.insert(caller.jurisdiction);
                } else {
                    let ids: Vec<&str> = declared.iter().map(String::as_str).collect();
                    match state.catalog.lineage_tags(&ids) {
                        Ok(t) => {
                            if is_store {
                                tags = t;
                            } else {
                                tags.absorb(&t);
                            }
                            tags.lineage.extend(declared.iter().cloned());
                        }
                        Err(e) => {
                            a.tags = Some(tags);
                            let p = Problem::new(
                                Kind::BadRequest,
                                format!("declared lineage: {e}"),
                                &a.request_id,
                            );
                            return self.refuse(&a, &version, p).await;
                        }
                    }
                }
            }
        }

        // Decide.
        let now = time::OffsetDateTime::now_utc();
        let today = now.date();
        // One evaluation of the policies for a tag set, with the PIPL export it would make.
        let (direction, dataset) = (a.direction, a.dataset.clone());
        let decide_for = |tags: &Tags| {
            let export = crate::pipl::Export::of(
                &state.catalog,
                tags,
                destination,
                direction,
                dataset.as_deref(),
                up.operator.as_deref(),
                Some(&caller.org),
                crate::pipl::year_of(now),
            );
            let volume = export.as_ref().map(|e| self.exports.volume(e));
            let decision = state.policies.decide(&Query {
                tags,
                purpose: &caller.purpose,
                importer,
                destination,
                direction,
                date: today,
                volume: volume.as_ref(),
            });
            (decision, export)
        };
        let (decision, export) = decide_for(&tags);
        a.tags = Some(tags);
        let enforce = state.config.mode == Mode::Enforce;
        if !decision.is_allow() && enforce {
            let kind = match decision.ground {
                Some(DenyGround::Transfer) | None => Kind::TransferRefused,
                Some(DenyGround::Purpose) | Some(DenyGround::Authorization) => Kind::Forbidden,
            };
            let p = Problem::new(kind, decision.reason.clone(), &a.request_id).with_rule(
                &decision.rule,
                &decision.article,
                &version,
            );
            let mut resp = self.refuse(&a, &version, p).await;
            if let Some(v) = decision_header(&decision, true) {
                resp.headers_mut().insert("bordergate-decision", v);
            }
            return resp;
        }

        // Durable before any byte moves.
        let rec = a.record(
            decision.effect,
            0,
            &decision.rule,
            &decision.article,
            &decision.reason,
            &version,
        );
        let receipt = match self.audit.append(rec).await {
            Ok(r) => r,
            Err(e) => return self.audit_failed(&a, &e),
        };
        // The record is durable and the data is about to move: count the export.
        if let Some(e) = &export {
            self.exports.record(e);
        }

        let bytes_in = Arc::new(AtomicU64::new(0));
        let mut completion = Completion::new(
            self.audit.clone(),
            a.request_id.clone(),
            receipt.seq,
            a.started,
            bytes_in.clone(),
        );
        let req_body = Counted::new(guard::Limited::new(body, &state.config.limits), bytes_in);
        let mut resp = match &up.target {
            Target::File(store) => {
                store
                    .handle(&parts.method, &path.decoded, &parts.headers, req_body)
                    .await
            }
            Target::Http { .. } => {
                let mut up_req = Request::new(req_body.boxed());
                *up_req.method_mut() = parts.method.clone();
                *up_req.headers_mut() = headers::upstream_request_headers(
                    &parts.headers,
                    peer.ip(),
                    proto,
                    &a.request_id,
                    &state.config.tags.lineage,
                );
                let sent = match up.send_http(up_req, &upstream_pq).await {
                    Ok(r) => up.follow_redirects(r, &parts.method, &parts.headers).await,
                    Err(f) => Err(f),
                };
                match sent {
                    Ok(r) => r.map(upstream::boxed_incoming),
                    Err(f) => {
                        let (kind, detail, outcome_detail) = match f {
                            UpstreamFailure::Timeout => (
                                Kind::GatewayTimeout,
                                format!("upstream `{}` did not answer in time", up.name),
                                "upstream timed out".to_string(),
                            ),
                            UpstreamFailure::Unreachable(e) => (
                                Kind::BadGateway,
                                format!("upstream `{}` could not be reached", up.name),
                                e,
                            ),
                            UpstreamFailure::Client(kind, e) => {
                                (kind, e.clone(), format!("request body: {e}"))
                            }
                        };
                        tracing::warn!(request_id = %a.request_id, upstream = %up.name, error = %outcome_detail, "upstream failed");
                        completion.set_status(kind.status().as_u16());
                        completion.finish(0, Outcome::UpstreamError, Some(outcome_detail));
                        let mut resp = Problem::new(kind, detail, &a.request_id)
                            .into_response(a.method == Method::HEAD);
                        if let Some(v) = receipt_header(&receipt) {
                            resp.headers_mut().insert("audit-receipt", v);
                        }
                        return resp;
                    }
                }
            }
        };
        headers::clean_response_headers(resp.headers_mut());

        // Redirects are never followed, and never passed on to another host.
        if resp.status().is_redirection()
            && let Some(loc) = resp.headers().get(header::LOCATION)
            && loc
                .to_str()
                .map(|l| l.contains("://") || l.starts_with("//"))
                .unwrap_or(true)
        {
            completion.set_status(StatusCode::BAD_GATEWAY.as_u16());
            completion.finish(
                0,
                Outcome::UpstreamError,
                Some("upstream redirected to another host".into()),
            );
            return Problem::new(
                Kind::BadGateway,
                "the upstream redirected to another host; bordergate does not follow or pass on such redirects",
                &a.request_id,
            )
            .into_response(a.method == Method::HEAD);
        }

        // Upstream metadata may add tags, never remove them: decide again if it did.
        let mut decision = decision;
        if a.direction == Direction::Download {
            match upstream_tags(
                resp.headers(),
                &state.config.tags.upstream_origins,
                &state.config.tags.upstream_categories,
            ) {
                Ok(extra) if !extra.origins.is_empty() || !extra.categories.is_empty() => {
                    let mut merged = a.tags.clone().unwrap_or_default();
                    let before = merged.clone();
                    merged.origins.extend(extra.origins.iter().copied());
                    merged.categories.extend(extra.categories.iter().copied());
                    if merged != before {
                        let (second, export2) = decide_for(&merged);
                        if (second.is_allow() || !enforce)
                            && let Some(e) = &export2
                        {
                            self.exports.record(e);
                        }
                        a.tags = Some(merged);
                        if !second.is_allow() && enforce {
                            completion
                                .set_status(StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS.as_u16());
                            completion.finish(
                                0,
                                Outcome::Aborted,
                                Some("refused after upstream metadata added tags".into()),
                            );
                            let kind = match second.ground {
                                Some(DenyGround::Purpose) | Some(DenyGround::Authorization) => {
                                    Kind::Forbidden
                                }
                                _ => Kind::TransferRefused,
                            };
                            let p = Problem::new(kind, second.reason.clone(), &a.request_id)
                                .with_rule(&second.rule, &second.article, &version);
                            return self.refuse(&a, &version, p).await;
                        }
                        decision = second;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    completion.set_status(StatusCode::BAD_GATEWAY.as_u16());
                    completion.finish(
                        0,
                        Outcome::UpstreamError,
                        Some(format!("upstream tag metadata: {e}")),
                    );
                    let p = Problem::new(
                        Kind::BadGateway,
                        format!("the upstream sent tag metadata that cannot be read: {e}"),
                        &a.request_id,
                    );
                    return self.refuse(&a, &version, p).await;
                }
            }
        }

        completion.set_status(resp.status().as_u16());
        let h = resp.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&a.request_id) {
            h.insert("x-request-id", v);
        }
        if let Some(v) = decision_header(&decision, decision.is_allow() || enforce) {
            h.insert("bordergate-decision", v);
        }
        if let Some(v) = receipt_header(&receipt) {
            h.insert("audit-receipt", v);
        }
        resp.map(|b| Metered::new(b, completion).boxed())
    }

    async fn unauthenticated(
        &self,
        a: &Attempt<'_>,
        version: &str,
        e: &AuthError,
    ) -> Response<ResBody> {
        let p = Problem::new(Kind::Unauthenticated, e.to_string(), &a.request_id).with_rule(
            &format!("auth.{}", e.code()),
            "",
            version,
        );
        let mut p = p;
        p.decision = Some("deny");
        p.article = None;
        p.policy_version = None;
        let challenge = match e.rfc6750_error() {
            None => "Bearer realm=\"bordergate\"".to_string(),
            Some(err) => format!(
                "Bearer realm=\"bordergate\", error=\"{err}\", error_description=\"{}\"",
                e.code()
            ),
        };
        let mut resp = self.refuse(a, version, p).await;
        if resp.status() == StatusCode::UNAUTHORIZED
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}
