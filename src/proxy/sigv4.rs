//! S3-compatible upstreams: which requests map to which object-store call, and their
//! SigV4 signature with credentials only the gateway holds.
//!
//! A route prefix stands for a bucket (`s3.bucket`) or for the store's root (the first
//! segment below the prefix names the bucket). `GET`/`HEAD`/`PUT` of a path below it reach
//! the object with that key; `GET` of a path ending in `/` lists the objects under that
//! key prefix (ListObjectsV2), so a listing is decided like any other read of that path.
//! The gateway's own S3 listing maps its prefix into the store the same way and the keys
//! it gets back out again ([`S3::key_prefix`], [`S3::list_page`], [`S3::rest_of`]).
//! Nothing else of the S3 API is reachable: no sub-resources (`?acl`, `?policy`, …), no
//! `POST`, and no client `x-amz-*` headers (a client could otherwise ask the gateway's
//! credentials to copy from another bucket).

use http::{HeaderMap, HeaderValue, Method, Request};

use crate::config::S3Config;

/// Query parameters of a listing a client may set.
const LIST_PARAMS: &[&str] = &["continuation-token", "delimiter", "max-keys", "start-after"];

/// An S3 upstream's credentials and addressing.
pub struct S3 {
    region: String,
    access_key: String,
    secret_key: String,
    bucket: Option<String>,
}

impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

fn secret(r: &crate::config::SecretRef, what: &str) -> Result<String, String> {
    let v = r.read()?;
    let s = String::from_utf8(v).map_err(|_| format!("s3 {what} is not UTF-8"))?;
    if s.is_empty() {
        return Err(format!("s3 {what} is empty"));
    }
    Ok(s)
}

fn is_bucket_name(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.')
}

impl S3 {
    /// Reads the credentials named by the config.
    pub fn from_config(cfg: &S3Config) -> Result<S3, String> {
        if !cfg!(feature = "s3") {
            return Err("`s3` needs bordergate built with the `s3` feature".into());
        }
        if let Some(b) = &cfg.bucket
            && !is_bucket_name(b)
        {
            return Err(format!(
                "s3 bucket `{}` is not a valid name",
                b.escape_default()
            ));
        }
        if cfg.region.is_empty()
            || !cfg
                .region
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-')
        {
            return Err(format!(
                "s3 region `{}` is not valid",
                cfg.region.escape_default()
            ));
        }
        Ok(S3 {
            region: cfg.region.clone(),
            access_key: secret(&cfg.access_key, "access key")?,
            secret_key: secret(&cfg.secret_key, "secret key")?,
            bucket: cfg.bucket.clone(),
        })
    }

    /// Maps a gateway request to the upstream path and query (relative to the upstream
    /// URL), or says why the request is not one the gateway passes to an object store.
    /// `rest` is the canonical encoded path below the route prefix (`""`, `/`, `/a/b`).
    pub fn map(&self, method: &Method, rest: &str, query: Option<&str>) -> Result<String, String> {
        let (bucket, key) = match &self.bucket {
            Some(b) => (b.as_str(), rest.strip_prefix('/').unwrap_or(rest)),
            None => {
                let r = rest.strip_prefix('/').unwrap_or(rest);
                let (b, k) = r.split_once('/').unwrap_or((r, ""));
                if !is_bucket_name(b) {
                    return Err("the path names no bucket".into());
                }
                (b, k)
            }
        };
        let listing = key.is_empty() || key.ends_with('/');
        if listing {
            if *method != Method::GET {
                return Err(format!(
                    "`{method}` of a key prefix is not supported; GET lists it"
                ));
            }
            let mut q = format!("/{bucket}?list-type=2&prefix={}", key.replace('/', "%2F"));
            for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
                let name = pair.split_once('=').map_or(pair, |(n, _)| n);
                if !LIST_PARAMS.contains(&name) {
                    return Err(format!(
                        "query parameter `{}` is not supported on a listing",
                        name.escape_default()
                    ));
                }
                q.push('&');
                q.push_str(pair);
            }
            return Ok(q);
        }
        if !matches!(*method, Method::GET | Method::HEAD | Method::PUT) {
            return Err(format!("`{method}` is not supported on an object store"));
        }
        if query.is_some_and(|q| !q.is_empty()) {
            return Err("object requests take no query parameters".into());
        }
        Ok(format!("/{bucket}/{key}"))
    }

    /// Where the objects whose keys start with `rest` are in the store, for the gateway's
    /// own ListObjectsV2: the bucket and the key prefix. `rest` is the decoded path below
    /// the route prefix (`""`, `/`, `/eu/cust`). None when it names no bucket: a route to
    /// the store's root (no `s3.bucket`) listed above its second segment, which would take
    /// ListBuckets.
    pub fn key_prefix<'a>(&'a self, rest: &'a str) -> Option<(&'a str, &'a str)> {
        let r = rest.strip_prefix('/').unwrap_or(rest);
        match &self.bucket {
            Some(b) => Some((b.as_str(), r)),
            None => r.split_once('/').filter(|(b, _)| is_bucket_name(b)),
        }
    }

    /// The decoded path below the route prefix of `key` in `bucket`: what
    /// [`S3::key_prefix`] and [`S3::map`] take back to that object.
    pub fn rest_of(&self, bucket: &str, key: &str) -> String {
        match &self.bucket {
            Some(_) => format!("/{key}"),
            None => format!("/{bucket}/{key}"),
        }
    }

    /// The upstream path and query of one ListObjectsV2 page of the keys in `bucket` that
    /// start with `prefix` (all decoded), keys URL-encoded in the answer, after
    /// `start_after` or at the upstream's continuation `token`.
    pub fn list_page(
        bucket: &str,
        prefix: &str,
        start_after: Option<&str>,
        token: Option<&str>,
    ) -> String {
        let enc = crate::s3::verify::encode;
        let mut q = format!(
            "/{}?list-type=2&encoding-type=url&prefix={}",
            enc(bucket),
            enc(prefix)
        );
        if let Some(t) = token {
            q.push_str("&continuation-token=");
            q.push_str(&enc(t));
        } else if let Some(a) = start_after {
            q.push_str("&start-after=");
            q.push_str(&enc(a));
        }
        q
    }

    /// Drops client `x-amz-*` headers from a request about to be signed.
    pub fn strip_client_headers(headers: &mut HeaderMap) {
        let amz: Vec<_> = headers
            .keys()
            .filter(|n| n.as_str().starts_with("x-amz-"))
            .cloned()
            .collect();
        for n in amz {
            headers.remove(&n);
        }
    }

    /// Without the `s3` feature there is nothing to sign with.
    #[cfg(not(feature = "s3"))]
    pub fn sign<B>(
        &self,
        _req: &mut Request<B>,
        _now: std::time::SystemTime,
    ) -> Result<(), String> {
        Err("bordergate was built without the `s3` feature".into())
    }

    /// Signs `req` (its URI already absolute) with SigV4, unsigned payload, and sets `Host`.
    #[cfg(feature = "s3")]
    pub fn sign<B>(&self, req: &mut Request<B>, now: std::time::SystemTime) -> Result<(), String> {
        use aws_sigv4::http_request::{
            PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest,
            SigningSettings, UriPathNormalizationMode, sign,
        };
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().to_string())
            .ok_or("upstream uri has no host")?;
        let hv = HeaderValue::from_str(&host).map_err(|_| "upstream host is not a header value")?;
        req.headers_mut().insert(http::header::HOST, hv);
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let identity = aws_credential_types::Credentials::new(
            &self.access_key,
            &self.secret_key,
            None,
            None,
            "bordergate-config",
        )
        .into();
        let params = aws_sigv4::sign::v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| format!("sigv4 parameters: {e}"))?
            .into();
        let uri = req.uri().to_string();
        let signable = SignableRequest::new(
            req.method().as_str(),
            uri,
            std::iter::once(("host", host.as_str())),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| format!("sigv4: {e}"))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| format!("sigv4: {e}"))?
            .into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SecretRef;

    fn s3(bucket: Option<&str>) -> S3 {
        S3 {
            region: "us-east-1".into(),
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            bucket: bucket.map(str::to_string),
        }
    }

    #[test]
    fn objects_and_listings_map_into_the_bucket() {
        let s = s3(Some("ml-artifacts"));
        assert_eq!(
            s.map(&Method::GET, "/eu/model.bin", None).unwrap(),
            "/ml-artifacts/eu/model.bin"
        );
        assert_eq!(
            s.map(&Method::PUT, "/eu/model.bin", None).unwrap(),
            "/ml-artifacts/eu/model.bin"
        );
        assert_eq!(
            s.map(&Method::GET, "/eu/", Some("max-keys=2")).unwrap(),
            "/ml-artifacts?list-type=2&prefix=eu%2F&max-keys=2"
        );
        let root = s3(None);
        assert_eq!(
            root.map(&Method::HEAD, "/bkt/a/b.txt", None).unwrap(),
            "/bkt/a/b.txt"
        );
        assert_eq!(
            root.map(&Method::GET, "/bkt/", None).unwrap(),
            "/bkt?list-type=2&prefix="
        );
    }

    #[test]
    fn gateway_listings_map_to_bucket_and_key_prefix_and_back() {
        let s = s3(Some("ml-artifacts"));
        assert_eq!(s.key_prefix("/eu/we"), Some(("ml-artifacts", "eu/we")));
        assert_eq!(s.key_prefix("/"), Some(("ml-artifacts", "")));
        assert_eq!(s.key_prefix(""), Some(("ml-artifacts", "")));
        assert_eq!(s.rest_of("ml-artifacts", "eu/w.bin"), "/eu/w.bin");
        let root = s3(None);
        assert_eq!(root.key_prefix("/bkt/a/"), Some(("bkt", "a/")));
        assert_eq!(root.key_prefix("/bkt/"), Some(("bkt", "")));
        // Above a bucket: ListBuckets, which the gateway does not make.
        assert_eq!(root.key_prefix("/bk"), None);
        assert_eq!(root.key_prefix("/"), None);
        assert_eq!(root.key_prefix("/B!/x"), None);
        assert_eq!(root.rest_of("bkt", "a/b"), "/bkt/a/b");
        assert_eq!(
            S3::list_page("bkt", "eu/a b+c", None, None),
            "/bkt?list-type=2&encoding-type=url&prefix=eu%2Fa%20b%2Bc"
        );
        assert_eq!(
            S3::list_page("bkt", "", Some("eu/x"), Some("t/=+")),
            "/bkt?list-type=2&encoding-type=url&prefix=&continuation-token=t%2F%3D%2B"
        );
        assert_eq!(
            S3::list_page("bkt", "", Some("eu/x"), None),
            "/bkt?list-type=2&encoding-type=url&prefix=&start-after=eu%2Fx"
        );
    }

    #[test]
    fn the_rest_of_the_s3_api_is_unreachable() {
        let s = s3(Some("ml-artifacts"));
        assert!(s.map(&Method::GET, "/eu/m.bin", Some("acl")).is_err());
        assert!(s.map(&Method::PUT, "/eu/m.bin", Some("tagging")).is_err());
        assert!(s.map(&Method::POST, "/eu/m.bin", None).is_err());
        assert!(s.map(&Method::GET, "/eu/", Some("prefix=us/")).is_err());
        assert!(s.map(&Method::PUT, "/eu/", None).is_err());
        assert!(s3(None).map(&Method::GET, "/B!/x", None).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "x-amz-copy-source",
            HeaderValue::from_static("other/secret"),
        );
        h.insert("range", HeaderValue::from_static("bytes=0-1"));
        S3::strip_client_headers(&mut h);
        assert!(h.get("x-amz-copy-source").is_none());
        assert!(h.get("range").is_some());
    }

    #[cfg(feature = "s3")]
    #[test]
    fn signs_with_the_aws_test_suite_key() {
        let s = s3(None);
        let mut req = Request::builder()
            .method("GET")
            .uri("http://127.0.0.1:9000/bkt/a%20b.txt")
            .body(())
            .unwrap();
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_440_938_160);
        s.sign(&mut req, t).unwrap();
        let h = req.headers();
        assert_eq!(h["host"], "127.0.0.1:9000");
        assert_eq!(h["x-amz-date"], "20150830T123600Z");
        assert_eq!(h["x-amz-content-sha256"], "UNSIGNED-PAYLOAD");
        let auth = h["authorization"].to_str().unwrap();
        assert!(auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="
        ), "{auth}");
    }

    #[test]
    fn credentials_come_from_secret_refs() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("k");
        std::fs::write(&f, "secret\n").unwrap();
        let cfg = S3Config {
            region: "eu-central-1".into(),
            access_key: SecretRef::File(f.clone()),
            secret_key: SecretRef::File(f),
            bucket: Some("Bad_Bucket".into()),
        };
        assert!(
            S3::from_config(&cfg)
                .unwrap_err()
                .contains("not a valid name")
        );
        let cfg = S3Config {
            bucket: None,
            ..cfg
        };
        let s = S3::from_config(&cfg).unwrap();
        assert_eq!(s.secret_key, "secret");
        assert!(!format!("{s:?}").contains("secret\""));
    }
}
