//! The authenticate phase: the bearer token (and, for certificate-bound tokens, the TLS
//! client certificate) into the [`Caller`].

use http::HeaderMap;

use crate::auth::Authenticator;
use crate::model::Caller;
use crate::respond::Problem;

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
