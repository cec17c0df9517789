//! Maps every refusal and failure — authentication, limits, routing, decisions, upstreams,
//! the audit log, the file store, the admin API — to its status and an RFC 9457
//! problem+json body, in one place: a [`Kind`] per stable problem `type`, and a
//! `From<…> for Problem` per error the code base produces.

use std::sync::Arc;

use bytes::Bytes;
use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use crate::audit::AuditError;
use crate::auth::AuthError;
use crate::catalog::path::PathError;
use crate::model::{Decision, DenyGround, Effect, Instrument};
use crate::proxy::ResBody;
use crate::proxy::guard::{BodyLimit, Refusal};
use crate::proxy::upstream::UpstreamFailure;
use crate::transfer::Unclassified;
use crate::transfer::claim::{self, JurisdictionMismatch};

mod text;
pub use text::{Form, PlainText};

/// Why a request was not served. Each variant has a stable `type` URI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The request target is ambiguous or malformed (400).
    BadPath,
    /// The request itself is malformed (400).
    BadRequest,
    /// No or invalid bearer token (401).
    Unauthenticated,
    /// Policy refused: purpose or authorisation grounds (403).
    Forbidden,
    /// The path matches no catalog entry and its route is not public (403).
    NotInCatalog,
    /// Nothing to serve (404).
    NotFound,
    /// Method not allowed on this route (405).
    MethodNotAllowed,
    /// Policy refused on transfer grounds (451, RFC 7725).
    TransferRefused,
    /// The data was withdrawn (erasure, consent withdrawn) (451).
    Withdrawn,
    /// An upload's declared lineage does not cover personal data its uploader recently
    /// downloaded (451).
    LineageUnaccounted,
    /// An upload's body does not have the content digest it declared (400).
    DigestMismatch,
    /// The upstream could not be reached or answered badly (502).
    BadGateway,
    /// The audit record could not be made durable (503).
    AuditUnavailable,
    /// A PIPL export's cumulative volume could not be counted (503).
    VolumeUnavailable,
    /// The gateway is shutting down or not ready (503).
    Unavailable,
    /// The upstream did not answer in time (504).
    GatewayTimeout,
    /// The client was too slow sending its request (408).
    RequestTimeout,
    /// The request body is larger than allowed (413).
    PayloadTooLarge,
    /// The request target is longer than allowed (414).
    UriTooLong,
    /// The requested range lies outside the object (416).
    RangeNotSatisfiable,
    /// The upload conflicts with what is stored (409).
    Conflict,
    /// The store is full (507).
    InsufficientStorage,
    /// A condition of the request (`If-Match`, …) does not hold (412).
    PreconditionFailed,
    /// Something failed inside the gateway (500).
    Internal,
    /// The token is valid but lacks the role the endpoint needs (403).
    RoleRequired,
    /// The token's `jurisdiction` claim contradicts the registry's country for its
    /// organisation (403).
    JurisdictionMismatch,
    /// A sign-in through the identity provider did not complete: bad or missing state,
    /// an ID token that does not verify, a refused code, an invalid session cookie (401).
    SignInFailed,
    /// The identity provider cannot be reached or answered badly (502).
    IdentityProviderUnavailable,
    /// A state-changing request that does not come from the admin page's origin (403).
    CrossOrigin,
    /// An S3 request's SigV4 signature or access key is not accepted (403).
    SignatureRefused,
    /// A part of the S3 API the gateway does not answer (501).
    NotImplemented,
    /// The transfer is lawful only transformed, and the transformation cannot be made: no
    /// schema, no format, no pseudonymisation key (451).
    TransformUnavailable,
    /// A Range request for data served transformed: the transformed bytes exist nowhere to
    /// take a range of (416).
    TransformedRange,
    /// The upstream's file does not match the schema its catalog entry declares (502).
    SchemaMismatch,
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadPath | Kind::BadRequest | Kind::DigestMismatch => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden | Kind::NotInCatalog => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::TransferRefused | Kind::Withdrawn | Kind::LineageUnaccounted => {
                StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS
            }
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::AuditUnavailable | Kind::VolumeUnavailable | Kind::Unavailable => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
            Kind::RangeNotSatisfiable => StatusCode::RANGE_NOT_SATISFIABLE,
            Kind::Conflict => StatusCode::CONFLICT,
            Kind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
            Kind::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Kind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Kind::RoleRequired
            | Kind::JurisdictionMismatch
            | Kind::CrossOrigin
            | Kind::SignatureRefused => StatusCode::FORBIDDEN,
            Kind::SignInFailed => StatusCode::UNAUTHORIZED,
            Kind::IdentityProviderUnavailable => StatusCode::BAD_GATEWAY,
            Kind::NotImplemented => StatusCode::NOT_IMPLEMENTED,
            Kind::TransformUnavailable => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            Kind::TransformedRange => StatusCode::RANGE_NOT_SATISFIABLE,
            Kind::SchemaMismatch => StatusCode::BAD_GATEWAY,
        }
    }

    /// The stable slug of the problem `type`.
    pub fn slug(self) -> &'static str {
        match self {
            Kind::BadPath => "bad-path",
            Kind::BadRequest => "bad-request",
            Kind::Unauthenticated => "unauthenticated",
            Kind::Forbidden => "purpose-refused",
            Kind::NotInCatalog => "not-in-catalog",
            Kind::NotFound => "not-found",
            Kind::MethodNotAllowed => "method-not-allowed",
            Kind::TransferRefused => "transfer-refused",
            Kind::Withdrawn => "data-withdrawn",
            Kind::LineageUnaccounted => "lineage-unaccounted",
            Kind::DigestMismatch => "digest-mismatch",
            Kind::BadGateway => "upstream-unavailable",
            Kind::AuditUnavailable => "audit-unavailable",
            Kind::VolumeUnavailable => "pipl-volume-unavailable",
            Kind::Unavailable => "unavailable",
            Kind::GatewayTimeout => "upstream-timeout",
            Kind::RequestTimeout => "request-timeout",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UriTooLong => "uri-too-long",
            Kind::RangeNotSatisfiable => "range-not-satisfiable",
            Kind::Conflict => "conflict",
            Kind::InsufficientStorage => "insufficient-storage",
            Kind::PreconditionFailed => "precondition-failed",
            Kind::Internal => "internal",
            Kind::RoleRequired => "role-required",
            Kind::JurisdictionMismatch => "jurisdiction-mismatch",
            Kind::SignInFailed => "sign-in-failed",
            Kind::IdentityProviderUnavailable => "identity-provider-unavailable",
            Kind::CrossOrigin => "cross-origin-refused",
            Kind::SignatureRefused => "s3-signature-refused",
            Kind::NotImplemented => "not-implemented",
            Kind::TransformUnavailable => "transform-unavailable",
            Kind::TransformedRange => "transformed-range",
            Kind::SchemaMismatch => "schema-mismatch",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Kind::BadPath => "Ambiguous or malformed request path",
            Kind::BadRequest => "Malformed request",
            Kind::Unauthenticated => "Authentication required",
            Kind::Forbidden => "Purpose or authorisation refused",
            Kind::NotInCatalog => "Path is not in the data catalog",
            Kind::NotFound => "Not found",
            Kind::MethodNotAllowed => "Method not allowed",
            Kind::TransferRefused => "Transfer refused for legal reasons",
            Kind::Withdrawn => "Data withdrawn",
            Kind::LineageUnaccounted => "Declared lineage does not cover recent downloads",
            Kind::DigestMismatch => "Body does not match its declared digest",
            Kind::BadGateway => "Upstream unavailable",
            Kind::AuditUnavailable => "Audit log unavailable",
            Kind::VolumeUnavailable => "PIPL export volume cannot be counted",
            Kind::Unavailable => "Gateway unavailable",
            Kind::GatewayTimeout => "Upstream timed out",
            Kind::RequestTimeout => "Request timed out",
            Kind::PayloadTooLarge => "Request body too large",
            Kind::UriTooLong => "Request target too long",
            Kind::RangeNotSatisfiable => "Range not satisfiable",
            Kind::Conflict => "Conflict",
            Kind::InsufficientStorage => "Insufficient storage",
            Kind::PreconditionFailed => "Precondition failed",
            Kind::Internal => "Internal error",
            Kind::RoleRequired => "Role required",
            Kind::JurisdictionMismatch => "Jurisdiction claim contradicts the registry",
            Kind::SignInFailed => "Sign-in failed",
            Kind::IdentityProviderUnavailable => "Identity provider unavailable",
            Kind::CrossOrigin => "Cross-origin request refused",
            Kind::SignatureRefused => "S3 signature refused",
            Kind::NotImplemented => "Not implemented",
            Kind::TransformUnavailable => {
                "Transfer allowed only transformed; transformation unavailable"
            }
            Kind::TransformedRange => "Range requests are not served on transformed data",
            Kind::SchemaMismatch => "Upstream file does not match its declared schema",
        }
    }

    /// The S3 error `Code` of an S3-style request's refusal (see [`Problem::into_s3_response`]).
    pub fn s3_code(self) -> &'static str {
        match self {
            Kind::BadPath | Kind::BadRequest | Kind::DigestMismatch => "InvalidRequest",
            Kind::Unauthenticated
            | Kind::Forbidden
            | Kind::NotInCatalog
            | Kind::TransferRefused
            | Kind::Withdrawn
            | Kind::LineageUnaccounted
            | Kind::RoleRequired
            | Kind::JurisdictionMismatch
            | Kind::SignatureRefused
            | Kind::SignInFailed
            | Kind::CrossOrigin
            | Kind::TransformUnavailable => "AccessDenied",
            Kind::NotFound => "NoSuchKey",
            Kind::MethodNotAllowed => "MethodNotAllowed",
            Kind::BadGateway
            | Kind::Internal
            | Kind::GatewayTimeout
            | Kind::IdentityProviderUnavailable
            | Kind::SchemaMismatch => "InternalError",
            Kind::AuditUnavailable
            | Kind::VolumeUnavailable
            | Kind::Unavailable
            | Kind::InsufficientStorage => "ServiceUnavailable",
            Kind::RequestTimeout => "RequestTimeout",
            Kind::PayloadTooLarge => "EntityTooLarge",
            Kind::UriTooLong => "InvalidURI",
            Kind::RangeNotSatisfiable | Kind::TransformedRange => "InvalidRange",
            Kind::Conflict => "OperationAborted",
            Kind::PreconditionFailed => "PreconditionFailed",
            Kind::NotImplemented => "NotImplemented",
        }
    }

    /// What the caller can do about a refusal of this kind; None where there is nothing
    /// to suggest beyond trying again.
    pub fn remedy(self) -> Option<&'static str> {
        Some(match self {
            Kind::TransferRefused => {
                "this transfer needs a basis for its destination (an adequacy decision, safeguards such as SCCs held by the importer, or a derogation recorded on the data); your data protection officer can see what would make it lawful with `bordergate policy explain`"
            }
            Kind::Withdrawn => {
                "the data may no longer be used; ask its owner for the current version"
            }
            Kind::LineageUnaccounted => {
                "declare every dataset the upload derives from in the `Bordergate-Lineage` header"
            }
            Kind::Forbidden => {
                "use a token whose purpose the dataset allows, or ask the data owner to allow it"
            }
            Kind::NotInCatalog => "ask the data owner to add this path to the catalog",
            Kind::Unauthenticated => {
                "send `Authorization: Bearer <token>` with a valid bordergate token"
            }
            Kind::JurisdictionMismatch => {
                "use a token whose `jurisdiction` matches your organisation's country in the registry"
            }
            Kind::RoleRequired => "use a token that carries the role this endpoint needs",
            _ => return None,
        })
    }
}

/// Prefix of every problem `type` URI.
pub const TYPE_PREFIX: &str = "urn:bordergate:problem:";

/// A problem answer: the problem+json document and the headers that go with it (boxed:
/// it travels through every phase's `Result`, and only refusals pay for it).
#[derive(Clone, Debug)]
pub struct Problem(Box<Doc>);

impl std::ops::Deref for Problem {
    type Target = Doc;
    fn deref(&self) -> &Doc {
        &self.0
    }
}

impl std::ops::DerefMut for Problem {
    fn deref_mut(&mut self) -> &mut Doc {
        &mut self.0
    }
}

/// A problem+json document. Never carries personal data or the token.
#[derive(Clone, Debug, Serialize)]
pub struct Doc {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub article: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The legal instrument the deciding rule rests on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instrument: Option<Arc<Instrument>>,
    /// What the caller can do about it ([`Kind::remedy`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remedy: Option<&'static str>,
    #[serde(skip)]
    pub kind: Kind,
    /// The S3 error code, when more precise than the kind's (`SignatureDoesNotMatch`, …).
    #[serde(skip)]
    pub s3_code: Option<&'static str>,
    /// Headers the answer carries besides the body's (`Allow`, `WWW-Authenticate`, …).
    #[serde(skip)]
    pub headers: HeaderMap,
}

impl Problem {
    /// A problem of `kind`; the request id is set by [`Problem::for_request`].
    pub fn new(kind: Kind, detail: impl Into<String>) -> Self {
        Problem(Box::new(Doc {
            type_uri: format!("{TYPE_PREFIX}{}", kind.slug()),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            request_id: String::new(),
            decision: None,
            rule: None,
            article: None,
            policy_version: None,
            instrument: None,
            remedy: kind.remedy(),
            kind,
            s3_code: None,
            headers: HeaderMap::new(),
        }))
    }

    /// Names the instrument a refusal the engine decides itself rests on, in the body and
    /// the `Bordergate-Instrument` header (the decision record takes it from the body).
    pub fn with_instrument(mut self, i: Arc<Instrument>) -> Self {
        if let Some(v) = instrument_value(&i) {
            self = self.with_header(HeaderName::from_static("bordergate-instrument"), v);
        }
        self.instrument = Some(i);
        self
    }

    /// Names the request the problem answers.
    pub fn for_request(mut self, request_id: &str) -> Self {
        request_id.clone_into(&mut self.request_id);
        self
    }

    /// Adds the deciding rule and article of a refusal.
    pub fn with_rule(mut self, rule: &str, article: &str, policy_version: &str) -> Self {
        self.decision = Some("deny");
        self.rule = Some(rule.to_string());
        self.article = Some(article.to_string());
        self.policy_version = Some(policy_version.to_string());
        self
    }

    /// Adds a header to the answer.
    pub fn with_header(mut self, name: impl Into<HeaderName>, value: HeaderValue) -> Self {
        self.headers.insert(name.into(), value);
        self
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The rule a refusal record names: the deciding rule, else `gateway.<type slug>`.
    pub fn record_rule(&self) -> String {
        self.rule
            .clone()
            .unwrap_or_else(|| format!("gateway.{}", self.kind.slug()))
    }

    /// The answer to an S3-style (SigV4-signed) request: S3's `<Error>` XML, its `Code`
    /// from the kind (or the signature check), the message naming the rule and article as
    /// the `X-Error-Message` does, and `<Rule>`/`<Article>` beside it; same status and
    /// headers as the problem+json answer. `resource` is the request path.
    pub fn into_s3_response(self, head: bool, resource: &str) -> Response<ResBody> {
        let a = self.into_answer(head, Some(resource));
        let mut resp = Response::new(Full::new(a.body).map_err(|e| match e {}).boxed());
        *resp.status_mut() = a.status;
        *resp.headers_mut() = a.headers;
        if let Some(r) = text::extension(a.reason.as_deref()) {
            resp.extensions_mut().insert(r);
        }
        resp
    }

    /// Status, headers and body (empty for HEAD) of the answer — problem+json, or S3's
    /// XML for an S3-style request on `s3` (its path) —, its reason phrase (the rule and
    /// article, for HTTP/1.1) and its plain-text rendering.
    fn into_answer(mut self, head: bool, s3: Option<&str>) -> Answer {
        let status = self.status();
        let message = error_message(&self);
        let (body, content_type) = match s3 {
            None => {
                let mut body = serde_json::to_vec(&*self.0).unwrap_or_default();
                body.push(b'\n');
                (body, "application/problem+json")
            }
            Some(resource) => (
                crate::s3::xml::error(
                    self.s3_code.unwrap_or_else(|| self.kind.s3_code()),
                    &message,
                    resource,
                    &self.request_id,
                    self.rule.as_deref(),
                    self.article.as_deref(),
                )
                .into_bytes(),
                "application/xml",
            ),
        };
        let len = body.len();
        let reason = text::reason_phrase(status, self.rule.as_deref(), self.article.as_deref());
        let plain = Bytes::from(text::render(&self));
        let request_id = std::mem::take(&mut self.0.request_id);
        let mut h = std::mem::take(&mut self.0.headers);
        if s3.is_some() {
            h.remove(header::WWW_AUTHENTICATE);
            if let Ok(v) = HeaderValue::from_str(&request_id) {
                h.insert("x-amz-request-id", v);
            }
        }
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        // The body's form follows `Accept` and, for curl and wget, `User-Agent`.
        h.insert(header::VARY, HeaderValue::from_static("accept, user-agent"));
        if let Ok(v) = HeaderValue::from_str(&request_id)
            && !request_id.is_empty()
        {
            h.insert("x-request-id", v);
        }
        // The explanation, for clients that show a header but not a body (the Hugging Face
        // hub client prints `X-Error-Message`; HEAD responses carry no body).
        if let Ok(v) = HeaderValue::from_str(&message) {
            h.insert("x-error-message", v);
        }
        // What to do about a refusal, for the same clients (HEAD carries no body).
        if let Some(remedy) = self.remedy.filter(|_| self.rule.is_some())
            && let Ok(v) = HeaderValue::from_str(remedy)
        {
            h.insert("bordergate-remedy", v);
        }
        if status == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS {
            // RFC 7725 §3: identify who implements the block.
            h.insert(
                header::LINK,
                HeaderValue::from_static("<urn:bordergate:gateway>; rel=\"blocked-by\""),
            );
        }
        let payload = if head {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        Answer {
            status,
            headers: h,
            body: payload,
            reason,
            plain,
        }
    }

    /// Status, headers and body (empty for HEAD) of the answer.
    pub fn into_parts(self, head: bool) -> (StatusCode, HeaderMap, Bytes) {
        let a = self.into_answer(head, None);
        (a.status, a.headers, a.body)
    }

    /// The answer as HTTP/1.1 bytes with `connection: close`, for a connection the HTTP
    /// layer has already given up on (a request head that never finished).
    pub fn into_http1_close(self) -> Vec<u8> {
        let a = self.into_answer(false, None);
        let reason = a
            .reason
            .as_deref()
            .or(a.status.canonical_reason())
            .unwrap_or("");
        let mut out = format!(
            "HTTP/1.1 {} {reason}\r\nconnection: close\r\n",
            a.status.as_u16(),
        )
        .into_bytes();
        for (name, value) in &a.headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&a.body);
        out
    }

    /// The answer with a body of type `B` (the proxy's or the admin listener's), carrying
    /// its reason phrase and its plain-text rendering ([`Form::present`]) as extensions.
    pub fn into_response_with<B: From<Full<Bytes>>>(self, head: bool) -> Response<B> {
        let a = self.into_answer(head, None);
        let mut resp = Response::new(B::from(Full::new(a.body)));
        *resp.status_mut() = a.status;
        *resp.headers_mut() = a.headers;
        if let Some(r) = text::extension(a.reason.as_deref()) {
            resp.extensions_mut().insert(r);
        }
        resp.extensions_mut().insert(PlainText(a.plain));
        resp
    }

    /// The answer on the proxy listener.
    pub fn into_response(self, head: bool) -> Response<ResBody> {
        let resp: Response<Full<Bytes>> = self.into_response_with(head);
        resp.map(|b| b.map_err(|e| match e {}).boxed())
    }
}

/// A problem answer taken apart.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    reason: Option<String>,
    plain: Bytes,
}

/// The `Bordergate-Decision` header of a decision.
pub fn decision_header(d: &Decision, enforced: bool) -> Option<HeaderValue> {
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

/// The `Bordergate-Instrument` header of a decision: the instrument's catalogue id, and the
/// SCC module relied on (`eu.scc-2021-914; module=2`); none when the decision names none.
pub fn instrument_header(d: &Decision) -> Option<HeaderValue> {
    instrument_value(d.instrument.as_deref()?)
}

fn instrument_value(i: &Instrument) -> Option<HeaderValue> {
    let mut v = i.id.clone();
    if let Some(m) = i.module {
        v.push_str(&format!("; module={m}"));
    }
    HeaderValue::from_str(&v).ok()
}

/// An enforced refusal: 451 on transfer grounds and for withdrawn data, 403 on purpose
/// and authorisation grounds; the decision's rule, article and reason.
impl From<&Decision> for Problem {
    fn from(d: &Decision) -> Problem {
        let kind = match d.ground {
            Some(DenyGround::Transfer) | None => Kind::TransferRefused,
            Some(DenyGround::Withdrawn) => Kind::Withdrawn,
            Some(DenyGround::Lineage) => Kind::LineageUnaccounted,
            Some(DenyGround::Purpose) | Some(DenyGround::Authorization) => Kind::Forbidden,
        };
        let mut p =
            Problem::new(kind, d.reason.clone()).with_rule(&d.rule, &d.article, &d.policy_version);
        p.instrument = d.instrument.clone();
        if let Some(v) = instrument_header(d) {
            p = p.with_header(HeaderName::from_static("bordergate-instrument"), v);
        }
        match decision_header(d, true) {
            Some(v) => p.with_header(HeaderName::from_static("bordergate-decision"), v),
            None => p,
        }
    }
}

/// 401 with an RFC 6750 challenge; the record names `auth.<code>`.
impl From<&AuthError> for Problem {
    fn from(e: &AuthError) -> Problem {
        let mut p = Problem::new(Kind::Unauthenticated, e.to_string());
        p.decision = Some("deny");
        p.rule = Some(format!("auth.{}", e.code()));
        let challenge = match e.rfc6750_error() {
            None => "Bearer realm=\"bordergate\"".to_string(),
            Some(err) => format!(
                "Bearer realm=\"bordergate\", error=\"{err}\", error_description=\"{}\"",
                e.code()
            ),
        };
        match HeaderValue::from_str(&challenge) {
            Ok(v) => p.with_header(header::WWW_AUTHENTICATE, v),
            Err(_) => p,
        }
    }
}

/// An S3 request whose signature is not accepted: 403 (400 when malformed, 501 for what
/// the S3 API here does not do), with the S3 error code; the record names `auth.s3.<code>`.
impl From<&crate::s3::verify::SignatureError> for Problem {
    fn from(e: &crate::s3::verify::SignatureError) -> Problem {
        use crate::s3::verify::SignatureError as E;
        let kind = match e {
            E::Malformed(_) | E::ContentSha256 => Kind::BadRequest,
            E::NotImplemented(_) => Kind::NotImplemented,
            _ => Kind::SignatureRefused,
        };
        let mut p = Problem::new(kind, e.to_string());
        p.decision = Some("deny");
        p.s3_code = Some(e.code());
        let mut rule = String::from("auth.s3.");
        for (i, c) in e.code().chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                rule.push('-');
            }
            rule.push(c.to_ascii_lowercase());
        }
        p.rule = Some(rule);
        p
    }
}

/// 403: the token's jurisdiction claim contradicts the registry (`auth.jurisdiction_claim:
/// refuse`); the record names `auth.jurisdiction-mismatch`.
impl From<&JurisdictionMismatch> for Problem {
    fn from(m: &JurisdictionMismatch) -> Problem {
        let mut p = Problem::new(Kind::JurisdictionMismatch, m.to_string());
        p.decision = Some("deny");
        p.rule = Some(claim::JURISDICTION_MISMATCH.to_string());
        p.article = Some(claim::JURISDICTION_MISMATCH_ARTICLE.to_string());
        p
    }
}

/// 400: the upload's body was cut before its end because its bytes do not have the digest
/// it declared.
impl From<&crate::lineage::digest::Mismatch> for Problem {
    fn from(m: &crate::lineage::digest::Mismatch) -> Problem {
        let mut p = Problem::new(Kind::DigestMismatch, m.to_string());
        p.rule = Some("lineage.digest-mismatch".into());
        p
    }
}

impl From<PathError> for Problem {
    fn from(e: PathError) -> Problem {
        Problem::new(Kind::BadPath, e.to_string())
    }
}

impl From<Refusal> for Problem {
    fn from(r: Refusal) -> Problem {
        Problem::new(r.kind, r.detail)
    }
}

impl From<&BodyLimit> for Problem {
    fn from(b: &BodyLimit) -> Problem {
        Problem::new(b.kind(), b.to_string())
    }
}

impl From<Unclassified> for Problem {
    fn from(u: Unclassified) -> Problem {
        let kind = match u {
            Unclassified::NotInCatalog => Kind::NotInCatalog,
            Unclassified::UnknownDataset(_) | Unclassified::BadLineage(_) => Kind::BadRequest,
        };
        Problem::new(kind, u.to_string())
    }
}

/// 503: the audit record could not be made durable, so nothing was forwarded.
impl From<&AuditError> for Problem {
    fn from(_: &AuditError) -> Problem {
        Problem::new(
            Kind::AuditUnavailable,
            "the audit record of this request could not be made durable, so nothing was forwarded",
        )
    }
}

/// 503: the fleet's PIPL export ledger did not answer, so the export was neither decided
/// nor forwarded (the cause goes to the service log, not to the client).
impl From<&crate::pipl::pg::LedgerError> for Problem {
    fn from(_: &crate::pipl::pg::LedgerError) -> Problem {
        Problem::new(
            Kind::VolumeUnavailable,
            "this export of Chinese personal information cannot be decided: the cumulative PIPL export volume shared by the gateways could not be counted, so nothing was forwarded",
        )
    }
}

/// An upstream that failed after the decision was recorded: 502, 504, or the client's
/// own fault while its body was forwarded (408, 413).
impl From<(&str, &UpstreamFailure)> for Problem {
    fn from((upstream, f): (&str, &UpstreamFailure)) -> Problem {
        match f {
            UpstreamFailure::Timeout => Problem::new(
                Kind::GatewayTimeout,
                format!("upstream `{upstream}` did not answer in time"),
            ),
            UpstreamFailure::Stalled(s) => Problem::new(
                Kind::GatewayTimeout,
                format!("upstream `{upstream}` took none of the request body for {s} s"),
            ),
            UpstreamFailure::Unreachable(_) => Problem::new(
                Kind::BadGateway,
                format!("upstream `{upstream}` could not be reached"),
            ),
            UpstreamFailure::Client(kind, e) => Problem::new(*kind, e.clone()),
        }
    }
}

/// Why the gateway's own file store could not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreError {
    /// The store answers GET, HEAD and PUT.
    MethodNotAllowed,
    /// A range outside an object of this many bytes.
    RangeNotSatisfiable(u64),
    /// Any other refusal, by status (404, 409, 412, 503, 507, …).
    Status(StatusCode),
}

impl From<StatusCode> for StoreError {
    fn from(s: StatusCode) -> StoreError {
        StoreError::Status(s)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Problem {
        match e {
            StoreError::MethodNotAllowed => Problem::new(
                Kind::MethodNotAllowed,
                "the file store answers GET, HEAD and PUT",
            )
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD, PUT")),
            StoreError::RangeNotSatisfiable(len) => {
                let p = Problem::new(
                    Kind::RangeNotSatisfiable,
                    format!("the range lies outside the object's {len} bytes"),
                );
                match HeaderValue::from_str(&format!("bytes */{len}")) {
                    Ok(v) => p.with_header(header::CONTENT_RANGE, v),
                    Err(_) => p,
                }
            }
            StoreError::Status(s) => {
                let (kind, detail) = match s {
                    StatusCode::NOT_FOUND => (Kind::NotFound, "no such object in the store"),
                    StatusCode::CONFLICT => (
                        Kind::Conflict,
                        "the upload's path runs through an existing file",
                    ),
                    StatusCode::PRECONDITION_FAILED => (
                        Kind::PreconditionFailed,
                        "a precondition of the request does not hold",
                    ),
                    StatusCode::SERVICE_UNAVAILABLE => {
                        (Kind::Unavailable, "the file store cannot answer now")
                    }
                    StatusCode::INSUFFICIENT_STORAGE => {
                        (Kind::InsufficientStorage, "the store is full")
                    }
                    StatusCode::REQUEST_TIMEOUT => {
                        (Kind::RequestTimeout, "the upload's body stalled")
                    }
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        (Kind::PayloadTooLarge, "the upload's body is too large")
                    }
                    StatusCode::BAD_REQUEST => {
                        (Kind::BadRequest, "the upload's body could not be read")
                    }
                    _ => (Kind::Internal, "the file store failed"),
                };
                Problem::new(kind, detail)
            }
        }
    }
}

/// `detail` plus the deciding rule and article, as printable ASCII (others become `?`).
fn error_message(p: &Problem) -> String {
    let mut m = format!("bordergate: {}", p.detail);
    if let Some(rule) = &p.rule {
        m.push_str(&format!(" (rule {rule}"));
        if let Some(a) = p.article.as_deref().filter(|a| !a.is_empty()) {
            m.push_str(&format!(", {a}"));
        }
        m.push(')');
    }
    m.chars()
        .take(1024)
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transfer_refusal_is_451_problem_json() {
        let p = Problem::new(Kind::TransferRefused, "no basis")
            .for_request("req-1")
            .with_rule(
                "eu.chapter-v.no-basis",
                "GDPR Chapter V, Art. 44",
                "sha256:x",
            );
        let r = p.into_response(false);
        assert_eq!(r.status().as_u16(), 451);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        assert!(r.headers().contains_key(header::LINK));
        assert_eq!(
            r.headers()["x-error-message"],
            "bordergate: no basis (rule eu.chapter-v.no-basis, GDPR Chapter V, Art. 44)"
        );
        assert_eq!(
            r.extensions()
                .get::<hyper::ext::ReasonPhrase>()
                .map(|p| p.as_bytes().to_vec()),
            Some(
                b"Unavailable For Legal Reasons: eu.chapter-v.no-basis, GDPR Chapter V, Art. 44"
                    .to_vec()
            )
        );
        assert_eq!(r.headers()[header::VARY], "accept, user-agent");
    }

    #[test]
    fn a_problem_answers_json_ending_in_a_newline_or_text_when_asked() {
        let p = || {
            Problem::new(Kind::TransferRefused, "no basis")
                .for_request("req-1")
                .with_rule("eu.chapter-v.no-basis", "GDPR Art. 44", "sha256:x")
        };
        let (_, _, body) = p().into_parts(false);
        assert!(body.ends_with(b"}\n"));
        let mut r = p().into_response(false);
        Form::Json.present(&mut r, false);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "application/problem+json"
        );
        let mut r = p().into_response(false);
        Form::Text.present(&mut r, false);
        assert_eq!(
            r.headers()[header::CONTENT_TYPE],
            "text/plain; charset=utf-8"
        );
        let text = text::render(&p());
        assert_eq!(r.headers()[header::CONTENT_LENGTH], text.len().to_string());
        assert!(text.ends_with('\n'));
        for want in [
            "451",
            "rule:       eu.chapter-v.no-basis\n",
            "article:    GDPR Art. 44\n",
            "reason:     no basis\n",
            "remedy:     this transfer needs a basis",
            "request id: req-1\n",
        ] {
            assert!(text.contains(want), "{want:?} in {text}");
        }
        // A problem without a rule keeps the canonical reason phrase.
        let r = Problem::new(Kind::NotFound, "none").into_response(false);
        assert!(r.extensions().get::<hyper::ext::ReasonPhrase>().is_none());
    }

    #[test]
    fn a_refusal_names_its_instrument_in_a_header_and_the_body() {
        let d = Decision {
            effect: Effect::Deny,
            ground: Some(DenyGround::Transfer),
            rule: "eu.chapter-v.no-basis".into(),
            article: "GDPR Chapter V, Art. 44".into(),
            reason: "no basis".into(),
            policy_version: "sha256:x".into(),
            bases: Vec::new(),
            instrument: Some(Arc::new(Instrument {
                id: "eu.scc-2021-914".into(),
                kind: "scc-decision".into(),
                title: "SCC".into(),
                date: Some("2021-06-04".into()),
                reference: "Commission Implementing Decision (EU) 2021/914".into(),
                module: Some(2),
            })),
            transform: None,
        };
        let (status, h, body) = Problem::from(&d).into_parts(false);
        assert_eq!(status.as_u16(), 451);
        assert_eq!(h["bordergate-instrument"], "eu.scc-2021-914; module=2");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["instrument"]["id"], "eu.scc-2021-914");
        assert_eq!(v["instrument"]["module"], 2);
        assert_eq!(
            v["instrument"]["reference"],
            "Commission Implementing Decision (EU) 2021/914"
        );
    }
}
