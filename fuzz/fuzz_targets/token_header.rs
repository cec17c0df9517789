//! Fuzz target: token (Authorization header) parsing never panics and never accepts
//! what the key did not sign.
#![no_main]
use std::sync::OnceLock;

use bordergate::auth::Authenticator;
use bordergate::config::{AuthConfig, parse_yaml};
use libfuzzer_sys::fuzz_target;

fn auth() -> &'static Authenticator {
    static A: OnceLock<Authenticator> = OnceLock::new();
    A.get_or_init(|| {
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = dir.path().join("hs.secret");
        std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef").expect("write");
        let yaml = format!(
            "issuer: i\naudience: a\nkeys:\n  - kid: k\n    alg: HS256\n    secret:\n      file: {}\n",
            secret.display()
        );
        let cfg: AuthConfig = parse_yaml(std::path::Path::new("auth.yaml"), &yaml).expect("config");
        Authenticator::from_config(&cfg).expect("authenticator")
    })
}

fuzz_target!(|data: &[u8]| {
    assert!(auth().verify(Some(data)).is_err());
    let mut v = b"Bearer ".to_vec();
    v.extend_from_slice(data);
    assert!(auth().verify(Some(&v)).is_err());
});
