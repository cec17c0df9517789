//! The forward phase: the request, once its decision is durable, to the file store or the
//! http(s) upstream, with the client's body counted and held to the limits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::Request;
use http::request::Parts;
use http_body::Body;
use http_body_util::{BodyExt, Either};

use super::body::Counted;
use super::upstream::{Sending, Target, Upstream, UpstreamFailure};
use super::{BoxError, ResBody, guard, headers};
use crate::catalog::path::NormalizedPath;
use crate::config::{Limits, TagHeaders};
use crate::lineage::digest::{Expect, Verified};
use crate::respond::Problem;

/// What a forwarded request carries besides its head and body.
pub(super) struct Forward<'a> {
    pub upstream: &'a Upstream,
    pub path: &'a NormalizedPath,
    pub path_and_query: &'a str,
    pub peer: SocketAddr,
    pub proto: &'static str,
    pub request_id: &'a str,
    /// The client's own `X-Request-Id`, passed on as `X-Client-Request-Id`.
    pub client_request_id: Option<&'a str>,
    pub limits: &'a Limits,
    pub tags: &'a TagHeaders,
    /// An S3 (SigV4) request: the file store's refusals answer in S3's XML.
    pub s3: bool,
}

/// Sends the request; the file store's own refusals (404, 416, …) come back as answers.
/// `expect`: what the digest of the client's body is checked against (the body is cut
/// before its end when the check fails); when empty the body is not hashed.
pub(super) async fn forward<B>(
    f: &Forward<'_>,
    parts: &Parts,
    body: B,
    bytes_in: Arc<AtomicU64>,
    expect: Expect,
) -> Result<http::Response<ResBody>, UpstreamFailure>
where
    B: Body<Data = Bytes> + Send + Sync + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let (upload, ended, ended_rx) = guard::Upload::watch();
    let limited = guard::Limited::watched(body, f.limits, upload.clone(), ended);
    let body = if expect.is_empty() {
        Either::Right(limited)
    } else {
        Either::Left(Verified::with(limited, expect))
    };
    let body = Counted::new(body, bytes_in.clone());
    match &f.upstream.target {
        Target::File(store) => {
            let answer = store
                .answer(&parts.method, &f.path.decoded, &parts.headers, body)
                .await;
            // The client's body failed: the client's failure, whatever the store made of it.
            if let Some(b) = upload.failed() {
                return Err(UpstreamFailure::client(b));
            }
            Ok(answer.unwrap_or_else(|e| {
                let p = Problem::from(e).for_request(f.request_id);
                let head = parts.method == http::Method::HEAD;
                if f.s3 {
                    p.into_s3_response(head, &f.path.decoded)
                } else {
                    p.into_response(head)
                }
            }))
        }
        Target::Http { .. } => {
            let mut req = Request::new(body.boxed());
            *req.method_mut() = parts.method.clone();
            *req.headers_mut() = headers::upstream_request_headers(
                &parts.headers,
                f.peer.ip(),
                f.proto,
                f.request_id,
                &f.tags.lineage,
            );
            if super::revalidated(f.upstream, &parts.method) {
                super::revalidate::strip_conditions(req.headers_mut());
            }
            if let Some(v) = f
                .client_request_id
                .and_then(|c| http::HeaderValue::from_str(c).ok())
            {
                req.headers_mut().insert("x-client-request-id", v);
            }
            let sending = Sending {
                upload,
                ended: ended_rx,
                bytes: bytes_in,
            };
            let resp = f
                .upstream
                .send_http(req, f.path_and_query, Some(sending))
                .await?;
            let resp = f
                .upstream
                .follow_redirects(resp, &parts.method, &parts.headers)
                .await?;
            Ok(resp.map(|b| f.upstream.response_body(b)))
        }
    }
}
