//! The identity provider as its discovery document describes it
//! (`{issuer}/.well-known/openid-configuration`, re-read hourly), and the one HTTPS client
//! the sign-in talks to it with (hyper and rustls, the gateway's own stack).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;
use url::Url;

use crate::auth::IdTokenVerifier;
use crate::config::https_url;

/// Largest answer read from the provider.
const MAX_BODY: usize = 1024 * 1024;
/// Longest a request to the provider may take, connection included.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long a discovery document is used before it is read again.
const FRESH: Duration = Duration::from_secs(3600);
/// How long an older document still serves while the provider cannot be reached.
const STALE: Duration = Duration::from_secs(24 * 3600);

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What the sign-in needs of the provider.
#[derive(Debug)]
pub struct Provider {
    pub authorization: Url,
    pub token: Url,
    pub verifier: IdTokenVerifier,
}

/// The provider's HTTP client as oauth2 calls it (a named future: a closure's would not
/// be `Send` for every lifetime the admin service needs).
pub struct Http<'a>(pub &'a Directory);

impl<'c> oauth2::AsyncHttpClient<'c> for Http<'_> {
    type Error = HttpError;
    type Future = std::pin::Pin<
        Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send + 'c>,
    >;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(self.0.send(request))
    }
}

/// A request to the provider that failed (what oauth2 calls the HTTP client's error).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(pub String);

/// The provider's metadata, read when first needed and kept fresh.
pub struct Directory {
    issuer: String,
    client_id: String,
    ca: Option<PathBuf>,
    client: HttpsClient,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Provider>)>>,
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    #[serde(default)]
    code_challenge_methods_supported: Option<Vec<String>>,
    #[serde(default)]
    response_types_supported: Option<Vec<String>>,
}

impl Directory {
    pub fn new(issuer: &str, client_id: &str, ca: Option<PathBuf>) -> Result<Directory, String> {
        let client =
            crate::auth::https_client(ca.as_deref()).map_err(|e| format!("`admin.oidc`: {e}"))?;
        Ok(Directory {
            issuer: issuer.to_owned(),
            client_id: client_id.to_owned(),
            ca,
            client,
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// The provider: the document read within the hour, else read now (an older one
    /// still serves for a day while the provider cannot be reached).
    pub async fn provider(&self) -> Result<Arc<Provider>, String> {
        let mut cached = self.cached.lock().await;
        if let Some((at, p)) = cached.as_ref()
            && at.elapsed() < FRESH
        {
            return Ok(p.clone());
        }
        match self.discover().await {
            Ok(p) => {
                let p = Arc::new(p);
                *cached = Some((Instant::now(), p.clone()));
                Ok(p)
            }
            Err(e) => match cached.as_ref() {
                Some((at, p)) if at.elapsed() < STALE => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "cannot re-read the identity provider's metadata; using the last one read");
                    Ok(p.clone())
                }
                _ => Err(e),
            },
        }
    }

    async fn discover(&self) -> Result<Provider, String> {
        let base = self.issuer.strip_suffix('/').unwrap_or(&self.issuer);
        let url = format!("{base}/.well-known/openid-configuration");
        let req = http::Request::get(url.as_str())
            .header(http::header::ACCEPT, "application/json")
            .body(Vec::new())
            .map_err(|e| format!("cannot build the discovery request: {e}"))?;
        let resp = self.send(req).await.map_err(|e| e.0)?;
        if resp.status() != http::StatusCode::OK {
            return Err(format!("`{url}` answered {}", resp.status()));
        }
        let m: Metadata = serde_json::from_slice(resp.body())
            .map_err(|e| format!("`{url}` is not an OpenID provider configuration: {e}"))?;
        if m.issuer != self.issuer {
            return Err(format!(
                "`{url}` names the issuer `{}`, not the configured `{}`",
                m.issuer.escape_default(),
                self.issuer
            ));
        }
        if let Some(methods) = &m.code_challenge_methods_supported
            && !methods.iter().any(|x| x == "S256")
        {
            return Err("the identity provider does not support PKCE with S256".into());
        }
        if let Some(types) = &m.response_types_supported
            && !types.iter().any(|x| x == "code")
        {
            return Err(
                "the identity provider does not support the authorization code flow".into(),
            );
        }
        let authorization = https_url(&m.authorization_endpoint, "authorization_endpoint")?;
        let token = https_url(&m.token_endpoint, "token_endpoint")?;
        https_url(&m.jwks_uri, "jwks_uri")?;
        let verifier =
            IdTokenVerifier::new(&m.jwks_uri, self.ca.clone(), &self.issuer, &self.client_id)?;
        tracing::info!(issuer = %self.issuer, "identity provider metadata read");
        Ok(Provider {
            authorization,
            token,
            verifier,
        })
    }

    /// Sends one request to the provider (discovery, the token endpoint), bounded in time
    /// and size.
    pub async fn send(&self, req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
        let target = req.uri().to_string();
        let (parts, body) = req.into_parts();
        let mut req = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        req.headers_mut().insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("bordergate"),
        );
        let get = async {
            let resp = self.client.request(req).await.map_err(|e| {
                HttpError(format!(
                    "cannot reach `{target}`: {}",
                    crate::auth::error_chain(&e)
                ))
            })?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|e| HttpError(format!("cannot read the answer of `{target}`: {e}")))?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        tokio::time::timeout(TIMEOUT, get).await.map_err(|_| {
            HttpError(format!(
                "`{target}` did not answer within {} s",
                TIMEOUT.as_secs()
            ))
        })?
    }
}
