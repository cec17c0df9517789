//! Range and precondition evaluation for the file store (RFC 9110 §13 and §14).

use std::time::{SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use http::header::{self, HeaderName, HeaderValue};

/// What a `Range` header asks of a representation of a given length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ByteRange {
    /// No usable range: serve the whole representation with 200.
    Full,
    /// One satisfiable range, both ends inclusive and inside the representation.
    Partial { start: u64, end: u64 },
    /// A valid range that selects nothing: 416.
    Unsatisfiable,
}

/// Parses a `Range` value against a representation of `len` bytes.
///
/// Only a single `bytes` range is honoured. A malformed value is ignored, as RFC 9110 §14.2
/// allows, and so is a request for several ranges: answering them would need a
/// `multipart/byteranges` body, which no dataset client asks for, so the whole file is served.
pub(super) fn parse_range(value: &str, len: u64) -> ByteRange {
    let Some((unit, set)) = value.trim().split_once('=') else {
        return ByteRange::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return ByteRange::Full;
    }
    let spec = set.trim();
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.split_once('-') else {
        return ByteRange::Full;
    };
    if first.is_empty() {
        // Suffix form `-n`: the last n bytes.
        let Some(n) = digits(last) else {
            return ByteRange::Full;
        };
        if n == 0 || len == 0 {
            return ByteRange::Unsatisfiable;
        }
        return ByteRange::Partial {
            start: len.saturating_sub(n),
            end: len - 1,
        };
    }
    let Some(first) = digits(first) else {
        return ByteRange::Full;
    };
    let last = if last.is_empty() {
        u64::MAX
    } else {
        match digits(last) {
            Some(l) if l >= first => l,
            _ => return ByteRange::Full,
        }
    };
    if first >= len {
        return ByteRange::Unsatisfiable;
    }
    ByteRange::Partial {
        start: first,
        end: last.min(len - 1),
    }
}

/// A non-empty run of ASCII digits; values past `u64::MAX` saturate (they are still valid syntax).
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

/// Whether any entity-tag in the (possibly repeated) header matches `current`.
///
/// `current` is a strong tag with its quotes. With `strong`, weak tags in the header never match
/// (If-Match); otherwise the `W/` prefix is ignored (If-None-Match). `*` matches; the caller only
/// asks when a representation exists. Splitting on commas is enough because our own tags never
/// contain one, so a tag that does can never match anyway.
pub(crate) fn etag_matches<'a, I>(values: I, current: &str, strong: bool) -> bool
where
    I: IntoIterator<Item = &'a HeaderValue>,
{
    values
        .into_iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| {
            if tag == "*" {
                return true;
            }
            match tag.strip_prefix("W/") {
                Some(_) if strong => false,
                Some(opaque) => opaque == current,
                None => tag == current,
            }
        })
}

/// Seconds since the epoch, the granularity of HTTP dates.
pub(super) fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The date in a header that must hold exactly one valid HTTP-date; anything else is ignored.
pub(crate) fn header_date(headers: &HeaderMap, name: &HeaderName) -> Option<u64> {
    let mut values = headers.get_all(name).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let date = httpdate::parse_http_date(value.to_str().ok()?).ok()?;
    Some(epoch_secs(date))
}

/// Whether an `If-Range` value still names the current representation: a strong entity-tag
/// equal to ours, or an HTTP-date equal to our Last-Modified.
pub(super) fn if_range_holds(value: &HeaderValue, etag: &str, mtime_secs: u64) -> bool {
    let Ok(value) = value.to_str() else {
        return false;
    };
    let value = value.trim();
    if value.starts_with('"') {
        return value == etag;
    }
    if value.starts_with("W/") {
        return false;
    }
    httpdate::parse_http_date(value).is_ok_and(|d| epoch_secs(d) == mtime_secs)
}

/// The outcome of evaluating preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Precondition {
    Proceed,
    NotModified,
    Failed,
}

/// Evaluates the preconditions in the order of RFC 9110 §13.2.2.
///
/// `current` is the selected representation's (etag, mtime seconds), `None` when there is none
/// (a PUT creating a file). `safe` is true for GET and HEAD, which answer 304 where other methods
/// answer 412.
pub(super) fn evaluate(
    headers: &HeaderMap,
    current: Option<(&str, u64)>,
    safe: bool,
) -> Precondition {
    if headers.contains_key(header::IF_MATCH) {
        let ok = current.is_some_and(|(etag, _)| {
            etag_matches(headers.get_all(header::IF_MATCH).iter(), etag, true)
        });
        if !ok {
            return Precondition::Failed;
        }
    } else if let Some(date) = header_date(headers, &header::IF_UNMODIFIED_SINCE)
        && current.is_some_and(|(_, mtime)| mtime > date)
    {
        return Precondition::Failed;
    }
    if headers.contains_key(header::IF_NONE_MATCH) {
        let matched = current.is_some_and(|(etag, _)| {
            etag_matches(headers.get_all(header::IF_NONE_MATCH).iter(), etag, false)
        });
        if matched {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe
        && let Some(date) = header_date(headers, &header::IF_MODIFIED_SINCE)
        && current.is_some_and(|(_, mtime)| mtime <= date)
    {
        return Precondition::NotModified;
    }
    Precondition::Proceed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_forms() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            ByteRange::Partial { start: 0, end: 9 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            ByteRange::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            ByteRange::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=-1000", 100),
            ByteRange::Partial { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range("bytes=50-1000", 100),
            ByteRange::Partial { start: 50, end: 99 }
        );
        assert_eq!(
            parse_range("BYTES=1-1", 100),
            ByteRange::Partial { start: 1, end: 1 }
        );
        assert_eq!(
            parse_range("bytes=5-99999999999999999999999", 100),
            ByteRange::Partial { start: 5, end: 99 }
        );
    }

    #[test]
    fn range_unsatisfiable_and_malformed() {
        assert_eq!(parse_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), ByteRange::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), ByteRange::Unsatisfiable);
        assert_eq!(
            parse_range("bytes=99999999999999999999999-", 100),
            ByteRange::Unsatisfiable
        );
        for bad in [
            "bytes=9-5",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "items=0-1",
            "bytes 0-1",
            "bytes=+1-2",
            "bytes= 1 - 2",
            "bytes=0-1,5-6",
            "",
        ] {
            assert_eq!(parse_range(bad, 100), ByteRange::Full, "{bad}");
        }
    }

    #[test]
    fn etag_comparison() {
        let v = [HeaderValue::from_static(r#"W/"x", "1-2-3""#)];
        assert!(etag_matches(v.iter(), r#""1-2-3""#, true));
        let weak = [HeaderValue::from_static(r#"W/"1-2-3""#)];
        assert!(!etag_matches(weak.iter(), r#""1-2-3""#, true));
        assert!(etag_matches(weak.iter(), r#""1-2-3""#, false));
        let star = [HeaderValue::from_static("*")];
        assert!(etag_matches(star.iter(), r#""z""#, true));
        let other = [HeaderValue::from_static(r#""1-2-4""#)];
        assert!(!etag_matches(other.iter(), r#""1-2-3""#, false));
    }

    #[test]
    fn precondition_order() {
        let cur = Some((r#""a""#, 1_000_000u64));
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static(r#""b""#));
        assert_eq!(evaluate(&h, cur, true), Precondition::Failed);
        assert_eq!(evaluate(&h, None, false), Precondition::Failed);

        // If-Match wins over If-Unmodified-Since.
        let mut h = HeaderMap::new();
        h.insert(header::IF_MATCH, HeaderValue::from_static(r#""a""#));
        h.insert(
            header::IF_UNMODIFIED_SINCE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(evaluate(&h, cur, true), Precondition::Proceed);

        // If-None-Match wins over If-Modified-Since.
        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(r#""zz""#));
        h.insert(
            header::IF_MODIFIED_SINCE,
            HeaderValue::from_static("Fri, 01 Jan 2100 00:00:00 GMT"),
        );
        assert_eq!(evaluate(&h, cur, true), Precondition::Proceed);
        h.remove(header::IF_NONE_MATCH);
        assert_eq!(evaluate(&h, cur, true), Precondition::NotModified);
        assert_eq!(evaluate(&h, cur, false), Precondition::Proceed);

        let mut h = HeaderMap::new();
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(evaluate(&h, cur, true), Precondition::NotModified);
        assert_eq!(evaluate(&h, cur, false), Precondition::Failed);
        assert_eq!(evaluate(&h, None, false), Precondition::Proceed);

        let mut h = HeaderMap::new();
        h.insert(
            header::IF_UNMODIFIED_SINCE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(evaluate(&h, cur, false), Precondition::Failed);
        h.insert(
            header::IF_UNMODIFIED_SINCE,
            HeaderValue::from_static("junk"),
        );
        assert_eq!(evaluate(&h, cur, false), Precondition::Proceed);
    }

    #[test]
    fn if_range_forms() {
        let date = HeaderValue::from_static("Thu, 01 Jan 1970 00:00:10 GMT");
        assert!(if_range_holds(&date, r#""a""#, 10));
        assert!(!if_range_holds(&date, r#""a""#, 11));
        assert!(if_range_holds(
            &HeaderValue::from_static(r#""a""#),
            r#""a""#,
            0
        ));
        assert!(!if_range_holds(
            &HeaderValue::from_static(r#"W/"a""#),
            r#""a""#,
            0
        ));
        assert!(!if_range_holds(
            &HeaderValue::from_static("junk"),
            r#""a""#,
            0
        ));
    }
}
