//! Catalog files that must not load, and the diagnostics they give.
#![allow(clippy::unwrap_used)] // Tests may unwrap.

use super::*;

fn errors(text: &str) -> Vec<Diagnostic> {
    match Catalog::parse(Path::new("bad.yaml"), text) {
        Ok(c) => panic!("catalog loaded with {} entries", c.len()),
        Err(d) => d.0,
    }
}

fn line_of(errs: &[Diagnostic], needle: &str) -> Option<usize> {
    errs.iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no error containing `{needle}` in {errs:#?}"))
        .line
}

#[test]
fn every_load_error_is_reported_with_its_line() {
    let text = "entries:
  - id: a
    kind: dataset
    match: { prefix: /a/ }
    origins: [DE, XZ]
    categories: [personal, secret]
    purposes: [training, spying]
    lawful_basis: [whim]
    derogations: [because]
  - id: a
    kind: dataset
    match: { prefix: /a }
    origins: [FR]
    categories: [public]
  - id: b
    kind: dataset
    match: { regex: '/b/.*' }
    origins: [FR]
    categories: [public]
  - id: c
    kind: model
    match: { prefix: /c/ }
    derived_from: [a, ghost]
  - id: Bad_Id
    kind: dataset
    match: { prefix: /d/../e }
    categories: [personal]
";
    let errs = errors(text);
    assert_eq!(line_of(&errs, "unknown country code `XZ`"), Some(5));
    assert_eq!(line_of(&errs, "unknown category `secret`"), Some(6));
    assert_eq!(line_of(&errs, "unknown purpose `spying`"), Some(7));
    assert_eq!(line_of(&errs, "unknown lawful basis `whim`"), Some(8));
    assert_eq!(line_of(&errs, "unknown derogation `because`"), Some(9));
    assert_eq!(
        line_of(&errs, "duplicate entry id `a` (first at line 2)"),
        Some(10)
    );
    assert_eq!(
        line_of(&errs, "prefix `/a` of entry `a` duplicates"),
        Some(12)
    );
    assert_eq!(line_of(&errs, "must be anchored"), Some(17));
    assert_eq!(line_of(&errs, "unknown entry `ghost`"), Some(23));
    assert_eq!(line_of(&errs, "entry id `Bad_Id` must match"), Some(24));
    assert_eq!(line_of(&errs, "prefix `/d/../e`"), Some(26));
    assert_eq!(
        line_of(
            &errs,
            "entry `Bad_Id` holds personal data but lists no `purposes`"
        ),
        Some(24)
    );
    assert_eq!(
        line_of(&errs, "dataset `Bad_Id` has no `origins`"),
        Some(24)
    );
    for d in &errs {
        assert_eq!(d.file, Path::new("bad.yaml"));
        assert!(!d.message.ends_with('.'), "{}", d.message);
    }
}

#[test]
fn lineage_cycles_are_load_errors() {
    let text = "entries:
  - id: x
    kind: dataset
    match: { prefix: /x/ }
    origins: [DE]
    categories: [public]
    derived_from: [z]
  - id: y
    kind: dataset
    match: { prefix: /y/ }
    origins: [DE]
    categories: [public]
    derived_from: [x]
  - id: z
    kind: dataset
    match: { prefix: /z/ }
    origins: [DE]
    categories: [public]
    derived_from: [y]
  - id: self
    kind: model
    match: { prefix: /s/ }
    derived_from: [self]
  - id: downstream
    kind: model
    match: { prefix: /d/ }
    derived_from: [z]
";
    let errs = errors(text);
    let cycles: Vec<_> = errs
        .iter()
        .filter(|d| d.message.starts_with("lineage cycle"))
        .collect();
    assert_eq!(cycles.len(), 2, "{errs:#?}");
    assert_eq!(line_of(&errs, "lineage cycle: `x`"), Some(2));
    assert_eq!(line_of(&errs, "lineage cycle: `self` ← `self`"), Some(20));
}

#[test]
fn regex_errors() {
    let big = format!("^/({})$", "a{1000}{1000}");
    let text = format!(
        "entries:
  - id: a
    kind: store
    match: {{ regex: '^/a)|(b$' }}
  - id: b
    kind: store
    match: {{ regex: '^/b\\$' }}
  - id: c
    kind: store
    match: {{ regex: '{big}' }}
"
    );
    let errs = errors(&text);
    assert_eq!(
        line_of(&errs, "regex `^/a)|(b$` of entry `a` does not compile"),
        Some(4)
    );
    assert_eq!(
        line_of(&errs, "regex `^/b\\\\$` of entry `b` must be anchored"),
        Some(7)
    );
    assert_eq!(line_of(&errs, "entry `c` does not compile"), Some(10));
}

#[test]
fn fail_closed_rules() {
    let text = "entries:
  - id: personal-no-purpose
    kind: dataset
    match: { prefix: /p/ }
    origins: [DE]
    categories: [personal]
  - id: no-categories
    kind: dataset
    match: { prefix: /n/ }
    origins: [DE]
  - id: unassessed
    kind: model
    match: { prefix: /m/ }
    origins: [DE]
    categories: [anonymous]
  - id: mixed
    kind: dataset
    match: { prefix: /x/ }
    origins: [DE]
    categories: [public, health]
    purposes: [research]
  - id: store-ok
    kind: store
    match: { prefix: /s/ }
  - id: withdrawn-bad
    kind: dataset
    match: { prefix: /w/ }
    origins: [DE]
    categories: [public]
    withdrawn: { date: yesterday, reason: '' }
";
    let errs = errors(text);
    assert_eq!(
        line_of(&errs, "`personal-no-purpose` holds personal data"),
        Some(2)
    );
    assert_eq!(
        line_of(&errs, "dataset `no-categories` has no `categories`"),
        Some(7)
    );
    assert_eq!(
        line_of(&errs, "`unassessed` is tagged `anonymous` without"),
        Some(11)
    );
    assert_eq!(
        line_of(&errs, "`mixed` is tagged `public` and also"),
        Some(16)
    );
    assert_eq!(line_of(&errs, "withdrawal date `yesterday`"), Some(30));
    assert_eq!(
        line_of(&errs, "withdrawal `reason` must not be empty"),
        Some(30)
    );
    assert!(
        !errs.iter().any(|d| d.message.contains("store-ok")),
        "{errs:#?}"
    );
}

#[test]
fn syntax_errors_carry_a_line() {
    let errs = errors(
        "entries:\n  - id: a\n    kind: dataset\n    match: { prefix: /a/ }\n    colour: red\n",
    );
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("colour"), "{errs:?}");
    assert_eq!(errs[0].line, Some(5), "{errs:?}");
    let errs = errors("entries:\n  - id: a\n    kind: table\n    match: { prefix: /a/ }\n");
    assert_eq!(errs[0].line, Some(3), "{errs:?}");
}

#[test]
fn load_reports_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("catalog.yaml");
    std::fs::write(&p, "entries:\n  - id: a\n    kind: dataset\n    match: { prefix: /a/ }\n    origins: [DE]\n    categories: [personal]\n").unwrap();
    let d = Catalog::load(&p).unwrap_err();
    assert_eq!(d.0.len(), 1);
    assert_eq!(d.0[0].file, p);
    assert_eq!(d.0[0].line, Some(2));
    assert!(
        d.to_string()
            .contains("catalog.yaml:2: entry `a` holds personal data"),
        "{d}"
    );
    let missing = Catalog::load(&dir.path().join("nope.yaml")).unwrap_err();
    assert!(missing.0[0].message.starts_with("cannot read file"));
}
