//! The normaliser: one test per refusal class, accepted forms, and properties.

use super::*;
use proptest::prelude::*;

fn ok(raw: &str) -> NormalizedPath {
    match normalize(raw) {
        Ok(n) => n,
        Err(e) => panic!("`{raw}` refused: {e}"),
    }
}

fn refused(raw: &str) -> PathError {
    match normalize(raw) {
        Ok(n) => panic!("`{raw}` accepted as {n:?}"),
        Err(e) => e,
    }
}

#[test]
fn accepts_ordinary_paths() {
    let n = ok("/datasets/eu-customers/customers.csv");
    assert_eq!(n.decoded, "/datasets/eu-customers/customers.csv");
    assert_eq!(n.encoded, "/datasets/eu-customers/customers.csv");
    assert_eq!(ok("/").decoded, "/");
    // A single trailing slash on a directory-like path is fine.
    assert_eq!(ok("/datasets/eu/").decoded, "/datasets/eu/");
    // Names that merely contain dots are not dot segments.
    assert_eq!(ok("/a/...").decoded, "/a/...");
    assert_eq!(ok("/a/.hidden/x..y").decoded, "/a/.hidden/x..y");
    assert_eq!(ok("/a/b:c@d!$&'()*+,=~_").encoded, "/a/b:c@d!$&'()*+,=~_");
}

#[test]
fn accepts_encoded_space_and_unicode() {
    let n = ok("/datasets/a%20b/x.csv");
    assert_eq!(n.decoded, "/datasets/a b/x.csv");
    assert_eq!(n.encoded, "/datasets/a%20b/x.csv");
    let n = ok("/datasets/caf%C3%A9/");
    assert_eq!(n.decoded, "/datasets/café/");
    assert_eq!(n.encoded, "/datasets/caf%C3%A9/");
    // Lower-case hex is accepted and canonicalised to upper case.
    let n = ok("/datasets/caf%c3%a9/");
    assert_eq!(n.encoded, "/datasets/caf%C3%A9/");
    // Needlessly encoded unreserved characters are canonicalised.
    assert_eq!(ok("/%41bc").encoded, "/Abc");
    // A `?` that was percent-encoded is data, and stays encoded.
    let n = ok("/a%3Fb");
    assert_eq!(n.decoded, "/a?b");
    assert_eq!(n.encoded, "/a%3Fb");
}

#[test]
fn refuses_non_absolute_and_empty() {
    assert_eq!(refused(""), PathError::Empty);
    assert_eq!(refused("datasets/x"), PathError::NotAbsolute);
    assert_eq!(refused("*"), PathError::NotAbsolute);
    assert_eq!(refused("http://evil/x"), PathError::NotAbsolute);
}

#[test]
fn refuses_dot_segments_raw_and_encoded() {
    for p in ["/a/../b", "/a/./b", "/..", "/.", "/a/..", "/a/../", "/a/./"] {
        assert_eq!(refused(p), PathError::DotSegment, "{p}");
    }
    for p in [
        "/a/%2e%2e/b",
        "/a/%2E%2E/b",
        "/a/%2e%2E/b",
        "/a/.%2e/b",
        "/a/%2e./b",
        "/a/%2e/b",
        "/x%2Ecsv",
    ] {
        assert_eq!(refused(p), PathError::EncodedDot, "{p}");
    }
}

#[test]
fn refuses_empty_segments() {
    for p in ["//", "//a", "/a//b", "/a/b//", "///etc/passwd"] {
        assert_eq!(refused(p), PathError::EmptySegment, "{p}");
    }
}

#[test]
fn refuses_encoded_slash_and_backslash() {
    assert_eq!(refused("/a%2fb"), PathError::EncodedSlash);
    assert_eq!(refused("/a%2Fb"), PathError::EncodedSlash);
    assert_eq!(refused("/a%5cb"), PathError::Backslash);
    assert_eq!(refused("/a%5C..%5Cb"), PathError::Backslash);
    assert_eq!(refused("/a\\b"), PathError::Backslash);
}

#[test]
fn refuses_control_bytes_raw_and_encoded() {
    assert_eq!(refused("/a%00b"), PathError::ControlCharacter(0));
    assert_eq!(refused("/a%0a"), PathError::ControlCharacter(0x0a));
    assert_eq!(refused("/a%0D%0Ax"), PathError::ControlCharacter(0x0d));
    assert_eq!(refused("/a%7f"), PathError::ControlCharacter(0x7f));
    assert_eq!(refused("/a%1b[31m"), PathError::ControlCharacter(0x1b));
    assert_eq!(refused("/a\tb"), PathError::ControlCharacter(9));
    assert_eq!(refused("/a\0b"), PathError::ControlCharacter(0));
    // C1 controls, encoded as UTF-8.
    assert_eq!(refused("/a%C2%85"), PathError::ControlCharacter(0x85));
}

#[test]
fn refuses_invalid_and_overlong_utf8() {
    assert_eq!(refused("/a%ff"), PathError::InvalidUtf8);
    assert_eq!(refused("/a%C3"), PathError::InvalidUtf8);
    // Overlong `/` and `.`.
    assert_eq!(refused("/a%C0%AFb"), PathError::InvalidUtf8);
    assert_eq!(refused("/a%C0%AE%C0%AE/b"), PathError::InvalidUtf8);
    assert_eq!(refused("/a%E0%80%AF"), PathError::InvalidUtf8);
    // An encoded UTF-16 surrogate.
    assert_eq!(refused("/a%ED%A0%80"), PathError::InvalidUtf8);
}

#[test]
fn refuses_malformed_escapes() {
    assert_eq!(refused("/a%zz"), PathError::MalformedEscape("%zz".into()));
    assert_eq!(refused("/a%"), PathError::MalformedEscape("%".into()));
    assert_eq!(refused("/a%4"), PathError::MalformedEscape("%4".into()));
    assert_eq!(refused("/a%4g"), PathError::MalformedEscape("%4g".into()));
    assert_eq!(refused("/a%%41"), PathError::MalformedEscape("%%4".into()));
}

#[test]
fn refuses_fragments_and_parameters() {
    assert_eq!(refused("/a#b"), PathError::Fragment);
    assert_eq!(refused("/a%23b"), PathError::Fragment);
    assert_eq!(refused("/a/..;/b"), PathError::PathParameter);
    assert_eq!(refused("/a;jsessionid=1"), PathError::PathParameter);
    assert_eq!(refused("/a%3bb"), PathError::PathParameter);
}

#[test]
fn refuses_double_encoding() {
    assert_eq!(refused("/a/%252e%252e/b"), PathError::DoubleEncoding);
    assert_eq!(refused("/a%252Fb"), PathError::DoubleEncoding);
    assert_eq!(refused("/a%25"), PathError::DoubleEncoding);
}

#[test]
fn refuses_look_alikes() {
    // U+FF0E full-width full stop, U+FF0F full-width solidus, U+FF3C full-width reverse solidus.
    assert_eq!(
        refused("/a/%EF%BC%8E%EF%BC%8E/b"),
        PathError::LookAlike(0xFF0E)
    );
    assert_eq!(refused("/a%EF%BC%8Fb"), PathError::LookAlike(0xFF0F));
    assert_eq!(refused("/a%EF%BC%BCb"), PathError::LookAlike(0xFF3C));
    // U+2215 division slash, U+2044 fraction slash.
    assert_eq!(refused("/a%E2%88%95b"), PathError::LookAlike(0x2215));
    assert_eq!(refused("/a%E2%81%84b"), PathError::LookAlike(0x2044));
    // U+202E right-to-left override.
    assert_eq!(refused("/a%E2%80%AEb"), PathError::LookAlike(0x202E));
}

#[test]
fn refuses_raw_characters_outside_pchar() {
    assert_eq!(refused("/a b"), PathError::ForbiddenCharacter(' '));
    assert_eq!(refused("/a?b"), PathError::ForbiddenCharacter('?'));
    assert_eq!(refused("/a\"b"), PathError::ForbiddenCharacter('"'));
    assert_eq!(refused("/a<b>"), PathError::ForbiddenCharacter('<'));
    assert_eq!(refused("/a|b"), PathError::ForbiddenCharacter('|'));
    assert_eq!(refused("/café"), PathError::NonAscii);
}

#[test]
fn refuses_long_paths() {
    let long = format!("/{}", "a".repeat(MAX_PATH_BYTES));
    assert_eq!(refused(&long), PathError::TooLong);
    let long_encoded = format!("/{}", "%41".repeat(MAX_PATH_BYTES));
    assert_eq!(refused(&long_encoded), PathError::TooLong);
    let fits = format!("/{}", "a".repeat(MAX_PATH_BYTES - 1));
    assert_eq!(ok(&fits).decoded.len(), MAX_PATH_BYTES);
}

#[test]
fn messages_are_lowercase_without_a_period() {
    let errors = [
        refused("/a%zz"),
        refused("/a%2fb"),
        refused("/a%E2%88%95b"),
        refused("/a%00"),
        refused("/a b"),
    ];
    for e in errors {
        let m = e.to_string();
        assert!(!m.ends_with('.'), "{m}");
        // Lower case outside the quoted input.
        let prose: String = m.split('`').step_by(2).collect();
        assert_eq!(prose.to_lowercase(), prose, "{m}");
    }
    assert_eq!(
        refused("/a%zz").to_string(),
        "malformed percent escape `%zz`"
    );
}

/// Raw paths built from the characters that matter to the normaliser.
fn raw_path() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("/".to_string()),
        Just(".".to_string()),
        Just("..".to_string()),
        Just("%".to_string()),
        Just(";".to_string()),
        Just("#".to_string()),
        Just("\\".to_string()),
        "[a-zA-Z0-9_~!$&'()*+,=:@-]{1,4}",
        "%[0-9a-fA-F]{2}",
        "%[2-7][0-9a-fA-F]",
        "%(2e|2E|2f|2F|5c|5C|25|00|0a|0d|7f|23|3b|C3%A9|EF%BC%8E|C0%AE)",
        any::<char>().prop_map(|c| c.to_string()),
    ];
    prop::collection::vec(piece, 0..16).prop_map(|v| format!("/{}", v.concat()))
}

/// Decoded paths made of arbitrary Unicode segments.
fn decoded_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[^/]{1,6}", 1..6).prop_map(|segs| format!("/{}", segs.join("/")))
}

fn check_invariants(n: &NormalizedPath) {
    let d = &n.decoded;
    assert!(d.starts_with('/'));
    assert!(!d.contains("//"), "{d:?}");
    assert!(!d.contains('\\'), "{d:?}");
    assert!(!d.contains('%'), "{d:?}");
    assert!(!d.contains(';') && !d.contains('#'), "{d:?}");
    assert!(!d.chars().any(char::is_control), "{d:?}");
    assert!(!d.split('/').any(|s| s == "." || s == ".."), "{d:?}");
    assert!(d.len() <= MAX_PATH_BYTES);
    assert!(n.encoded.is_ascii());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn normalising_twice_changes_nothing(raw in raw_path()) {
        if let Ok(n) = normalize(&raw) {
            check_invariants(&n);
            prop_assert_eq!(normalize(&n.encoded), Ok(n.clone()));
        }
    }

    #[test]
    fn encoding_round_trips(decoded in decoded_path()) {
        let encoded = encode(&decoded);
        match normalize(&encoded) {
            Ok(n) => {
                check_invariants(&n);
                prop_assert_eq!(&n.decoded, &decoded);
                prop_assert_eq!(&n.encoded, &encoded);
                prop_assert_eq!(normalize(&n.encoded), Ok(n.clone()));
            }
            Err(e) => {
                // Only refused because the decoded path itself is ambiguous.
                prop_assert!(check_decoded(&decoded).is_err(), "{e}");
            }
        }
    }

    #[test]
    fn never_panics(raw in any::<String>()) {
        if let Ok(n) = normalize(&raw) {
            check_invariants(&n);
        }
    }
}

#[test]
fn prefixes_respect_segments() {
    assert!(segment_prefix_match("/eu", "/eu"));
    assert!(segment_prefix_match("/eu/", "/eu/a"));
    assert!(!segment_prefix_match("/eu", "/eu-mirror/a"));
    assert!(segment_prefix_match("/", "/anything"));
}
