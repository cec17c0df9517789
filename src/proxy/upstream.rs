//! Upstream clients: http and https (rustls, always verified) through hyper, and the
//! gateway's own `file://` store.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, Uri, header};
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
    /// The response-head timeout: from the request sent in full to the response head.
    pub timeout: Duration,
    /// The longest pause the upstream may make in either direction.
    pub idle: Duration,
    /// Minimum rate of the response body, bytes per second (0: off).
    pub min_rate: u64,
    pub target: Target,
    /// Set for an S3-compatible upstream: requests are mapped and signed.
    pub s3: Option<super::sigv4::S3>,
    /// Origins (`scheme://authority`, lower-case) whose redirects the gateway follows.
    pub redirect_origins: Vec<String>,
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// Client request headers passed on when following a redirect: ranges (the other
/// conditions are evaluated by the gateway, see `proxy::revalidate`).
const REDIRECT_HEADERS: &[header::HeaderName] = &[
    header::RANGE,
    header::IF_RANGE,
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::USER_AGENT,
];

/// Headers of a redirect that describe the file it leads to (the Hugging Face hub sends
/// the commit, the LFS ETag and size on the redirect itself); carried onto the response.
const CARRIED_HEADERS: &[&str] = &["x-repo-commit", "x-linked-etag", "x-linked-size"];

/// Window and grace period of an upstream's response-body rate.
const RESPONSE_RATE_WINDOW: Duration = Duration::from_secs(10);

/// Why an upstream request failed.
pub enum UpstreamFailure {
    Unreachable(String),
    /// No response head within `timeout_secs` of the request being sent in full.
    Timeout,
    /// The upstream took none of the request body for `idle_timeout_secs`.
    Stalled(u64),
    /// The client's request body broke a limit (slow, too large) or could not be read
    /// while it was forwarded: the client's failure, not the upstream's.
    Client(crate::respond::Kind, String),
}

impl UpstreamFailure {
    /// What the completion record says of the failure.
    pub fn detail(&self) -> String {
        match self {
            UpstreamFailure::Timeout => "upstream timed out".into(),
            UpstreamFailure::Stalled(s) => {
                format!("upstream took none of the request body for {s} s")
            }
            UpstreamFailure::Unreachable(e) => e.clone(),
            UpstreamFailure::Client(_, e) => format!("request body: {e}"),
        }
    }

    /// Whether the client, not the upstream, ended the transfer.
    pub fn is_client(&self) -> bool {
        matches!(self, UpstreamFailure::Client(..))
    }

    /// The client's body failure.
    pub fn client(b: &super::guard::BodyLimit) -> UpstreamFailure {
        UpstreamFailure::Client(b.kind(), b.to_string())
    }
}

/// A request body on its way to the upstream, as the upstream's timers see it.
pub struct Sending {
    /// How the client's side is going.
    pub upload: std::sync::Arc<super::guard::Upload>,
    /// Resolves once the body ended (or was dropped).
    pub ended: tokio::sync::oneshot::Receiver<()>,
    /// Bytes of the body read from the client so far.
    pub bytes: std::sync::Arc<std::sync::atomic::AtomicU64>,
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
            let connect = cfg
                .connect_timeout_secs
                .unwrap_or_else(|| cfg.timeout_secs.min(10));
            http.set_connect_timeout(Some(Duration::from_secs(connect.max(1))));
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
        let s3 = match &cfg.s3 {
            Some(c) => Some(
                super::sigv4::S3::from_config(c)
                    .map_err(|e| format!("upstream `{}`: {e}", cfg.name))?,
            ),
            None => None,
        };
        let redirect_origins = cfg
            .follow_redirects_to
            .iter()
            .map(|o| redirect_origin(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("upstream `{}`: {e}", cfg.name))?;
        Ok(Upstream {
            name: cfg.name.clone(),
            jurisdiction: cfg.jurisdiction,
            operator: cfg.operator.clone(),
            timeout: Duration::from_secs(cfg.timeout_secs.max(1)),
            idle: Duration::from_secs(cfg.idle_timeout_secs.max(1)),
            min_rate: cfg.min_bytes_per_sec,
            target,
            s3,
            redirect_origins,
        })
    }

    /// The upstream path and query for a request: the gateway path and query as they are,
    /// or for an S3 upstream the object-store call they map to (else why not).
    pub fn path_and_query(
        &self,
        route_prefix: &str,
        method: &Method,
        encoded_path: &str,
        query: Option<&str>,
    ) -> Result<String, String> {
        match &self.s3 {
            Some(s3) => {
                let rest = encoded_path
                    .strip_prefix(route_prefix)
                    .unwrap_or(encoded_path);
                s3.map(method, rest, query)
            }
            None => Ok(match query {
                Some(q) => format!("{encoded_path}?{q}"),
                None => encoded_path.to_string(),
            }),
        }
    }

    /// The absolute URL of a redirect `location` if it leads to an origin this upstream
    /// may be followed to.
    fn followable(&self, location: &str) -> Option<Uri> {
        let uri: Uri = location.parse().ok()?;
        let origin = format!(
            "{}://{}",
            uri.scheme_str()?,
            uri.authority()?.as_str().to_ascii_lowercase()
        );
        self.redirect_origins.contains(&origin).then_some(uri)
    }

    /// Follows redirects to vetted origins for GET and HEAD, returning the final response
    /// (with the hub's file headers of the first redirect carried onto it). A redirect that
    /// may not be followed is returned as it is, for the caller to refuse or pass on.
    pub async fn follow_redirects(
        &self,
        mut resp: Response<Incoming>,
        method: &Method,
        inbound: &HeaderMap,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        if self.redirect_origins.is_empty() || !matches!(*method, Method::GET | Method::HEAD) {
            return Ok(resp);
        }
        let Target::Http { client, .. } = &self.target else {
            return Ok(resp);
        };
        let mut carried = HeaderMap::new();
        let mut current: Option<Uri> = None;
        for _ in 0..MAX_REDIRECTS {
            if !resp.status().is_redirection() {
                break;
            }
            let Some(loc) = resp
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
            else {
                break;
            };
            // Relative to a host the gateway already follows: stay on that host.
            let next = match (&current, loc.starts_with('/') && !loc.starts_with("//")) {
                (Some(cur), true) => {
                    let (Some(s), Some(a)) = (cur.scheme_str(), cur.authority()) else {
                        break;
                    };
                    format!("{s}://{a}{loc}").parse::<Uri>().ok()
                }
                _ => self.followable(loc),
            };
            let Some(next) = next else {
                break;
            };
            for name in CARRIED_HEADERS {
                if let Some(v) = resp.headers().get(*name)
                    && !carried.contains_key(*name)
                {
                    carried.insert(*name, v.clone());
                }
            }
            let mut req = Request::new(UpBody::default());
            *req.method_mut() = method.clone();
            *req.uri_mut() = next.clone();
            for name in REDIRECT_HEADERS {
                for v in inbound.get_all(name) {
                    req.headers_mut().append(name.clone(), v.clone());
                }
            }
            resp = match tokio::time::timeout(self.timeout, client.request(req)).await {
                Err(_) => return Err(UpstreamFailure::Timeout),
                Ok(Err(e)) => return Err(UpstreamFailure::Unreachable(describe(&e))),
                Ok(Ok(r)) => r,
            };
            current = Some(next);
        }
        if current.is_some() && resp.status().is_redirection() {
            return Err(UpstreamFailure::Unreachable(
                "a followed redirect led to one that may not be followed".into(),
            ));
        }
        for (name, v) in &carried {
            if !resp.headers().contains_key(name) {
                resp.headers_mut().insert(name.clone(), v.clone());
            }
        }
        Ok(resp)
    }

    /// Fails when the upstream is too slow with a request being sent: it takes none of
    /// the body for `idle` while the gateway is not waiting on the client, or sends no
    /// response head within `timeout` of the body's end. The time an upload takes to
    /// stream is not part of the response-head timeout.
    async fn watchdog(&self, sending: Option<Sending>) -> UpstreamFailure {
        if let Some(mut s) = sending {
            let mut last = s.bytes.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = &mut s.ended => break,
                    () = tokio::time::sleep(self.idle) => {
                        let now = s.bytes.load(std::sync::atomic::Ordering::Relaxed);
                        if now == last && !s.upload.waiting_on_client() && s.upload.failed().is_none() {
                            return UpstreamFailure::Stalled(self.idle.as_secs());
                        }
                        last = now;
                    }
                }
            }
        }
        tokio::time::sleep(self.timeout).await;
        UpstreamFailure::Timeout
    }

    /// Sends a request to an http(s) upstream; `path_and_query` is the canonical
    /// encoded path plus the original query; `sending` watches its body.
    pub async fn send_http(
        &self,
        mut req: Request<UpBody>,
        path_and_query: &str,
        sending: Option<Sending>,
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
        if let Some(s3) = &self.s3 {
            super::sigv4::S3::strip_client_headers(req.headers_mut());
            s3.sign(&mut req, std::time::SystemTime::now())
                .map_err(UpstreamFailure::Unreachable)?;
        }
        let upload = sending.as_ref().map(|s| s.upload.clone());
        tokio::select! {
            r = client.request(req) => match r {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    let client_failed = upload
                        .as_ref()
                        .and_then(|u| u.failed())
                        .or_else(|| super::guard::BodyLimit::find(&e));
                    match client_failed {
                        Some(b) => Err(UpstreamFailure::client(b)),
                        None => Err(UpstreamFailure::Unreachable(describe(&e))),
                    }
                }
            },
            f = self.watchdog(sending) => Err(f),
        }
    }

    /// The upstream's response body, held to the upstream's idle limit and minimum rate
    /// (time the client takes to read is not counted against the upstream).
    pub fn response_body(&self, b: Incoming) -> ResBody {
        use http_body_util::BodyExt;
        let pace = super::pace::PaceLimits {
            idle: self.idle,
            min_rate: self.min_rate,
            window: RESPONSE_RATE_WINDOW,
            grace: RESPONSE_RATE_WINDOW,
        };
        super::body::Hooked::with_hook(b, Paced(super::pace::Pace::new(pace))).boxed()
    }
}

/// The hook of an upstream response body: its pace.
struct Paced(super::pace::Pace);

/// The upstream's response body was too slow.
#[derive(Debug, thiserror::Error)]
#[error("upstream response body: {0}")]
struct UpstreamStall(super::pace::Stall);

impl super::body::Hook for Paced {
    fn on_frame(&mut self, frame: &http_body::Frame<Bytes>) -> Result<(), super::BoxError> {
        let n = frame.data_ref().map_or(0, |d| d.len() as u64);
        self.0
            .on_data(n)
            .map_err(|s| -> super::BoxError { Box::new(UpstreamStall(s)) })
    }

    fn on_pending(&mut self, cx: &mut std::task::Context<'_>) -> Result<(), super::BoxError> {
        self.0
            .on_pending(cx)
            .map_err(|s| -> super::BoxError { Box::new(UpstreamStall(s)) })
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

/// Checks a `follow_redirects_to` entry and returns it as `scheme://authority`, lower-cased.
pub fn redirect_origin(o: &str) -> Result<String, String> {
    let uri: http::Uri = o
        .parse()
        .map_err(|_| format!("`{}` is not a URL", o.escape_default()))?;
    let scheme = uri.scheme_str().unwrap_or("");
    let path_ok = matches!(uri.path(), "" | "/") && uri.query().is_none();
    match uri.authority() {
        Some(a)
            if (scheme == "https" || scheme == "http") && path_ok && !a.as_str().contains('@') =>
        {
            Ok(format!("{scheme}://{}", a.as_str().to_ascii_lowercase()))
        }
        _ => Err(format!(
            "`{}` is not an origin like `https://cdn.example.com`",
            o.escape_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirect_origins_are_scheme_and_host_only() {
        assert_eq!(
            redirect_origin("https://CDN.example.com").unwrap(),
            "https://cdn.example.com"
        );
        assert_eq!(
            redirect_origin("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(redirect_origin("cdn.example.com").is_err());
        assert!(redirect_origin("https://cdn.example.com/files").is_err());
        assert!(redirect_origin("ftp://cdn.example.com").is_err());
        assert!(redirect_origin("https://user@cdn.example.com").is_err());
    }
}
