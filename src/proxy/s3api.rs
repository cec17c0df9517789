//! The bucket-level calls of the S3 API, answered by the gateway itself for SigV4-signed
//! requests (object calls — GetObject, HeadObject — are ordinary reads of the path
//! `/{bucket}/{key}` and take the usual phases).
//!
//! A bucket is the first segment of the gateway's paths (`datasets` for
//! `/datasets/eu-customers/customers.csv`). ListObjectsV2 walks the file stores of the
//! routes below `/{bucket}/` and keeps only the keys the caller may read, each decided by
//! the one classification and evaluator a GET of it would meet; the listing is one
//! decision record (rule `s3.list-objects-v2`, its reason counting what was withheld) and
//! one completion record. Upstreams that are not file stores are not listed.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};

use super::attempt::Attempt;
use super::body::Completion;
use super::upstream::Target;
use super::{Gateway, ResBody, admit, authenticate, receipt_header};
use crate::model::Direction;
use crate::respond::{Kind, Problem};
use crate::s3::list::{self, BucketCall, Object, Params};
use crate::snapshot::Snapshot;
use crate::transfer::Ask;

/// Whether an S3 request names a bucket alone (`/datasets`, `/datasets/`).
pub(super) fn is_bucket_call(parts: &Parts) -> bool {
    let p = parts.uri.path().strip_prefix('/').unwrap_or("");
    let b = p.strip_suffix('/').unwrap_or(p);
    !b.is_empty() && !b.contains('/')
}

/// A listing made: its document and what its record says.
struct Listing {
    xml: String,
    reason: String,
}

impl Gateway {
    /// Answers a bucket-level S3 request (ListObjectsV2, HeadBucket), or refuses it.
    pub(super) async fn s3_bucket(
        &self,
        snap: &Arc<Snapshot>,
        parts: &Parts,
        body_empty: bool,
        client_cert: Option<&[u8]>,
        a: &mut Attempt,
    ) -> Response<ResBody> {
        let listing = match self.list(snap, parts, body_empty, client_cert, a).await {
            Ok(l) => l,
            Err(p) => return self.refuse(a, p).await,
        };
        let receipt = match self.durable(a, |a| a.listed(&listing.reason)).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
        let body = if a.is_head() {
            Bytes::new()
        } else {
            Bytes::from(listing.xml)
        };
        let mut completion = Completion::new(
            self.audit.clone(),
            a.request_id.clone(),
            receipt.seq,
            a.started,
            Arc::new(AtomicU64::new(0)),
        );
        completion.set_status(200);
        completion.finish(body.len() as u64, crate::audit::Outcome::Complete, None);
        let len = body.len();
        let mut resp = Response::new(Full::new(body).map_err(|e| match e {}).boxed());
        *resp.status_mut() = StatusCode::OK;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Ok(v) = HeaderValue::from_str(&a.request_id) {
            h.insert("x-request-id", v.clone());
            h.insert("x-amz-request-id", v);
        }
        if let Some(v) = receipt_header(&receipt) {
            h.insert("audit-receipt", v);
        }
        resp
    }

    /// Authenticates a bucket-level request and makes its listing.
    async fn list(
        &self,
        snap: &Snapshot,
        parts: &Parts,
        body_empty: bool,
        client_cert: Option<&[u8]>,
        a: &mut Attempt,
    ) -> Result<Listing, Problem> {
        let path = admit::admit(parts, body_empty, &snap.config.limits)?;
        a.path.clone_from(&path.decoded);
        let query = authenticate::identify(snap, parts, body_empty, client_cert, a)?;
        let bucket = path.decoded.trim_matches('/').to_string();
        let params = match list::parse(query.as_deref())
            .map_err(|e| Problem::new(Kind::BadRequest, e))?
        {
            BucketCall::ListV2(p) => p,
            // HeadBucket: an empty listing, answered without a body.
            BucketCall::ListV1 if a.is_head() => Params {
                max_keys: 0,
                ..Params::default()
            },
            BucketCall::ListV1 => {
                return Err(Problem::new(
                    Kind::NotImplemented,
                    "ListObjects (version 1) is not implemented; use ListObjectsV2 (`list-type=2`)",
                ));
            }
            BucketCall::Other(n) => {
                return Err(Problem::new(
                    Kind::NotImplemented,
                    format!(
                        "the bucket sub-resource `{}` is not implemented",
                        n.escape_default()
                    ),
                ));
            }
        };
        let (objects, seen) = self.readable(snap, a, &bucket, &params).await?;
        let page = list::page(&objects, &params).map_err(|e| Problem::new(Kind::BadRequest, e))?;
        Ok(Listing {
            xml: crate::s3::xml::list_result(&bucket, &params, &page),
            reason: format!(
                "listed {} entries of bucket `{bucket}` with prefix `{}`: {} objects readable, {} withheld by policy",
                page.key_count(),
                params.prefix.escape_default(),
                objects.len(),
                seen - objects.len()
            ),
        })
    }

    /// The objects of `bucket` under the listing's prefix the caller may read, sorted by
    /// key, and how many objects were looked at.
    async fn readable(
        &self,
        snap: &Snapshot,
        a: &Attempt,
        bucket: &str,
        params: &Params,
    ) -> Result<(Vec<Object>, usize), Problem> {
        let Some(caller) = a.caller.as_ref() else {
            return Err(Problem::new(Kind::Internal, "the caller is not known"));
        };
        let root = format!("/{bucket}");
        // The deepest directory the prefix names, to walk no more than needed.
        let by_prefix = match params.prefix.rfind('/') {
            Some(i) => format!("{root}/{}", &params.prefix[..i]),
            None => root.clone(),
        };
        let at = time::OffsetDateTime::now_utc();
        let mut covered = false;
        let mut seen = 0;
        let mut out = Vec::new();
        for route in snap.routes.iter() {
            let dir = if route.prefix.is_empty() || route.prefix == root {
                by_prefix.clone()
            } else if route.prefix.starts_with(&format!("{root}/")) {
                if by_prefix.starts_with(&route.prefix) {
                    by_prefix.clone()
                } else {
                    route.prefix.clone()
                }
            } else {
                continue;
            };
            covered = true;
            let Some(Target::File(store)) = snap.upstream(route).map(|u| &u.target) else {
                continue;
            };
            let files = store.files_under(&dir).await.map_err(|e| {
                tracing::warn!(request_id = %a.request_id, error = %e, "s3 listing failed");
                Problem::new(Kind::Unavailable, "the store could not be listed")
            })?;
            for (path, mut object) in files {
                let Some(key) = path.strip_prefix(&format!("{root}/")) else {
                    continue;
                };
                if !key.starts_with(&params.prefix) {
                    continue;
                }
                // Listed under the route a GET of it takes, once.
                match snap.routes.route_for(&path, Direction::Download) {
                    Ok(r) if std::ptr::eq(r, route) => {}
                    _ => continue,
                }
                seen += 1;
                let ask = Ask::download(&path, caller, at);
                let Ok(t) = crate::transfer::classify(&snap.catalog, &ask, Some(route.place()))
                else {
                    continue;
                };
                let volume = t.volume(&self.exports);
                let d = t.decide(&snap.policies, at.date(), volume.as_ref());
                if d.is_allow() || !a.enforce {
                    object.key = key.to_string();
                    out.push(object);
                }
            }
        }
        if !covered {
            let mut p = Problem::new(
                Kind::NotFound,
                format!("no route leads to bucket `{}`", bucket.escape_default()),
            );
            p.s3_code = Some("NoSuchBucket");
            return Err(p);
        }
        out.sort_by(|x, y| x.key.cmp(&y.key));
        out.dedup_by(|x, y| x.key == y.key);
        Ok((out, seen))
    }
}
