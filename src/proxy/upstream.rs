//! Upstream clients: http and https (rustls, always verified) through hyper, and the
//! gateway's own `file://` store.

use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::ResBody;
use crate::config::UpstreamConfig;
use crate::model::Country;

/// The body sent upstream.
pub type UpBody = http_body_util::combinators::BoxBody<Bytes, super::BoxError>;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, UpBody>;

/// Where a route's requests go.
pub enum Target {
    Http {
        client: Box<HttpsClient>,
        /// `scheme://authority` of the upstream.
        origin: String,
        /// Path prefix of the upstream URL, without a trailing slash.
        base_path: String,
    },
    File(super::filestore::FileStore),
}

/// One configured upstream.
pub struct Upstream {
    pub name: String,
    pub jurisdiction: Country,
    pub operator: Option<String>,
    pub timeout: Duration,
    pub target: Target,
}

/// Why an upstream request failed.
pub enum UpstreamFailure {
    Unreachable(String),
    Timeout,
    /// The client's request body broke a limit (slow, too large) while it was forwarded.
    Client(super::problem::Kind, String),
}

impl Upstream {
    pub fn from_config(cfg: &UpstreamConfig) -> Result<Upstream, String> {
        let target = if let Some(dir) = cfg.url.strip_prefix("file://") {
            Target::File(super::filestore::FileStore::new(std::path::Path::new(dir))?)
        } else {
            let uri: Uri = cfg
                .url
                .parse()
                .map_err(|e| format!("upstream `{}`: invalid url: {e}", cfg.name))?;
            let scheme = uri.scheme_str().unwrap_or("http");
            let authority = uri
                .authority()
                .ok_or_else(|| format!("upstream `{}`: url has no host", cfg.name))?;
            let mut tls = crate::tls::upstream_client_config(
                cfg.ca.as_deref(),
                cfg.client_cert.as_deref(),
                cfg.client_key.as_deref(),
            )
            .map_err(|e| format!("upstream `{}`: {e}", cfg.name))?;
            // hyper-rustls sets ALPN itself from the enabled protocols.
            tls.alpn_protocols.clear();
            let mut http = HttpConnector::new();
            http.enforce_http(false);
            http.set_nodelay(true);
            http.set_connect_timeout(Some(Duration::from_secs(cfg.timeout_secs.clamp(1, 10))));
            let connector = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .enable_http2()
                .wrap_connector(http);
            let client = Client::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(connector);
            Target::Http {
                client: Box::new(client),
                origin: format!("{scheme}://{authority}"),
                base_path: uri.path().trim_end_matches('/').to_string(),
            }
        };
        Ok(Upstream {
            name: cfg.name.clone(),
            jurisdiction: cfg.jurisdiction,
            operator: cfg.operator.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            target,
        })
    }

    /// Sends a request to an http(s) upstream; `path_and_query` is the canonical
    /// encoded path plus the original query.
    pub async fn send_http(
        &self,
        mut req: Request<UpBody>,
        path_and_query: &str,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        let Target::Http {
            client,
            origin,
            base_path,
        } = &self.target
        else {
            return Err(UpstreamFailure::Unreachable("not an http upstream".into()));
        };
        let uri: Uri = format!("{origin}{base_path}{path_and_query}")
            .parse()
            .map_err(|e| UpstreamFailure::Unreachable(format!("bad upstream uri: {e}")))?;
        *req.uri_mut() = uri;
        match tokio::time::timeout(self.timeout, client.request(req)).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => match super::guard::BodyLimit::find(&e) {
                Some(b) => Err(UpstreamFailure::Client(b.kind(), b.to_string())),
                None => Err(UpstreamFailure::Unreachable(describe(&e))),
            },
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Turns an upstream response body into the gateway's body type.
pub fn boxed_incoming(b: Incoming) -> ResBody {
    use http_body_util::BodyExt;
    b.map_err(|e| -> super::BoxError { Box::new(e) }).boxed()
}
