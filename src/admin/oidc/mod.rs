//! Sign-in through the organisation's OpenID Connect provider (`admin.oidc`): the
//! authorization code flow with PKCE (S256), `state` and `nonce` bound to the browser, the
//! ID token verified, the compliance-officer role read from a configured claim, and a
//! signed session cookie the audit endpoints accept in place of a bearer token.
//!
//! | path | method | does |
//! |---|---|---|
//! | `/oidc/login` | GET | starts a sign-in: a sign-in cookie, then `303` to the provider |
//! | `/oidc/callback` | GET | finishes it: checks `iss`, `state`, exchanges the code, verifies the ID token and the role; sets the session and `303`s to `/` |
//! | `/oidc/session` | GET | `{signed_in, sub, name, role, expires_at}` of the session cookie |
//! | `/oidc/logout` | POST | clears the session; only from the page's own origin |
//!
//! Fail closed: every failure answers a problem (an HTML page when a browser asks for
//! one) naming why, and no session. The session is stateless so replicas sharing
//! `session_secret` share it; logging out clears the browser's cookie, and a copy of it
//! stops working when it expires (`session_ttl_secs`).

mod cookie;
mod provider;

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, StatusCode, header};
use http_body_util::Full;
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::{AdminBody, OFFICER_ROLE, answer, json_response, parse_query};
use crate::config::OidcConfig;
use crate::respond::{Kind, Problem};

pub use cookie::Session;

/// The `id_token` of a token response (OpenID Connect Core §3.1.3.3).
#[derive(Clone, Debug, Deserialize, Serialize)]
struct IdTokenField {
    #[serde(default)]
    id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// An OAuth 2.0 client whose token responses carry an ID token, before its endpoints are set.
type BareClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

/// The same with its authorization and token endpoints.
type CodeClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The admin listener's sign-in.
pub struct Oidc {
    cfg: OidcConfig,
    redirect: RedirectUrl,
    /// The page's origin (of `redirect_url`): where state-changing requests come from.
    origin: String,
    client_secret: Option<String>,
    keys: cookie::Keys,
    directory: provider::Directory,
}

impl Oidc {
    /// Reads the secrets and checks the URLs (discovery waits for the first sign-in).
    pub fn from_config(cfg: &OidcConfig) -> Result<Oidc, String> {
        let url = crate::config::https_url(&cfg.redirect_url, "admin.oidc.redirect_url")?;
        let origin = url.origin().ascii_serialization();
        let redirect = RedirectUrl::from_url(url);
        let keys = cookie::Keys::new(&cfg.session_secret.read()?)?;
        let client_secret = match &cfg.client_secret {
            Some(s) => Some(
                String::from_utf8(s.read()?)
                    .map_err(|_| "`admin.oidc.client_secret` is not UTF-8".to_owned())?,
            ),
            None => None,
        };
        let directory = provider::Directory::new(&cfg.issuer, &cfg.client_id, cfg.ca.clone())?;
        Ok(Oidc {
            cfg: cfg.clone(),
            redirect,
            origin,
            client_secret,
            keys,
            directory,
        })
    }

    /// The session of the request's cookie: `None` without one, else the session or why
    /// it is refused (an invalid cookie, or one without the officer role).
    pub fn session(&self, headers: &HeaderMap) -> Option<Result<Session, Problem>> {
        let value = match cookie::get(headers, cookie::SESSION) {
            Ok(None) => return None,
            Ok(Some(v)) => v,
            Err(e) => return Some(Err(sign_in_failed(e))),
        };
        Some(match self.keys.open_session(value) {
            Err(e) => Err(sign_in_failed(format!(
                "the session cookie is not valid ({e}); sign in again"
            ))),
            Ok(s) if s.idp != self.cfg.issuer => Err(sign_in_failed(format!(
                "the session is from the issuer `{}`, not the configured one; sign in again",
                s.idp.escape_default()
            ))),
            Ok(s) if s.role != OFFICER_ROLE => Err(Problem::new(
                Kind::RoleRequired,
                format!("the audit endpoints need the role `{OFFICER_ROLE}`"),
            )),
            Ok(s) => Ok(s),
        })
    }

    /// Answers a request under `/oidc/`.
    async fn handle(
        &self,
        method: &Method,
        path: &str,
        query: &str,
        headers: &HeaderMap,
    ) -> Response<AdminBody> {
        let get = matches!(*method, Method::GET | Method::HEAD);
        let result = match path {
            "/oidc/login" if get => self.login().await,
            "/oidc/callback" if *method == Method::GET => {
                match self.callback(query, headers).await {
                    Ok(mut r) => {
                        r.headers_mut()
                            .append(header::SET_COOKIE, cookie::clear_sign_in());
                        Ok(r)
                    }
                    // A sign-in is tried once: a failure ends it.
                    Err(p) => Err(p.with_header(header::SET_COOKIE, cookie::clear_sign_in())),
                }
            }
            "/oidc/session" if get => Ok(self.status(headers)),
            "/oidc/logout" if *method == Method::POST => self.logout(headers),
            "/oidc/login" | "/oidc/session" => Err(not_allowed(path, "GET, HEAD")),
            "/oidc/callback" => Err(not_allowed(path, "GET")),
            "/oidc/logout" => Err(not_allowed(path, "POST")),
            _ => Err(Problem::new(Kind::NotFound, "no such sign-in endpoint")),
        };
        match result {
            Ok(r) => r,
            Err(p) if wants_html(headers) => page(p),
            Err(p) => answer(p),
        }
    }

    /// `GET /oidc/login`: a new `state`, `nonce` and PKCE verifier in the sign-in cookie,
    /// and the browser sent to the provider.
    async fn login(&self) -> Result<Response<AdminBody>, Problem> {
        let provider = self.directory.provider().await.map_err(unreachable_idp)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = CsrfToken::new_random();
        let mut scopes: Vec<Scope> = vec![Scope::new("openid".into())];
        scopes.extend(
            self.cfg
                .scopes
                .iter()
                .filter(|s| *s != "openid")
                .map(|s| Scope::new(s.clone())),
        );
        let (url, state) = self
            .client(&provider)
            .authorize_url(CsrfToken::new_random)
            .add_scopes(scopes)
            .add_extra_param("nonce", nonce.secret())
            .set_pkce_challenge(challenge)
            .url();
        let now = crate::auth::unix_now();
        let sealed = self
            .keys
            .seal_sign_in(&cookie::SignIn {
                state: state.secret().clone(),
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                iat: now,
                exp: now + cookie::SIGN_IN_TTL.as_secs(),
            })
            .map_err(|e| Problem::new(Kind::Internal, e))?;
        let mut r = redirect(url.as_str())?;
        let set = cookie::set_sign_in(&sealed)
            .ok_or_else(|| Problem::new(Kind::Internal, "cannot set the sign-in cookie"))?;
        r.headers_mut().append(header::SET_COOKIE, set);
        Ok(r)
    }

    /// `GET /oidc/callback`: the provider's answer, checked, turned into a session.
    async fn callback(
        &self,
        query: &str,
        headers: &HeaderMap,
    ) -> Result<Response<AdminBody>, Problem> {
        let params = parse_query(query).map_err(|e| Problem::new(Kind::BadRequest, e))?;
        let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if let Some(iss) = get("iss")
            && iss != self.cfg.issuer
        {
            return Err(sign_in_failed(format!(
                "the answer comes from the issuer `{}`, not the configured `{}`",
                iss.escape_default(),
                self.cfg.issuer
            )));
        }
        let sealed = cookie::get(headers, cookie::SIGN_IN)
            .map_err(sign_in_failed)?
            .ok_or_else(|| {
                sign_in_failed(
                    "no sign-in is in progress in this browser (its cookie is missing or has expired); start again from the admin page",
                )
            })?;
        let started = self
            .keys
            .open_sign_in(sealed)
            .map_err(|e| sign_in_failed(format!("the sign-in cookie is not valid: {e}")))?;
        if let Some(error) = get("error") {
            let more = get("error_description")
                .map(|d| format!(": {}", d.escape_default()))
                .unwrap_or_default();
            return Err(sign_in_failed(format!(
                "the identity provider refused the sign-in: `{}`{more}",
                error.escape_default()
            )));
        }
        let state = get("state").unwrap_or("");
        if !crate::auth::constant_time_eq(state.as_bytes(), started.state.as_bytes()) {
            return Err(sign_in_failed(
                "the answer's `state` is not that of the sign-in this browser started",
            ));
        }
        let code = get("code")
            .filter(|c| !c.is_empty())
            .ok_or_else(|| Problem::new(Kind::BadRequest, "the answer has no `code`"))?;
        let provider = self.directory.provider().await.map_err(unreachable_idp)?;
        let http = provider::Http(&self.directory);
        let tokens = self
            .client(&provider)
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(started.verifier.clone()))
            .request_async(&http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => sign_in_failed(format!(
                    "the identity provider refused the code: `{}`{}",
                    r.error().as_ref(),
                    r.error_description()
                        .map(|d| format!(": {}", d.escape_default()))
                        .unwrap_or_default()
                )),
                RequestTokenError::Request(e) => unreachable_idp(e.0),
                RequestTokenError::Parse(e, _) => unreachable_idp(format!(
                    "the token endpoint's answer is not a token response: {e}"
                )),
                RequestTokenError::Other(e) => unreachable_idp(e),
            })?;
        let id_token = tokens.extra_fields().id_token.as_deref().ok_or_else(|| {
            sign_in_failed(
                "the token response has no `id_token` (is the provider an OpenID provider?)",
            )
        })?;
        let claims = provider
            .verifier
            .verify(id_token, &started.nonce)
            .await
            .map_err(|e| sign_in_failed(format!("the ID token is refused: {e}")))?;
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| sign_in_failed("the ID token has no `sub`"))?
            .to_owned();
        let name = ["name", "preferred_username", "email"]
            .iter()
            .find_map(|k| claims.get(*k).and_then(Value::as_str))
            .map(str::to_owned);
        if !has_role(&claims, &self.cfg.role_claim, &self.cfg.officer_role) {
            return Err(Problem::new(
                Kind::RoleRequired,
                format!(
                    "`{}` signed in, but the ID token's `{}` claim does not include `{}`: ask for the compliance-officer role",
                    name.as_deref().unwrap_or(&sub).escape_default(),
                    self.cfg.role_claim,
                    self.cfg.officer_role
                ),
            ));
        }
        let now = crate::auth::unix_now();
        let session = Session {
            sub,
            name,
            idp: self.cfg.issuer.clone(),
            role: OFFICER_ROLE.into(),
            iat: now,
            exp: now + self.cfg.session_ttl_secs,
        };
        let sealed = self
            .keys
            .seal_session(&session)
            .map_err(|e| Problem::new(Kind::Internal, e))?;
        tracing::info!(sub = %session.sub, issuer = %session.idp, "compliance officer signed in");
        let mut r = redirect("/")?;
        let set = cookie::set_session(&sealed, self.cfg.session_ttl_secs)
            .ok_or_else(|| Problem::new(Kind::Internal, "cannot set the session cookie"))?;
        r.headers_mut().append(header::SET_COOKIE, set);
        Ok(r)
    }

    /// `GET /oidc/session`: whether this browser holds a session, for the page.
    fn status(&self, headers: &HeaderMap) -> Response<AdminBody> {
        let body = match self.session(headers) {
            None => json!({ "signed_in": false, "login": "/oidc/login" }),
            Some(Err(p)) => {
                json!({ "signed_in": false, "login": "/oidc/login", "reason": p.detail })
            }
            Some(Ok(s)) => json!({
                "signed_in": true,
                "sub": s.sub,
                "name": s.name,
                "role": s.role,
                "issuer": s.idp,
                "expires_at": s.exp,
            }),
        };
        json_response(StatusCode::OK, &body)
    }

    /// `POST /oidc/logout`: clears the session, for requests from the page's origin only.
    fn logout(&self, headers: &HeaderMap) -> Result<Response<AdminBody>, Problem> {
        check_origin(headers, &self.origin)?;
        let mut r = json_response(StatusCode::OK, &json!({ "signed_out": true }));
        r.headers_mut()
            .append(header::SET_COOKIE, cookie::clear_session());
        Ok(r)
    }

    fn client(&self, p: &provider::Provider) -> CodeClient {
        let c = BareClient::new(ClientId::new(self.cfg.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(p.authorization.clone()))
            .set_token_uri(TokenUrl::from_url(p.token.clone()))
            .set_redirect_uri(self.redirect.clone());
        match &self.client_secret {
            Some(s) => c.set_client_secret(ClientSecret::new(s.clone())),
            None => c,
        }
    }
}

/// Answers a request under `/oidc/`; without `admin.oidc`, says it is not configured.
pub async fn route<B>(oidc: Option<&Oidc>, req: &http::Request<B>) -> Response<AdminBody> {
    match oidc {
        Some(o) => {
            o.handle(
                req.method(),
                req.uri().path(),
                req.uri().query().unwrap_or(""),
                req.headers(),
            )
            .await
        }
        None => answer(Problem::new(
            Kind::NotFound,
            "sign-in through an identity provider is not configured here (`admin.oidc`)",
        )),
    }
}

fn not_allowed(path: &str, allowed: &'static str) -> Problem {
    Problem::new(
        Kind::MethodNotAllowed,
        format!("`{path}` answers {allowed} only"),
    )
    .with_header(header::ALLOW, HeaderValue::from_static(allowed))
}

fn sign_in_failed(detail: impl Into<String>) -> Problem {
    Problem::new(Kind::SignInFailed, detail)
}

fn unreachable_idp(detail: String) -> Problem {
    tracing::warn!(error = %detail, "identity provider unavailable");
    Problem::new(
        Kind::IdentityProviderUnavailable,
        format!("cannot sign in through the identity provider: {detail}"),
    )
}

/// Whether `role` is the claim at `path` (dots name nested claims) or one of its values.
fn has_role(claims: &Map<String, Value>, path: &str, role: &str) -> bool {
    let mut parts = path.split('.');
    let Some(first) = parts.next() else {
        return false;
    };
    let mut v = claims.get(first);
    for p in parts {
        v = v.and_then(|x| x.get(p));
    }
    match v {
        Some(Value::String(s)) => s == role,
        Some(Value::Array(a)) => a.iter().any(|x| x.as_str() == Some(role)),
        _ => false,
    }
}

/// Refuses a state-changing request unless its `Origin` is the page's (and, where the
/// browser says, it is same-origin): with `SameSite=Strict` this closes cross-site forgery.
fn check_origin(headers: &HeaderMap, origin: &str) -> Result<(), Problem> {
    let refuse = |why: String| Err(Problem::new(Kind::CrossOrigin, why));
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return refuse(format!(
            "this request comes from another site (`Sec-Fetch-Site: {}`)",
            String::from_utf8_lossy(site.as_bytes()).escape_default()
        ));
    }
    match headers.get(header::ORIGIN).map(HeaderValue::as_bytes) {
        Some(o) if o == origin.as_bytes() => Ok(()),
        Some(o) => refuse(format!(
            "this request comes from `{}`, not the admin page at `{origin}`",
            String::from_utf8_lossy(o).escape_default()
        )),
        None => refuse(format!(
            "a request that changes state must carry an `Origin` header naming the admin page (`{origin}`)"
        )),
    }
}

/// Whether the client is a browser navigating (it asks for HTML).
fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

/// `303 See Other` to `location`.
fn redirect(location: &str) -> Result<Response<AdminBody>, Problem> {
    let value = HeaderValue::from_str(location)
        .map_err(|_| Problem::new(Kind::Internal, "cannot build the redirect"))?;
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SEE_OTHER;
    let h = r.headers_mut();
    h.insert(header::LOCATION, value);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    Ok(r)
}

/// A failed sign-in as a page for the browser: the problem's title, detail and `type`,
/// with its status and headers.
fn page(p: Problem) -> Response<AdminBody> {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · bordergate</title></head>\n<body style=\"font-family: system-ui, sans-serif; max-width: 40rem; margin: 4rem auto; padding: 0 1rem; color: #1d2733\">\n<h1>{title}</h1>\n<p>{detail}</p>\n<p><a href=\"/oidc/login\">Sign in again</a> · <a href=\"/\">The admin page</a></p>\n<p style=\"color: #5b6776\"><code>{ty}</code></p>\n</body></html>\n",
        title = escape(p.title),
        detail = escape(&p.detail),
        ty = escape(&p.type_uri),
    );
    let (status, mut headers, _) = p.into_parts(false);
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
    );
    let mut r = Response::new(Full::new(Bytes::from(html)));
    *r.status_mut() = status;
    *r.headers_mut() = headers;
    r
}

fn escape(s: &str) -> Cow<'_, str> {
    if !s.contains(['<', '>', '&', '"', '\'']) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests;
