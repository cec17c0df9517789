//! The authenticate phase: the bearer token (and, for certificate-bound tokens, the TLS
//! client certificate), or an S3 request's SigV4 signature and access key, into the
//! [`Caller`]; then the caller's jurisdiction held to the registry.

use http::HeaderMap;
use http::request::Parts;

use crate::auth::Authenticator;
use crate::model::Caller;
use crate::respond::Problem;
use crate::snapshot::Snapshot;

use super::attempt::Attempt;

/// Who is asking, or the 401 that says why nobody can tell.
pub(super) fn authenticate(
    auth: &Authenticator,
    headers: &HeaderMap,
    client_cert: Option<&[u8]>,
) -> Result<Caller, Problem> {
    auth.authenticate_headers(headers)
        .and_then(|a| a.check_certificate(client_cert).map(|()| a.caller))
        .map_err(|e| Problem::from(&e))
}

/// Authenticates the request into `a.caller` (and, for an S3 access key, `a.credential`)
/// and returns the query the request asks of the upstream: as sent, or for an S3 request
/// without its signature's parameters.
pub(super) fn identify(
    snap: &Snapshot,
    parts: &Parts,
    body_empty: bool,
    client_cert: Option<&[u8]>,
    a: &mut Attempt,
) -> Result<Option<String>, Problem> {
    let (mut caller, query) = if a.s3 {
        let now = time::OffsetDateTime::now_utc();
        let v = crate::s3::verify::verify(snap.s3_keys.as_ref(), parts, body_empty, now)
            .map_err(|e| {
                if matches!(e, crate::s3::verify::SignatureError::Key(crate::s3::keys::KeyError::Derivation)) {
                    tracing::error!(request_id = %a.request_id, error = %e, "s3 access key refused");
                }
                Problem::from(&e)
            })?;
        a.credential = Some(format!("s3:{}", v.access_key_id));
        (v.caller, v.query)
    } else {
        (
            authenticate(&snap.auth, &parts.headers, client_cert)?,
            parts.uri.query().map(str::to_string),
        )
    };
    let held = crate::transfer::claim::hold_to_registry(
        &mut caller,
        &snap.policies,
        snap.config.auth.jurisdiction_claim,
    );
    a.caller = Some(caller);
    held.map_err(|m| crate::transfer::claim::refusal(&m, &snap.policies))?;
    Ok(query)
}
