//! Maps every refusal and failure to its status and an RFC 9457 problem+json body,
//! in one place.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde::Serialize;

use super::ResBody;

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
    /// The upstream could not be reached or answered badly (502).
    BadGateway,
    /// The audit record could not be made durable (503).
    AuditUnavailable,
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
}

impl Kind {
    pub fn status(self) -> StatusCode {
        match self {
            Kind::BadPath | Kind::BadRequest => StatusCode::BAD_REQUEST,
            Kind::Unauthenticated => StatusCode::UNAUTHORIZED,
            Kind::Forbidden | Kind::NotInCatalog => StatusCode::FORBIDDEN,
            Kind::NotFound => StatusCode::NOT_FOUND,
            Kind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Kind::TransferRefused | Kind::Withdrawn => StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            Kind::BadGateway => StatusCode::BAD_GATEWAY,
            Kind::AuditUnavailable | Kind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Kind::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Kind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Kind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Kind::UriTooLong => StatusCode::URI_TOO_LONG,
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
            Kind::BadGateway => "upstream-unavailable",
            Kind::AuditUnavailable => "audit-unavailable",
            Kind::Unavailable => "unavailable",
            Kind::GatewayTimeout => "upstream-timeout",
            Kind::RequestTimeout => "request-timeout",
            Kind::PayloadTooLarge => "payload-too-large",
            Kind::UriTooLong => "uri-too-long",
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
            Kind::BadGateway => "Upstream unavailable",
            Kind::AuditUnavailable => "Audit log unavailable",
            Kind::Unavailable => "Gateway unavailable",
            Kind::GatewayTimeout => "Upstream timed out",
            Kind::RequestTimeout => "Request timed out",
            Kind::PayloadTooLarge => "Request body too large",
            Kind::UriTooLong => "Request target too long",
        }
    }
}

/// Prefix of every problem `type` URI.
pub const TYPE_PREFIX: &str = "urn:bordergate:problem:";

/// A problem+json document. Never carries personal data or the token.
#[derive(Clone, Debug, Serialize)]
pub struct Problem {
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
    #[serde(skip)]
    pub kind: Option<Kind>,
}

impl Problem {
    pub fn new(kind: Kind, detail: impl Into<String>, request_id: &str) -> Self {
        Problem {
            type_uri: format!("{TYPE_PREFIX}{}", kind.slug()),
            title: kind.title(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            request_id: request_id.to_string(),
            decision: None,
            rule: None,
            article: None,
            policy_version: None,
            kind: Some(kind),
        }
    }

    /// Adds the deciding rule and article.
    pub fn with_rule(mut self, rule: &str, article: &str, policy_version: &str) -> Self {
        self.decision = Some("deny");
        self.rule = Some(rule.to_string());
        self.article = Some(article.to_string());
        self.policy_version = Some(policy_version.to_string());
        self
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// The response: status, problem+json body, `X-Request-Id`.
    pub fn into_response(self, head: bool) -> Response<ResBody> {
        let status = self.status();
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let len = body.len();
        let payload = if head {
            Bytes::new()
        } else {
            Bytes::from(body)
        };
        let mut resp = Response::new(Full::new(payload).map_err(|e| match e {}).boxed());
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&self.request_id) {
            h.insert("x-request-id", v);
        }
        // The explanation, for clients that show a header but not a body (the Hugging Face
        // hub client prints `X-Error-Message`; HEAD responses carry no body).
        if let Ok(v) = HeaderValue::from_str(&error_message(&self)) {
            h.insert("x-error-message", v);
        }
        if status == StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS {
            // RFC 7725 §3: identify who implements the block.
            h.insert(
                header::LINK,
                HeaderValue::from_static("<urn:bordergate:gateway>; rel=\"blocked-by\""),
            );
        }
        resp
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
        let p = Problem::new(Kind::TransferRefused, "no basis", "req-1").with_rule(
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
    }
}
