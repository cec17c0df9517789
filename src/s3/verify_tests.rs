//! Signatures made by the `aws-sigv4` crate (the AWS SDKs' signer), verified by ours.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
    SigningSettings, UriPathNormalizationMode, sign,
};

use super::*;
use crate::model::Country;
use crate::s3::keys::{KeyFile, KeyStore};

const T0: u64 = 1_780_000_000;

fn store() -> (KeyStore, String, String) {
    let s = KeyStore::new(vec![9; 32], KeyFile::default()).unwrap();
    let caller = Caller {
        sub: "pipe".into(),
        org: "acme-de".into(),
        jurisdiction: Country::parse("DE").unwrap(),
        purpose: "training".into(),
        claimed_jurisdiction: None,
    };
    let (rec, secret) = s.issue(&caller, "now").unwrap();
    let id = rec.access_key_id.clone();
    (
        KeyStore::new(vec![9; 32], KeyFile { keys: vec![rec] }).unwrap(),
        id,
        secret,
    )
}

/// Signs `uri` (absolute) as the SDKs do for S3, in the header or the query.
fn signed(
    id: &str,
    secret: &str,
    method: &str,
    uri: &str,
    at: SystemTime,
    presign: Option<Duration>,
) -> Parts {
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    if let Some(e) = presign {
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(e);
        settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    }
    let identity = aws_credential_types::Credentials::new(id, secret, None, None, "t").into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("eu-central-1")
        .name("s3")
        .time(at)
        .settings(settings)
        .build()
        .unwrap()
        .into();
    let mut req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "gw.example:8443")
        .header("range", "bytes=0-3")
        .body(())
        .unwrap();
    let body = if presign.is_some() {
        SignableBody::UnsignedPayload
    } else {
        SignableBody::Bytes(b"")
    };
    let signable = SignableRequest::new(
        method,
        uri,
        req.headers()
            .iter()
            .map(|(n, v)| (n.as_str(), v.to_str().unwrap())),
        body,
    )
    .unwrap();
    let (instructions, _) = sign(signable, &params).unwrap().into_parts();
    instructions.apply_to_request_http1x(&mut req);
    // What reaches the gateway: origin-form.
    let (mut parts, ()) = req.into_parts();
    parts.uri = parts
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    parts
}

fn now(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(secs as i64).unwrap()
}

#[test]
fn header_signatures_of_the_aws_signer_verify() {
    let (keys, id, secret) = store();
    let at = UNIX_EPOCH + Duration::from_secs(T0);
    for uri in [
        "https://gw.example:8443/datasets/eu-customers/customers.csv",
        "https://gw.example:8443/datasets/a%20b/%C3%A9t%C3%A9~x.csv",
        "https://gw.example:8443/datasets?list-type=2&prefix=eu-&delimiter=%2F&encoding-type=url",
        "https://gw.example:8443/datasets?list-type=2&continuation-token=a%2Bb%3D&start-after=x",
    ] {
        let parts = signed(&id, &secret, "GET", uri, at, None);
        assert!(is_s3(&parts));
        let v = verify(Some(&keys), &parts, true, now(T0 + 60))
            .unwrap_or_else(|e| panic!("{uri}: {e}"));
        assert_eq!(v.caller.org, "acme-de");
        assert_eq!(v.access_key_id, id);
    }
    let parts = signed(
        &id,
        &secret,
        "HEAD",
        "https://gw.example:8443/models/m.bin",
        at,
        None,
    );
    assert!(verify(Some(&keys), &parts, true, now(T0)).is_ok());
}

#[test]
fn presigned_urls_of_the_aws_signer_verify_until_they_expire() {
    let (keys, id, secret) = store();
    let at = UNIX_EPOCH + Duration::from_secs(T0);
    let parts = signed(
        &id,
        &secret,
        "GET",
        "https://gw.example:8443/datasets/eu-customers/customers.csv",
        at,
        Some(Duration::from_secs(300)),
    );
    assert!(is_s3(&parts));
    let v = verify(Some(&keys), &parts, true, now(T0 + 299)).unwrap();
    assert_eq!(v.query, None, "the signature's parameters are not routed");
    assert_eq!(
        verify(Some(&keys), &parts, true, now(T0 + 301)).unwrap_err(),
        SignatureError::Expired
    );
    assert_eq!(
        verify(Some(&keys), &parts, true, now(T0 - 16 * 60)).unwrap_err(),
        SignatureError::Skewed
    );
}

#[test]
fn wrong_secrets_keys_times_and_tampering_are_refused() {
    let (keys, id, secret) = store();
    let at = UNIX_EPOCH + Duration::from_secs(T0);
    let uri = "https://gw.example:8443/datasets/eu-customers/customers.csv";
    let bad = signed(&id, "not-the-secret", "GET", uri, at, None);
    let e = verify(Some(&keys), &bad, true, now(T0)).unwrap_err();
    assert_eq!(e.code(), "SignatureDoesNotMatch");
    let unknown = signed("BGK00000000000000000", &secret, "GET", uri, at, None);
    assert_eq!(
        verify(Some(&keys), &unknown, true, now(T0))
            .unwrap_err()
            .code(),
        "InvalidAccessKeyId"
    );
    assert_eq!(
        verify(None, &unknown, true, now(T0)).unwrap_err(),
        SignatureError::NoKeys
    );
    let good = signed(&id, &secret, "GET", uri, at, None);
    assert_eq!(
        verify(Some(&keys), &good, true, now(T0 + 15 * 60 + 1)).unwrap_err(),
        SignatureError::Skewed
    );
    assert_eq!(
        verify(Some(&keys), &good, true, now(T0 - 15 * 60 - 1)).unwrap_err(),
        SignatureError::Skewed
    );
    // Another path, another range: the signature no longer matches.
    let mut other = good.clone();
    other.uri = "/datasets/eu-clinical/records.csv".parse().unwrap();
    assert_eq!(
        verify(Some(&keys), &other, true, now(T0)).unwrap_err(),
        SignatureError::Mismatch
    );
    let mut other = good.clone();
    other
        .headers
        .insert("range", http::HeaderValue::from_static("bytes=0-99"));
    assert_eq!(
        verify(Some(&keys), &other, true, now(T0)).unwrap_err(),
        SignatureError::Mismatch
    );
    // Writes and bodies are not part of the S3 API the gateway answers.
    assert_eq!(
        verify(Some(&keys), &good, false, now(T0))
            .unwrap_err()
            .code(),
        "NotImplemented"
    );
    let mut sigv2 = good;
    sigv2.headers.insert(
        "authorization",
        http::HeaderValue::from_static("AWS AKID:c2lnbmF0dXJl"),
    );
    assert!(is_s3(&sigv2));
    assert_eq!(
        verify(Some(&keys), &sigv2, true, now(T0))
            .unwrap_err()
            .code(),
        "NotImplemented"
    );
}

#[test]
fn the_routed_query_drops_the_signature_and_the_operation_marker() {
    assert_eq!(
        routed_query(Some(
            "X-Amz-Algorithm=a&x-id=GetObject&list-type=2&X-Amz-Signature=s"
        )),
        Some("list-type=2".into())
    );
    assert_eq!(routed_query(Some("x-id=GetObject")), None);
    assert_eq!(canonical_uri("/a%2Fb/c d").unwrap(), "/a%2Fb/c%20d");
}
