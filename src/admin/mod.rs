//! The admin listener: health, metrics, the audit endpoints and the compliance officer's
//! page, on a port of its own (TLS, the gateway's JWT keys, role-checked).
//!
//! Endpoints (GET; HEAD is answered like GET):
//!
//! | path               | who                              | answers |
//! |--------------------|----------------------------------|---------|
//! | `/livez`           | anyone                           | `200 ok` while the process serves |
//! | `/readyz`          | anyone                           | 200 or 503 JSON: config loaded, audit log writable |
//! | `/metrics`         | anyone                           | OpenMetrics text ([`crate::metrics`]) |
//! | `/audit/records`   | token with role `compliance-officer` | JSON records; query parameters are the [`Filter`] fields plus `limit` and `order=asc\|desc` |
//! | `/audit/verify`    | token with role `compliance-officer` | JSON result of verifying the chain, with checkpoint status |
//! | `/audit/report`    | token with role `compliance-officer` | JSON transfer report for `from`/`to` ([`report`]) |
//! | `/`, `/ui/app.js`, `/ui/app.css` | anyone (the page asks for a token) | the officer's page, assets built in |
//!
//! Without a valid token the audit endpoints answer 401, with a token lacking the role 403.
//! The proxy port never routes any of these paths.

pub mod report;
mod server;
mod ui;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use crate::audit::AuditStatus;
use crate::audit::query::{Filter, query};
use crate::proxy::Gateway;

pub use server::serve;

/// The role a token must carry for the audit endpoints.
pub const OFFICER_ROLE: &str = "compliance-officer";

/// Filter fields `/audit/records` and `/audit/report` accept as query parameters.
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
];

/// Query parameters, decoded, in order.
type Params = Vec<(String, String)>;
/// An error answer: status and detail.
type Failure = (StatusCode, String);

/// The body type of every admin response.
pub type AdminBody = Full<Bytes>;

/// What the admin listener serves from.
pub struct Admin {
    gateway: Arc<Gateway>,
    /// The audit log files, oldest first.
    logs: Vec<PathBuf>,
    max_records: usize,
}

impl Admin {
    pub fn new(gateway: Arc<Gateway>, logs: Vec<PathBuf>, max_records: usize) -> Admin {
        Admin {
            gateway,
            logs,
            max_records: max_records.max(1),
        }
    }

    /// Answers one admin request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<AdminBody> {
        if !matches!(*req.method(), Method::GET | Method::HEAD) {
            let mut r = problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "only GET and HEAD are served here",
            );
            r.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return r;
        }
        let path = req.uri().path();
        let q = req.uri().query().unwrap_or("");
        match path {
            "/livez" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n".into()),
            "/readyz" => self.readyz(),
            "/metrics" => self.metrics(),
            "/" | "/index.html" => ui::page(),
            p if p.starts_with("/ui/") => ui::asset(p),
            p if p.starts_with("/audit/") => {
                if let Err(r) = self.officer(req.headers()) {
                    return *r;
                }
                let params = match parse_query(q) {
                    Ok(p) => p,
                    Err(e) => return problem(StatusCode::BAD_REQUEST, &e),
                };
                let result = match p {
                    "/audit/records" => self.records(params).await,
                    "/audit/verify" => self.verify().await,
                    "/audit/report" => self.report(params).await,
                    _ => return problem(StatusCode::NOT_FOUND, "no such audit endpoint"),
                };
                match result {
                    Ok(v) => json_response(StatusCode::OK, &v),
                    Err((status, msg)) => problem(status, &msg),
                }
            }
            _ => problem(StatusCode::NOT_FOUND, "no such admin endpoint"),
        }
    }

    /// Checks the bearer token and the officer role.
    fn officer(&self, headers: &http::HeaderMap) -> Result<(), Box<Response<AdminBody>>> {
        let state = self.gateway.state();
        match state.auth.authenticate_headers(headers) {
            Err(e) => {
                let mut r = problem(StatusCode::UNAUTHORIZED, &e.to_string());
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"bordergate-admin\""),
                );
                Err(Box::new(r))
            }
            Ok(a) if a.role.as_deref() == Some(OFFICER_ROLE) => Ok(()),
            Ok(_) => Err(Box::new(problem(
                StatusCode::FORBIDDEN,
                &format!("the audit endpoints need a token with role `{OFFICER_ROLE}`"),
            ))),
        }
    }

    fn readyz(&self) -> Response<AdminBody> {
        let state = self.gateway.state();
        let status = self.gateway.audit().status();
        let (ready, audit) = readiness(status);
        let body = json!({
            "ready": ready,
            "config": "loaded",
            "policy_version": state.policies.version.as_ref(),
            "audit": audit,
        });
        let code = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        json_response(code, &body)
    }

    fn metrics(&self) -> Response<AdminBody> {
        let state = self.gateway.state();
        let today = time::OffsetDateTime::now_utc().date();
        let soon = today + time::Duration::days(30);
        let mut scrape = crate::metrics::Scrape {
            audit_healthy: self.gateway.audit().status() == AuditStatus::Ok,
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
            Err(_) => problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the metrics",
            ),
        }
    }

    async fn records(&self, params: Vec<(String, String)>) -> Result<Value, (StatusCode, String)> {
        let (filter, rest) = filter_from(params)?;
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
                _ => {
                    return Err(bad(format!(
                        "unknown query parameter `{}`",
                        k.escape_default()
                    )));
                }
            }
        }
        let logs = self.logs.clone();
        let found = tokio::task::spawn_blocking(move || {
            if desc {
                newest(&logs, &filter, limit)
            } else {
                query(&logs, &filter, limit + 1).map(|mut v| {
                    let more = v.len() > limit;
                    v.truncate(limit);
                    (v, more)
                })
            }
        })
        .await
        .map_err(|_| internal("the query task failed".into()))?
        .map_err(internal)?;
        let (records, truncated) = found;
        Ok(json!({ "count": records.len(), "truncated": truncated, "records": records }))
    }

    async fn verify(&self) -> Result<Value, (StatusCode, String)> {
        let logs = self.logs.clone();
        tokio::task::spawn_blocking(move || verify_json(&logs))
            .await
            .map_err(|_| internal("the verify task failed".into()))
    }

    async fn report(&self, params: Vec<(String, String)>) -> Result<Value, (StatusCode, String)> {
        let (filter, rest) = filter_from(params)?;
        if let Some((k, _)) = rest.first() {
            return Err(bad(format!(
                "unknown query parameter `{}`",
                k.escape_default()
            )));
        }
        let logs = self.logs.clone();
        tokio::task::spawn_blocking(move || {
            let mut r = report::build(&logs, &filter)?;
            r["verification"] = verify_json(&logs);
            Ok::<_, String>(r)
        })
        .await
        .map_err(|_| internal("the report task failed".into()))?
        .map_err(internal)
    }
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

fn bad(msg: String) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, msg)
}

fn internal(msg: String) -> (StatusCode, String) {
    tracing::error!(error = %msg, "admin request failed");
    (StatusCode::INTERNAL_SERVER_ERROR, msg)
}

/// Splits query parameters into the filter and the rest.
fn filter_from(params: Vec<(String, String)>) -> Result<(Filter, Params), Failure> {
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
    let filter = serde_json::from_value(Value::Object(map))
        .map_err(|e| bad(format!("invalid filter: {e}")))?;
    Ok((filter, rest))
}

/// The last `limit` matching records, newest first, and whether older ones were left out.
fn newest(logs: &[PathBuf], filter: &Filter, limit: usize) -> Result<(Vec<Value>, bool), String> {
    let mut ring: VecDeque<Value> = VecDeque::with_capacity(limit.min(4096));
    let mut more = false;
    for_each_record(logs, |rec| {
        if filter.matches(&rec) {
            if ring.len() == limit {
                ring.pop_front();
                more = true;
            }
            ring.push_back(rec);
        }
    })?;
    Ok((ring.into_iter().rev().collect(), more))
}

/// Streams every parseable record of `logs`, oldest first.
pub(crate) fn for_each_record(logs: &[PathBuf], mut f: impl FnMut(Value)) -> Result<(), String> {
    for p in logs {
        let file =
            std::fs::File::open(p).map_err(|e| format!("cannot open `{}`: {e}", p.display()))?;
        for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", p.display()))?;
            if let Ok(v) = serde_json::from_slice::<Value>(&line) {
                f(v);
            }
        }
    }
    Ok(())
}

/// Verifies every log file and summarises the checkpoints found in them.
fn verify_json(logs: &[PathBuf]) -> Value {
    let mut files = Vec::new();
    let mut ok = true;
    let mut records = 0;
    for p in logs {
        let r = crate::audit::verify_file(p);
        ok &= r.is_ok();
        records += r.records;
        files.push(json!({
            "file": p.file_name().map(|n| n.to_string_lossy().into_owned()),
            "ok": r.is_ok(),
            "records": r.records,
            "last_seq": r.last_seq,
            "last_hash": r.last_hash,
            "bytes": r.bytes,
            "summary": r.to_string(),
            "problem": r.problem.as_ref().map(|p| json!({
                "kind": p.kind.as_str(),
                "line": p.line,
                "seq": p.seq,
                "message": p.message,
            })),
        }));
    }
    let mut checkpoints = 0u64;
    let mut last_checkpoint = Value::Null;
    let _ = for_each_record(logs, |rec| {
        if rec.get("kind").and_then(Value::as_str) == Some("checkpoint") {
            checkpoints += 1;
            last_checkpoint = rec;
        }
    });
    json!({
        "ok": ok,
        "records": records,
        "files": files,
        "checkpoints": { "count": checkpoints, "last": last_checkpoint },
        "verified_at": crate::audit::record::now_rfc3339(),
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

/// An RFC 9457 problem answer.
fn problem(status: StatusCode, detail: &str) -> Response<AdminBody> {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut r = json_response(status, &body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

/// Binds the admin listener of `cfg` (TLS from `cfg.tls`, else `proxy_tls`) and serves it
/// in the background. Returns its URL.
pub async fn spawn(
    cfg: &crate::config::AdminConfig,
    proxy_tls: Option<&crate::config::TlsListen>,
    gateway: Arc<Gateway>,
    logs: Vec<PathBuf>,
) -> Result<String, String> {
    let tls = match (cfg.plaintext, cfg.tls.as_ref().or(proxy_tls)) {
        (false, Some(t)) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(t).map_err(|e| format!("admin listener: {e}"))?,
        )),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(cfg.address)
        .await
        .map_err(|e| format!("cannot listen on {} (admin): {e}", cfg.address))?;
    let local = listener.local_addr().unwrap_or(cfg.address);
    let scheme = if tls.is_some() { "https" } else { "http" };
    let admin = Arc::new(Admin::new(gateway, logs, cfg.max_records));
    tokio::spawn(serve(admin, listener, tls, std::future::pending()));
    Ok(format!("{scheme}://{local}"))
}
