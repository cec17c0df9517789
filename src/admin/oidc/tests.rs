#![allow(clippy::unwrap_used)]
use super::*;

fn claims(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap()
}

#[test]
fn the_role_comes_from_the_configured_claim() {
    let c = claims(json!({
        "roles": ["analyst", "compliance-officer"],
        "groups": "auditors",
        "realm_access": {"roles": ["compliance-officer"]},
    }));
    assert!(has_role(&c, "roles", "compliance-officer"));
    assert!(!has_role(&c, "roles", "admin"));
    assert!(has_role(&c, "groups", "auditors"));
    assert!(has_role(&c, "realm_access.roles", "compliance-officer"));
    assert!(!has_role(&c, "realm_access.groups", "compliance-officer"));
    assert!(!has_role(&c, "missing", "compliance-officer"));
    let odd = claims(json!({"roles": [1, {"r": "compliance-officer"}]}));
    assert!(!has_role(&odd, "roles", "compliance-officer"));
}

#[test]
fn logout_is_refused_from_another_origin() {
    let me = "https://officer.example:9443";
    let mut h = HeaderMap::new();
    assert_eq!(check_origin(&h, me).unwrap_err().kind, Kind::CrossOrigin);
    h.insert(header::ORIGIN, "https://evil.example".parse().unwrap());
    assert_eq!(check_origin(&h, me).unwrap_err().kind, Kind::CrossOrigin);
    h.insert(header::ORIGIN, me.parse().unwrap());
    check_origin(&h, me).unwrap();
    h.insert("sec-fetch-site", "cross-site".parse().unwrap());
    assert_eq!(check_origin(&h, me).unwrap_err().kind, Kind::CrossOrigin);
    h.insert("sec-fetch-site", "same-origin".parse().unwrap());
    check_origin(&h, me).unwrap();
}

#[test]
fn failure_pages_escape_what_they_show() {
    assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&#39;");
    let r = page(sign_in_failed("`<script>` refused"));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.headers()[header::CONTENT_TYPE],
        "text/html; charset=utf-8"
    );
    let mut h = HeaderMap::new();
    assert!(!wants_html(&h));
    h.insert(
        header::ACCEPT,
        "text/html,application/xhtml+xml".parse().unwrap(),
    );
    assert!(wants_html(&h));
}
