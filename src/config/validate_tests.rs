//! Validation: every problem reported at once, each on its own line.

use std::path::Path;

use super::*;
use crate::config::{Lines, Overrides, UndeclaredRecent, parse_yaml};

fn problems(text: &str) -> Vec<(Option<usize>, String)> {
    match Config::from_text(Path::new("gateway.yaml"), text, &Overrides::default()) {
        Ok(_) => Vec::new(),
        Err(d) => d.0.into_iter().map(|d| (d.line, d.message)).collect(),
    }
}

const MANY_ERRORS: &str = "\
listen:
  address: 127.0.0.1:8080
auth:
  issuer: i
  audience: a
  leeway_secs: 301
  keys:
    - alg: HS256
      secret: {env: X}
    - alg: RS257
      public_key: k.pem
upstreams:
  - name: eu-store
    url: http://127.0.0.1:9
    jurisdiction: DE
  - name: cdn
    url: ftp://x
    jurisdiction: DE
    follow_redirects_to: ['https://ok.example', 'https://x/y']
routes:
  - prefix: /eu
    upstream: eu-stor
  - prefix: data
    upstream: cdn
catalog: c.yaml
policies: p
audit:
  path: a.log
  batch_max: 0
admin:
  address: 127.0.0.1:8080
  plaintext: true
  max_records: 0
";

#[test]
fn a_config_with_several_errors_reports_each_on_its_line() {
    let got = problems(MANY_ERRORS);
    let want = [
        (1, "`listen` has no `tls`"),
        (
            31,
            "`admin.address` `127.0.0.1:8080` is the proxy's address",
        ),
        (33, "`admin.max_records` must be at least 1"),
        (6, "auth leeway `301` s"),
        (10, "unknown or unsupported algorithm `RS257`"),
        (17, "upstream `cdn` url `ftp://x` is not http://"),
        (
            19,
            "upstream `cdn` follow_redirects_to: `https://x/y` is not an origin",
        ),
        (22, "route `/eu` names unknown upstream `eu-stor`"),
        (23, "route prefix `data` must start with `/`"),
        (29, "`audit.batch_max` must be at least 1"),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for ((line, msg), (want_line, want_msg)) in got.iter().zip(want) {
        assert_eq!(*line, Some(want_line), "{msg}");
        assert!(msg.starts_with(want_msg), "{msg}");
    }
}

#[test]
fn an_unknown_upstream_suggests_the_closest_name() {
    let got = problems(MANY_ERRORS);
    let msg = got
        .iter()
        .map(|(_, m)| m.as_str())
        .find(|m| m.contains("unknown upstream"))
        .unwrap();
    assert_eq!(
        msg,
        "route `/eu` names unknown upstream `eu-stor`; did you mean `eu-store`?"
    );
    let far = MANY_ERRORS.replace("upstream: eu-stor", "upstream: archive");
    let got = problems(&far);
    assert!(
        got.iter()
            .any(|(_, m)| m == "route `/eu` names unknown upstream `archive`"),
        "{got:#?}"
    );
}

#[test]
fn the_rendered_message_names_file_and_line() {
    let d = Config::from_text(
        Path::new("gateway.yaml"),
        MANY_ERRORS,
        &Overrides::default(),
    )
    .unwrap_err();
    assert!(
        d.to_string()
            .lines()
            .any(|l| l.starts_with("gateway.yaml:22: route `/eu` names unknown upstream")),
        "{d}"
    );
}

const VALID: &str = "\
listen: {address: '127.0.0.1:8080', plaintext: true}
auth:
  issuer: i
  audience: a
  keys:
    - {kid: a, alg: HS256, secret: {env: X}}
upstreams: [{name: u, url: 'http://127.0.0.1:9', jurisdiction: DE}]
routes: [{prefix: /d, upstream: u}]
catalog: c.yaml
policies: p
audit: {path: a.log}
";

#[test]
fn a_valid_config_has_no_problems() {
    assert_eq!(problems(VALID), []);
}

#[test]
fn keys_take_the_material_of_their_algorithm() {
    let text = VALID.replace(
        "    - {kid: a, alg: HS256, secret: {env: X}}\n",
        "    - {kid: a, alg: HS256, secret: {env: X}, public_key: k.pem}\n    - {kid: a, alg: ES256, public_key: k.pem, secret: {env: X}}\n    - {alg: EdDSA}\n",
    );
    let got = problems(&text);
    let want = [
        (
            6,
            "key with alg `HS256` takes a `secret`, not a `public_key`",
        ),
        (7, "duplicate key id `a`"),
        (
            7,
            "key with alg `ES256` takes a `public_key`, not a `secret`",
        ),
        (8, "key with alg `EdDSA` needs a `public_key`"),
    ];
    let want: Vec<_> = want.map(|(l, m)| (Some(l), m.to_string())).into();
    assert_eq!(got, want);
}

#[test]
fn tls_checks_cover_the_admin_listener_too() {
    let text = format!(
        "{VALID}admin:\n  address: 127.0.0.1:9901\n  tls:\n    cert: c.pem\n    key: k.pem\n    require_client_cert: true\n"
    );
    assert_eq!(
        problems(&text),
        [(
            Some(17),
            "`require_client_cert` needs `client_ca`".to_string()
        )]
    );
}

#[test]
fn upstream_urls_must_parse() {
    let text = VALID.replace("'http://127.0.0.1:9'", "'http://a b'");
    let got = problems(&text);
    assert_eq!(
        got,
        [(
            Some(7),
            "upstream `u` url `http://a b` is not a valid URL".to_string()
        )]
    );
}

fn sink(yaml: &str) -> Vec<String> {
    let a: AuditConfig = parse_yaml(Path::new("g.yaml"), yaml).unwrap();
    let lines = Lines::default();
    let mut out = FileDiagnostics::new(Path::new("g.yaml"), &lines);
    check_audit_sink(&a, &mut out);
    out.into_vec().into_iter().map(|d| d.message).collect()
}

#[test]
fn the_postgres_sink_needs_a_connection_without_an_inline_password() {
    let ok = "sink: postgres\npostgres:\n  url: {env: PG_URL}\n";
    assert!(sink(ok).is_empty(), "{:?}", sink(ok));
    let a: AuditConfig = parse_yaml(Path::new("g.yaml"), ok).unwrap();
    assert_eq!(a.describe(), "postgres table bordergate_audit");
    assert!(
        sink("sink: postgres\npostgres:\n  dsn: host=127.0.0.1 user=postgres dbname=test\n  table: t1\n")
            .is_empty()
    );
    for (yaml, want) in [
        ("sink: postgres\n", "needs an `audit.postgres` section"),
        ("sink: postgres\npostgres: {}\n", "needs `url` or `dsn`"),
        (
            "sink: postgres\npostgres: {dsn: 'postgres://u:secret@h/db'}\n",
            "holds a password",
        ),
        (
            "sink: postgres\npostgres: {dsn: 'host=h password=x'}\n",
            "holds a password",
        ),
        (
            "sink: postgres\npostgres: {dsn: 'host=h', table: 'A; drop'}\n",
            "not a lower-case SQL name",
        ),
        (
            "sink: postgres\npostgres: {dsn: 'host=h'}\nrotate_bytes: 10\n",
            "apply to `sink: file` only",
        ),
        ("sink: file\n", "`audit.path` is required"),
    ] {
        let p = sink(yaml);
        assert!(p.iter().any(|e| e.contains(want)), "{yaml}: {p:?}");
    }
    assert!(sink("path: a.log\n").is_empty());
    assert!(!dsn_has_password("postgres://user@host/db"));
    assert!(!dsn_has_password(
        "host=127.0.0.1 user=postgres dbname=test"
    ));
}

#[test]
fn the_lineage_section_has_fail_closed_defaults_and_bounds() {
    let base = "\
listen:
  address: 127.0.0.1:8080
  plaintext: true
auth:
  issuer: i
  audience: a
  keys:
    - kid: k
      alg: HS256
      secret: {env: X}
upstreams:
  - name: eu-store
    url: http://127.0.0.1:9
    jurisdiction: DE
routes:
  - prefix: /eu/
    upstream: eu-store
catalog: c.yaml
policies: p
audit:
  path: a.log
";
    let cfg = Config::from_text(Path::new("gateway.yaml"), base, &Overrides::default()).unwrap();
    assert_eq!(cfg.lineage.window_days, 30);
    assert_eq!(cfg.lineage.undeclared_recent, UndeclaredRecent::Refuse);
    let flag = format!("{base}lineage:\n  undeclared_recent: flag\n  window_days: 0\n");
    let cfg = Config::from_text(Path::new("gateway.yaml"), &flag, &Overrides::default()).unwrap();
    assert_eq!(cfg.lineage.undeclared_recent, UndeclaredRecent::Flag);
    assert!(
        cfg.lineage.since(time::OffsetDateTime::now_utc()).is_none(),
        "0: off"
    );
    let bad = format!("{base}lineage:\n  window_days: 4000\n  max_principals: 0\n");
    let got = problems(&bad);
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("`lineage.window_days` 4000")),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|(_, m)| m.contains("`lineage.max_principals`")),
        "{got:?}"
    );
    let unknown = format!("{base}lineage:\n  undeclared_recent: ignore\n");
    assert!(!problems(&unknown).is_empty());
}

#[test]
fn jwks_url_settings_are_checked_and_a_url_as_jwks_names_jwks_url() {
    let base = "\
listen: {address: '127.0.0.1:8080', plaintext: true}
upstreams: [{name: u, url: 'http://127.0.0.1:9', jurisdiction: DE}]
routes: [{prefix: /d, upstream: u}]
catalog: c.yaml
policies: p
audit: {path: a.log}
auth:
  issuer: i
  audience: a
";
    let only = |extra: &str| -> Vec<String> {
        problems(&format!("{base}{extra}"))
            .into_iter()
            .map(|(_, m)| m)
            .collect()
    };
    assert_eq!(
        only("  jwks_url: https://idp.example/.well-known/jwks.json\n"),
        Vec::<String>::new()
    );
    let got = only("  jwks: https://idp.example/jwks\n");
    assert!(
        got.iter()
            .any(|m| m.contains("`auth.jwks` is a file path") && m.contains("use `jwks_url`")),
        "{got:?}"
    );
    let got = only(
        "  jwks_url: http://idp.example/jwks
  jwks_refresh_min_secs: 0
  jwks_refresh_max_secs: 7200
  jwks_unknown_kid_cooldown_secs: 0
  jwks_max_stale_secs: 600
",
    );
    for want in [
        "is not https",
        "`jwks_refresh_min_secs` must be at least 1",
        "`jwks_unknown_kid_cooldown_secs` must be at least 1",
        "keys would go stale between two refreshes",
    ] {
        assert!(got.iter().any(|m| m.contains(want)), "{want} in {got:?}");
    }
    let got = only("  jwks_ca: ca.pem\n  keys: [{alg: HS256, secret: {env: X}}]\n");
    assert!(got.iter().any(|m| m.contains("no `jwks_url`")), "{got:?}");
}

#[test]
fn the_admin_sign_in_is_checked_on_its_lines() {
    let text = format!(
        "{VALID}admin:\n  address: 127.0.0.1:9901\n  plaintext: true\n  oidc:\n    issuer: http://idp.example\n    client_id: bg\n    redirect_url: https://officer.example/callback\n    role_claim: realm_access..roles\n    session_secret: {{file: s.key}}\n    session_ttl_secs: 86400\n"
    );
    let got = problems(&text);
    let lines: Vec<Option<usize>> = got.iter().map(|(l, _)| *l).collect();
    assert_eq!(lines, [Some(16), Some(18), Some(19), Some(21)], "{got:?}");
    assert!(got[0].1.contains("is not https"), "{got:?}");
    assert!(got[1].1.contains("must end in `/oidc/callback`"), "{got:?}");
    assert!(got[2].1.contains("is not a claim name"), "{got:?}");
    assert!(got[3].1.contains("between 1 and 43200"), "{got:?}");
    let good = text
        .replace("http://idp.example", "https://idp.example")
        .replace("/callback", "/oidc/callback")
        .replace("realm_access..roles", "realm_access.roles")
        .replace("86400", "3600");
    assert_eq!(problems(&good), []);
}
