//! Property tests, the in-CI counterparts of the cargo-fuzz targets in fuzz/: path
//! normalisation is idempotent and never panics; the catalog, config, token and audit
//! parsers and the verifier never panic and always give a verdict.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use bordergate::audit::{parse_line, verify::verify_reader};
use bordergate::catalog::Catalog;
use bordergate::catalog::path::{check_decoded, normalize};
use proptest::prelude::*;

/// Path-ish strings: the characters that matter to normalisation, escapes included.
fn pathish() -> impl Strategy<Value = String> {
    let atoms = prop::sample::select(vec![
        "/",
        "/",
        "/",
        "a",
        "b",
        "Z",
        "0",
        ".",
        "..",
        "-",
        "_",
        "~",
        ";",
        "#",
        "?",
        "%",
        "%2e",
        "%2E",
        "%2f",
        "%2F",
        "%5c",
        "%25",
        "%00",
        "%0a",
        "%c0%ae",
        "%ef%bc%8e",
        "%e2%80%ae",
        "%41",
        "%7e",
        "%20",
        "%zz",
        "\\",
        " ",
        "\u{ff0e}",
        "é",
        "%c3%a9",
        "@",
        ":",
        "+",
        "=",
    ]);
    prop::collection::vec(atoms, 0..24).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_normalised_path_changes_by_normalising_again(raw in pathish()) {
        if let Ok(n) = normalize(&raw) {
            let again = normalize(&n.encoded).unwrap();
            prop_assert_eq!(&again, &n);
            prop_assert!(check_decoded(&n.decoded).is_ok());
            // The forwarded form carries no dot segment, `//`, backslash or `%25`.
            prop_assert!(!n.encoded.contains("/../") && !n.encoded.contains("/./"));
            prop_assert!(!n.encoded.contains("//") && !n.encoded.contains('\\'));
            prop_assert!(!n.encoded.contains("%25") && !n.encoded.contains("%2F"));
        }
    }

    #[test]
    fn normalise_never_panics_on_any_string(raw in any::<String>()) {
        let _ = normalize(&raw);
        let _ = check_decoded(&raw);
    }

    #[test]
    fn verifier_and_record_parser_never_panic_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse_line(&bytes);
        let report = verify_reader(std::io::Cursor::new(&bytes));
        // Always a verdict; an empty log is the only clean arbitrary one we can promise.
        let _ = report.is_ok();
    }

    #[test]
    fn verifier_never_panics_on_mutated_valid_logs(idx in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<prop::sample::Index>()) {
        let log = sample_log();
        let mut b = log.clone();
        let i = idx.index(b.len());
        b[i] = byte;
        let _ = verify_reader(std::io::Cursor::new(&b));
        let c = cut.index(log.len());
        let _ = verify_reader(std::io::Cursor::new(&log[..c]));
    }

    #[test]
    fn catalog_loader_never_panics(text in "[ -~\n]{0,400}") {
        let _ = Catalog::parse(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn catalog_loader_never_panics_on_mutated_catalogs(idx in any::<prop::sample::Index>(), ch in "[ -~\n]") {
        let base = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/quickstart/catalog.yaml")).unwrap();
        let mut s = base.into_bytes();
        let i = idx.index(s.len());
        s[i] = ch.as_bytes()[0];
        let text = String::from_utf8_lossy(&s).to_string();
        let _ = Catalog::parse(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn config_loader_never_panics(text in "[ -~\n]{0,400}") {
        let _ = bordergate::config::parse_yaml::<bordergate::config::Config>(Path::new("fuzz.yaml"), &text);
    }

    #[test]
    fn token_parser_never_panics_and_never_accepts_garbage(value in prop::collection::vec(any::<u8>(), 0..600), dots in "[A-Za-z0-9_-]{0,40}\\.[A-Za-z0-9_-]{0,80}\\.[A-Za-z0-9_-]{0,40}") {
        static AUTH: std::sync::OnceLock<bordergate::auth::Authenticator> = std::sync::OnceLock::new();
        let auth = AUTH.get_or_init(authenticator);
        prop_assert!(auth.verify(Some(&value)).is_err());
        let bearer = format!("Bearer {dots}");
        prop_assert!(auth.verify(Some(bearer.as_bytes())).is_err());
    }
}

fn authenticator() -> bordergate::auth::Authenticator {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("hs.secret");
    std::fs::write(&secret, "0123456789abcdef0123456789abcdef0123456789abcdef").unwrap();
    let cfg: bordergate::config::AuthConfig = bordergate::config::parse_yaml(
        Path::new("auth.yaml"),
        &format!(
            "issuer: i\naudience: a\nkeys:\n  - kid: k\n    alg: HS256\n    secret:\n      file: {}\n",
            secret.display()
        ),
    )
    .unwrap();
    bordergate::auth::Authenticator::from_config(&cfg).unwrap()
}

/// A small valid log written by the real writer.
fn sample_log() -> Vec<u8> {
    static LOG: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let log = bordergate::audit::AuditLog::open(&path, 8).unwrap();
            for i in 0..4 {
                let rec = bordergate::audit::Record::Event(bordergate::audit::EventRecord::new(
                    "test",
                    format!("event {i}"),
                ));
                log.append(rec).await.unwrap();
            }
            log.shutdown().await;
        });
        std::fs::read(&path).unwrap()
    })
    .clone()
}
