//! Tests of the verifier: each classic tamper is named and pinpointed.
#![allow(clippy::unwrap_used)] // Tests may unwrap.
use super::*;
use crate::audit::line::{GENESIS, encode_line};
use proptest::prelude::*;

fn json(seq: u64) -> String {
    format!(r#"{{"kind":"event","time":"t","event":"e{seq}","detail":"record number {seq}"}}"#)
}

fn forge(seq: u64, prev: &[u8; 32], json: &str) -> (Vec<u8>, [u8; 32]) {
    let mut buf = Vec::new();
    let h = encode_line(&mut buf, seq, prev, json.as_bytes());
    (buf, h)
}

/// A good log of `n` records, one entry per line (with newline), and their hashes.
fn build(n: u64) -> (Vec<Vec<u8>>, Vec<[u8; 32]>) {
    let mut prev = GENESIS;
    let (mut lines, mut hashes) = (Vec::new(), Vec::new());
    for seq in 1..=n {
        let (l, h) = forge(seq, &prev, &json(seq));
        prev = h;
        lines.push(l);
        hashes.push(h);
    }
    (lines, hashes)
}

fn run(lines: &[Vec<u8>]) -> VerifyReport {
    verify_reader(&lines.concat()[..])
}

#[track_caller]
fn expect(lines: &[Vec<u8>], kind: ProblemKind, line: u64, seq: Option<u64>) -> Problem {
    let r = run(lines);
    let p = r
        .problem
        .clone()
        .unwrap_or_else(|| panic!("no problem found: {r}"));
    assert_eq!((p.kind, p.line, p.seq), (kind, line, seq), "{p}");
    p
}

fn edit(line: &[u8], from: &str, to: &str) -> Vec<u8> {
    let s = String::from_utf8(line.to_vec()).unwrap();
    assert!(s.contains(from));
    s.replacen(from, to, 1).into_bytes()
}

#[test]
fn a_good_log_verifies() {
    let (lines, hashes) = build(10);
    let r = run(&lines);
    assert!(r.is_ok(), "{r}");
    assert_eq!(r.records, 10);
    assert_eq!(r.last_seq, Some(10));
    assert_eq!(r.last_hash, Some(hex::encode(hashes[9])));
    assert_eq!(r.bytes, lines.concat().len() as u64);
    assert!(
        r.to_string()
            .starts_with("ok: 10 records, seq 1 to 10, last hash ")
    );
}

#[test]
fn an_empty_log_verifies() {
    let r = run(&[]);
    assert!(r.is_ok());
    assert_eq!(r.records, 0);
    assert_eq!(r.to_string(), "ok: the log is empty");
}

#[test]
fn a_missing_file_is_unreadable() {
    let r = verify_file(Path::new("/nonexistent/bordergate/audit.jsonl"));
    assert_eq!(r.problem.unwrap().kind, ProblemKind::Unreadable);
}

#[test]
fn editing_a_field_is_modified() {
    let (mut lines, _) = build(10);
    lines[4] = edit(&lines[4], "record number 5", "record number X");
    let p = expect(&lines, ProblemKind::Modified, 5, Some(5));
    assert!(p.message.contains("no longer matches its hash"), "{p}");
    let r = run(&lines);
    assert_eq!(r.records, 4);
    assert!(
        r.to_string()
            .starts_with("FAILED: modified at line 5 (seq 5): "),
        "{r}"
    );
}

#[test]
fn editing_the_seq_is_modified() {
    let (mut lines, _) = build(10);
    lines[4] = edit(&lines[4], r#""seq":5"#, r#""seq":7"#);
    expect(&lines, ProblemKind::Modified, 5, Some(7));
}

#[test]
fn editing_and_rehashing_a_record_is_modified() {
    let (mut lines, hashes) = build(10);
    let (l, _) = forge(
        5,
        &hashes[3],
        &json(5).replace("record number", "forged number"),
    );
    lines[4] = l;
    let p = expect(&lines, ProblemKind::Modified, 5, Some(5));
    assert!(p.message.contains("rewritten"), "{p}");
}

#[test]
fn deleting_a_record_is_missing() {
    let (mut lines, _) = build(10);
    lines.remove(4);
    let p = expect(&lines, ProblemKind::Missing, 5, Some(6));
    assert_eq!(p.message, "record seq 5 is missing before line 5");
}

#[test]
fn deleting_several_records_is_missing() {
    let (mut lines, _) = build(10);
    lines.drain(2..5);
    let p = expect(&lines, ProblemKind::Missing, 3, Some(6));
    assert!(p.message.contains("seq 3 to 5"), "{p}");
}

#[test]
fn deleting_the_first_record_is_missing() {
    let (mut lines, _) = build(5);
    lines.remove(0);
    expect(&lines, ProblemKind::Missing, 1, Some(2));
}

#[test]
fn deleting_the_second_last_record_is_missing() {
    let (mut lines, _) = build(5);
    lines.remove(3);
    expect(&lines, ProblemKind::Missing, 4, Some(5));
}

#[test]
fn renumbering_over_a_gap_is_missing() {
    // Record 5 deleted, record 6 rewritten as seq 6 linking to 4: still records missing.
    let (mut lines, hashes) = build(10);
    let (l, _) = forge(6, &hashes[3], &json(6));
    lines[5] = l;
    lines.remove(4);
    expect(&lines, ProblemKind::Missing, 5, Some(6));
}

#[test]
fn swapping_two_records_is_reordered() {
    for (a, n) in [(4usize, 10u64), (0, 10), (8, 10), (0, 2)] {
        let (mut lines, _) = build(n);
        lines.swap(a, a + 1);
        expect(
            &lines,
            ProblemKind::Reordered,
            a as u64 + 1,
            Some(a as u64 + 2),
        );
    }
}

#[test]
fn moving_a_record_later_is_reordered() {
    let (mut lines, _) = build(10);
    let moved = lines.remove(2);
    lines.insert(6, moved);
    let p = expect(&lines, ProblemKind::Reordered, 3, Some(4));
    assert!(p.message.contains("seq 3 comes after it on line 7"), "{p}");
}

#[test]
fn moving_a_record_earlier_is_reordered() {
    let (mut lines, _) = build(10);
    let moved = lines.remove(7);
    lines.insert(2, moved);
    expect(&lines, ProblemKind::Reordered, 3, Some(8));
}

#[test]
fn a_forged_record_claiming_the_next_seq_is_inserted() {
    // Well-formed, correctly hashed and linked; the genuine seq 5 follows it.
    let (mut lines, hashes) = build(10);
    let (l, _) = forge(5, &hashes[3], &json(5).replace("record", "forged"));
    lines.insert(4, l);
    let p = expect(&lines, ProblemKind::Inserted, 5, Some(5));
    assert!(p.message.contains("genuine one follows on line 6"), "{p}");
}

#[test]
fn a_forged_record_with_a_wrong_link_is_inserted() {
    let (mut lines, _) = build(10);
    let (l, _) = forge(5, &[9; 32], &json(5));
    lines.insert(4, l);
    expect(&lines, ProblemKind::Inserted, 5, Some(5));
}

#[test]
fn a_forged_record_with_a_future_seq_is_inserted() {
    let (mut lines, _) = build(10);
    let (l, _) = forge(500, &[9; 32], &json(500));
    lines.insert(4, l);
    expect(&lines, ProblemKind::Inserted, 5, Some(500));
}

#[test]
fn a_copied_and_edited_line_is_inserted() {
    let (mut lines, _) = build(10);
    let l = edit(&lines[3], "record number 4", "record number 4b");
    lines.insert(4, l);
    expect(&lines, ProblemKind::Inserted, 5, Some(4));
}

#[test]
fn a_forged_record_appended_with_a_wrong_link_is_inserted() {
    let (mut lines, _) = build(10);
    let (l, _) = forge(11, &[9; 32], &json(11));
    lines.push(l);
    expect(&lines, ProblemKind::Inserted, 11, Some(11));
}

#[test]
fn a_second_record_for_the_same_seq_is_inserted() {
    // Forged after the genuine one, linking to the same predecessor.
    let (mut lines, hashes) = build(10);
    let (l, _) = forge(5, &hashes[3], &json(5).replace("record", "forged"));
    lines.insert(5, l);
    expect(&lines, ProblemKind::Inserted, 6, Some(5));
}

#[test]
fn duplicating_a_line_is_duplicated() {
    let (mut lines, _) = build(10);
    let l = lines[4].clone();
    lines.insert(5, l);
    let p = expect(&lines, ProblemKind::Duplicated, 6, Some(5));
    assert_eq!(p.message, "line 6 repeats line 5 (seq 5)");
}

#[test]
fn duplicating_a_line_further_down_is_duplicated() {
    let (mut lines, _) = build(10);
    let l = lines[1].clone();
    lines.insert(6, l);
    let p = expect(&lines, ProblemKind::Duplicated, 7, Some(2));
    assert!(p.message.contains("first on line 2"), "{p}");
}

#[test]
fn cutting_the_tail_is_truncated() {
    let (lines, _) = build(5);
    let all = lines.concat();
    let last_start = all.len() - lines[4].len();
    for cut in last_start + 1..all.len() {
        let r = verify_reader(&all[..cut]);
        let p = r.problem.unwrap();
        assert_eq!(
            (p.kind, p.line),
            (ProblemKind::Truncated, 5),
            "cut at {cut}"
        );
        assert_eq!(r.records, 4);
    }
    // Cut exactly at a record boundary: fewer records, nothing to detect without an anchor.
    assert!(verify_reader(&all[..last_start]).is_ok());
}

#[test]
fn junk_lines_are_malformed() {
    let (mut lines, _) = build(5);
    lines.insert(2, b"hello\n".to_vec());
    expect(&lines, ProblemKind::Malformed, 3, None);

    let (mut lines, _) = build(5);
    lines.insert(2, b"\n".to_vec());
    expect(&lines, ProblemKind::Malformed, 3, None);

    let (mut lines, _) = build(5);
    lines[2] = String::from_utf8(lines[2].clone())
        .unwrap()
        .to_uppercase()
        .into_bytes();
    expect(&lines, ProblemKind::Malformed, 3, None);

    // Valid own hash but not JSON.
    let (mut lines, hashes) = build(5);
    let (l, _) = forge(3, &hashes[1], r#"{"kind":"event","x":tru}"#);
    lines[2] = l;
    expect(&lines, ProblemKind::Malformed, 3, Some(3));
}

#[test]
fn an_overlong_line_is_malformed() {
    let mut big = vec![b'x'; MAX_LINE + 10];
    big.push(b'\n');
    let r = verify_reader(&big[..]);
    assert_eq!(r.problem.unwrap().kind, ProblemKind::Malformed);
}

#[test]
fn the_tail_check_anchors_on_its_first_line() {
    let (lines, hashes) = build(10);
    let all = lines.concat();
    let off = lines[..4].concat().len();
    let out = check(&all[off..], off as u64, false);
    assert_eq!(out.finding, None);
    assert_eq!(out.records, 6);
    assert_eq!(out.last, Some((10, hashes[9])));
    assert_eq!(out.good_end, all.len() as u64);
    // Anchored, the same bytes fail: they do not start at seq 1.
    assert!(check(&all[off..], off as u64, true).finding.is_some());
}

#[test]
fn kinds_display_lowercase() {
    let names: Vec<String> = [
        ProblemKind::Modified,
        ProblemKind::Missing,
        ProblemKind::Inserted,
        ProblemKind::Duplicated,
        ProblemKind::Reordered,
        ProblemKind::Truncated,
        ProblemKind::Malformed,
        ProblemKind::Unreadable,
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    assert_eq!(
        names.join(","),
        "modified,missing,inserted,duplicated,reordered,truncated,malformed,unreadable"
    );
}

#[test]
fn kinds_serialise_as_they_display() {
    use ProblemKind::*;
    for k in [
        Modified,
        MissingSegment,
        BadCheckpointSignature,
        MissingReceipt,
    ] {
        assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
    }
}

#[test]
fn a_young_log_may_lack_its_first_checkpoint_within_the_grace() {
    let (_, key) = crate::audit::checkpoint::generate().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("audit.log");
    let write = |start: &str| {
        let rec = format!(
            r#"{{"kind":"event","time":"{start}","event":"start","detail":"new log","policy_version":null}}"#
        );
        let (a, h) = forge(1, &GENESIS, &rec);
        let (b, _) = forge(2, &h, &json(2));
        std::fs::write(&path, [a, b].concat()).unwrap();
    };
    let verify = |grace: u64| {
        let opts = VerifyOptions {
            pubkey: Some(key.clone()),
            checkpoint_grace: std::time::Duration::from_secs(grace),
            ..VerifyOptions::default()
        };
        verify_log(std::slice::from_ref(&path), &opts)
    };
    write(&crate::audit::record::now_rfc3339());
    let r = verify(0);
    assert_eq!(r.damage[0].kind, ProblemKind::BadCheckpointSignature, "{r}");
    assert!(!r.checkpoint_pending);
    let r = verify(600);
    assert!(r.is_ok() && r.checkpoint_pending, "{r}");
    assert!(r.to_string().contains("first one is pending"), "{r}");
    // Started long ago: the first checkpoint is overdue.
    write("2020-01-01T00:00:00Z");
    let r = verify(600);
    assert!(!r.is_ok() && !r.checkpoint_pending, "{r}");
    // Without a key nothing is pending.
    let r = verify_log(std::slice::from_ref(&path), &VerifyOptions::default());
    assert!(r.is_ok() && !r.checkpoint_pending, "{r}");
}

fn sample() -> Vec<u8> {
    build(6).0.concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    #[test]
    fn any_flipped_byte_fails_verify(pos in any::<prop::sample::Index>(), mask in 1u8..=255) {
        let mut bytes = sample();
        let i = pos.index(bytes.len());
        bytes[i] ^= mask;
        let r = verify_reader(&bytes[..]);
        prop_assert!(!r.is_ok(), "flip {mask:#x} at {i} passed verify");
    }
}
