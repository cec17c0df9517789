//! ListObjectsV2 over a set of objects: the request's parameters, and the page S3 would
//! return (prefix, delimiter and common prefixes, max-keys, continuation token or
//! start-after, key count, truncation). Which objects are in the set — only those the
//! caller may read — is the gateway's decision, made before.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::percent_decode_str;

/// S3's default and largest page.
pub const MAX_KEYS: usize = 1000;

/// One object of a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    pub key: String,
    pub size: u64,
    /// RFC 3339 / ISO 8601 UTC, as S3 writes `LastModified`.
    pub last_modified: String,
    pub etag: String,
}

/// The parameters of a ListObjectsV2 request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub prefix: String,
    pub delimiter: Option<String>,
    pub max_keys: usize,
    pub continuation_token: Option<String>,
    pub start_after: Option<String>,
    /// `encoding-type=url`: keys and prefixes come back URL-encoded.
    pub url_encoded: bool,
    pub fetch_owner: bool,
}

/// What a bucket-level request asks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BucketCall {
    /// ListObjectsV2 (`list-type=2`).
    ListV2(Params),
    /// ListObjects (v1, no `list-type`): not implemented.
    ListV1,
    /// Any other bucket sub-resource (`?location`, `?acl`, …), by name.
    Other(String),
}

fn decoded(v: &str) -> Result<String, String> {
    percent_decode_str(v)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| "a query value is not UTF-8".to_string())
}

/// Reads a bucket request's query (without the signature's parameters).
pub fn parse(query: Option<&str>) -> Result<BucketCall, String> {
    let mut p = Params {
        max_keys: MAX_KEYS,
        ..Params::default()
    };
    let mut list_type = None;
    let mut other = None;
    for pair in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (n, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = decoded(v)?;
        match n {
            "list-type" => list_type = Some(v),
            "prefix" => p.prefix = v,
            "delimiter" => p.delimiter = Some(v).filter(|d| !d.is_empty()),
            "max-keys" => {
                p.max_keys = v
                    .parse::<usize>()
                    .map_err(|_| format!("`max-keys` `{}` is not a number", v.escape_default()))?
                    .min(MAX_KEYS);
            }
            "continuation-token" => p.continuation_token = Some(v),
            "start-after" => p.start_after = Some(v).filter(|s| !s.is_empty()),
            "encoding-type" if v == "url" => p.url_encoded = true,
            "encoding-type" => {
                return Err(format!(
                    "`encoding-type` `{}` is not supported",
                    v.escape_default()
                ));
            }
            "fetch-owner" => p.fetch_owner = v == "true",
            n => other = other.or_else(|| Some(n.to_string())),
        }
    }
    match (list_type.as_deref(), other) {
        (_, Some(o)) => Ok(BucketCall::Other(o)),
        (Some("2"), None) => Ok(BucketCall::ListV2(p)),
        (None, None) => Ok(BucketCall::ListV1),
        (Some(t), None) => Err(format!(
            "`list-type` `{}` is not supported",
            t.escape_default()
        )),
    }
}

/// One page of a listing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub contents: Vec<Object>,
    pub common_prefixes: Vec<String>,
    pub is_truncated: bool,
    pub next_continuation_token: Option<String>,
}

impl Page {
    /// `KeyCount`: keys plus common prefixes.
    pub fn key_count(&self) -> usize {
        self.contents.len() + self.common_prefixes.len()
    }
}

/// The continuation token after `last` (the key or common prefix that ended a page).
fn token(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last)
}

fn untoken(t: &str) -> Result<String, String> {
    URL_SAFE_NO_PAD
        .decode(t)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| "the continuation token is not one this gateway issued".to_string())
}

/// The key or common prefix the page `p` asks starts after (its continuation token's, else
/// `start-after`): every entry of the page sorts after it.
pub fn resume_after(p: &Params) -> Result<Option<String>, String> {
    match &p.continuation_token {
        Some(t) => untoken(t).map(Some),
        None => Ok(p.start_after.clone()),
    }
}

/// The page `p` asks of `objects` (sorted by key, each key once).
pub fn page(objects: &[Object], p: &Params) -> Result<Page, String> {
    let after = resume_after(p)?;
    let mut out = Page::default();
    let mut last: Option<String> = None;
    for o in objects {
        let Some(rest) = o.key.strip_prefix(p.prefix.as_str()) else {
            continue;
        };
        // A key, or the common prefix it rolls up into.
        let entry = match p
            .delimiter
            .as_deref()
            .and_then(|d| rest.find(d).map(|i| (i, d)))
        {
            Some((i, d)) => Err(format!("{}{}", p.prefix, &rest[..i + d.len()])),
            None => Ok(o),
        };
        let name = match &entry {
            Ok(o) => o.key.as_str(),
            Err(cp) => cp.as_str(),
        };
        if after.as_deref().is_some_and(|a| name <= a) || last.as_deref() == Some(name) {
            continue;
        }
        if out.key_count() == p.max_keys {
            out.is_truncated = true;
            out.next_continuation_token = last.as_deref().map(token);
            return Ok(out);
        }
        last = Some(name.to_string());
        match entry {
            Ok(o) => out.contents.push(o.clone()),
            Err(cp) => out.common_prefixes.push(cp),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn objs(keys: &[&str]) -> Vec<Object> {
        keys.iter()
            .map(|k| Object {
                key: k.to_string(),
                size: 1,
                last_modified: "2026-01-01T00:00:00.000Z".into(),
                etag: "\"e\"".into(),
            })
            .collect()
    }

    fn keys(p: &Page) -> Vec<&str> {
        p.contents.iter().map(|o| o.key.as_str()).collect()
    }

    #[test]
    fn delimiter_rolls_keys_into_common_prefixes() {
        let o = objs(&["a/1", "a/2", "b/x/1", "c", "d/1"]);
        let p = match parse(Some("list-type=2&delimiter=%2F&encoding-type=url")).unwrap() {
            BucketCall::ListV2(p) => p,
            c => panic!("{c:?}"),
        };
        let pg = page(&o, &p).unwrap();
        assert_eq!(keys(&pg), ["c"]);
        assert_eq!(pg.common_prefixes, ["a/", "b/", "d/"]);
        assert_eq!(pg.key_count(), 4);
        let p = Params {
            prefix: "b/".into(),
            ..p
        };
        let pg = page(&o, &p).unwrap();
        assert_eq!(pg.common_prefixes, ["b/x/"]);
    }

    #[test]
    fn pages_continue_where_the_token_says() {
        let o = objs(&["a/1", "a/2", "b", "c/1", "c/2", "d"]);
        let mut p = Params {
            delimiter: Some("/".into()),
            max_keys: 2,
            ..Params::default()
        };
        let mut seen = Vec::new();
        loop {
            let pg = page(&o, &p).unwrap();
            let mut names: Vec<String> = keys(&pg).iter().map(|s| s.to_string()).collect();
            names.extend(pg.common_prefixes.iter().cloned());
            names.sort();
            seen.extend(names);
            if !pg.is_truncated {
                break;
            }
            p.continuation_token = pg.next_continuation_token;
        }
        assert_eq!(seen, ["a/", "b", "c/", "d"]);
        let p = Params {
            start_after: Some("a/2".into()),
            max_keys: 1000,
            ..Params::default()
        };
        assert_eq!(keys(&page(&o, &p).unwrap()), ["b", "c/1", "c/2", "d"]);
        let p = Params {
            continuation_token: Some("!!".into()),
            ..p
        };
        assert!(page(&o, &p).is_err());
    }

    #[test]
    fn other_bucket_calls_are_told_apart() {
        assert_eq!(parse(None).unwrap(), BucketCall::ListV1);
        assert_eq!(
            parse(Some("location")).unwrap(),
            BucketCall::Other("location".into())
        );
        assert!(parse(Some("list-type=2&max-keys=x")).is_err());
        assert!(parse(Some("list-type=1")).is_err());
    }
}
