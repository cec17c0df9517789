//! The upstream-response phase: what comes back is checked before its first byte reaches
//! the client — hop-by-hop headers stripped, redirects to other hosts refused, and the
//! upstream's tag metadata folded into the transfer and decided again with the same
//! [`crate::transfer::Transfer::decide`].
//!
//! The rule for the record: a request has exactly one decision record, written before
//! anything was forwarded. When the upstream's metadata adds origins or categories, the
//! re-decision goes on the request's completion record (`recheck`: its decision, rule,
//! article, reason and the tags added); a re-decision that refuses ends the transfer with
//! the refusal's status and outcome `refused`, before any byte of the body is sent.

use http::{HeaderMap, Response, header};

use super::ResBody;
use super::attempt::Attempt;
use super::body::Completion;
use crate::audit::Outcome;
use crate::audit::record::{Recheck, RecheckOf};
use crate::model::{Category, Country, Decision, Tags};
use crate::respond::{Kind, Problem};

/// Parses the comma-separated headers in which an upstream declares origins and categories.
pub(super) fn upstream_tags(resp: &HeaderMap, origin_h: &str, cat_h: &str) -> Result<Tags, String> {
    let mut t = Tags::default();
    for v in resp.get_all(origin_h) {
        let s = v
            .to_str()
            .map_err(|_| format!("`{origin_h}` is not ASCII"))?;
        for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            t.origins.insert(Country::parse(c)?);
        }
    }
    for v in resp.get_all(cat_h) {
        let s = v.to_str().map_err(|_| format!("`{cat_h}` is not ASCII"))?;
        for c in s.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            let cat = Category::ALL
                .iter()
                .find(|k| k.as_str() == c)
                .ok_or_else(|| format!("unknown category `{}`", c.escape_default()))?;
            t.categories.insert(*cat);
        }
    }
    Ok(t)
}

/// How a forwarded transfer ends before its body: the answer, and the completion.
pub(super) struct Ended {
    pub problem: Problem,
    pub outcome: Outcome,
    pub detail: Box<str>,
}

impl Ended {
    fn failed(kind: Kind, detail: String, outcome_detail: String) -> Ended {
        Ended {
            problem: Problem::new(kind, detail),
            outcome: Outcome::UpstreamError,
            detail: outcome_detail.into(),
        }
    }

    /// Finishes the completion and answers (problem+json, or S3's XML to an S3 request).
    pub fn answer(self, mut completion: Completion, a: &Attempt) -> Response<ResBody> {
        completion.set_status(self.problem.status().as_u16());
        completion.finish(0, self.outcome, Some(self.detail.into()));
        a.answer(self.problem.for_request(&a.request_id))
    }
}

/// Refuses a redirect that leads anywhere but the gateway's own origin, as a browser
/// would resolve it (the WHATWG URL Standard, which reads `\\`, `/\\`, tabs and newlines the
/// way browsers do), and a redirect with more than one `Location`: the gateway neither
/// follows nor passes such redirects on. `path` is the request's path, the base of a
/// relative `Location`.
pub(super) fn check_redirect(resp: &Response<ResBody>, path: &str) -> Result<(), Ended> {
    if !resp.status().is_redirection() {
        return Ok(());
    }
    let mut all = resp.headers().get_all(header::LOCATION).iter();
    let Some(loc) = all.next() else {
        return Ok(());
    };
    let refuse = |why: &str| {
        Ended::failed(
            Kind::BadGateway,
            format!(
                "the upstream sent a redirect {why}; bordergate does not follow or pass on such redirects"
            ),
            format!("upstream redirect {why}"),
        )
    };
    if all.next().is_some() {
        return Err(refuse("with more than one `location`"));
    }
    let Ok(loc) = loc.to_str() else {
        return Err(refuse("whose `location` is not ASCII"));
    };
    if !same_origin(path, loc) {
        return Err(refuse("to another host"));
    }
    Ok(())
}

/// Refuses a 304 to a request the upstream was asked without conditions (a GET or HEAD to
/// an http(s) upstream, see `proxy::revalidate`): it cannot stand for a response that was
/// decided (502).
pub(super) fn check_unasked_304(
    resp: &Response<ResBody>,
    unconditional: bool,
) -> Result<(), Ended> {
    if unconditional && resp.status() == http::StatusCode::NOT_MODIFIED {
        return Err(Ended::failed(
            Kind::BadGateway,
            "the upstream answered 304 to a request without conditions".into(),
            "upstream 304 without conditions".into(),
        ));
    }
    Ok(())
}

/// True if `location`, resolved against the request `path` on the gateway's origin, stays
/// on that origin.
fn same_origin(path: &str, location: &str) -> bool {
    let Ok(origin) = url::Url::parse("https://gateway.invalid/") else {
        return false;
    };
    let Ok(base) = origin.join(path) else {
        return false;
    };
    match base.join(location) {
        Ok(u) => {
            u.scheme() == origin.scheme()
                && u.host_str() == origin.host_str()
                && u.port_or_known_default() == origin.port_or_known_default()
                && u.username().is_empty()
                && u.password().is_none()
        }
        Err(_) => false,
    }
}

/// The tags the upstream declares, or why they cannot be read (502).
pub(super) fn declared_tags(
    headers: &HeaderMap,
    origin_h: &str,
    cat_h: &str,
) -> Result<Tags, Ended> {
    upstream_tags(headers, origin_h, cat_h).map_err(|e| {
        Ended::failed(
            Kind::BadGateway,
            format!("the upstream sent tag metadata that cannot be read: {e}"),
            format!("upstream tag metadata: {e}"),
        )
    })
}

/// The decision on the upstream's answer, for the completion record; a refusal (when
/// enforced) ends the transfer before the body's first byte.
pub(super) fn recheck(
    of: RecheckOf,
    second: &Decision,
    added: &Tags,
    enforce: bool,
    completion: &mut Completion,
) -> Result<(), Ended> {
    completion.set_recheck(Recheck {
        of,
        decision: second.effect,
        rule: second.rule.clone(),
        article: second.article.clone(),
        reason: second.reason.clone(),
        origins: added.origins.iter().copied().collect(),
        categories: added.categories.iter().copied().collect(),
    });
    if second.is_allow() || !enforce {
        return Ok(());
    }
    Err(Ended {
        problem: Problem::from(second),
        outcome: Outcome::Refused,
        detail: match of {
            RecheckOf::UpstreamMetadata => "refused after upstream metadata added tags",
            RecheckOf::UploadResponse => "the upload's response body was refused",
            RecheckOf::UploadContent => {
                "the upload's content is a catalog artifact and was refused; the upstream body was cut before its end"
            }
        }
        .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::same_origin;

    #[test]
    fn redirects_are_resolved_as_a_browser_resolves_them() {
        for ok in [
            "/x",
            "x",
            "../x",
            "?q=1",
            "#f",
            "/datasets/a/b",
            "https://gateway.invalid/x",
            // WHATWG: a special scheme equal to the base's, without `//`, is relative.
            "https:elsewhere",
        ] {
            assert!(same_origin("/datasets/a", ok), "{ok}");
        }
        for bad in [
            "//evil.example/x",
            "/\\evil.example/x",
            "\\\\evil.example/x",
            "http:/\\evil.example/x",
            "/\t/evil.example/x",
            "/\n/evil.example/x",
            "https://evil.example/x",
            "http://gateway.invalid/x",
            "https://user@gateway.invalid/x",
            "https://gateway.invalid:8443/x",
            "javascript:alert(1)",
            "data:text/html,x",
        ] {
            assert!(!same_origin("/datasets/a", bad), "{bad:?}");
        }
    }
}
