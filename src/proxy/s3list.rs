//! ListObjectsV2 of an S3-compatible upstream, for the gateway's own S3 listing: the keys
//! of one bucket under one key prefix, page after page through the upstream's
//! continuation tokens, each page signed like every request to that upstream
//! ([`Upstream::send_http`]), read to a bounded size and parsed
//! ([`crate::s3::xml::parse_list_result`]). At most [`MAX_LISTED`] keys: more is refused,
//! never listed in part.

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::BodyExt;

use super::sigv4::S3;
use super::upstream::Upstream;
use crate::respond::{Kind, Problem};
use crate::s3::list::Object;

/// Most keys one listing collects from the upstreams (as many as a file-store walk).
pub const MAX_LISTED: usize = 100_000;

/// Largest ListObjectsV2 answer read (1000 keys of 1024 bytes, URL-encoded, fit well).
const MAX_PAGE_BYTES: usize = 16 << 20;

/// Why an upstream could not be listed: the refusal the client is given, and the cause
/// for the service log.
pub struct ListFailure {
    pub problem: Problem,
    pub cause: String,
}

impl ListFailure {
    /// A failure whose cause the client may be told as it is.
    fn new(kind: Kind, up: &Upstream, what: impl std::fmt::Display) -> ListFailure {
        let detail = format!("the S3 upstream `{}` could not be listed: {what}", up.name);
        ListFailure {
            problem: Problem::new(kind, detail.clone()),
            cause: detail,
        }
    }

    /// A failure the client is told of in general terms (`shown`), the log in full.
    fn logged(
        kind: Kind,
        up: &Upstream,
        shown: &str,
        cause: impl std::fmt::Display,
    ) -> ListFailure {
        ListFailure {
            cause: format!("the S3 upstream `{}` could not be listed: {cause}", up.name),
            ..ListFailure::new(kind, up, shown)
        }
    }
}

impl Upstream {
    /// The objects of `bucket` whose keys start with `prefix` and sort after `start_after`,
    /// in the upstream's order, their keys as the store has them.
    pub async fn list_s3(
        &self,
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<Vec<Object>, ListFailure> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let pq = S3::list_page(bucket, prefix, start_after, token.as_deref());
            let page = self.list_page(&pq).await?;
            if out.len() + page.objects.len() > MAX_LISTED {
                return Err(ListFailure::new(
                    Kind::Unavailable,
                    self,
                    format_args!(
                        "more than {MAX_LISTED} objects under the prefix; list a narrower prefix"
                    ),
                ));
            }
            out.extend(page.objects);
            match page.next_continuation_token {
                Some(next) if page.is_truncated => {
                    if token.as_deref() == Some(next.as_str()) {
                        return Err(ListFailure::new(
                            Kind::BadGateway,
                            self,
                            "it repeated a continuation token",
                        ));
                    }
                    token = Some(next);
                }
                None if page.is_truncated => {
                    return Err(ListFailure::new(
                        Kind::BadGateway,
                        self,
                        "a truncated page has no continuation token",
                    ));
                }
                _ => return Ok(out),
            }
        }
    }

    /// One page: sent, its status checked, its body read (bounded) and parsed.
    async fn list_page(&self, pq: &str) -> Result<crate::s3::xml::UpstreamPage, ListFailure> {
        let mut req = Request::new(
            http_body_util::Empty::<Bytes>::new()
                .map_err(|e| match e {})
                .boxed(),
        );
        *req.method_mut() = Method::GET;
        let resp = self
            .send_http(req, pq, None)
            .await
            .map_err(|f| ListFailure {
                problem: Problem::from((self.name.as_str(), &f)),
                cause: format!(
                    "the S3 upstream `{}` could not be listed: {}",
                    self.name,
                    f.detail()
                ),
            })?;
        let status = resp.status();
        if !status.is_success() {
            return Err(ListFailure::new(
                Kind::BadGateway,
                self,
                format_args!("it answered {status}"),
            ));
        }
        let mut body = self.response_body(resp.into_body());
        let mut doc = Vec::new();
        while let Some(f) = body.frame().await {
            let f = f.map_err(|e| {
                ListFailure::logged(Kind::BadGateway, self, "its answer broke off", e)
            })?;
            if let Ok(d) = f.into_data() {
                if doc.len() + d.len() > MAX_PAGE_BYTES {
                    return Err(ListFailure::new(
                        Kind::BadGateway,
                        self,
                        format_args!("a page is larger than {MAX_PAGE_BYTES} bytes"),
                    ));
                }
                doc.extend_from_slice(&d);
            }
        }
        let doc = String::from_utf8(doc)
            .map_err(|_| ListFailure::new(Kind::BadGateway, self, "a page is not UTF-8"))?;
        crate::s3::xml::parse_list_result(&doc).map_err(|e| {
            ListFailure::logged(
                Kind::BadGateway,
                self,
                "its answer is not a ListBucketResult",
                e,
            )
        })
    }
}
