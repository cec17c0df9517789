//! The request path in process: a [`bordergate::proxy::Gateway`] built from a work dir's
//! config (the same [`super::prepare`] the process tests use) and called directly, with
//! no socket — for tests that drive many requests through the real phases.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bordergate::audit::AuditLog;
use bordergate::config::Config;
use bordergate::proxy::Gateway;
use bordergate::snapshot::Snapshot;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};

use super::Options;

/// An answer, collected.
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A gateway in this process.
pub struct InProc {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub audit: PathBuf,
    pub gateway: Arc<Gateway>,
    secret: Vec<u8>,
}

impl InProc {
    /// Builds the gateway of `opts` (served plain: there is no socket).
    pub fn start(opts: Options) -> InProc {
        bordergate::tls::install_crypto_provider();
        let opts = Options {
            plaintext: true,
            ..opts
        };
        let (dir, config, audit, _store) = super::prepare(&opts);
        let secret_path = dir.path().join("hs256.secret");
        bordergate::auth::ensure_dev_secret(&secret_path).unwrap();
        let cfg = Config::load(&config).unwrap_or_else(|d| panic!("{d}"));
        let snap = Snapshot::build(cfg).unwrap_or_else(|d| panic!("{d}"));
        let log = AuditLog::open(&audit, 512).unwrap();
        let gateway = Arc::new(Gateway::new(snap, log));
        let secret = std::fs::read(&secret_path).unwrap();
        let secret = String::from_utf8(secret)
            .unwrap()
            .trim()
            .as_bytes()
            .to_vec();
        InProc {
            dir,
            config,
            audit,
            gateway,
            secret,
        }
    }

    pub fn token(&self, sub: &str, org: &str, jurisdiction: &str, purpose: &str) -> String {
        bordergate::auth::mint_token(
            &self.secret,
            "bordergate-dev",
            "bordergate",
            sub,
            org,
            jurisdiction,
            purpose,
            Duration::from_secs(3600),
        )
        .unwrap()
    }

    /// Sends one request through every phase and collects the answer.
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: &'static [u8],
    ) -> Answer {
        let mut b = http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", "gateway.test");
        if let Some(t) = token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let req = b.body(Full::new(Bytes::from_static(body))).unwrap();
        let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let resp = self.gateway.handle(req, peer, "http").await;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        Answer {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        }
    }

    /// Every record of the log, waiting until the one with `request_id` of `kind` is there.
    pub async fn record(&self, kind: &str, request_id: &str) -> serde_json::Value {
        for _ in 0..200 {
            let text = std::fs::read_to_string(&self.audit).unwrap_or_default();
            if let Some(r) = text
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|r| r["kind"] == kind && r["request_id"] == request_id)
            {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no {kind} record for {request_id}");
    }

    /// Every record of the log now.
    pub fn records(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
