//! AWS Signature Version 4 on inbound S3 requests: the `Authorization` header form and
//! presigned URLs (`X-Amz-*` query), verified against the gateway's access keys.
//!
//! The canonical request follows the AWS specification for S3: the path as sent, each
//! segment decoded and encoded once again (no dot-segment normalisation), the query
//! decoded, encoded and sorted, the signed headers lower-cased with trimmed values, and the
//! payload hash from `x-amz-content-sha256` (a presigned URL is `UNSIGNED-PAYLOAD`). The
//! S3 API the gateway answers is read-only, so a payload must be empty or unsigned;
//! `STREAMING-*` (chunked uploads) is not implemented. Signatures are compared in constant
//! time (`aws_lc_rs::hmac::verify`); a header-signed request may be at most 15 minutes off
//! the gateway's clock, and a presigned URL is valid from 15 minutes before its
//! `X-Amz-Date` until `X-Amz-Expires` (at most 7 days) after it.

use http::HeaderMap;
use http::request::Parts;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use time::OffsetDateTime;

use super::keys::{KeyError, KeyStore};
use crate::model::Caller;

/// The only algorithm.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// Most a request's clock may be off the gateway's.
pub const MAX_SKEW_SECS: i64 = 15 * 60;
/// Longest presigned URL lifetime (S3's: 7 days).
pub const MAX_EXPIRES_SECS: i64 = 7 * 24 * 60 * 60;
/// SHA-256 of nothing.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// Characters SigV4 leaves unencoded: `A-Z a-z 0-9 - . _ ~`.
const ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Why an S3 request's signature is not accepted; each has its S3 error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the request's signature is malformed: {0}")]
    Malformed(String),
    #[error("{0}")]
    Key(KeyError),
    #[error("this gateway issues no S3 access keys (`auth.s3_keys` is not configured)")]
    NoKeys,
    #[error(
        "the request signature we calculated does not match the signature you provided; check your secret access key and signing method"
    )]
    Mismatch,
    #[error(
        "the difference between the request time and the gateway's time is more than 15 minutes"
    )]
    Skewed,
    #[error("request has expired")]
    Expired,
    #[error("the provided `x-amz-content-sha256` does not match a request without a body")]
    ContentSha256,
    #[error("{0}")]
    NotImplemented(String),
}

impl SignatureError {
    /// The S3 error code.
    pub fn code(&self) -> &'static str {
        match self {
            SignatureError::Malformed(_) => "AuthorizationHeaderMalformed",
            SignatureError::Key(_) | SignatureError::NoKeys => "InvalidAccessKeyId",
            SignatureError::Mismatch => "SignatureDoesNotMatch",
            SignatureError::Skewed => "RequestTimeTooSkewed",
            SignatureError::Expired => "AccessDenied",
            SignatureError::ContentSha256 => "XAmzContentSHA256Mismatch",
            SignatureError::NotImplemented(_) => "NotImplemented",
        }
    }
}

/// A verified request: who signed it, with which key, and its query without the
/// signature's parameters (what the request asks of the object store).
#[derive(Debug, Clone)]
pub struct Verified {
    pub caller: Caller,
    pub access_key_id: String,
    pub query: Option<String>,
}

/// Whether a request is signed the S3 way (and so answered in S3's XML).
pub fn is_s3(parts: &Parts) -> bool {
    let auth = parts
        .headers
        .get(http::header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    auth.is_some_and(|a| a.starts_with(b"AWS4-") || a.starts_with(b"AWS "))
        || query_pairs(parts.uri.query())
            .any(|(n, _)| n.eq_ignore_ascii_case("X-Amz-Algorithm") || n == "AWSAccessKeyId")
}

/// The raw `name=value` pairs of a query, undecoded.
fn query_pairs(q: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

fn decode(s: &str) -> Result<String, SignatureError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| SignatureError::Malformed("the request target is not UTF-8".into()))
}

/// A value as SigV4's canonical query writes it: all but `A-Z a-z 0-9 - . _ ~` escaped.
pub fn encode(s: &str) -> String {
    utf8_percent_encode(s, ENCODE).to_string()
}

/// The canonical URI: each segment of the raw path decoded and encoded once.
fn canonical_uri(raw_path: &str) -> Result<String, SignatureError> {
    let mut out = Vec::new();
    for seg in raw_path.split('/') {
        out.push(encode(&decode(seg)?));
    }
    let uri = out.join("/");
    Ok(if uri.is_empty() { "/".into() } else { uri })
}

/// The canonical query string, leaving out `X-Amz-Signature`.
fn canonical_query(q: Option<&str>) -> Result<String, SignatureError> {
    let mut pairs = Vec::new();
    for (n, v) in query_pairs(q) {
        let n = decode(n)?;
        if n == "X-Amz-Signature" {
            continue;
        }
        pairs.push((encode(&n), encode(&decode(v)?)));
    }
    pairs.sort();
    Ok(pairs
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&"))
}

/// The query left for the object store: without the signature's `X-Amz-*` parameters and
/// the SDKs' `x-id` operation marker.
fn routed_query(q: Option<&str>) -> Option<String> {
    let kept: Vec<&str> = q
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let n = p.split_once('=').map_or(*p, |(n, _)| n);
            !(n.len() >= 6 && n[..6].eq_ignore_ascii_case("x-amz-")) && n != "x-id"
        })
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

fn header_value(headers: &HeaderMap, name: &str) -> Result<Option<String>, SignatureError> {
    let mut vals = Vec::new();
    for v in headers.get_all(name) {
        let s = v.to_str().map_err(|_| {
            SignatureError::Malformed(format!("the signed header `{name}` is not visible ASCII"))
        })?;
        vals.push(s.split_whitespace().collect::<Vec<_>>().join(" "));
    }
    Ok((!vals.is_empty()).then(|| vals.join(",")))
}

fn canonical_headers(parts: &Parts, signed: &[&str]) -> Result<String, SignatureError> {
    let mut out = String::new();
    for name in signed {
        let value = match header_value(&parts.headers, name)? {
            Some(v) => v,
            // HTTP/2 carries the host as `:authority`.
            None if *name == "host" => parts
                .uri
                .authority()
                .map(|a| a.as_str().to_string())
                .ok_or_else(|| SignatureError::Malformed("the request has no host".into()))?,
            None => {
                return Err(SignatureError::Malformed(format!(
                    "the signed header `{name}` is not in the request"
                )));
            }
        };
        out.push_str(name);
        out.push(':');
        out.push_str(&value);
        out.push('\n');
    }
    Ok(out)
}

fn hmac(key: &[u8], data: &[u8]) -> aws_lc_rs::hmac::Tag {
    aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        data,
    )
}

fn sha256_hex(s: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes()).as_ref())
}

/// The parts of a signature, from either form.
struct Signed {
    access_key_id: String,
    date: String,
    region: String,
    signed_headers: Vec<String>,
    signature: Vec<u8>,
    amz_date: String,
    payload: String,
    /// Presigned URLs: seconds valid after `amz_date`.
    expires: Option<i64>,
}

fn credential(c: &str) -> Result<(String, String, String), SignatureError> {
    let bad = || SignatureError::Malformed(format!("credential `{}`", c.escape_default()));
    let parts: Vec<&str> = c.split('/').collect();
    let [id, date, region, service, term] = parts[..] else {
        return Err(bad());
    };
    if service != "s3" || term != "aws4_request" || id.is_empty() || region.is_empty() {
        return Err(bad());
    }
    Ok((id.to_string(), date.to_string(), region.to_string()))
}

fn signature_hex(s: &str) -> Result<Vec<u8>, SignatureError> {
    if s.len() != 64 {
        return Err(SignatureError::Malformed(
            "the signature is not 64 hex digits".into(),
        ));
    }
    hex::decode(s).map_err(|_| SignatureError::Malformed("the signature is not hex".into()))
}

fn signed_headers(s: &str) -> Result<Vec<String>, SignatureError> {
    let v: Vec<String> = s.split(';').map(str::to_string).collect();
    if !v.iter().any(|h| h == "host")
        || v.iter()
            .any(|h| h.is_empty() || h.bytes().any(|b| b.is_ascii_uppercase()))
    {
        return Err(SignatureError::Malformed(
            "the signed headers must be lower case and include `host`".into(),
        ));
    }
    Ok(v)
}

fn from_header(parts: &Parts, auth: &str) -> Result<Signed, SignatureError> {
    let rest = auth
        .strip_prefix(ALGORITHM)
        .and_then(|r| r.strip_prefix(' '))
        .ok_or_else(|| {
            SignatureError::NotImplemented(
                "only AWS4-HMAC-SHA256 signatures are accepted (not Signature Version 2)".into(),
            )
        })?;
    let (mut cred, mut sh, mut sig) = (None, None, None);
    for field in rest.split(',') {
        match field.trim().split_once('=') {
            Some(("Credential", v)) => cred = Some(v),
            Some(("SignedHeaders", v)) => sh = Some(v),
            Some(("Signature", v)) => sig = Some(v),
            _ => {
                return Err(SignatureError::Malformed(
                    "unknown authorization field".into(),
                ));
            }
        }
    }
    let (Some(cred), Some(sh), Some(sig)) = (cred, sh, sig) else {
        return Err(SignatureError::Malformed(
            "the authorization header needs Credential, SignedHeaders and Signature".into(),
        ));
    };
    let (access_key_id, date, region) = credential(cred)?;
    let one = |name: &str| -> Result<String, SignatureError> {
        let mut vals = parts.headers.get_all(name).iter();
        match (vals.next(), vals.next()) {
            (Some(v), None) => v
                .to_str()
                .map(str::to_string)
                .map_err(|_| SignatureError::Malformed(format!("`{name}` is not ASCII"))),
            _ => Err(SignatureError::Malformed(format!(
                "the request needs exactly one `{name}` header"
            ))),
        }
    };
    let signed_headers = signed_headers(sh)?;
    if !signed_headers.iter().any(|h| h == "x-amz-date") {
        return Err(SignatureError::Malformed(
            "`x-amz-date` must be signed".into(),
        ));
    }
    Ok(Signed {
        access_key_id,
        date,
        region,
        signed_headers,
        signature: signature_hex(sig)?,
        amz_date: one("x-amz-date")?,
        payload: one("x-amz-content-sha256")?,
        expires: None,
    })
}

fn from_query(parts: &Parts) -> Result<Signed, SignatureError> {
    let get = |want: &str| -> Result<String, SignatureError> {
        let mut found = query_pairs(parts.uri.query()).filter(|(n, _)| *n == want);
        match (found.next(), found.next()) {
            (Some((_, v)), None) => decode(v),
            _ => Err(SignatureError::Malformed(format!(
                "the presigned URL needs exactly one `{want}`"
            ))),
        }
    };
    if get("X-Amz-Algorithm")? != ALGORITHM {
        return Err(SignatureError::NotImplemented(
            "only AWS4-HMAC-SHA256 signatures are accepted".into(),
        ));
    }
    let expires: i64 = get("X-Amz-Expires")?
        .parse()
        .ok()
        .filter(|e| (1..=MAX_EXPIRES_SECS).contains(e))
        .ok_or_else(|| {
            SignatureError::Malformed("`X-Amz-Expires` must be 1 to 604800 seconds".into())
        })?;
    let (access_key_id, date, region) = credential(&get("X-Amz-Credential")?)?;
    // A presigned URL's payload is unsigned unless the client signed a hash header.
    let payload = match header_value(&parts.headers, "x-amz-content-sha256")? {
        Some(p) => p,
        None => "UNSIGNED-PAYLOAD".into(),
    };
    Ok(Signed {
        access_key_id,
        date,
        region,
        signed_headers: signed_headers(&get("X-Amz-SignedHeaders")?)?,
        signature: signature_hex(&get("X-Amz-Signature")?)?,
        amz_date: get("X-Amz-Date")?,
        payload,
        expires: Some(expires),
    })
}

fn parse_amz_date(s: &str) -> Result<OffsetDateTime, SignatureError> {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::PrimitiveDateTime::parse(s, f)
        .map(|t| t.assume_utc())
        .map_err(|_| SignatureError::Malformed(format!("`x-amz-date` `{}`", s.escape_default())))
}

/// Verifies the signature of an S3 request (see [`is_s3`]) against `keys` as of `now`.
/// `body_empty` says the request carries no body.
pub fn verify(
    keys: Option<&KeyStore>,
    parts: &Parts,
    body_empty: bool,
    now: OffsetDateTime,
) -> Result<Verified, SignatureError> {
    let mut auth = parts.headers.get_all(http::header::AUTHORIZATION).iter();
    let signed = match (auth.next(), auth.next()) {
        (Some(a), None) => {
            if query_pairs(parts.uri.query()).any(|(n, _)| n == "X-Amz-Algorithm") {
                return Err(SignatureError::Malformed(
                    "a request is signed in its header or its query, not both".into(),
                ));
            }
            let a = a.to_str().map_err(|_| {
                SignatureError::Malformed("the authorization header is not ASCII".into())
            })?;
            from_header(parts, a)?
        }
        (None, _) if query_pairs(parts.uri.query()).any(|(n, _)| n == "AWSAccessKeyId") => {
            return Err(SignatureError::NotImplemented(
                "Signature Version 2 presigned URLs are not accepted; presign with Signature Version 4 (boto3: `Config(signature_version=\"s3v4\")`)".into(),
            ));
        }
        (None, _) => from_query(parts)?,
        _ => {
            return Err(SignatureError::Malformed(
                "more than one authorization header".into(),
            ));
        }
    };
    if !matches!(parts.method, http::Method::GET | http::Method::HEAD) || !body_empty {
        return Err(SignatureError::NotImplemented(
            "the gateway's S3 API is read-only: GetObject, HeadObject, ListObjectsV2".into(),
        ));
    }
    if signed.payload.starts_with("STREAMING-") {
        return Err(SignatureError::NotImplemented(
            "chunked (`STREAMING-*`) payloads are not implemented".into(),
        ));
    }
    if signed.payload != "UNSIGNED-PAYLOAD" && signed.payload != EMPTY_SHA256 {
        return Err(SignatureError::ContentSha256);
    }
    // Time before key: a stale request learns nothing about which keys exist.
    let at = parse_amz_date(&signed.amz_date)?;
    if !signed.amz_date.starts_with(&signed.date) {
        return Err(SignatureError::Malformed(
            "the credential's date is not the request's".into(),
        ));
    }
    let age = (now - at).whole_seconds();
    match signed.expires {
        None if age.abs() > MAX_SKEW_SECS => return Err(SignatureError::Skewed),
        Some(_) if age < -MAX_SKEW_SECS => return Err(SignatureError::Skewed),
        Some(e) if age > e => return Err(SignatureError::Expired),
        _ => {}
    }
    let keys = keys.ok_or(SignatureError::NoKeys)?;
    let (caller, secret) = keys
        .lookup(&signed.access_key_id)
        .map_err(SignatureError::Key)?;
    let names: Vec<&str> = signed.signed_headers.iter().map(String::as_str).collect();
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        parts.method.as_str(),
        canonical_uri(parts.uri.path())?,
        canonical_query(parts.uri.query())?,
        canonical_headers(parts, &names)?,
        names.join(";"),
        signed.payload
    );
    let scope = format!("{}/{}/s3/aws4_request", signed.date, signed.region);
    let to_sign = format!(
        "{ALGORITHM}\n{}\n{scope}\n{}",
        signed.amz_date,
        sha256_hex(&canonical)
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), signed.date.as_bytes());
    let k = hmac(k.as_ref(), signed.region.as_bytes());
    let k = hmac(k.as_ref(), b"s3");
    let k = hmac(k.as_ref(), b"aws4_request");
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, k.as_ref());
    aws_lc_rs::hmac::verify(&key, to_sign.as_bytes(), &signed.signature)
        .map_err(|_| SignatureError::Mismatch)?;
    Ok(Verified {
        caller: caller.clone(),
        access_key_id: signed.access_key_id,
        query: routed_query(parts.uri.query()),
    })
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
