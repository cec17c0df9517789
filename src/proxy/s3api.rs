//! The bucket-level calls of the S3 API, answered by the gateway itself for SigV4-signed
//! requests (object calls — GetObject, HeadObject — are ordinary reads of the path
//! `/{bucket}/{key}` and take the usual phases).
//!
//! A bucket is the first segment of the gateway's paths (`datasets` for
//! `/datasets/eu-customers/customers.csv`). ListObjectsV2 gathers the objects of the
//! routes below `/{bucket}/` — the file stores' by walking them, the S3-compatible
//! upstreams' by their own ListObjectsV2 (signed with the gateway's credentials, the
//! prefix mapped into the upstream's bucket and keys, see [`super::s3list`]) — and keeps
//! only the keys the caller may read, each decided by the one classification and
//! evaluator a GET of it would meet; paging, delimiter and common prefixes are then
//! [`crate::s3::list`]'s. The listing is one decision record (rule `s3.list-objects-v2`,
//! its reason counting what was readable and what withheld) and one completion record.
//! An upstream that cannot be listed (unreachable, not 2xx, not a listing, more than
//! [`super::s3list::MAX_LISTED`] keys) refuses the whole listing. Plain http upstreams
//! have no listing protocol and are not listed.

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
use crate::snapshot::{Route, Snapshot};
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
            // HeadBucket: whether a route leads to the bucket; nothing is listed.
            BucketCall::ListV1 if a.is_head() => {
                bucket_exists(snap, &bucket)?;
                return Ok(Listing {
                    xml: String::new(),
                    reason: format!("HeadBucket of bucket `{bucket}`: a route leads to it"),
                });
            }
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
        // Every listed path starts with this.
        let wanted = format!("{root}/{}", params.prefix);
        let after = list::resume_after(params)
            .map_err(|e| Problem::new(Kind::BadRequest, e))?
            .map(|k| format!("{root}/{k}"));
        let mut sieve = Sieve {
            gw: self,
            snap,
            caller,
            enforce: a.enforce,
            at: time::OffsetDateTime::now_utc(),
            key_start: root.len() + 1,
            wanted: &wanted,
            seen: 0,
            out: Vec::new(),
        };
        bucket_exists(snap, bucket)?;
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
            let Some(up) = snap.upstream(route) else {
                continue;
            };
            match (&up.target, &up.s3) {
                (Target::File(store), _) => {
                    let files = store.files_under(&dir).await.map_err(|e| {
                        tracing::warn!(request_id = %a.request_id, error = %e, "s3 listing failed");
                        Problem::new(Kind::Unavailable, "the store could not be listed")
                    })?;
                    for (path, object) in files {
                        sieve.offer(route, path, object);
                    }
                }
                (Target::Http { .. }, Some(s3)) => {
                    // What of the store the listing reaches: its keys under `rest`.
                    let rest = match below(&route.prefix, &wanted) {
                        Some(rest) => rest,
                        None => continue,
                    };
                    let Some((b, prefix)) = s3.key_prefix(rest) else {
                        continue;
                    };
                    // Keys up to the page's start are not needed (the mapping keeps order).
                    let start_after = after
                        .as_deref()
                        .and_then(|p| p.strip_prefix(route.prefix.as_str()))
                        .filter(|r| r.starts_with('/'))
                        .and_then(|r| s3.key_prefix(r))
                        .filter(|(ab, k)| *ab == b && !k.is_empty())
                        .map(|(_, k)| k);
                    let objects = up.list_s3(b, prefix, start_after).await.map_err(|f| {
                        tracing::warn!(request_id = %a.request_id, upstream = %up.name, error = %f.cause, "s3 listing failed");
                        f.problem
                    })?;
                    for object in objects {
                        let path = format!("{}{}", route.prefix, s3.rest_of(b, &object.key));
                        // Keys no GET can name (folder markers, dot segments, …) are not
                        // objects of the gateway's.
                        if path.ends_with('/')
                            || crate::catalog::path::check_decoded(&path).is_err()
                        {
                            continue;
                        }
                        sieve.offer(route, path, object);
                    }
                }
                // Plain http upstreams have no listing protocol.
                (Target::Http { .. }, None) => {}
            }
        }
        let Sieve { mut out, seen, .. } = sieve;
        out.sort_by(|x, y| x.key.cmp(&y.key));
        out.dedup_by(|x, y| x.key == y.key);
        Ok((out, seen))
    }
}

/// Refuses a bucket no route leads below (`NoSuchBucket`).
fn bucket_exists(snap: &Snapshot, bucket: &str) -> Result<(), Problem> {
    let below = format!("/{bucket}/");
    let covered = snap.routes.iter().any(|r| {
        r.prefix.is_empty() || r.prefix == below[..below.len() - 1] || r.prefix.starts_with(&below)
    });
    if covered {
        return Ok(());
    }
    let mut p = Problem::new(
        Kind::NotFound,
        format!("no route leads to bucket `{}`", bucket.escape_default()),
    );
    p.s3_code = Some("NoSuchBucket");
    Err(p)
}

/// The part of a route's paths a listing of `wanted` (a path prefix) reaches, below the
/// route prefix: `wanted` less the prefix, or `/` (all of it) when the route lies below
/// `wanted`; None when the route and `wanted` do not meet.
fn below<'a>(route_prefix: &str, wanted: &'a str) -> Option<&'a str> {
    match wanted.strip_prefix(route_prefix) {
        Some(rest) if rest.starts_with('/') => Some(rest),
        _ if format!("{route_prefix}/").starts_with(wanted) => Some("/"),
        _ => None,
    }
}

/// The objects of a listing kept: each decided as a GET of it would be.
struct Sieve<'a> {
    gw: &'a Gateway,
    snap: &'a Snapshot,
    caller: &'a crate::model::Caller,
    enforce: bool,
    at: time::OffsetDateTime,
    /// Where the key starts in a path (after `/{bucket}/`).
    key_start: usize,
    /// The path prefix of the listing (`/{bucket}/{prefix}`).
    wanted: &'a str,
    /// Objects decided.
    seen: usize,
    out: Vec<Object>,
}

impl Sieve<'_> {
    /// Decides the object at `path` (decoded), found through `route`, and keeps it if the
    /// caller may read it.
    fn offer(&mut self, route: &Route, path: String, mut object: Object) {
        if !path.starts_with(self.wanted) {
            return;
        }
        // Listed under the route a GET of it takes, once.
        match self.snap.routes.route_for(&path, Direction::Download) {
            Ok(r) if std::ptr::eq(r, route) => {}
            _ => return,
        }
        self.seen += 1;
        let ask = Ask::download(&path, self.caller, self.at);
        let Ok(t) = crate::transfer::classify(&self.snap.catalog, &ask, Some(route.place())) else {
            return;
        };
        let volume = t.volume(&self.gw.exports);
        let d = t.decide(&self.snap.policies, self.at.date(), volume.as_ref());
        if d.is_allow() || !self.enforce {
            object.key = path[self.key_start..].to_string();
            self.out.push(object);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::below;

    #[test]
    fn a_listing_reaches_the_part_of_a_route_below_its_prefix() {
        // A route at the bucket: the key prefix, below it.
        assert_eq!(below("/s3", "/s3/eu/w"), Some("/eu/w"));
        assert_eq!(below("/s3", "/s3/"), Some("/"));
        // A route deeper than the prefix: all of it, or none.
        assert_eq!(below("/datasets/s3data", "/datasets/"), Some("/"));
        assert_eq!(below("/datasets/s3data", "/datasets/s3"), Some("/"));
        assert_eq!(below("/datasets/s3data", "/datasets/s3data"), Some("/"));
        assert_eq!(
            below("/datasets/s3data", "/datasets/s3data/eu"),
            Some("/eu")
        );
        assert_eq!(below("/datasets/s3data", "/datasets/s3datab"), None);
        assert_eq!(below("/datasets/s3data", "/datasets/eu"), None);
        // The route at `/`.
        assert_eq!(below("", "/bkt/a"), Some("/bkt/a"));
    }
}
