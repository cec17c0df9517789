use super::*;

#[test]
fn query_strings_are_decoded() {
    let q = parse_query("decision=deny&dataset=eu%2Fpatients&purpose=fine+tuning&x").unwrap();
    assert_eq!(
        q,
        vec![
            ("decision".into(), "deny".into()),
            ("dataset".into(), "eu/patients".into()),
            ("purpose".into(), "fine tuning".into()),
            ("x".into(), String::new()),
        ]
    );
    assert!(parse_query("a=%zz").is_err());
    assert!(parse_query("a=%c3").is_err());
}

#[test]
fn filter_takes_known_keys_and_leaves_the_rest() {
    let params = parse_query("decision=deny&limit=5&origin=&destination=US").unwrap();
    let r = Arc::new(crate::audit::place::Regions::builtin());
    let (f, rest) = filter_from(params, r.clone()).unwrap();
    assert_eq!(f.decision.as_deref(), Some("deny"));
    assert_eq!(f.destination.as_deref(), Some("US"));
    assert_eq!(f.origin, None);
    assert_eq!(rest, vec![("limit".to_string(), "5".to_string())]);
    assert!(filter_from(parse_query("rule=a&rule=b").unwrap(), r.clone()).is_err());
    // An origin that is neither a country nor a regime is an error, not an empty answer.
    let e = filter_from(parse_query("origin=Europe").unwrap(), r.clone()).unwrap_err();
    assert!(e.detail.contains("unknown origin `Europe`"), "{}", e.detail);
    assert!(
        filter_from(
            parse_query("origin=eu&third_countries=true&category=personal").unwrap(),
            r
        )
        .is_ok()
    );
}

#[test]
fn readiness_needs_a_writable_log() {
    assert_eq!(readiness(AuditStatus::Ok), (true, "ok"));
    assert_eq!(readiness(AuditStatus::Poisoned), (false, "poisoned"));
    assert_eq!(
        readiness(AuditStatus::WriteFailing),
        (false, "write-failing")
    );
    assert_eq!(readiness(AuditStatus::Stopped), (false, "stopped"));
}

#[test]
fn newest_keeps_the_last_matches_newest_first() {
    use std::io::Write;
    let mut f = tempfile::NamedTempFile::new().unwrap();
    for i in 0..10 {
        writeln!(f, r#"{{"kind":"decision","seq":{i},"decision":"allow"}}"#).unwrap();
    }
    writeln!(f, "not json").unwrap();
    let (v, total) = matching(
        &Source::Files(vec![f.path().to_path_buf()]),
        &Filter::default(),
        3,
        true,
    )
    .unwrap();
    assert_eq!(total, 10);
    let seqs: Vec<u64> = v.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, vec![9, 8, 7]);
}
