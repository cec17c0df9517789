//! A question put to the evaluator without a request — `policy explain` and the admin
//! API's `/policy/explain`: routed and classified exactly as the gateway routes and
//! classifies a request, then decided and explained with the same [`Transfer::decide`].

use time::Date;

use super::{Ask, Subject, Transfer, classify};
use crate::catalog::{Catalog, Matcher};
use crate::model::{Caller, Direction, Tags};
use crate::pipl::ExportCounter;
use crate::policy::PolicySet;
use crate::policy::explain::Explanation;
use crate::respond::Problem;
use crate::snapshot::Routes;

/// What the question is about.
#[derive(Clone, Debug)]
pub enum About {
    /// A request path, routed and resolved as the gateway does.
    Path(String),
    /// A catalog entry by id (routed by its prefix, when it has one).
    Dataset(String),
    /// Tags given directly.
    Tags(Tags),
}

/// A transfer to decide: who asks, about what, in which direction, as of when.
#[derive(Clone, Debug)]
pub struct Question {
    pub about: About,
    pub caller: Caller,
    pub direction: Direction,
    /// Catalog ids an upload declares it was derived from; for tags given directly, the
    /// entries the data was derived from (a download of them carries their tags too).
    pub lineage: Vec<String>,
    /// The upstream that serves (download) or receives (upload) the data, for a question
    /// with no path: its jurisdiction is an upload's destination, its operator the
    /// importer (and a PIPL exporter). Default: the route of the dataset's prefix.
    pub upstream: Option<String>,
    pub as_of: Date,
    /// PIPL exporter when neither the catalog entry nor the route's upstream names one.
    pub exporter: Option<String>,
    /// How the caller's jurisdiction is held against the registry, as the gateway's
    /// `auth.jurisdiction_claim` says ([`super::claim`]).
    pub jurisdiction_claim: crate::config::JurisdictionClaim,
}

/// The answer: the transfer explained, or the refusal the gateway answers before it can
/// classify (no route, no catalog entry, uploads not accepted, unknown lineage).
#[derive(Debug)]
pub enum Answer {
    Explained {
        transfer: Box<Transfer>,
        explanation: Box<Explanation>,
    },
    Refused(Problem),
}

/// Answers `q` against `catalog`, `routes` and `policies` (mutable only to try remedies
/// with a synthetic importer, removed again); PIPL volumes come from `counter`. `Err` is a
/// question that cannot be asked (an unknown dataset id, a malformed path).
pub fn answer(
    q: &Question,
    catalog: &Catalog,
    routes: &Routes,
    policies: &mut PolicySet,
    counter: &ExportCounter,
) -> Result<Answer, String> {
    let normalized = match &q.about {
        About::Path(p) => Some(
            crate::catalog::path::normalize(p)
                .map_err(|e| format!("path `{}`: {e}", p.escape_default()))?,
        ),
        _ => None,
    };
    // The gateway holds the claim to the registry right after authentication, before routing.
    let mut caller = q.caller.clone();
    if let Err(m) = super::claim::hold_to_registry(&mut caller, policies, q.jurisdiction_claim) {
        return Ok(Answer::Refused(super::claim::refusal(&m, policies)));
    }
    let (subject, route) = match &q.about {
        About::Path(p) => {
            let Some(normalized) = &normalized else {
                return Err(format!("path `{}` is not normalised", p.escape_default()));
            };
            match routes.route_for(&normalized.decoded, q.direction) {
                Ok(r) => (Subject::Path(&normalized.decoded), Some(r)),
                Err((_, problem)) => return Ok(Answer::Refused(problem)),
            }
        }
        About::Dataset(id) => {
            let entry = catalog
                .get(id)
                .ok_or_else(|| format!("unknown catalog id `{}`", id.escape_default()))?;
            // The route named, else the route of the entry's prefix, when it has one: it
            // gives the default origin and an upload's destination, as for a request there.
            let route = match (&q.upstream, &entry.matcher) {
                (Some(u), _) => match to_upstream(routes, u, q.direction)? {
                    Ok(r) => Some(r),
                    Err(p) => return Ok(Answer::Refused(p)),
                },
                (None, Matcher::Prefix(p)) => match routes.route_for(p, q.direction) {
                    Ok(r) => Some(r),
                    Err((_, problem)) if q.direction == Direction::Upload => {
                        return Ok(Answer::Refused(problem));
                    }
                    Err(_) => None,
                },
                (None, Matcher::Regex(_)) => None,
            };
            (Subject::Dataset(id), route)
        }
        About::Tags(t) => {
            let route = match &q.upstream {
                Some(u) => match to_upstream(routes, u, q.direction)? {
                    Ok(r) => Some(r),
                    Err(p) => return Ok(Answer::Refused(p)),
                },
                None => None,
            };
            (Subject::Tags(t.clone()), route)
        }
    };
    if q.direction == Direction::Upload && route.is_none() {
        return Err(
            "an upload goes to an upstream: give a path under a route that accepts uploads, or the upstream (`upstream`)"
                .into(),
        );
    }
    if q.direction == Direction::Download
        && !q.lineage.is_empty()
        && !matches!(q.about, About::Tags(_))
    {
        return Err(
            "a download's lineage is its catalog entry's: give `lineage` with an upload, or with tags given directly"
                .into(),
        );
    }
    let ask = Ask {
        subject,
        direction: q.direction,
        caller: &caller,
        lineage: &q.lineage,
        at: time::OffsetDateTime::now_utc().replace_date(q.as_of),
        digests: &[],
        recent: None,
    };
    let mut t = match classify(catalog, &ask, route.map(|r| r.place())) {
        Ok(t) => t,
        Err(u) => return Ok(Answer::Refused(Problem::from(u))),
    };
    if let (Some(x), Some(e)) = (&q.exporter, t.export.as_mut())
        && e.exporter.is_none()
    {
        e.exporter = Some(x.clone());
    }
    let volume = t.volume(counter);
    let explanation = t.explain(policies, q.as_of, volume.as_ref());
    Ok(Answer::Explained {
        transfer: Box::new(t),
        explanation: Box::new(explanation),
    })
}

/// The route to upstream `name` (`Err`: no route leads there, a question that cannot be
/// asked; `Ok(Err)`: the gateway's refusal, e.g. no route to it accepts uploads).
fn to_upstream<'r>(
    routes: &'r Routes,
    name: &str,
    direction: Direction,
) -> Result<Result<&'r crate::snapshot::Route, Problem>, String> {
    routes
        .to_upstream(name, direction)
        .ok_or_else(|| format!("no route leads to upstream `{}`", name.escape_default()))
}

/// The JSON of an answer, as `policy explain --json` and `/policy/explain` give it: the
/// transfer and the explanation, or the refusal with the rule the record would name.
pub fn to_json(a: &Answer) -> serde_json::Value {
    match a {
        Answer::Explained {
            transfer,
            explanation,
        } => {
            let mut v = serde_json::to_value(explanation).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "transfer".into(),
                    serde_json::to_value(transfer).unwrap_or_default(),
                );
            }
            v
        }
        Answer::Refused(p) => serde_json::json!({
            "decision": {
                "effect": "deny",
                "rule": p.record_rule(),
                "article": p.article.clone().unwrap_or_default(),
                "reason": p.detail,
                "instrument": p.instrument,
            },
            "status": p.status().as_u16(),
            "trace": [],
            "remedies": [],
        }),
    }
}
