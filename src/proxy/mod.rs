//! The request path, in phases (as pingora's request filter → upstream peer → upstream
//! response filter): admit → authenticate → classify → decide → record → forward →
//! upstream response. Each phase lives in its own file; this one only runs them in order.
//!
//! Every request is answered from one immutable [`Snapshot`], read without locks and
//! swapped whole on reload. A refusal in any phase before `record` is recorded as the
//! request's deny decision; from `record` on, the decision record is durable and the
//! request's completion record says how the transfer ended.

mod admit;
mod attempt;
mod authenticate;
pub mod body;
mod classify;
mod content;
pub mod filestore;
mod forward;
pub mod guard;
pub mod headers;
pub mod pace;
pub mod rawline;
mod response;
mod revalidate;
mod s3api;
mod s3list;
pub mod server;
pub mod sigv4;
mod transform;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;

use crate::audit::record::RecheckOf;
use crate::audit::{AuditLog, Receipt};
use crate::model::{Decision, Direction};
use crate::respond::{Problem, decision_header, instrument_header};
use crate::snapshot::Snapshot;
use attempt::Attempt;
use body::{Completion, Metered};
use classify::Routed;
use response::Ended;

pub use crate::respond as problem;

/// Errors carried inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway produces.
pub type ResBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;

/// The gateway: the current snapshot and the audit log.
pub struct Gateway {
    state: ArcSwap<Snapshot>,
    audit: AuditLog,
    /// PIPL cumulative export volumes; outlives snapshot reloads.
    exports: crate::pipl::ExportCounter,
    /// The PIPL ledger shared by the fleet (`audit.sink: postgres`): when set, every PIPL
    /// export is decided and counted on it; `exports` is then this gateway's local view.
    ledger: Option<crate::pipl::pg::Ledger>,
    /// Every principal's recent personal-data downloads; outlives snapshot reloads.
    recent: crate::lineage::RecentDownloads,
    /// The replicas sharing the audit table, as the last fleet check saw them.
    fleet: crate::fleet::Watch,
    /// False while the state read from the fleet's trail at start (PIPL volumes, recent
    /// downloads) is still missing because the database did not answer: nothing is
    /// forwarded and readiness is down until it is read.
    trail_ready: std::sync::atomic::AtomicBool,
}

/// A request that passed every phase before `record`.
struct Decided<'s> {
    path: crate::catalog::path::NormalizedPath,
    routed: Routed<'s>,
    decision: Decision,
    at: time::OffsetDateTime,
    /// The digest an upload's body must have.
    body_digest: Option<crate::lineage::digest::Sha256>,
    /// The transformation the data gets before it leaves (an allow that requires one).
    plan: Option<crate::transform::Plan>,
}

/// True when the gateway, not the upstream, evaluates the request's conditions: a GET or
/// HEAD to an http(s) upstream (see [`revalidate`]).
fn revalidated(up: &upstream::Upstream, method: &http::Method) -> bool {
    matches!(up.target, upstream::Target::Http { .. })
        && matches!(*method, http::Method::GET | http::Method::HEAD)
}

fn receipt_header(r: &Receipt) -> Option<HeaderValue> {
    let v = match &r.chain {
        Some(c) => format!("chain={c}; seq={}; hash={}", r.seq, r.hash),
        None => format!("seq={}; hash={}", r.seq, r.hash),
    };
    HeaderValue::from_str(&v).ok()
}

impl Gateway {
    pub fn new(state: Snapshot, audit: AuditLog) -> Gateway {
        Gateway {
            audit,
            recent: crate::lineage::RecentDownloads::new(state.config.lineage.max_principals),
            trail_ready: std::sync::atomic::AtomicBool::new(true),
            exports: crate::pipl::ExportCounter::new(),
            fleet: crate::fleet::Watch::default(),
            ledger: None,
            state: ArcSwap::from_pointee(state),
        }
    }

    /// Whether the state read from the audit trail at start is complete (see `trail_ready`).
    pub fn trail_ready(&self) -> bool {
        self.trail_ready.load(std::sync::atomic::Ordering::Acquire)
    }

    pub fn set_trail_ready(&self, ready: bool) {
        self.trail_ready
            .store(ready, std::sync::atomic::Ordering::Release);
    }

    /// The index of recent personal-data downloads (seed it from the audit trail before
    /// serving).
    pub fn recent_downloads(&self) -> &crate::lineage::RecentDownloads {
        &self.recent
    }

    /// The PIPL export counter (seed it from the audit trail before serving).
    pub fn exports(&self) -> &crate::pipl::ExportCounter {
        &self.exports
    }

    /// The fleet as the last check saw it (see [`crate::fleet`]).
    pub fn fleet(&self) -> &crate::fleet::Watch {
        &self.fleet
    }

    /// Decides and counts PIPL exports on the fleet's shared `ledger` (seed the local
    /// counter from it before serving).
    pub fn with_ledger(mut self, ledger: crate::pipl::pg::Ledger) -> Gateway {
        self.ledger = Some(ledger);
        self
    }

    /// The fleet's PIPL ledger, if the volumes are shared.
    pub fn ledger(&self) -> Option<&crate::pipl::pg::Ledger> {
        self.ledger.as_ref()
    }

    /// Decides `t` as of `at`. A PIPL export on a shared ledger is decided on the fleet's
    /// volume and counted there in the same step when the data moves (allowed, or not
    /// enforced); any other transfer never touches the database.
    async fn decide_volume(
        &self,
        snap: &Snapshot,
        t: &crate::transfer::Transfer,
        at: time::OffsetDateTime,
        enforce: bool,
        request_id: &str,
    ) -> Result<Decision, Problem> {
        let Some(e) = t.export.as_ref() else {
            return Ok(t.decide(&snap.policies, at.date(), None));
        };
        let Some(ledger) = self.ledger.as_ref() else {
            return Ok(self.exports.count(e, |v| {
                let d = t.decide(&snap.policies, at.date(), Some(v));
                let moves = d.is_allow() || !enforce;
                (d, moves)
            }));
        };
        ledger
            .count(e, request_id, |v| {
                let d = t.decide(&snap.policies, at.date(), Some(v));
                let moves = d.is_allow() || !enforce;
                (d, moves)
            })
            .await
            .map_err(|err| {
                tracing::error!(request_id, error = %err, "PIPL export volume not counted; refusing");
                Problem::from(&err)
            })
    }

    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    pub fn state(&self) -> Arc<Snapshot> {
        self.state.load_full()
    }

    /// Replaces the snapshot atomically; requests in flight finish on the old one.
    pub fn swap_state(&self, state: Snapshot) {
        self.state.store(Arc::new(state));
    }

    /// Handles one request end to end.
    pub async fn handle<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        proto: &'static str,
    ) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        self.handle_with_cert(req, peer, proto, None).await
    }

    /// Handles one request whose connection presented `client_cert` (DER, the TLS
    /// client certificate), against which certificate-bound tokens (RFC 8705) are checked.
    pub async fn handle_with_cert<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
        proto: &'static str,
        client_cert: Option<&[u8]>,
    ) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let snap = self.state.load_full();
        let (parts, body) = req.into_parts();
        let form = crate::respond::Form::requested(&parts.headers);
        let head = parts.method == http::Method::HEAD;
        let enforce = snap.config.mode == crate::config::Mode::Enforce;
        let mut a = Attempt::new(&parts, enforce, snap.policies.version.clone());
        let body_empty = body.is_end_stream() || body.size_hint().exact() == Some(0);
        let resp = if a.s3 && s3api::is_bucket_call(&parts) {
            self.s3_bucket(&snap, &parts, body_empty, client_cert, &mut a)
                .await
        } else {
            match self
                .decide(&snap, &parts, body_empty, client_cert, &mut a)
                .await
            {
                Ok(d) => {
                    self.transfer(&snap, &mut a, d, parts, body, peer, proto)
                        .await
                }
                Err(p) => self.refuse(&mut a, p).await,
            }
        };
        let mut resp = resp;
        form.present(&mut resp, head);
        if let Some(v) = a
            .client_request_id
            .as_deref()
            .and_then(|c| HeaderValue::from_str(c).ok())
        {
            resp.headers_mut().insert("x-client-request-id", v);
        }
        crate::metrics::global().request(a.decided, resp.status().as_u16(), a.started.elapsed());
        resp
    }

    /// The phases before the record: admit, authenticate, classify, decide. An enforced
    /// refusal comes back as the problem to answer (and record).
    async fn decide<'s>(
        &self,
        snap: &'s Snapshot,
        parts: &Parts,
        body_empty: bool,
        client_cert: Option<&[u8]>,
        a: &mut Attempt,
    ) -> Result<Decided<'s>, Problem> {
        let path = admit::admit(parts, body_empty, &snap.config.limits)?;
        a.path.clone_from(&path.decoded);
        let query = authenticate::identify(snap, parts, body_empty, client_cert, a)?;
        let routed = classify::route(snap, parts, query.as_deref(), &path, a.direction).map_err(
            |(up, p)| {
                a.upstream = up.map(str::to_string);
                p
            },
        )?;
        let Some(caller) = a.caller.as_ref() else {
            return Err(Problem::new(
                crate::respond::Kind::Internal,
                "the caller is not known",
            ));
        };
        a.upstream = Some(routed.upstream.name.clone());
        let at = time::OffsetDateTime::now_utc();
        let (t, body_digest) = classify::classify(
            snap,
            &routed,
            &path,
            caller,
            a.direction,
            &parts.headers,
            at,
            &self.recent,
        )?;
        let t = a.transfer.insert(t);
        let decision = self
            .decide_volume(snap, t, at, a.enforce, &a.request_id)
            .await?;
        if !decision.is_allow() && a.enforce {
            return Err(Problem::from(&decision));
        }
        let plan = match &decision.transform {
            Some(req) if decision.is_allow() && a.direction == Direction::Download => {
                let p = transform::plan(snap, t, &path.decoded, req, &parts.headers, &decision)?;
                a.transform = Some(p.applied());
                Some(p)
            }
            _ => None,
        };
        Ok(Decided {
            path,
            routed,
            decision,
            at,
            body_digest,
            plan,
        })
    }

    /// Records the refusal `p`, then answers with it (or 503 when the record cannot be
    /// made durable).
    async fn refuse(&self, a: &mut Attempt, p: Problem) -> Response<ResBody> {
        let p = p.for_request(&a.request_id);
        let rec = a.refusal(&p);
        match self.audit.append(rec).await {
            Ok(r) => {
                let mut resp = a.answer(p);
                if let Some(v) = receipt_header(&r) {
                    resp.headers_mut().insert("audit-receipt", v);
                }
                resp
            }
            Err(e) => self.audit_failed(a, &e),
        }
    }

    /// Makes the decision record `make` builds durable — once the fleet's trail has been
    /// read — or answers the 503 that says why nothing moves.
    async fn durable(
        &self,
        a: &mut Attempt,
        make: impl FnOnce(&mut Attempt) -> crate::audit::Record,
    ) -> Result<Receipt, Response<ResBody>> {
        if !self.trail_ready() {
            return Err(self.audit_failed(
                a,
                &crate::audit::AuditError::Unavailable(
                    "the fleet's audit trail has not been read since the start (the database did not answer)".into(),
                ),
            ));
        }
        let rec = make(a);
        self.audit
            .append(rec)
            .await
            .map_err(|e| self.audit_failed(a, &e))
    }

    fn audit_failed(&self, a: &Attempt, e: &crate::audit::AuditError) -> Response<ResBody> {
        tracing::error!(request_id = %a.request_id, error = %e, "audit record not durable; refusing");
        a.answer(Problem::from(e).for_request(&a.request_id))
    }

    /// The phases from the record on: record, forward, upstream response.
    #[allow(clippy::too_many_arguments)]
    async fn transfer<B>(
        &self,
        snap: &Arc<Snapshot>,
        a: &mut Attempt,
        d: Decided<'_>,
        mut parts: Parts,
        body: B,
        peer: SocketAddr,
        proto: &'static str,
    ) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        // Record: durable before any byte moves.
        let receipt = match self.durable(a, |a| a.forwarded(&d.decision)).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        // The record is durable and the data is about to move: the export was counted when
        // it was decided; on a shared ledger, the local counter (explanations, the admin
        // API) follows.
        if self.ledger.is_some()
            && let Some(e) = a.transfer.as_ref().and_then(|t| t.export.as_ref())
        {
            self.exports.record(e);
        }
        let receipt_h = receipt_header(&receipt);
        let bytes_in = Arc::new(AtomicU64::new(0));
        let mut completion = Completion::new(
            self.audit.clone(),
            a.request_id.clone(),
            receipt.seq,
            a.started,
            bytes_in.clone(),
        );

        // Forward.
        let up = d.routed.upstream;
        if let Some(plan) = &d.plan {
            transform::upstream_request(plan, &mut parts);
            completion.hash_sent();
        }
        let mismatch = Arc::new(std::sync::OnceLock::new());
        let content = Arc::new(std::sync::OnceLock::new());
        let f = forward::Forward {
            upstream: up,
            path: &d.path,
            path_and_query: &d.routed.path_and_query,
            peer,
            proto,
            request_id: &a.request_id,
            client_request_id: a.client_request_id.as_deref(),
            limits: &snap.config.limits,
            tags: &snap.config.tags,
            s3: a.s3,
        };
        let expect = crate::lineage::digest::Expect {
            declared: d.body_digest.map(|x| (x, mismatch.clone())),
            known: match (a.transfer.as_ref(), a.caller.as_ref()) {
                (Some(t), Some(c)) => content::known_check(
                    snap,
                    t,
                    d.routed.route.operator.as_deref(),
                    &c.org,
                    d.at,
                    a.enforce,
                    content.clone(),
                ),
                _ => None,
            },
        };
        let forwarded = forward::forward(&f, &parts, body, bytes_in, expect).await;
        if let Some(ended) = content::ended(
            &mismatch,
            &content,
            a.enforce,
            &a.request_id,
            &mut completion,
        ) {
            let mut resp = ended.answer(completion, a);
            if let Some(v) = receipt_h {
                resp.headers_mut().insert("audit-receipt", v);
            }
            return resp;
        }
        let mut resp = match forwarded {
            Ok(r) => r,
            Err(failure) => {
                let detail = failure.detail();
                if failure.is_client() {
                    tracing::info!(request_id = %a.request_id, upstream = %up.name, error = %detail, "client's request body failed");
                } else {
                    tracing::warn!(request_id = %a.request_id, upstream = %up.name, error = %detail, "upstream failed");
                }
                // A client whose body stalled, trickled or broke ended the transfer itself.
                let outcome = if failure.is_client() {
                    crate::audit::Outcome::Aborted
                } else {
                    crate::audit::Outcome::UpstreamError
                };
                let ended = Ended {
                    problem: Problem::from((up.name.as_str(), &failure)),
                    outcome,
                    detail: detail.into(),
                };
                let mut resp = ended.answer(completion, a);
                if let Some(v) = receipt_h {
                    resp.headers_mut().insert("audit-receipt", v);
                }
                return resp;
            }
        };

        // Upstream response.
        headers::clean_response_headers(resp.headers_mut());
        let decision = match self
            .upstream_response(
                snap,
                a,
                d.routed.route,
                &resp,
                d.decision,
                d.at,
                &mut completion,
            )
            .await
        {
            Ok(decision) => decision,
            Err(ended) => return ended.answer(completion, a),
        };
        // The conditions the upstream was not asked, on the answer that was decided.
        if revalidated(up, &parts.method) {
            resp = revalidate::answer(&parts.headers, resp)
                .unwrap_or_else(|p| a.answer(p.for_request(&a.request_id)));
        }
        // Transform: the whole file, minimised, before its first byte leaves.
        if let Some(plan) = &d.plan {
            let origin = transform::Origin {
                snap: snap.clone(),
                upstream: d.routed.route.upstream,
                decoded: d.path.decoded.clone(),
                path_and_query: d.routed.path_and_query.clone(),
            };
            resp = match transform::apply(plan, resp, a.is_head(), origin).await {
                Ok(r) => r,
                Err(ended) => {
                    tracing::warn!(request_id = %a.request_id, upstream = %up.name, error = %ended.detail, "not transformed; refusing");
                    let mut r = ended.answer(completion, a);
                    if let Some(v) = receipt_h {
                        r.headers_mut().insert("audit-receipt", v);
                    }
                    return r;
                }
            };
        }
        completion.set_status(resp.status().as_u16());
        self.served(snap, a, &resp, &decision, d.at);
        let flag = a.transfer.as_ref().and_then(|t| t.flagged()).and_then(|u| {
            HeaderValue::from_str(&format!(
                "undeclared-recent; datasets=\"{}\"",
                u.datasets().join(",")
            ))
            .ok()
        });
        let h = resp.headers_mut();
        if let Some(v) = flag {
            h.insert("bordergate-lineage-flag", v);
        }
        if let Ok(v) = HeaderValue::from_str(&a.request_id) {
            h.insert("x-request-id", v);
        }
        if let Some(v) = decision_header(&decision, decision.is_allow() || a.enforce) {
            h.insert("bordergate-decision", v);
        }
        if let Some(v) = instrument_header(&decision) {
            h.insert("bordergate-instrument", v);
        }
        if let Some(v) = receipt_h {
            h.insert("audit-receipt", v);
        }
        resp.map(|b| Metered::new(b, completion).boxed())
    }

    /// Notes a personal-data download as its body starts to flow (a 2xx answer to a GET
    /// whose decision moves data), for the lineage check of the caller's later uploads.
    fn served(
        &self,
        snap: &Snapshot,
        a: &Attempt,
        resp: &Response<ResBody>,
        decision: &Decision,
        at: time::OffsetDateTime,
    ) {
        let moved = decision.is_allow() || !a.enforce;
        if a.direction != Direction::Download
            || a.is_head()
            || !resp.status().is_success()
            || !moved
        {
            return;
        }
        let (Some(caller), Some(t), Some(since)) = (
            a.caller.as_ref(),
            a.transfer.as_ref(),
            snap.config.lineage.since(at),
        ) else {
            return;
        };
        self.recent
            .served(caller, t.dataset.as_deref(), &t.tags, at, since);
    }

    /// Checks the upstream's answer before its first byte: redirects; then, for a download,
    /// the tags its metadata adds, decided again; for an upload, a response body, decided as
    /// a download of the same path. Returns the decision in force.
    #[allow(clippy::too_many_arguments)]
    async fn upstream_response(
        &self,
        snap: &Snapshot,
        a: &mut Attempt,
        route: &crate::snapshot::Route,
        resp: &Response<ResBody>,
        decision: Decision,
        at: time::OffsetDateTime,
        completion: &mut Completion,
    ) -> Result<Decision, Ended> {
        response::check_redirect(resp, &a.path)?;
        let unconditional = snap
            .upstream(route)
            .is_some_and(|u| revalidated(u, &a.method));
        response::check_unasked_304(resp, unconditional)?;
        let tags = &snap.config.tags;
        let extra = response::declared_tags(
            resp.headers(),
            &tags.upstream_origins,
            &tags.upstream_categories,
        )?;
        let Some(caller) = a.caller.as_ref() else {
            return Ok(decision);
        };
        // The re-decision takes the catalog's facts as they stood on the request's day, as
        // the first decision did (`transfer::classify`).
        let dated = snap.catalog.as_of(at.date());
        let catalog: &crate::catalog::Catalog = &dated;
        let owned;
        let (of, t, added): (RecheckOf, &crate::transfer::Transfer, crate::model::Tags) = match a
            .direction
        {
            Direction::Download => {
                let Some(t) = a.transfer.as_mut() else {
                    return Ok(decision);
                };
                let mut added = extra;
                // An artifact the response's content digest names: decided as it.
                let mut by_digest = false;
                for d in crate::lineage::digest::of_response(resp.headers(), resp.status()) {
                    if let Some(more) = catalog.by_digest(&d).and_then(|e| t.absorb_artifact(e)) {
                        added.origins.extend(more.origins);
                        added.categories.extend(more.categories);
                        by_digest = true;
                    }
                }
                added.origins.retain(|o| !t.tags.origins.contains(o));
                added.categories.retain(|c| !t.tags.categories.contains(c));
                if !t.absorb_upstream(&added, catalog, route.operator.as_deref(), &caller.org, at)
                    && !by_digest
                {
                    return Ok(decision);
                }
                (RecheckOf::UpstreamMetadata, &*t, added)
            }
            Direction::Upload => {
                if a.is_head() || resp.body().is_end_stream() {
                    return Ok(decision);
                }
                // Data coming back: decided as a download of the same path by the caller.
                let ask = crate::transfer::Ask::download(&a.path, caller, at);
                let mut t = crate::transfer::classify(&snap.catalog, &ask, Some(route.place()))
                    .map_err(|e| Ended {
                        problem: Problem::from(e),
                        outcome: crate::audit::Outcome::Refused,
                        detail: "the upload's response body could not be classified".into(),
                    })?;
                t.absorb_upstream(&extra, catalog, route.operator.as_deref(), &caller.org, at);
                let mut shown = t.tags.clone();
                shown.lineage.clear();
                owned = t;
                (RecheckOf::UploadResponse, &owned, shown)
            }
        };
        let second = self
            .decide_volume(snap, t, at, a.enforce, &a.request_id)
            .await
            .map_err(|problem| Ended {
                problem,
                outcome: crate::audit::Outcome::Refused,
                detail: "the PIPL export volume could not be counted for the re-decision".into(),
            })?;
        response::recheck(of, &second, &added, a.enforce, completion)?;
        if self.ledger.is_some()
            && let Some(e) = &t.export
        {
            self.exports.record(e);
        }
        // The response body of an upload is a download too (downloads are noted in `served`).
        if of == RecheckOf::UploadResponse
            && resp.status().is_success()
            && (second.is_allow() || !a.enforce)
            && let Some(since) = snap.config.lineage.since(at)
        {
            self.recent
                .served(caller, t.dataset.as_deref(), &t.tags, at, since);
        }
        Ok(second)
    }
}
