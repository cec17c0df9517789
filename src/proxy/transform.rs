//! The transform phase: for a transfer allowed only minimised, the plan made before the
//! decision record (so the record names what will be done), and the upstream's answer
//! turned into the transformed stream before its first byte leaves.
//!
//! Range requests on transformed data are refused (416 `transformed-range`): the
//! transformed bytes exist nowhere to take a range of. Conditions (`If-None-Match`, …)
//! are not sent upstream; the answer is always the whole transformed file, with an ETag
//! of its own. A Parquet file is asked for with HEAD (its length), then read by Range:
//! the footer first, then the column chunks.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;

use super::ResBody;
use super::response::Ended;
use super::upstream::Target;
use crate::audit::Outcome;
use crate::catalog::schema::Format;
use crate::model::Decision;
use crate::respond::{Kind, Problem};
use crate::snapshot::Snapshot;
use crate::transfer::Transfer;
use crate::transform::stream::{Fetch, Started};
use crate::transform::tabular::TransformError;
use crate::transform::{Plan, Requirement};

/// Response headers that describe the original bytes, not the transformed ones.
const ORIGINAL_ONLY: &[&str] = &[
    "content-length",
    "content-md5",
    "content-digest",
    "repr-digest",
    "digest",
    "content-range",
    "x-goog-hash",
    "x-amz-checksum-crc32",
    "x-amz-checksum-crc32c",
    "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1",
    "x-amz-checksum-sha256",
    "x-amz-checksum-type",
    "x-amz-meta-sha256",
    "x-linked-etag",
    "x-linked-size",
    "x-xet-hash",
];

/// Request headers not sent upstream for a transformed transfer.
const CONDITIONS: &[header::HeaderName] = &[
    header::IF_MATCH,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_UNMODIFIED_SINCE,
    header::IF_RANGE,
    header::RANGE,
];

fn problem(kind: Kind, d: &Decision, detail: String) -> Problem {
    let mut p = Problem::new(kind, detail);
    p.rule = Some(d.rule.clone());
    p.article = Some(d.article.clone());
    p.policy_version = Some(d.policy_version.to_string());
    p.instrument.clone_from(&d.instrument);
    p
}

/// Plans the transformation `req` of the file at `path` for transfer `t`, or refuses.
pub(super) fn plan(
    snap: &Snapshot,
    t: &Transfer,
    path: &str,
    req: &Requirement,
    headers: &HeaderMap,
    d: &Decision,
) -> Result<Plan, Problem> {
    if headers.contains_key(header::RANGE) {
        return Err(problem(
            Kind::TransformedRange,
            d,
            format!(
                "this transfer is allowed only transformed ({}), and the transformed bytes exist nowhere to take a range of: request the whole file without `Range`",
                req.summary()
            ),
        ));
    }
    let schema = t
        .dataset
        .as_deref()
        .and_then(|id| snap.catalog.get(id))
        .and_then(|e| e.schema.as_ref());
    // The key is the origin region's: the regime governing the data's first origin.
    let region = t
        .tags
        .origins
        .iter()
        .find_map(|o| snap.policies.regime_for(*o))
        .map_or("", |r| &*r.id);
    Plan::new(req, schema, path, &snap.keyring, region, &snap.redactor)
        .map_err(|e| problem(Kind::TransformUnavailable, d, e.to_string()))
}

/// The request sent upstream for a transformed transfer: without the conditions and ranges
/// it does not send; for Parquet a HEAD, which gives the file's length and ETag, as the
/// reader then fetches the footer and the column chunks by Range (the whole file is never
/// asked for at once).
pub(super) fn upstream_request(plan: &Plan, parts: &mut http::request::Parts) {
    for n in CONDITIONS {
        parts.headers.remove(n);
    }
    if plan.format == Format::Parquet && parts.method == Method::GET {
        parts.method = Method::HEAD;
    }
}

/// Where the Parquet reader's ranges come from.
pub(super) struct Origin {
    pub snap: Arc<Snapshot>,
    pub upstream: usize,
    pub decoded: String,
    pub path_and_query: String,
}

/// Reads `len` bytes at `start` from the upstream, by Range.
async fn range(o: &Origin, start: u64, len: u64) -> Result<Bytes, String> {
    let up = o
        .snap
        .upstreams
        .get(o.upstream)
        .ok_or_else(|| "the upstream is gone".to_string())?;
    let mut h = HeaderMap::new();
    let last = start + len.saturating_sub(1);
    let r = HeaderValue::from_str(&format!("bytes={start}-{last}")).map_err(|e| e.to_string())?;
    h.insert(header::RANGE, r);
    let resp: Response<ResBody> = match &up.target {
        Target::File(store) => store
            .answer(
                &Method::GET,
                &o.decoded,
                &h,
                http_body_util::Empty::<Bytes>::new(),
            )
            .await
            .map_err(|e| Problem::from(e).detail.clone())?,
        Target::Http { .. } => {
            let mut req = Request::new(
                http_body_util::Empty::<Bytes>::new()
                    .map_err(|e| match e {})
                    .boxed(),
            );
            *req.headers_mut() = h;
            let resp = up
                .send_http(req, &o.path_and_query, None)
                .await
                .map_err(|e| e.detail().to_string())?;
            resp.map(|b| up.response_body(b))
        }
    };
    if resp.status() != StatusCode::PARTIAL_CONTENT && !(start == 0 && resp.status().is_success()) {
        return Err(format!(
            "the upstream answered {} to a range request",
            resp.status()
        ));
    }
    let mut body = resp.into_body();
    let mut out = Vec::with_capacity(usize::try_from(len).unwrap_or(0).min(64 << 20));
    while let Some(f) = body.frame().await {
        let f = f.map_err(|e| e.to_string())?;
        if let Ok(d) = f.into_data() {
            if (out.len() + d.len()) as u64 > len {
                return Err("the upstream sent more than the range asked".into());
            }
            out.extend_from_slice(&d);
        }
    }
    Ok(Bytes::from(out))
}

/// The transformed answer to `resp`, the upstream's 200 to a GET or HEAD.
pub(super) async fn apply(
    plan: &Plan,
    mut resp: Response<ResBody>,
    head: bool,
    origin: Origin,
) -> Result<Response<ResBody>, Ended> {
    if resp.status() != StatusCode::OK {
        // The upstream's refusals (404, 403 …) pass; any other success is not a whole file.
        if resp.status().is_success() {
            return Err(Ended {
                problem: Problem::new(
                    Kind::BadGateway,
                    format!(
                        "the upstream answered {} where a whole file must be transformed",
                        resp.status()
                    ),
                ),
                outcome: Outcome::UpstreamError,
                detail: "the upstream's answer cannot be transformed".into(),
            });
        }
        return Ok(resp);
    }
    let len = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let etag = resp
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    {
        let h = resp.headers_mut();
        for n in ORIGINAL_ONLY {
            h.remove(*n);
        }
        if let Ok(v) = HeaderValue::from_str(&plan.etag(etag.as_deref())) {
            h.insert(header::ETAG, v);
        }
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("none"));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(plan.format.media_type()),
        );
        if let Ok(v) = HeaderValue::from_str(&plan.header()) {
            h.insert("bordergate-transform", v);
        }
    }
    if head {
        return Ok(resp.map(|_| {
            http_body_util::Empty::<Bytes>::new()
                .map_err(|e| match e {})
                .boxed()
        }));
    }
    let (parts, body) = resp.into_parts();
    let started = match crate::transform::tabular::for_plan(plan.clone()) {
        Some(t) => crate::transform::stream::tabular(body, t).await,
        None => {
            drop(body);
            let Some(len) = len else {
                return Err(failed(TransformError::Source(
                    "the upstream sent no Content-Length for a Parquet file: its footer cannot be found".into(),
                )));
            };
            let origin = Arc::new(origin);
            let fetch: Fetch = Arc::new(move |start, n| {
                let o = origin.clone();
                Box::pin(async move { range(&o, start, n).await })
            });
            crate::transform::stream::parquet(fetch, len, plan.clone()).await
        }
    };
    let Started { first, rest } = started;
    let first = first.map_err(failed)?;
    let stream = futures_util::stream::unfold((first, rest), |(first, mut rest)| async move {
        if let Some(b) = first {
            return Some((Ok(http_body::Frame::data(b)), (None, rest)));
        }
        match rest.recv().await {
            None => None,
            Some(Ok(b)) => Some((Ok(http_body::Frame::data(b)), (None, rest))),
            Some(Err(e)) => Some((Err(Box::new(e) as super::BoxError), (None, rest))),
        }
    });
    Ok(Response::from_parts(
        parts,
        http_body_util::StreamBody::new(stream).boxed(),
    ))
}

fn failed(e: TransformError) -> Ended {
    let kind = match e {
        TransformError::SchemaMismatch(_) => Kind::SchemaMismatch,
        _ => Kind::BadGateway,
    };
    Ended {
        problem: Problem::new(kind, e.to_string()),
        outcome: Outcome::UpstreamError,
        detail: format!("not transformed: {e}").into(),
    }
}
