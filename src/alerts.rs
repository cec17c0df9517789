//! Alerts for the compliance officer: a Slack-compatible webhook (`{"text": …}`) told
//! about refusal surges, audit-log trouble and transfer bases that have expired or are
//! about to, so nobody has to poll. Messages carry counts, rule ids and organisation
//! ids of the registry — never a caller's identity.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::audit::AuditStatus;
use crate::config::AlertsConfig;
use crate::metrics::Decided;
use crate::proxy::Gateway;

type WebhookClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Posts messages to the configured webhook.
#[derive(Clone)]
pub struct Webhook {
    url: http::Uri,
    client: WebhookClient,
}

impl Webhook {
    pub fn new(cfg: &AlertsConfig) -> Result<Webhook, String> {
        let url: http::Uri = cfg
            .webhook_url
            .parse()
            .map_err(|e| format!("alerts webhook `{}`: {e}", cfg.webhook_url))?;
        let mut tls = crate::tls::upstream_client_config(cfg.ca.as_deref(), None, None)?;
        tls.alpn_protocols.clear();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Webhook {
            url,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    /// Sends one message; failures are logged, never retried in a loop.
    pub async fn post(&self, text: &str) {
        let body = serde_json::json!({ "text": text }).to_string();
        let req = Request::post(self.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)));
        let Ok(req) = req else {
            return;
        };
        match tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await {
            Ok(Ok(resp)) => {
                let status = resp.status();
                let _ = resp.into_body().collect().await;
                if !status.is_success() {
                    tracing::warn!(%status, "alert webhook refused the message");
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "alert webhook unreachable"),
            Err(_) => tracing::warn!("alert webhook timed out"),
        }
    }
}

/// Refusals (451 and 403 decisions) counted so far.
fn refusals() -> u64 {
    let m = crate::metrics::global();
    m.requests_with(Decided::Deny, 451) + m.requests_with(Decided::Deny, 403)
}

/// Mechanisms of the registry that have expired or expire within `days`, as lines.
pub fn expiring_bases(gw: &Gateway, days: u32) -> Vec<String> {
    let state = gw.state();
    let today = time::OffsetDateTime::now_utc().date();
    let soon = today + time::Duration::days(i64::from(days));
    let mut out = Vec::new();
    for o in state.policies.organisations() {
        for m in &o.mechanisms {
            match m.valid_until {
                Some(d) if d < today => out.push(format!(
                    "`{}` {} ({}) expired on {d}",
                    o.id, m.kind, m.reference
                )),
                Some(d) if d <= soon => out.push(format!(
                    "`{}` {} ({}) ends on {d}",
                    o.id, m.kind, m.reference
                )),
                _ => {}
            }
        }
    }
    out
}

/// Runs the alert checks until the process ends, posting to `hook` (the snapshot's).
pub fn spawn(cfg: AlertsConfig, hook: Webhook, gw: Arc<Gateway>) {
    tokio::spawn(async move {
        let window = Duration::from_secs(cfg.window_secs.max(1));
        let mut tick = tokio::time::interval(window);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut last_refusals = refusals();
        let mut last_status = AuditStatus::Ok;
        let mut last_bases: Option<Vec<String>> = None;
        let mut since_bases = Duration::ZERO;
        let bases_every = Duration::from_secs(24 * 3600);
        loop {
            tick.tick().await;
            // Bases: at start, then daily, and whenever the list changes (a reload).
            let bases = expiring_bases(&gw, cfg.expiring_within_days);
            since_bases += window;
            if last_bases.as_ref() != Some(&bases) || since_bases >= bases_every {
                since_bases = Duration::ZERO;
                if !bases.is_empty() {
                    hook.post(&format!(
                        "bordergate: {} transfer basis/bases expired or ending within {} days:\n{}",
                        bases.len(),
                        cfg.expiring_within_days,
                        bases.join("\n")
                    ))
                    .await;
                }
                last_bases = Some(bases);
            }
            // Refusal surges.
            let now = refusals();
            let delta = now.saturating_sub(last_refusals);
            last_refusals = now;
            if cfg.refusals_per_window > 0 && delta > cfg.refusals_per_window {
                hook.post(&format!(
                    "bordergate: {delta} refused transfers in the last {} s (threshold {}); see the audit log",
                    window.as_secs(),
                    cfg.refusals_per_window
                ))
                .await;
            }
            // Audit log health.
            let status = gw.audit().status();
            if status != last_status {
                if status != AuditStatus::Ok {
                    hook.post(&format!(
                        "bordergate: the audit log is {}; requests are refused with 503 until it is repaired",
                        status.as_str()
                    ))
                    .await;
                } else {
                    hook.post("bordergate: the audit log accepts records again")
                        .await;
                }
                last_status = status;
            }
        }
    });
}

/// Sends one message now (used when start-up verification of the audit log fails).
pub async fn notify(cfg: &AlertsConfig, text: &str) {
    if let Ok(hook) = Webhook::new(cfg) {
        hook.post(text).await;
    }
}
