//! Unit tests of the plan and the CSV and JSON Lines transformers.

use std::sync::Arc;

use super::tabular::{Csv, JsonLines, TransformError, Transformer};
use super::*;
use crate::catalog::schema::{Column, ColumnKind as K, Format, Granularity, Schema};

fn schema(format: Option<Format>) -> Arc<Schema> {
    let col = |name: &str, kind, generalise| Column {
        name: name.into(),
        kind,
        category: None,
        generalise,
    };
    Arc::new(Schema {
        format,
        columns: vec![
            col("id", K::Identifier, None),
            col("email", K::Identifier, None),
            col("birth", K::QuasiIdentifier, Some(Granularity::Year)),
            col("zip", K::QuasiIdentifier, Some(Granularity::Prefix(2))),
            col("age", K::QuasiIdentifier, Some(Granularity::Band(10))),
            col("diagnosis", K::Special, None),
            col("note", K::FreeText, None),
            col("label", K::NonPersonal, None),
        ],
    })
}

fn requirement() -> Requirement {
    Requirement {
        methods: vec![
            (K::Identifier, Method::Pseudonymise),
            (K::QuasiIdentifier, Method::Generalise),
            (K::Special, Method::Drop),
            (K::FreeText, Method::Redact),
        ],
    }
}

fn plan(secret: u8, format: Option<Format>, path: &str) -> Plan {
    let ring = Keyring::of(&[("eu", "eu-test", &[secret; 32])]).unwrap();
    Plan::new(
        &requirement(),
        Some(&schema(format)),
        path,
        &ring,
        "eu",
        &Arc::new(Redactor::standard()),
    )
    .unwrap()
}

const CSV: &str = "id,email,birth,zip,age,diagnosis,note,label\r\n\
C1,a@example.invalid,1980-04-02,20095,37,flu,\"mail me at a@example.invalid, thanks\",ok\r\n\
C2,b@example.invalid,1999-12-31,80331,61,asthma,fine,bad\n";

fn run(t: &mut dyn Transformer, input: &[u8], step: usize) -> Result<String, TransformError> {
    let mut out = Vec::new();
    for c in input.chunks(step) {
        t.feed(c, &mut out)?;
    }
    t.finish(&mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

#[test]
fn csv_is_transformed_whatever_the_chunking() {
    let whole = run(
        &mut Csv::new(plan(1, None, "/x.csv")),
        CSV.as_bytes(),
        1 << 20,
    )
    .unwrap();
    for step in [1, 3, 17] {
        let got = run(&mut Csv::new(plan(1, None, "/x.csv")), CSV.as_bytes(), step).unwrap();
        assert_eq!(got, whole, "chunks of {step}");
    }
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines[0], "id,email,birth,zip,age,note,label");
    let first: Vec<&str> = lines[1].split(',').collect();
    assert!(
        first[0].starts_with("p-") && first[1].starts_with("p-"),
        "{whole}"
    );
    assert_eq!(&first[2..5], ["1980", "20", "30-39"]);
    assert!(!whole.contains("example.invalid") && !whole.contains("flu") && !whole.contains("C1"));
    assert!(whole.contains("[redacted]"), "{whole}");
    let other = run(&mut Csv::new(plan(2, None, "/x.csv")), CSV.as_bytes(), 64).unwrap();
    assert_ne!(other.lines().nth(1), whole.lines().nth(1));
}

/// Records read the same whatever pieces the input comes in: line ends of every kind, a
/// lone CR (a record end), blank lines, quotes inside and around fields, non-ASCII text, a
/// last line with no line end, empty pieces; and so do errors and the records they name.
#[test]
fn csv_records_are_read_the_same_whatever_the_pieces() {
    let body = "C1,a@example.invalid,1980-04-02,20095,37,flu,plain note,ok\n\
        \n\
        C2,b@example.invalid,1999-12-31,80331,61,x,a \" quote inside,ok\r\n\
        \r\n\
        C3,c@example.invalid,2001-01-01,10115,5,x,a lone CR ends a record,ok\r\
        C3b,c@example.invalid,2001-01-01,10115,5,x,y,ok\n\
        ,,,,,,,\n\
        C4,d@example.invalid,1970-07-07,50667,88,x,\"quoted\nover lines\",ok\n\
        C5,Müller,1970-07-07,50667,88,x,Grüße +49 40 1234567,ok\r\n\
        C6,e@example.invalid,1970-07-07,50667,88,x,no line end,ok";
    let input = format!("id,email,birth,zip,age,diagnosis,note,label\n{body}");
    // Pieces of one byte never hold a whole line; one piece holds the whole input.
    let read = |input: &[u8], step| run(&mut Csv::new(plan(1, None, "/x.csv")), input, step);
    let serial = read(input.as_bytes(), 1).unwrap();
    for step in [7, 64, 1 << 20] {
        assert_eq!(
            read(input.as_bytes(), step).unwrap(),
            serial,
            "chunks of {step}"
        );
    }
    assert!(serial.contains("Grüße [redacted]"), "{serial}");
    assert_eq!(serial.lines().count(), 10, "{serial}");
    // Empty pieces (a body may send an empty frame) do not end a record.
    for at in 0..input.len() {
        let mut t = Csv::new(plan(1, None, "/x.csv"));
        let mut out = Vec::new();
        let (a, b) = input.as_bytes().split_at(at);
        for piece in [a, &[][..], b, &[][..]] {
            t.feed(piece, &mut out).unwrap();
        }
        t.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            serial,
            "an empty piece at {at}"
        );
    }
    // Errors too: a record with too few fields, one with too many, one that is not UTF-8.
    for bad in [
        format!("{input}\nC7,x\n"),
        format!("{input}\nC7,x,y,z,1,2,3,4,5\n"),
    ] {
        let got = read(bad.as_bytes(), 1 << 20).unwrap_err();
        assert_eq!(got, read(bad.as_bytes(), 1).unwrap_err());
        assert!(got.to_string().contains("record 9 has"), "{got}");
    }
    let mut bad = format!("{input}\n").into_bytes();
    bad.extend_from_slice(b"C7,\xff,1970-07-07,50667,88,x,y,ok\n");
    let got = read(&bad, 1 << 20).unwrap_err();
    assert_eq!(got, read(&bad, 1).unwrap_err());
    assert!(got.to_string().contains("record 9: not UTF-8"), "{got}");
}

#[test]
fn csv_header_and_width_are_checked() {
    let bad = CSV.replacen("zip", "postcode", 1);
    let e = run(&mut Csv::new(plan(1, None, "/x.csv")), bad.as_bytes(), 7).unwrap_err();
    assert!(matches!(e, TransformError::SchemaMismatch(_)), "{e}");
    let short = format!("{}C3,x\n", CSV);
    let e = run(&mut Csv::new(plan(1, None, "/x.csv")), short.as_bytes(), 7).unwrap_err();
    assert!(matches!(e, TransformError::SchemaMismatch(_)), "{e}");
    let e = run(&mut Csv::new(plan(1, None, "/x.csv")), b"", 7).unwrap_err();
    assert!(matches!(e, TransformError::SchemaMismatch(_)), "{e}");
}

#[test]
fn json_lines_are_transformed_and_unknown_fields_refused() {
    let input = "{\"id\":\"C1\",\"email\":\"a@example.invalid\",\"birth\":\"1980-04-02\",\"zip\":\"20095\",\"age\":37,\"diagnosis\":\"flu\",\"note\":\"call +49 40 1234567\",\"label\":\"ok\"}\n\n{\"id\":\"C2\",\"age\":null}";
    let got = run(
        &mut JsonLines::new(plan(1, None, "/x.jsonl")),
        input.as_bytes(),
        5,
    )
    .unwrap();
    let rows: Vec<serde_json::Value> = got
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["age"], "30-39");
    assert_eq!(rows[0]["birth"], "1980");
    assert!(rows[0].get("diagnosis").is_none());
    assert!(rows[0]["id"].as_str().unwrap().starts_with("p-"));
    assert!(!got.contains("1234567") && !got.contains("C1"), "{got}");
    assert_eq!(rows[1]["age"], serde_json::Value::Null);
    let e = run(
        &mut JsonLines::new(plan(1, None, "/x.jsonl")),
        b"{\"secret\":1}\n",
        5,
    )
    .unwrap_err();
    assert!(matches!(e, TransformError::SchemaMismatch(_)), "{e}");
}

#[test]
fn requirements_merge_to_the_stronger_method() {
    let mut a = Requirement {
        methods: vec![(K::Identifier, Method::Pseudonymise)],
    };
    a.merge(&Requirement {
        methods: vec![(K::Identifier, Method::Drop), (K::FreeText, Method::Redact)],
    });
    assert_eq!(a.method(K::Identifier), Some(Method::Drop));
    assert_eq!(a.summary(), "identifier: drop, free-text: redact");
}

#[test]
fn plans_fail_closed() {
    let ring = Keyring::default();
    let r = Arc::new(Redactor::standard());
    let e = Plan::new(&requirement(), None, "/x.csv", &ring, "eu", &r).unwrap_err();
    assert!(matches!(e, PlanError::NoSchema(_)));
    let e = Plan::new(
        &requirement(),
        Some(&schema(None)),
        "/x.bin",
        &ring,
        "eu",
        &r,
    )
    .unwrap_err();
    assert!(matches!(e, PlanError::UnknownFormat(_)));
    let e = Plan::new(
        &requirement(),
        Some(&schema(None)),
        "/x.csv",
        &ring,
        "eu",
        &r,
    )
    .unwrap_err();
    assert_eq!(e, PlanError::NoKey("eu".into()));
    let p = plan(1, Some(Format::Csv), "/x.bin");
    assert_eq!(p.format, Format::Csv);
    assert_eq!(
        p.header(),
        "drop=diagnosis; pseudonymise=id,email; generalise=birth:year,zip:prefix:2,age:band:10; redact=note; key=eu-test"
    );
    assert_ne!(p.etag(Some("\"abc\"")), "\"abc\"");
    assert_eq!(
        p.etag(Some("\"abc\"")),
        plan(1, None, "/x.csv").etag(Some("\"abc\""))
    );
}

#[test]
fn generalisation_leaves_out_what_it_cannot_coarsen() {
    let g = |gr, v: &str| {
        let mut s = String::new();
        generalise(gr, v, &mut s);
        s
    };
    assert_eq!(g(Granularity::Month, "2024-02-08"), "2024-02");
    assert_eq!(g(Granularity::Year, "08.02.2024"), "");
    assert_eq!(g(Granularity::Band(10), "-3"), "-10--1");
    assert_eq!(g(Granularity::Band(5), "n/a"), "");
    assert_eq!(g(Granularity::Prefix(3), "Köln-1"), "Köl");
}
