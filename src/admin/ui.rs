//! The compliance officer's page: HTML, CSS and JavaScript built into the binary.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use super::AdminBody;

const INDEX: &str = include_str!("ui/index.html");
const APP_JS: &str = include_str!("ui/app.js");
const APP_CSS: &str = include_str!("ui/app.css");

/// Everything the page loads comes from this listener; nothing inline, nothing remote.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset_response(body: &'static str, ctype: &'static str) -> Response<AdminBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    r
}

/// The page itself.
pub fn page() -> Response<AdminBody> {
    asset_response(INDEX, "text/html; charset=utf-8")
}

/// A file under `/ui/`.
pub fn asset(path: &str) -> Response<AdminBody> {
    match path {
        "/ui/app.js" => asset_response(APP_JS, "text/javascript; charset=utf-8"),
        "/ui/app.css" => asset_response(APP_CSS, "text/css; charset=utf-8"),
        _ => {
            let mut r = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
    }
}
