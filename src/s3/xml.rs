//! S3's XML documents: `ListBucketResult` (ListObjectsV2) written for the gateway's
//! listings and read from S3-compatible upstreams, and `Error`.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use serde::Deserialize;

use super::list::{Object, Page, Params};

const DECL: &str = r#"<?xml version="1.0" encoding="UTF-8"?>"#;
const NS: &str = "http://s3.amazonaws.com/doc/2006-03-01/";

/// What `encoding-type=url` leaves unencoded (S3 keeps `/` as it is).
const URL_KEEP: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Not representable in XML 1.0.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {
                let _ = write!(out, "&#x{:x};", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

fn el(out: &mut String, name: &str, text: &str) {
    let _ = write!(out, "<{name}>{}</{name}>", escape(text));
}

/// The `ListBucketResult` of one page.
pub fn list_result(bucket: &str, p: &Params, page: &Page) -> String {
    let enc = |s: &str| {
        if p.url_encoded {
            utf8_percent_encode(s, URL_KEEP).to_string()
        } else {
            s.to_string()
        }
    };
    let mut out = format!("{DECL}\n<ListBucketResult xmlns=\"{NS}\">");
    el(&mut out, "Name", bucket);
    el(&mut out, "Prefix", &enc(&p.prefix));
    if let Some(d) = &p.delimiter {
        el(&mut out, "Delimiter", &enc(d));
    }
    el(&mut out, "MaxKeys", &p.max_keys.to_string());
    if p.url_encoded {
        el(&mut out, "EncodingType", "url");
    }
    el(&mut out, "KeyCount", &page.key_count().to_string());
    el(
        &mut out,
        "IsTruncated",
        if page.is_truncated { "true" } else { "false" },
    );
    if let Some(t) = &p.continuation_token {
        el(&mut out, "ContinuationToken", t);
    }
    if let Some(t) = &page.next_continuation_token {
        el(&mut out, "NextContinuationToken", t);
    }
    if let Some(s) = &p.start_after {
        el(&mut out, "StartAfter", &enc(s));
    }
    for o in &page.contents {
        out.push_str("<Contents>");
        el(&mut out, "Key", &enc(&o.key));
        el(&mut out, "LastModified", &o.last_modified);
        el(&mut out, "ETag", &o.etag);
        el(&mut out, "Size", &o.size.to_string());
        el(&mut out, "StorageClass", "STANDARD");
        out.push_str("</Contents>");
    }
    for cp in &page.common_prefixes {
        out.push_str("<CommonPrefixes>");
        el(&mut out, "Prefix", &enc(cp));
        out.push_str("</CommonPrefixes>");
    }
    out.push_str("</ListBucketResult>\n");
    out
}

/// One page of an upstream's ListObjectsV2 answer, as [`parse_list_result`] reads it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UpstreamPage {
    /// The objects, keys decoded.
    pub objects: Vec<Object>,
    pub is_truncated: bool,
    pub next_continuation_token: Option<String>,
}

/// What the gateway reads of a `ListBucketResult`; `Name` and `IsTruncated` are required,
/// so that another document (an `<Error>` sent with a 200) is not taken for an empty page.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[allow(dead_code)]
    name: String,
    is_truncated: bool,
    next_continuation_token: Option<String>,
    encoding_type: Option<String>,
    #[serde(default)]
    contents: Vec<Contents>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Contents {
    key: String,
    size: u64,
    #[serde(default)]
    last_modified: String,
    #[serde(rename = "ETag", default)]
    etag: String,
}

/// Reads an upstream's `ListBucketResult`; keys are decoded when the answer says
/// `<EncodingType>url</EncodingType>`.
pub fn parse_list_result(doc: &str) -> Result<UpstreamPage, String> {
    let r: ListBucketResult = quick_xml::de::from_str(doc)
        .map_err(|e| format!("the answer is not a ListBucketResult: {e}"))?;
    let url = r.encoding_type.as_deref() == Some("url");
    let objects = r
        .contents
        .into_iter()
        .map(|c| {
            let key = if url {
                percent_decode_str(&c.key)
                    .decode_utf8()
                    .map_err(|_| "a listed key is not UTF-8".to_string())?
                    .into_owned()
            } else {
                c.key
            };
            Ok(Object {
                key,
                size: c.size,
                last_modified: c.last_modified,
                etag: c.etag,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(UpstreamPage {
        objects,
        is_truncated: r.is_truncated,
        next_continuation_token: r.next_continuation_token.filter(|t| !t.is_empty()),
    })
}

/// An S3 `Error` document; `rule` and `article` are bordergate's additions.
pub fn error(
    code: &str,
    message: &str,
    resource: &str,
    request_id: &str,
    rule: Option<&str>,
    article: Option<&str>,
) -> String {
    let mut out = format!("{DECL}\n<Error>");
    el(&mut out, "Code", code);
    el(&mut out, "Message", message);
    el(&mut out, "Resource", resource);
    el(&mut out, "RequestId", request_id);
    if let Some(r) = rule {
        el(&mut out, "Rule", r);
    }
    if let Some(a) = article.filter(|a| !a.is_empty()) {
        el(&mut out, "Article", a);
    }
    out.push_str("</Error>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_escape_and_url_encode_keys() {
        let p = Params {
            prefix: "a b/".into(),
            delimiter: Some("/".into()),
            max_keys: 2,
            url_encoded: true,
            ..Params::default()
        };
        let page = Page {
            contents: vec![Object {
                key: "a b/x&y.csv".into(),
                size: 3,
                last_modified: "2026-01-01T00:00:00.000Z".into(),
                etag: "\"e\"".into(),
            }],
            common_prefixes: vec!["a b/c/".into()],
            is_truncated: true,
            next_continuation_token: Some("tok".into()),
        };
        let x = list_result("datasets", &p, &page);
        assert!(x.contains("<Key>a%20b/x%26y.csv</Key>"), "{x}");
        assert!(
            x.contains("<KeyCount>2</KeyCount><IsTruncated>true</IsTruncated>"),
            "{x}"
        );
        assert!(x.contains("<CommonPrefixes><Prefix>a%20b/c/</Prefix></CommonPrefixes>"));
        assert!(x.contains("<ETag>&quot;e&quot;</ETag>"));
        let e = error(
            "AccessDenied",
            "no <way>",
            "/d/k",
            "r1",
            Some("eu.x"),
            Some(""),
        );
        assert!(e.contains("<Message>no &lt;way&gt;</Message>"));
        assert!(!e.contains("<Article>"));
    }

    #[test]
    fn upstream_listings_are_read_with_their_keys_decoded() {
        // As S3 (and moto) answer `encoding-type=url`, Owner and CommonPrefixes included.
        let doc = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>ml-artifacts</Name><Prefix>eu%2F</Prefix><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated><Contents><Key>eu/a%20b%26c.bin</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified><ETag>&quot;9e1&quot;</ETag><Size>16</Size><StorageClass>STANDARD</StorageClass><Owner><ID>x</ID></Owner></Contents><Contents><Key>eu/w.bin</Key><LastModified>2026-01-02T00:00:00.000Z</LastModified><ETag>"e2"</ETag><Size>3</Size></Contents><CommonPrefixes><Prefix>eu/x/</Prefix></CommonPrefixes><KeyCount>2</KeyCount><NextContinuationToken>tok/1=</NextContinuationToken></ListBucketResult>"#;
        let p = parse_list_result(doc).unwrap();
        assert!(p.is_truncated);
        assert_eq!(p.next_continuation_token.as_deref(), Some("tok/1="));
        assert_eq!(
            p.objects,
            [
                Object {
                    key: "eu/a b&c.bin".into(),
                    size: 16,
                    last_modified: "2026-01-01T00:00:00.000Z".into(),
                    etag: "\"9e1\"".into(),
                },
                Object {
                    key: "eu/w.bin".into(),
                    size: 3,
                    last_modified: "2026-01-02T00:00:00.000Z".into(),
                    etag: "\"e2\"".into(),
                },
            ]
        );
        // Without `EncodingType` the keys are as they are; an empty page has no Contents.
        let doc = "<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated><Contents><Key>a%20b</Key><Size>1</Size></Contents></ListBucketResult>";
        assert_eq!(parse_list_result(doc).unwrap().objects[0].key, "a%20b");
        let doc = "<ListBucketResult><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>";
        assert_eq!(parse_list_result(doc).unwrap(), UpstreamPage::default());
        // Not a listing: fail, never an empty page.
        for doc in [
            "<Error><Code>AccessDenied</Code><Message>no</Message></Error>",
            "<ListBucketResult><Name>b</Name><IsTruncated>maybe</IsTruncated></ListBucketResult>",
            "<ListBucketResult><Name>b</Name><IsTruncated>false</IsTruncated><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>",
            "not xml <",
            "",
        ] {
            assert!(parse_list_result(doc).is_err(), "{doc}");
        }
    }
}
