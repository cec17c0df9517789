//! Where a refusal's reason reaches a human: the HTTP/1.1 reason phrase naming the rule and
//! article (`451 Unavailable For Legal Reasons: eu.chapter-v.no-basis, GDPR Art. 44`), and
//! the short plain-text body for `Accept: text/plain` and for curl and wget in a terminal.
//! HTTP/2 has no reason phrase; the body choice applies to both versions.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::ext::ReasonPhrase;

use super::Doc;
use crate::proxy::ResBody;

/// Longest reason phrase sent, in bytes: a status line stays well within any client's limit.
const MAX_REASON: usize = 160;

/// The reason phrase of a problem that names a rule: the canonical phrase, then the rule and
/// article, as ASCII (`§` becomes `Sec.`, accents are dropped, controls become spaces) and at
/// most [`MAX_REASON`] bytes. None for a problem without a rule.
pub(super) fn reason_phrase(
    status: StatusCode,
    rule: Option<&str>,
    article: Option<&str>,
) -> Option<String> {
    let rule = rule.filter(|r| !r.is_empty())?;
    let mut s = format!("{}: {rule}", status.canonical_reason().unwrap_or("Refused"));
    if let Some(a) = article.filter(|a| !a.is_empty()) {
        s.push_str(", ");
        s.push_str(a);
    }
    Some(ascii_phrase(&s))
}

/// `s` as reason-phrase bytes (RFC 9110 §15: HTAB, SP, VCHAR; obs-text is not sent), at
/// most [`MAX_REASON`] bytes, cut at a word with `...`.
fn ascii_phrase(s: &str) -> String {
    // The section sign is common in citations; deunicode would spell it `SS`.
    let s = s
        .replace("§ ", "Sec. ")
        .replace('§', "Sec. ")
        .replace(|c: char| c.is_control(), " ");
    let ascii = deunicode::deunicode_with_tofu(&s, "?");
    let mut out: String = ascii
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    // Runs of spaces (from newlines in a citation) collapse to one.
    while out.contains("  ") {
        out = out.replace("  ", " ");
    }
    let out = out.trim().to_string();
    if out.len() <= MAX_REASON {
        return out;
    }
    let head = &out[..MAX_REASON - 3];
    let cut = head.rfind(' ').unwrap_or(head.len());
    format!("{}...", head[..cut].trim_end_matches([',', ' ']))
}

/// The reason phrase as hyper's response extension; None when it cannot be one.
pub(super) fn extension(phrase: Option<&str>) -> Option<ReasonPhrase> {
    ReasonPhrase::try_from(phrase?.to_string()).ok()
}

/// The plain-text answer: a few lines a human reads in a terminal, ending in a newline.
pub(super) fn render(d: &Doc) -> String {
    let mut s = format!(
        "bordergate refused this request: {} {}\n",
        d.status, d.title
    );
    let mut line = |label: &str, v: &str| {
        if !v.is_empty() {
            s.push_str(&format!("{label:<11} {}\n", v.replace(['\r', '\n'], " ")));
        }
    };
    line("rule:", d.rule.as_deref().unwrap_or(""));
    line("article:", d.article.as_deref().unwrap_or(""));
    line("reason:", &d.detail);
    line("remedy:", d.remedy.unwrap_or(""));
    line("request id:", &d.request_id);
    s
}

/// The plain-text rendering a problem response carries until the proxy knows which form the
/// request asked for ([`Form::present`]).
#[derive(Clone, Debug)]
pub struct PlainText(pub(super) Bytes);

/// The form of a problem answer a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// RFC 9457 problem+json, the default.
    Json,
    /// The short plain-text body.
    Text,
}

impl Form {
    /// Plain text when `Accept` prefers `text/plain` to JSON, or for curl and wget (by
    /// `User-Agent`) unless they name a JSON type; JSON otherwise.
    pub fn requested(h: &HeaderMap) -> Form {
        // Every request asks this (before it is known whether a problem answers it): one
        // `Accept` header, the common case, is read in place.
        let mut values = h
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let joined;
        let accept = match (values.next(), values.next()) {
            (None, _) => "",
            (Some(one), None) => one,
            (Some(a), Some(b)) => {
                joined = [a, b]
                    .into_iter()
                    .chain(values)
                    .collect::<Vec<_>>()
                    .join(",");
                joined.as_str()
            }
        };
        let text = quality(accept, "text", "plain");
        let json = quality(accept, "application", "problem+json").max(quality(
            accept,
            "application",
            "json",
        ));
        if text.explicit && text.q > json.q {
            return Form::Text;
        }
        let terminal = h
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ua| ua.starts_with("curl/") || ua.starts_with("Wget/"));
        if terminal && !(json.explicit && json.q > 0) && text.q > 0 {
            return Form::Text;
        }
        Form::Json
    }

    /// Puts the problem response `resp` in this form (a response that is not a problem is
    /// left as it is). `head`: the request was HEAD, so the body stays empty.
    pub fn present(self, resp: &mut Response<ResBody>, head: bool) {
        let Some(PlainText(text)) = resp.extensions_mut().remove::<PlainText>() else {
            return;
        };
        if self == Form::Json {
            return;
        }
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(text.len()));
        let body = if head { Bytes::new() } else { text };
        *resp.body_mut() = Full::new(body).map_err(|e| match e {}).boxed();
    }
}

/// How much an `Accept` list wants `kind/sub`: the q of its most specific matching range
/// (RFC 9110 §12.5.1), thousandths; `explicit` when that range names `kind` (not `*/*`).
/// An empty list accepts everything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Quality {
    q: u16,
    explicit: bool,
}

fn quality(accept: &str, kind: &str, sub: &str) -> Quality {
    if accept.trim().is_empty() {
        return Quality {
            q: 1000,
            explicit: false,
        };
    }
    // (specificity, q): 2 for `kind/sub`, 1 for `kind/*`, 0 for `*/*`.
    let mut best: Option<(u8, u16)> = None;
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim();
        let Some((t, s)) = media.split_once('/') else {
            continue;
        };
        let specificity = match (t.trim(), s.trim()) {
            (t, s) if t.eq_ignore_ascii_case(kind) && s.eq_ignore_ascii_case(sub) => 2,
            (t, "*") if t.eq_ignore_ascii_case(kind) => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1000, |(_, v)| qvalue(v.trim()));
        if best.is_none_or(|(sp, _)| specificity > sp) {
            best = Some((specificity, q));
        }
    }
    match best {
        Some((sp, q)) => Quality {
            q,
            explicit: sp > 0,
        },
        None => Quality {
            q: 0,
            explicit: false,
        },
    }
}

/// An RFC 9110 qvalue in thousandths (`0.8` is 800); anything unreadable counts as 0.
fn qvalue(v: &str) -> u16 {
    let (int, frac) = v.split_once('.').unwrap_or((v, ""));
    let whole = match int {
        "1" => return 1000,
        "0" => 0u16,
        _ => return 0,
    };
    let digits: String = frac.chars().take(3).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return 0;
    }
    let scaled = format!("{digits:0<3}");
    whole + scaled.parse::<u16>().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(accept: Option<&str>, ua: Option<&str>) -> Form {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(header::ACCEPT, HeaderValue::from_str(a).unwrap());
        }
        if let Some(u) = ua {
            h.insert(header::USER_AGENT, HeaderValue::from_str(u).unwrap());
        }
        Form::requested(&h)
    }

    #[test]
    fn text_for_those_who_ask_and_for_terminals() {
        assert_eq!(form(Some("text/plain"), None), Form::Text);
        assert_eq!(form(Some("text/*;q=0.9, */*;q=0.1"), None), Form::Text);
        assert_eq!(form(Some("*/*"), Some("curl/8.5.0")), Form::Text);
        assert_eq!(form(None, Some("Wget/1.21.3")), Form::Text);
        assert_eq!(
            form(Some("text/plain;q=0.5, application/json"), None),
            Form::Json
        );
        assert_eq!(
            form(Some("application/json"), Some("curl/8.5.0")),
            Form::Json
        );
        assert_eq!(
            form(Some("application/problem+json"), Some("Wget/1.21")),
            Form::Json
        );
        assert_eq!(form(Some("*/*"), Some("python-requests/2.32")), Form::Json);
        assert_eq!(form(None, None), Form::Json);
        // A browser's list: the wildcard is not a preference for text.
        assert_eq!(
            form(
                Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
                None
            ),
            Form::Json
        );
        assert_eq!(form(Some("image/png"), Some("curl/8")), Form::Json);
    }

    #[test]
    fn qvalues_read_as_rfc_9110_writes_them() {
        assert_eq!(qvalue("1"), 1000);
        assert_eq!(qvalue("1.000"), 1000);
        assert_eq!(qvalue("0.8"), 800);
        assert_eq!(qvalue("0.05"), 50);
        assert_eq!(qvalue("0"), 0);
        assert_eq!(qvalue("x"), 0);
        assert_eq!(qvalue("0.a"), 0);
    }

    #[test]
    fn the_reason_phrase_is_ascii_and_bounded() {
        let p = reason_phrase(
            StatusCode::UNAVAILABLE_FOR_LEGAL_REASONS,
            Some("eu.chapter-v.no-basis"),
            Some("GDPR Art. 44"),
        )
        .unwrap();
        assert_eq!(
            p,
            "Unavailable For Legal Reasons: eu.chapter-v.no-basis, GDPR Art. 44"
        );
        let p = reason_phrase(
            StatusCode::FORBIDDEN,
            Some("org.dp7"),
            Some("Example Corp data policy DP-7 §4 — über\nstrict"),
        )
        .unwrap();
        assert!(p.is_ascii() && !p.contains('\n'), "{p}");
        assert!(
            p.contains("DP-7 Sec. 4") && p.contains("uber strict"),
            "{p}"
        );
        assert!(extension(Some(&p)).is_some());
        let long = "x ".repeat(400);
        let p = reason_phrase(StatusCode::FORBIDDEN, Some("r"), Some(&long)).unwrap();
        assert!(p.len() <= MAX_REASON && p.ends_with("..."), "{p}");
        assert_eq!(reason_phrase(StatusCode::NOT_FOUND, None, Some("a")), None);
    }
}
