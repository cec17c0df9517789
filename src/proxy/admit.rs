//! The admit phase: checks of the request head that need no identity — the request-target
//! form and length, the method, the head guards (`Host`, bodies on GET, limits) — and path
//! normalisation.

use http::request::Parts;
use http::{HeaderValue, Method, Version, header};

use crate::catalog::path::{NormalizedPath, normalize};
use crate::config::Limits;
use crate::respond::{Kind, Problem};

/// The methods the gateway answers.
const METHODS: &str = "GET, HEAD, PUT, POST";

/// Admits a request head, returning its normalised path. `body_empty` says the request
/// carries no body (an HTTP/2 request can send DATA without `content-length`, so a GET
/// with a body is refused on the body itself, as on HTTP/1).
pub(super) fn admit(
    parts: &Parts,
    body_empty: bool,
    limits: &Limits,
) -> Result<NormalizedPath, Problem> {
    // The request target: origin-form only on HTTP/1, bounded, unambiguous.
    if parts.version <= Version::HTTP_11 && parts.uri.authority().is_some() {
        return Err(Problem::new(
            Kind::BadRequest,
            "absolute-form request targets are not accepted",
        ));
    }
    // What the HTTP parser dropped from the raw request line (see `super::rawline`).
    match parts.extensions.get::<super::rawline::RawTarget>() {
        Some(super::rawline::RawTarget::Fragment) => {
            return Err(Problem::new(
                Kind::BadPath,
                "the request target holds a raw `#`: a fragment is not part of a request \
                 target (RFC 9112 §3.2); percent-encode it as `%23`",
            ));
        }
        Some(super::rawline::RawTarget::Unchecked) => {
            return Err(Problem::new(
                Kind::BadRequest,
                "the connection's earlier bytes could not be followed as HTTP/1.1 framing",
            ));
        }
        None => {}
    }
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > limits.max_uri_bytes {
        return Err(Problem::new(
            Kind::UriTooLong,
            format!(
                "request target is longer than the {} bytes allowed",
                limits.max_uri_bytes
            ),
        ));
    }
    if !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::PUT | Method::POST
    ) {
        return Err(Problem::new(
            Kind::MethodNotAllowed,
            format!(
                "method `{}` is not supported",
                parts.method.as_str().escape_default()
            ),
        )
        .with_header(header::ALLOW, HeaderValue::from_static(METHODS)));
    }
    super::guard::check_head(parts, limits)?;
    if matches!(parts.method, Method::GET | Method::HEAD) && !body_empty {
        return Err(Problem::new(
            Kind::BadRequest,
            format!("a {} request may not carry a body", parts.method),
        ));
    }
    Ok(normalize(parts.uri.path())?)
}
