//! Conditional requests to http(s) upstreams, answered by the gateway: a 304 is decided
//! like the 200 it stands for.
//!
//! An upstream's 304 need not repeat the tag headers (`x-data-origin`, `x-data-categories`)
//! of its 200, so deciding the 304 on its own headers would tell a caller the 200 refuses
//! that the data exists (and what its validators are). The gateway therefore never
//! forwards `If-None-Match`, `If-Modified-Since`, `If-Match` or `If-Unmodified-Since` on a
//! GET or HEAD to an http(s) upstream: the upstream answers with the full, tagged response,
//! which is decided as every response is, and only an allowed answer has the client's
//! conditions evaluated against its validators (RFC 9110 §13.2.2) — 304 or 412 from the
//! gateway, the upstream's body dropped unread. `If-Range` is still forwarded: a 206 carries
//! the same metadata as a 200. The cost is that a revalidation no longer saves the
//! upstream's bandwidth (its body is cut off after the head); the gateway's own file store
//! has no upstream tags and evaluates conditions itself.

use http::header::{self, HeaderMap, HeaderName};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Empty};

use super::ResBody;
use super::filestore::conditional::{etag_matches, header_date};
use crate::respond::{Kind, Problem};

/// The request conditions the gateway evaluates itself.
const CONDITIONS: [HeaderName; 4] = [
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
];

/// Headers of the 200 a 304 carries (RFC 9110 §15.4.5), and `Last-Modified`.
const KEPT_ON_304: [HeaderName; 7] = [
    header::ETAG,
    header::LAST_MODIFIED,
    header::CACHE_CONTROL,
    header::EXPIRES,
    header::VARY,
    header::CONTENT_LOCATION,
    header::DATE,
];

/// Removes the conditions from a GET or HEAD on its way to the upstream.
pub(super) fn strip_conditions(h: &mut HeaderMap) {
    for name in &CONDITIONS {
        h.remove(name);
    }
}

/// What the client's conditions make of an allowed upstream answer.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Proceed,
    NotModified,
    Failed,
}

fn evaluate(client: &HeaderMap, resp: &HeaderMap) -> Outcome {
    let etag = resp
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    let modified = header_date(resp, &header::LAST_MODIFIED);
    if client.contains_key(header::IF_MATCH) {
        // Strong comparison: a weak tag of the upstream never matches (only `*` does).
        let strong = etag.filter(|e| !e.starts_with("W/")).unwrap_or("\u{0}");
        if !etag_matches(client.get_all(header::IF_MATCH).iter(), strong, true) {
            return Outcome::Failed;
        }
    } else if let (Some(date), Some(m)) =
        (header_date(client, &header::IF_UNMODIFIED_SINCE), modified)
        && m > date
    {
        return Outcome::Failed;
    }
    if client.contains_key(header::IF_NONE_MATCH) {
        // Weak comparison: `W/` is ignored on both sides.
        let opaque = etag
            .map(|e| e.strip_prefix("W/").unwrap_or(e))
            .unwrap_or("\u{0}");
        if etag_matches(client.get_all(header::IF_NONE_MATCH).iter(), opaque, false) {
            return Outcome::NotModified;
        }
    } else if let (Some(date), Some(m)) =
        (header_date(client, &header::IF_MODIFIED_SINCE), modified)
        && m <= date
    {
        return Outcome::NotModified;
    }
    Outcome::Proceed
}

/// The answer to a GET or HEAD whose upstream response (asked without conditions) was
/// allowed: the response itself, a 304 with its validators, or (Err) the 412 to answer.
pub(super) fn answer(
    client: &HeaderMap,
    resp: Response<ResBody>,
) -> Result<Response<ResBody>, Problem> {
    if !resp.status().is_success() || !CONDITIONS.iter().any(|c| client.contains_key(c)) {
        return Ok(resp);
    }
    Ok(match evaluate(client, resp.headers()) {
        Outcome::Proceed => resp,
        Outcome::NotModified => {
            let mut out = Response::new(Empty::new().map_err(|e| match e {}).boxed());
            *out.status_mut() = StatusCode::NOT_MODIFIED;
            for name in &KEPT_ON_304 {
                for v in resp.headers().get_all(name) {
                    out.headers_mut().append(name.clone(), v.clone());
                }
            }
            out
        }
        Outcome::Failed => {
            return Err(Problem::new(
                Kind::PreconditionFailed,
                "a precondition of the request does not hold",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn map(pairs: &[(HeaderName, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const LM: &str = "Tue, 21 Oct 2025 07:28:00 GMT";
    const LATER: &str = "Wed, 22 Oct 2025 07:28:00 GMT";
    const EARLIER: &str = "Mon, 20 Oct 2025 07:28:00 GMT";

    #[test]
    fn conditions_are_evaluated_against_the_upstream_validators() {
        let strong = map(&[(header::ETAG, "\"v1\""), (header::LAST_MODIFIED, LM)]);
        let weak = map(&[(header::ETAG, "W/\"v1\"")]);
        let inm = |v| map(&[(header::IF_NONE_MATCH, v)]);
        assert_eq!(evaluate(&inm("\"v1\""), &strong), Outcome::NotModified);
        assert_eq!(evaluate(&inm("W/\"v1\""), &strong), Outcome::NotModified);
        assert_eq!(evaluate(&inm("\"v1\""), &weak), Outcome::NotModified);
        assert_eq!(evaluate(&inm("\"v2\", *"), &strong), Outcome::NotModified);
        assert_eq!(evaluate(&inm("\"v2\""), &strong), Outcome::Proceed);
        assert_eq!(
            evaluate(&inm("\"v1\""), &HeaderMap::new()),
            Outcome::Proceed
        );
        let ims = |v| map(&[(header::IF_MODIFIED_SINCE, v)]);
        assert_eq!(evaluate(&ims(LM), &strong), Outcome::NotModified);
        assert_eq!(evaluate(&ims(LATER), &strong), Outcome::NotModified);
        assert_eq!(evaluate(&ims(EARLIER), &strong), Outcome::Proceed);
        assert_eq!(evaluate(&ims(LM), &weak), Outcome::Proceed);
        // If-None-Match wins over If-Modified-Since.
        let both = map(&[
            (header::IF_NONE_MATCH, "\"v2\""),
            (header::IF_MODIFIED_SINCE, LM),
        ]);
        assert_eq!(evaluate(&both, &strong), Outcome::Proceed);
        let im = |v| map(&[(header::IF_MATCH, v)]);
        assert_eq!(evaluate(&im("\"v1\""), &strong), Outcome::Proceed);
        assert_eq!(evaluate(&im("\"v2\""), &strong), Outcome::Failed);
        assert_eq!(evaluate(&im("\"v1\""), &weak), Outcome::Failed);
        assert_eq!(evaluate(&im("*"), &weak), Outcome::Proceed);
        let ius = |v| map(&[(header::IF_UNMODIFIED_SINCE, v)]);
        assert_eq!(evaluate(&ius(EARLIER), &strong), Outcome::Failed);
        assert_eq!(evaluate(&ius(LM), &strong), Outcome::Proceed);
        assert_eq!(evaluate(&ius(EARLIER), &weak), Outcome::Proceed);
    }

    #[test]
    fn a_304_keeps_the_validators_and_drops_the_rest() {
        let mut resp = Response::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"rows"))
                .map_err(|e| match e {})
                .boxed(),
        );
        *resp.headers_mut() = map(&[
            (header::ETAG, "\"v1\""),
            (header::CACHE_CONTROL, "private"),
            (header::CONTENT_TYPE, "text/csv"),
        ]);
        let client = map(&[(header::IF_NONE_MATCH, "\"v1\"")]);
        let out = answer(&client, resp).unwrap();
        assert_eq!(out.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(out.headers()[header::ETAG], "\"v1\"");
        assert_eq!(out.headers()[header::CACHE_CONTROL], "private");
        assert!(!out.headers().contains_key(header::CONTENT_TYPE));
    }
}
