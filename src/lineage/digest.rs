//! Content digests: the SHA-256 digests uploads declare and downloads name, read from the
//! headers clients and registries actually send, and the streaming check of an upload's
//! bytes against the digest it declared.
//!
//! Read on an upload (all must agree, else 400):
//! - `Content-Digest: sha-256=:<base64>:` (RFC 9530) — the bytes of the body as sent;
//! - `Repr-Digest: sha-256=:<base64>:` (RFC 9530) — the representation; it is the body's
//!   digest only without `Content-Encoding`, so with one it names the artifact but is not
//!   checked against the bytes;
//! - `x-amz-content-sha256: <hex>` (S3 SigV4 clients: the AWS CLI, boto3, rclone);
//!   `UNSIGNED-PAYLOAD` and the `STREAMING-…` forms declare nothing;
//! - a Git LFS object path `…/objects/<64 hex>` (the basic transfer adapter's default
//!   `href`): the oid is the SHA-256 of the object.
//!
//! Read on a download's response (a malformed one names nothing; the path's decision
//! stands): a strong `ETag` or `X-Linked-Etag` (Hugging Face's LFS files) of 64 hex
//! digits, `Content-Digest`/`Repr-Digest` `sha-256`, `x-amz-checksum-sha256` (base64).
//! Other algorithms (`sha-512`, MD5 ETags) are ignored: the catalog lists SHA-256 only.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::proxy::BoxError;

/// A SHA-256 content digest.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub [u8; 32]);

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

impl std::fmt::Display for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{}", hex::encode(self.0))
    }
}

impl Sha256 {
    /// The catalog's form: `sha256:` and 64 hex digits.
    pub fn parse(s: &str) -> Result<Sha256, String> {
        let hexpart = s.strip_prefix("sha256:").ok_or_else(|| {
            format!(
                "digest `{}` is not `sha256:` and 64 hex digits",
                s.escape_default()
            )
        })?;
        Sha256::from_hex(hexpart).ok_or_else(|| {
            format!(
                "digest `{}` is not `sha256:` and 64 hex digits",
                s.escape_default()
            )
        })
    }

    fn from_hex(s: &str) -> Option<Sha256> {
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).ok()?;
        Some(Sha256(out))
    }

    fn from_b64(s: &str) -> Option<Sha256> {
        let v = base64::engine::general_purpose::STANDARD.decode(s).ok()?;
        <[u8; 32]>::try_from(v.as_slice()).ok().map(Sha256)
    }
}

/// The `sha-256` member of an RFC 9530 digest field. `Ok(None)`: the field names other
/// algorithms only; `Err`: it cannot be read.
fn rfc9530_sha256(v: &str) -> Result<Option<Sha256>, ()> {
    let mut found = None;
    for member in v.split(',') {
        let (key, value) = member.trim().split_once('=').ok_or(())?;
        if !key.trim().eq_ignore_ascii_case("sha-256") {
            continue;
        }
        // A byte sequence `:base64:`, possibly followed by parameters.
        let value = value.trim();
        let inner = value.strip_prefix(':').ok_or(())?;
        let end = inner.find(':').ok_or(())?;
        let rest = &inner[end + 1..];
        if !(rest.is_empty() || rest.starts_with(';')) {
            return Err(());
        }
        let d = Sha256::from_b64(&inner[..end]).ok_or(())?;
        if found.is_some_and(|f| f != d) {
            return Err(());
        }
        found = Some(d);
    }
    Ok(found)
}

/// What an upload declares about its content.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Declared {
    /// The digest the body's bytes must have (checked while streaming).
    pub body: Option<Sha256>,
    /// Every digest declared (the body's and the representation's), matched against the
    /// catalog's known artifacts.
    pub all: Vec<Sha256>,
}

/// Reads the digests an upload declares in `headers` and its (decoded) `path`. Any two
/// body digests that disagree, or a field that cannot be read, is an error (400).
pub fn declared(headers: &HeaderMap, path: &str) -> Result<Declared, String> {
    let mut d = Declared::default();
    let encoded = headers.contains_key(http::header::CONTENT_ENCODING);
    let body = |d: &mut Declared, x: Sha256, what: &str| -> Result<(), String> {
        if d.body.is_some_and(|b| b != x) {
            return Err(format!(
                "the upload declares two different content digests ({what} disagrees)"
            ));
        }
        d.body = Some(x);
        if !d.all.contains(&x) {
            d.all.push(x);
        }
        Ok(())
    };
    for name in ["content-digest", "repr-digest"] {
        for v in headers.get_all(name) {
            let s = v
                .to_str()
                .map_err(|_| format!("the `{name}` header is not visible ASCII"))?;
            let x = rfc9530_sha256(s)
                .map_err(|()| format!("the `{name}` header is not an RFC 9530 digest"))?;
            let Some(x) = x else { continue };
            if name == "repr-digest" && encoded {
                if !d.all.contains(&x) {
                    d.all.push(x);
                }
            } else {
                body(&mut d, x, name)?;
            }
        }
    }
    for v in headers.get_all("x-amz-content-sha256") {
        let s = v
            .to_str()
            .map_err(|_| "the `x-amz-content-sha256` header is not visible ASCII".to_string())?;
        if s == "UNSIGNED-PAYLOAD" || s.starts_with("STREAMING-") {
            continue;
        }
        let x = Sha256::from_hex(s)
            .ok_or_else(|| "the `x-amz-content-sha256` header is not 64 hex digits".to_string())?;
        body(&mut d, x, "x-amz-content-sha256")?;
    }
    if let Some(x) = lfs_oid(path) {
        body(&mut d, x, "the Git LFS oid in the path")?;
    }
    Ok(d)
}

/// The oid of a Git LFS object path (`…/objects/<64 hex>`).
fn lfs_oid(path: &str) -> Option<Sha256> {
    let mut segs = path.rsplit('/');
    let oid = segs.next()?;
    (segs.next()? == "objects").then_some(())?;
    Sha256::from_hex(oid)
}

/// The SHA-256 digests a download's response names (see the module doc); unreadable
/// values name nothing.
pub fn of_response(headers: &HeaderMap, status: http::StatusCode) -> Vec<Sha256> {
    let mut out = Vec::new();
    let mut add = |x: Option<Sha256>| {
        if let Some(x) = x
            && !out.contains(&x)
        {
            out.push(x);
        }
    };
    for name in ["etag", "x-linked-etag"] {
        for v in headers.get_all(name) {
            let s = v.to_str().unwrap_or_default().trim();
            add(s
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .and_then(Sha256::from_hex));
        }
    }
    // A partial body's content digest is of the part, not of the artifact.
    let names: &[&str] = if status == http::StatusCode::OK {
        &["content-digest", "repr-digest"]
    } else {
        &["repr-digest"]
    };
    for name in names {
        for v in headers.get_all(*name) {
            add(v
                .to_str()
                .ok()
                .and_then(|s| rfc9530_sha256(s).ok().flatten()));
        }
    }
    for v in headers.get_all("x-amz-checksum-sha256") {
        add(v.to_str().ok().and_then(|s| Sha256::from_b64(s.trim())));
    }
    out
}

/// Why an upload's body was cut: its bytes do not have the digest it declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mismatch {
    pub declared: Sha256,
    pub computed: Sha256,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the upload's body has digest {} but declared {}; the upstream body was cut before its end",
            self.computed, self.declared
        )
    }
}

impl std::error::Error for Mismatch {}

/// Called with the digest of a whole upload body, before its end reaches the upstream; an
/// error cuts the body (a known artifact whose tags refuse the upload).
pub type KnownCheck = Box<dyn FnOnce(Sha256) -> Result<(), BoxError> + Send + Sync>;

/// What the digest of a whole upload body is checked against.
#[derive(Default)]
pub struct Expect {
    /// The digest the upload declared, and where a mismatch is noted.
    pub declared: Option<(Sha256, Arc<OnceLock<Mismatch>>)>,
    /// The check of the digest against the catalog's known artifacts.
    pub known: Option<KnownCheck>,
}

impl Expect {
    /// True when there is nothing to check (the body need not be hashed).
    pub fn is_empty(&self) -> bool {
        self.declared.is_none() && self.known.is_none()
    }
}

/// A request body that hashes its bytes as they stream and, when they do not have the
/// declared digest (or are a known artifact the upload may not carry), yields an error
/// instead of its last frame (or of its end), so the receiver never sees a complete body.
/// One frame at most is in hand at any time: nothing is buffered beyond what the inner
/// body yields.
pub struct Verified<B> {
    inner: B,
    expect: Expect,
    ctx: Option<aws_lc_rs::digest::Context>,
    /// The body's length, when it declared one, and the bytes seen: the frame that
    /// reaches it is the last, even if the end of the stream comes in a frame of its own.
    length: Option<u64>,
    seen: u64,
}

impl<B> Verified<B> {
    /// Checks `inner` against the `declared` digest; a mismatch is noted in `mismatch`.
    pub fn new(inner: B, declared: Sha256, mismatch: Arc<OnceLock<Mismatch>>) -> Self
    where
        B: Body,
    {
        Verified::with(
            inner,
            Expect {
                declared: Some((declared, mismatch)),
                known: None,
            },
        )
    }

    /// Checks `inner` against `expect`.
    pub fn with(inner: B, expect: Expect) -> Self
    where
        B: Body,
    {
        Verified {
            length: inner.size_hint().exact(),
            seen: 0,
            inner,
            expect,
            ctx: Some(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256)),
        }
    }

    /// Finishes the digest; an error when it is not the declared one, or the known check
    /// refuses it.
    fn check(&mut self) -> Result<(), BoxError> {
        let Some(ctx) = self.ctx.take() else {
            return Ok(());
        };
        let d = ctx.finish();
        let mut computed = [0u8; 32];
        computed.copy_from_slice(d.as_ref());
        let computed = Sha256(computed);
        if let Some((declared, cell)) = &self.expect.declared
            && *declared != computed
        {
            let m = Mismatch {
                declared: *declared,
                computed,
            };
            let _ = cell.set(m.clone());
            return Err(Box::new(m));
        }
        match self.expect.known.take() {
            Some(k) => k(computed),
            None => Ok(()),
        }
    }
}

impl<B> Body for Verified<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(d), Some(ctx)) = (frame.data_ref(), this.ctx.as_mut()) {
                    ctx.update(d);
                    this.seen += d.len() as u64;
                }
                if this.inner.is_end_stream() || this.length == Some(this.seen) {
                    this.check()?;
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => match this.check() {
                Ok(()) => Poll::Ready(None),
                Err(e) => Poll::Ready(Some(Err(e))),
            },
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        // Not ended until the digest is checked.
        self.ctx.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    fn sha(b: &[u8]) -> Sha256 {
        let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, b);
        Sha256(d.as_ref().try_into().unwrap())
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn catalog_form_parses_and_prints() {
        let d = sha(b"x");
        assert_eq!(Sha256::parse(&d.to_string()).unwrap(), d);
        assert!(Sha256::parse("sha256:abc").is_err());
        assert!(Sha256::parse(&hex::encode(d.0)).is_err());
    }

    #[test]
    fn uploads_declare_in_the_headers_clients_send() {
        let d = sha(b"weights");
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.0);
        let hexd = hex::encode(d.0);
        let cd = format!("sha-512=:AAAA:, sha-256=:{b64}:");
        let got = declared(&headers(&[("content-digest", &cd)]), "/m").unwrap();
        assert_eq!((got.body, got.all), (Some(d), vec![d]));
        let got = declared(&headers(&[("x-amz-content-sha256", &hexd)]), "/m").unwrap();
        assert_eq!(got.body, Some(d));
        let got = declared(
            &headers(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]),
            "/m",
        )
        .unwrap();
        assert_eq!(got, Declared::default());
        let got = declared(&HeaderMap::new(), &format!("/lfs/objects/{hexd}")).unwrap();
        assert_eq!(got.body, Some(d));
        // A representation digest under a content encoding names the artifact only.
        let rd = format!("sha-256=:{b64}:");
        let got = declared(
            &headers(&[("repr-digest", &rd), ("content-encoding", "gzip")]),
            "/m",
        )
        .unwrap();
        assert_eq!((got.body, got.all), (None, vec![d]));
        // Disagreeing or unreadable declarations are refused.
        let other = hex::encode(sha(b"other").0);
        assert!(
            declared(
                &headers(&[("content-digest", &cd), ("x-amz-content-sha256", &other)]),
                "/m"
            )
            .is_err()
        );
        assert!(declared(&headers(&[("content-digest", "sha-256=abc")]), "/m").is_err());
        assert!(declared(&headers(&[("x-amz-content-sha256", "zz")]), "/m").is_err());
    }

    #[test]
    fn responses_name_digests_in_etags_and_digest_fields() {
        let d = sha(b"weights");
        let hexd = hex::encode(d.0);
        let q = format!("\"{hexd}\"");
        assert_eq!(
            of_response(&headers(&[("x-linked-etag", &q)]), http::StatusCode::OK),
            vec![d]
        );
        assert_eq!(
            of_response(&headers(&[("etag", &q)]), http::StatusCode::OK),
            vec![d]
        );
        // An MD5 ETag, a weak one, or junk names nothing.
        let weak = format!("W/{q}");
        assert!(
            of_response(
                &headers(&[
                    ("etag", "\"9e107d9d372bb6826bd81d3542a419d6\""),
                    ("x-linked-etag", &weak),
                    ("content-digest", "sha-256=junk")
                ]),
                http::StatusCode::OK
            )
            .is_empty()
        );
        let b64 = base64::engine::general_purpose::STANDARD.encode(d.0);
        let cd = format!("sha-256=:{b64}:");
        assert!(
            of_response(
                &headers(&[("content-digest", &cd)]),
                http::StatusCode::PARTIAL_CONTENT
            )
            .is_empty()
        );
        assert_eq!(
            of_response(
                &headers(&[("x-amz-checksum-sha256", &b64)]),
                http::StatusCode::OK
            ),
            vec![d]
        );
    }

    type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

    fn stream(frames: Frames) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    #[tokio::test]
    async fn a_matching_body_passes_whole() {
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"wei"))),
            Ok(Frame::data(Bytes::from_static(b"ghts"))),
        ];
        let cell = Arc::new(OnceLock::new());
        let got = Verified::new(stream(frames), sha(b"weights"), cell.clone())
            .collect()
            .await
            .unwrap();
        assert_eq!(got.to_bytes().as_ref(), b"weights");
        assert!(cell.get().is_none());
    }

    #[tokio::test]
    async fn a_mismatching_body_fails_before_its_end() {
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"wei"))),
            Ok(Frame::data(Bytes::from_static(b"ghtz"))),
        ];
        let cell = Arc::new(OnceLock::new());
        let mut b = Verified::new(stream(frames), sha(b"weights"), cell.clone());
        let mut seen = Vec::new();
        let mut failed = false;
        while let Some(f) = b.frame().await {
            match f {
                Ok(f) => seen.extend_from_slice(f.data_ref().unwrap()),
                Err(e) => {
                    assert!(e.to_string().contains("cut before its end"), "{e}");
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed);
        assert_eq!(cell.get().unwrap().computed, sha(b"weightz"));
        // A body that knows its length: the last frame itself is withheld.
        let cell = Arc::new(OnceLock::new());
        let mut b = Verified::new(
            http_body_util::Full::new(Bytes::from_static(b"weightz")),
            sha(b"weights"),
            cell.clone(),
        );
        assert!(b.frame().await.unwrap().is_err());
        assert!(cell.get().is_some());
    }

    #[tokio::test]
    async fn a_known_check_sees_the_digest_and_can_cut_the_body() {
        let seen = Arc::new(OnceLock::new());
        let s2 = seen.clone();
        let known: KnownCheck = Box::new(move |d| {
            let _ = s2.set(d);
            Err("a known artifact".into())
        });
        let expect = Expect {
            declared: None,
            known: Some(known),
        };
        let mut b = Verified::with(
            http_body_util::Full::new(Bytes::from_static(b"weights")),
            expect,
        );
        assert!(b.frame().await.unwrap().is_err());
        assert_eq!(seen.get(), Some(&sha(b"weights")));
    }

    /// A body of known length whose end comes after its last data frame (an h2 client
    /// sending END_STREAM on its own): the last data frame is still withheld.
    #[tokio::test]
    async fn a_body_of_known_length_is_checked_on_its_last_byte() {
        struct Sized<B>(B, u64);
        impl<B: Body<Data = Bytes, Error = BoxError> + Unpin> Body for Sized<B> {
            type Data = Bytes;
            type Error = BoxError;
            fn poll_frame(
                mut self: Pin<&mut Self>,
                cx: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
                Pin::new(&mut self.0).poll_frame(cx)
            }
            fn size_hint(&self) -> SizeHint {
                SizeHint::with_exact(self.1)
            }
        }
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"wei"))),
            Ok(Frame::data(Bytes::from_static(b"ghtz"))),
        ];
        let cell = Arc::new(OnceLock::new());
        let mut b = Verified::new(Sized(stream(frames), 7), sha(b"weights"), cell.clone());
        assert_eq!(
            b.frame().await.unwrap().unwrap().into_data().unwrap(),
            "wei"
        );
        assert!(
            b.frame().await.unwrap().is_err(),
            "the last frame is withheld"
        );
    }
}
