//! The line format of the hash chain: how a record becomes a line and how a line is read back.
//!
//! A line is `{"seq":N,"prev":"<64 hex>",<record members>,"hash":"<64 hex>"}` and a newline.
//! `hash` is SHA-256 over the line's bytes without the `,"hash":"…"` part, that is over
//! `{"seq":N,"prev":"…",<record members>}`. Hex is always lower case, `seq` has no leading
//! zeros: a line has exactly one valid spelling, so any changed byte breaks it.

use aws_lc_rs::digest::{self, SHA256};
use serde::de::IgnoredAny;

/// Length of a SHA-256 hash.
pub const HASH_LEN: usize = 32;
/// The `prev` of the first record.
pub const GENESIS: [u8; HASH_LEN] = [0; HASH_LEN];
/// Longest line a reader accepts; a record is a few hundred bytes.
pub const MAX_LINE: usize = 1 << 20;

const SEQ_PREFIX: &[u8] = b"{\"seq\":";
const PREV_PREFIX: &[u8] = b",\"prev\":\"";
const PREV_END: &[u8] = b"\",";
const KIND_PREFIX: &[u8] = b"\"kind\":";
const HASH_PREFIX: &[u8] = b",\"hash\":\"";
const LINE_END: &[u8] = b"\"}";
/// `,"hash":"<64 hex>"}`: what the hash does not cover (besides the newline).
const SUFFIX_LEN: usize = HASH_PREFIX.len() + 2 * HASH_LEN + LINE_END.len();

/// Appends the line for one record to `buf` and returns its hash.
///
/// `record_json` is the record serialised as a JSON object (`{"kind":…}`); its members are
/// spliced in after `seq` and `prev`.
pub(crate) fn encode_line(
    buf: &mut Vec<u8>,
    seq: u64,
    prev: &[u8; HASH_LEN],
    record_json: &[u8],
) -> [u8; HASH_LEN] {
    let start = buf.len();
    buf.extend_from_slice(SEQ_PREFIX);
    push_decimal(buf, seq);
    buf.extend_from_slice(PREV_PREFIX);
    push_hex(buf, prev);
    buf.extend_from_slice(PREV_END);
    // The caller checked that the record is an object with at least one member.
    let members = record_json
        .get(1..record_json.len().saturating_sub(1))
        .unwrap_or_default();
    buf.extend_from_slice(members);
    buf.push(b'}');
    let hash = sha256(&[&buf[start..]]);
    buf.pop();
    buf.extend_from_slice(HASH_PREFIX);
    push_hex(buf, &hash);
    buf.extend_from_slice(LINE_END);
    buf.push(b'\n');
    hash
}

/// True if `json` is what `encode_line` can splice: a JSON object starting with `"kind"`.
pub(crate) fn is_spliceable(json: &[u8]) -> bool {
    json.first() == Some(&b'{') && json.last() == Some(&b'}') && json[1..].starts_with(KIND_PREFIX)
}

fn sha256(parts: &[&[u8]]) -> [u8; HASH_LEN] {
    let mut ctx = digest::Context::new(&SHA256);
    for p in parts {
        ctx.update(p);
    }
    let d = ctx.finish();
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(d.as_ref());
    out
}

fn push_decimal(buf: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    buf.extend_from_slice(&tmp[i..]);
}

fn push_hex(buf: &mut Vec<u8>, bytes: &[u8; HASH_LEN]) {
    let mut out = [0u8; 2 * HASH_LEN];
    // Cannot fail: the output is exactly twice the input.
    let _ = hex::encode_to_slice(bytes, &mut out);
    buf.extend_from_slice(&out);
}

/// Decodes exactly 64 lower-case hex digits.
fn decode_hex(s: &[u8]) -> Option<[u8; HASH_LEN]> {
    if s.len() != 2 * HASH_LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; HASH_LEN];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// The chain fields of a line, and whether the line matches its own hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub seq: u64,
    pub prev: [u8; HASH_LEN],
    pub hash: [u8; HASH_LEN],
    pub hash_ok: bool,
}

/// Reads the chain fields of `line` (without its newline) and checks its hash.
/// Does not check that the record members are valid JSON; see [`check_json`].
pub(crate) fn read_head(line: &[u8]) -> Result<Head, String> {
    let rest = line
        .strip_prefix(SEQ_PREFIX)
        .ok_or("line does not start with `{\"seq\":`")?;
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    let seq = parse_seq(&rest[..digits]).ok_or("`seq` is not a positive integer")?;
    let rest = rest[digits..]
        .strip_prefix(PREV_PREFIX)
        .ok_or("`prev` does not follow `seq`")?;
    let prev = rest
        .get(..2 * HASH_LEN)
        .and_then(decode_hex)
        .ok_or("`prev` is not 64 lower-case hex digits")?;
    let rest = rest[2 * HASH_LEN..]
        .strip_prefix(PREV_END)
        .ok_or("`prev` is not followed by the record")?;
    if !rest.starts_with(KIND_PREFIX) {
        return Err("the record does not start with `kind`".into());
    }
    // The record members and the suffix must not overlap.
    if rest.len() < KIND_PREFIX.len() + SUFFIX_LEN {
        return Err("line is too short to hold a record and its hash".into());
    }
    let body_end = line.len() - SUFFIX_LEN;
    let suffix = &line[body_end..];
    let hex = suffix
        .strip_prefix(HASH_PREFIX)
        .and_then(|s| s.strip_suffix(LINE_END))
        .ok_or("line does not end with `\"hash\"`")?;
    let hash = decode_hex(hex).ok_or("`hash` is not 64 lower-case hex digits")?;
    let hash_ok = sha256(&[&line[..body_end], b"}"]) == hash;
    Ok(Head {
        seq,
        prev,
        hash,
        hash_ok,
    })
}

/// Parses a `seq`: decimal, no leading zero, at least 1, fits in u64.
fn parse_seq(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits[0] == b'0' {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Checks that the whole line is one JSON object.
pub(crate) fn check_json(line: &[u8]) -> Result<(), String> {
    serde_json::from_slice::<IgnoredAny>(line)
        .map(|_| ())
        .map_err(|e| format!("not valid JSON: {e}"))
}

/// A line read back and checked against its own hash (not against its neighbours).
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedLine {
    pub seq: u64,
    /// Hash of the previous record, 64 lower-case hex digits.
    pub prev: String,
    /// This record's hash, 64 lower-case hex digits.
    pub hash: String,
    /// The record kind: `decision`, `completion` or `event`.
    pub kind: String,
    /// The whole line as JSON, including `seq`, `prev` and `hash`.
    pub value: serde_json::Value,
}

/// Why a line cannot be read back.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineError {
    #[error("malformed audit line: {0}")]
    Malformed(String),
    #[error("audit record seq {seq} does not match its hash")]
    HashMismatch { seq: u64 },
}

/// Reads one line of the log (with or without its trailing newline): checks its shape and
/// its own hash and returns its fields. Chain links are the verifier's job.
pub fn parse_line(line: &[u8]) -> Result<ParsedLine, LineError> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let head = read_head(line).map_err(LineError::Malformed)?;
    if !head.hash_ok {
        return Err(LineError::HashMismatch { seq: head.seq });
    }
    let value: serde_json::Value = serde_json::from_slice(line)
        .map_err(|e| LineError::Malformed(format!("not valid JSON: {e}")))?;
    let kind = value
        .get("kind")
        .and_then(|k| k.as_str())
        .ok_or_else(|| LineError::Malformed("`kind` is not a string".into()))?
        .to_owned();
    Ok(ParsedLine {
        seq: head.seq,
        prev: hex::encode(head.prev),
        hash: hex::encode(head.hash),
        kind,
        value,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // Tests may unwrap.
mod tests {
    use super::*;

    fn line(seq: u64, prev: &[u8; 32], json: &str) -> (Vec<u8>, [u8; 32]) {
        let mut buf = Vec::new();
        let h = encode_line(&mut buf, seq, prev, json.as_bytes());
        (buf, h)
    }

    #[test]
    fn encodes_the_documented_format() {
        let (buf, h) = line(1, &GENESIS, r#"{"kind":"event","event":"start"}"#);
        let text = std::str::from_utf8(&buf).unwrap();
        let zeros = "0".repeat(64);
        let hashed = format!(r#"{{"seq":1,"prev":"{zeros}","kind":"event","event":"start"}}"#);
        let expect_hash = hex::encode(digest::digest(&SHA256, hashed.as_bytes()));
        assert_eq!(hex::encode(h), expect_hash);
        assert_eq!(
            text,
            format!(
                r#"{{"seq":1,"prev":"{zeros}","kind":"event","event":"start","hash":"{expect_hash}"}}"#
            ) + "\n"
        );
    }

    #[test]
    fn parse_line_reads_back_what_was_encoded() {
        let (buf, h) = line(42, &[7; 32], r#"{"kind":"completion","status":200}"#);
        let p = parse_line(&buf).unwrap();
        assert_eq!(p.seq, 42);
        assert_eq!(p.kind, "completion");
        assert_eq!(p.hash, hex::encode(h));
        assert_eq!(p.prev, hex::encode([7u8; 32]));
        assert_eq!(p.value["status"], 200);
        assert_eq!(p.value["seq"], 42);
    }

    #[test]
    fn parse_line_rejects_changes() {
        let (buf, _) = line(3, &GENESIS, r#"{"kind":"event","detail":"abc"}"#);
        let edited = String::from_utf8(buf.clone())
            .unwrap()
            .replace("abc", "abd");
        assert_eq!(
            parse_line(edited.as_bytes()),
            Err(LineError::HashMismatch { seq: 3 })
        );
        let upper = String::from_utf8(buf).unwrap().to_uppercase();
        assert!(matches!(
            parse_line(upper.as_bytes()),
            Err(LineError::Malformed(_))
        ));
        assert!(matches!(parse_line(b""), Err(LineError::Malformed(_))));
        assert!(matches!(parse_line(b"{}"), Err(LineError::Malformed(_))));
    }

    #[test]
    fn seq_spelling_is_unique() {
        assert_eq!(parse_seq(b"1"), Some(1));
        assert_eq!(parse_seq(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_seq(b"18446744073709551616"), None);
        assert_eq!(parse_seq(b"01"), None);
        assert_eq!(parse_seq(b"0"), None);
        assert_eq!(parse_seq(b""), None);
        let mut b = Vec::new();
        push_decimal(&mut b, 0);
        push_decimal(&mut b, 1234567890);
        assert_eq!(b, b"01234567890");
    }

    #[test]
    fn spliceable_records() {
        assert!(is_spliceable(br#"{"kind":"x"}"#));
        assert!(!is_spliceable(b"{}"));
        assert!(!is_spliceable(b"[1]"));
        assert!(!is_spliceable(br#"{"a":1}"#));
    }
}
