//! Header hygiene: what may cross the gateway in each direction, request ids and
//! trace context.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Hop-by-hop headers (RFC 9110 §7.6.1) and their common non-standard relatives.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "expect",
    "http2-settings",
];

/// Client headers that claim identity, routing, trust or tags, by family: never
/// forwarded. A family is a name prefix (matched on the lower-case name with `_` read as
/// `-`, since CGI-style servers fold them together), so
/// every member an auth proxy, load balancer or CDN invents is stripped, not only the
/// spellings someone listed.
const UNTRUSTED_FAMILIES: &[&str] = &[
    // Credentials and sessions.
    "authorization",
    "cookie",
    // Where the request came from, how it was routed, what it was before a rewrite:
    // `X-Forwarded-*` (For, Host, Proto, Uri, Path, User, Email, Groups, Access-Token,
    // Server, Scheme, Ssl, Method …), RFC 7239, client addresses of every CDN.
    "forwarded",
    "x-forwarded-",
    "x-real-ip",
    "x-client-ip",
    "x-cluster-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "fastly-client-ip",
    "x-original-",
    "x-rewrite-",
    "x-envoy-",
    // Identities asserted by an auth proxy in front of an application.
    "remote-user",
    "x-remote-",
    "x-user",
    "x-auth-request-",
    "x-authenticated-",
    "x-gateway-",
    "x-proxy-user",
    "x-webauth-",
    "x-consumer-",
    "x-credential-",
    "x-principal",
    "x-ms-client-principal",
    "x-goog-authenticated-user-",
    "x-amzn-oidc-",
    "x-pomerium-",
    "x-vouch-",
    "x-jwt-",
    // Method overrides.
    "x-http-method",
    "x-method-override",
    // Set by the gateway itself.
    "x-request-id",
    "x-client-request-id",
    "traceparent",
    "tracestate",
    // Tags and the gateway's own signals.
    "bordergate-",
    "x-bordergate",
    "x-data-",
    "x-residency",
    "x-tag",
];

/// True if the (lower-case, dashed) `name` belongs to an untrusted family: it starts with
/// one, or it overrides something (`*-override`).
fn is_untrusted(name: &str) -> bool {
    UNTRUSTED_FAMILIES.iter().any(|f| name.starts_with(f)) || name.ends_with("-override")
}

/// Names listed in `Connection` headers (lower-cased), excluding any the gateway
/// itself sets.
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut out = Vec::new();
    for v in headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            for token in s.split(',') {
                let t = token.trim().to_ascii_lowercase();
                if let Ok(n) = HeaderName::from_bytes(t.as_bytes()) {
                    out.push(n);
                }
            }
        }
    }
    out
}

/// Builds the headers sent upstream from the client's: hop-by-hop, `Connection`-named,
/// credential, trust, tag and override headers removed; `X-Forwarded-*`, `X-Request-Id`
/// and a valid `traceparent` set by the gateway.
pub fn upstream_request_headers(
    inbound: &HeaderMap,
    client_ip: IpAddr,
    proto: &'static str,
    request_id: &str,
    lineage_header: &str,
) -> HeaderMap {
    let named = connection_named(inbound);
    let mut out = HeaderMap::with_capacity(inbound.len() + 4);
    for (name, value) in inbound {
        // `_` and `-` are the same to CGI-style servers (`HTTP_X_FORWARDED_FOR`): match
        // every list on the dashed form so underscore variants are stripped too.
        let dashed;
        let n = if name.as_str().contains('_') {
            dashed = name.as_str().replace('_', "-");
            dashed.as_str()
        } else {
            name.as_str()
        };
        if HOP_BY_HOP.contains(&n)
            || is_untrusted(n)
            || n == lineage_header
            || n == "host"
            || named.contains(name)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    if let Ok(v) = HeaderValue::from_str(&client_ip.to_string()) {
        out.insert("x-forwarded-for", v);
    }
    out.insert("x-forwarded-proto", HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(request_id) {
        out.insert("x-request-id", v);
    }
    if let Some(tp) = inbound.get("traceparent")
        && valid_traceparent(tp.as_bytes())
    {
        out.insert("traceparent", tp.clone());
        if let Some(ts) = inbound.get("tracestate") {
            out.insert("tracestate", ts.clone());
        }
    }
    out
}

/// Strips hop-by-hop and `Connection`-named headers from an upstream response.
pub fn clean_response_headers(headers: &mut HeaderMap) {
    let named = connection_named(headers);
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
    for n in named {
        if !n.as_str().starts_with("bordergate-") {
            headers.remove(&n);
        }
    }
}

/// A new request id, unique to this request (UUIDv7: time-ordered).
pub fn request_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// A well-formed inbound `X-Request-Id` (1–128 of `[A-Za-z0-9._:-]`), kept beside the
/// gateway's own id: a client's value need not be unique.
pub fn client_request_id(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-request-id") {
        let b = v.as_bytes();
        if !b.is_empty()
            && b.len() <= 128
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b':' | b'-'))
            && let Ok(s) = std::str::from_utf8(b)
        {
            return Some(s.to_string());
        }
    }
    None
}

/// W3C Trace Context `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`, ids not all zero.
pub fn valid_traceparent(v: &[u8]) -> bool {
    if v.len() != 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return false;
    }
    let hex = |s: &[u8]| s.iter().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'));
    let (ver, trace, span, flags) = (&v[0..2], &v[3..35], &v[36..52], &v[53..55]);
    hex(ver)
        && ver != b"ff"
        && hex(trace)
        && hex(span)
        && hex(flags)
        && trace.iter().any(|c| *c != b'0')
        && span.iter().any(|c| *c != b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_what_the_client_must_not_set() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer x"));
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-data-origin", HeaderValue::from_static("US"));
        h.insert("bordergate-lineage", HeaderValue::from_static("a"));
        h.insert("x-forwarded-for", HeaderValue::from_static("1.2.3.4"));
        h.insert("range", HeaderValue::from_static("bytes=0-1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let out = upstream_request_headers(
            &h,
            "127.0.0.1".parse().unwrap(),
            "https",
            "rid",
            "bordergate-lineage",
        );
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-secret").is_none());
        assert!(out.get("x-data-origin").is_none());
        assert!(out.get("bordergate-lineage").is_none());
        assert!(out.get("transfer-encoding").is_none());
        let mut u = HeaderMap::new();
        u.insert("x_forwarded_for", HeaderValue::from_static("10.0.0.1"));
        u.insert("x_original_url", HeaderValue::from_static("/admin"));
        u.insert("bordergate_lineage", HeaderValue::from_static("a"));
        u.insert("x_data_origin", HeaderValue::from_static("US"));
        u.insert("transfer_encoding", HeaderValue::from_static("chunked"));
        u.insert("x_custom", HeaderValue::from_static("kept"));
        let out2 = upstream_request_headers(
            &u,
            "127.0.0.1".parse().unwrap(),
            "https",
            "rid",
            "bordergate-lineage",
        );
        assert_eq!(out2.len(), 4, "{out2:?}");
        assert_eq!(out2["x_custom"], "kept");
        assert_eq!(out["x-forwarded-for"], "127.0.0.1");
        assert_eq!(out["range"], "bytes=0-1");
        assert_eq!(out["x-request-id"], "rid");
    }

    #[test]
    fn trust_and_identity_headers_are_stripped_by_family() {
        let names = [
            "x-forwarded-uri",
            "x-forwarded-path",
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
            "x-forwarded-access-token",
            "x-forwarded-server",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-method",
            "x_forwarded_user",
            "x-gateway-principal",
            "remote-user",
            "x-remote-user",
            "x-auth-request-user",
            "x-auth-request-email",
            "x-user",
            "x-user-id",
            "x-envoy-original-path",
            "true-client-ip",
            "x-client-ip",
            "x-ms-client-principal-name",
            "x-some-override",
        ];
        let mut h = HeaderMap::new();
        for n in names {
            h.insert(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("admin"),
            );
        }
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert("x-custom-trace", HeaderValue::from_static("kept"));
        let out = upstream_request_headers(
            &h,
            "127.0.0.1".parse().unwrap(),
            "https",
            "rid",
            "bordergate-lineage",
        );
        for n in names {
            assert!(out.get(n).is_none(), "{n} reached the upstream");
        }
        assert_eq!(out["accept"], "*/*");
        assert_eq!(out["x-custom-trace"], "kept");
    }

    #[test]
    fn request_ids_and_traceparent() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("abc-123"));
        assert_eq!(client_request_id(&h).as_deref(), Some("abc-123"));
        h.insert("x-request-id", HeaderValue::from_static("bad id\"{"));
        assert_eq!(client_request_id(&h), None);
        assert_ne!(request_id(), request_id());
        assert!(valid_traceparent(
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        ));
        assert!(!valid_traceparent(
            b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"
        ));
    }
}
