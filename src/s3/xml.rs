//! S3's XML documents: `ListBucketResult` (ListObjectsV2) and `Error`.

use std::fmt::Write;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::list::{Page, Params};

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
    use crate::s3::list::Object;

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
}
