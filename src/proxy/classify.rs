//! The classify phase: the route a path takes, and the transfer the request would make
//! ([`crate::transfer::classify`], the one classification every tool shares).

use http::HeaderMap;
use http::request::Parts;
use time::OffsetDateTime;

use crate::catalog::path::NormalizedPath;
use crate::lineage::RecentDownloads;
use crate::lineage::digest::{self, Declared, Sha256};
use crate::model::{Caller, Direction};
use crate::respond::{Kind, Problem};
use crate::snapshot::{Route, Snapshot};
use crate::transfer::{Ask, Recent, Subject, Transfer};

use super::upstream::Upstream;

/// A request's route, its upstream, and what the upstream is asked.
pub(super) struct Routed<'s> {
    pub route: &'s Route,
    pub upstream: &'s Upstream,
    /// The upstream path and query (for an object store, the call it maps to).
    pub path_and_query: String,
}

/// Finds the route of `path` and checks the method against it; `query` is what the
/// request asks of the upstream (an S3 request's, without its signature).
pub(super) fn route<'s>(
    snap: &'s Snapshot,
    parts: &Parts,
    query: Option<&str>,
    path: &NormalizedPath,
    direction: Direction,
) -> Result<Routed<'s>, (Option<&'s str>, Problem)> {
    let route = snap
        .routes
        .route_for(&path.decoded, direction)
        .map_err(|(r, p)| (r.map(|r| r.upstream_name.as_str()), p))?;
    let name = Some(route.upstream_name.as_str());
    let upstream = snap.upstream(route).ok_or_else(|| {
        (
            name,
            Problem::new(Kind::Internal, "the route's upstream is missing"),
        )
    })?;
    let path_and_query = upstream
        .path_and_query(&route.prefix, &parts.method, &path.encoded, query)
        .map_err(|e| (name, Problem::new(Kind::BadRequest, e)))?;
    Ok(Routed {
        route,
        upstream,
        path_and_query,
    })
}

/// The catalog ids an upload declares in the lineage header (comma-separated, repeatable).
/// A value that is not visible ASCII is refused, never skipped: dropping one of several
/// lineage headers would decide the upload on the others alone.
pub(super) fn declared_lineage(headers: &HeaderMap, name: &str) -> Result<Vec<String>, Problem> {
    let mut ids = Vec::new();
    for v in headers.get_all(name) {
        let s = v.to_str().map_err(|_| {
            Problem::new(
                Kind::BadRequest,
                format!("the `{name}` header is not visible ASCII"),
            )
        })?;
        ids.extend(
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    Ok(ids)
}

/// Classifies the request routed by `r`. An upload is classified with the digests it
/// declares and, when the lineage check is on, against its uploader's recent downloads in
/// `recent`; the digest its body must have comes back beside the transfer.
#[allow(clippy::too_many_arguments)]
pub(super) fn classify(
    snap: &Snapshot,
    r: &Routed<'_>,
    path: &NormalizedPath,
    caller: &Caller,
    direction: Direction,
    headers: &HeaderMap,
    at: OffsetDateTime,
    recent: &RecentDownloads,
) -> Result<(Transfer, Option<Sha256>), Problem> {
    let cfg = &snap.config.lineage;
    let (lineage, declared, downloads) = match direction {
        Direction::Upload => (
            declared_lineage(headers, &snap.config.tags.lineage)?,
            digest::declared(headers, &path.decoded)
                .map_err(|m| Problem::new(Kind::BadRequest, m))?,
            cfg.since(at)
                .map(|since| recent.of(&caller.sub, &caller.org, since)),
        ),
        Direction::Download => (Vec::new(), Declared::default(), None),
    };
    let ask = Ask {
        subject: Subject::Path(&path.decoded),
        direction,
        caller,
        lineage: &lineage,
        at,
        digests: &declared.all,
        recent: downloads.as_deref().map(|d| Recent {
            downloads: d,
            action: cfg.undeclared_recent,
            window_days: cfg.window_days,
        }),
    };
    let t = crate::transfer::classify(&snap.catalog, &ask, Some(r.route.place()))?;
    Ok((t, declared.body))
}
