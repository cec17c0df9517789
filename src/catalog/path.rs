//! Request-path normalisation: decode once, refuse anything ambiguous; and matching a
//! normalised path against a segment-bounded prefix.
//!
//! The gateway decides on, audits and forwards exactly one form of the path. Anything
//! a proxy, a storage server or a filesystem could read differently from us (encoded
//! separators, dot segments, double encoding, look-alike characters, control bytes) is
//! refused, never repaired: repairing is how gateways have been bypassed.

use std::fmt::Write as _;

/// Longest decoded path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath {
    /// The decoded path, used for matching and in the audit log.
    pub decoded: String,
    /// The canonical percent-encoded form, forwarded upstream.
    pub encoded: String,
}

/// Why a path was refused. Every message is safe to show the client and to log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty")]
    Empty,
    #[error("path does not start with `/`")]
    NotAbsolute,
    #[error("path is longer than {MAX_PATH_BYTES} bytes")]
    TooLong,
    #[error("malformed percent escape `{0}`")]
    MalformedEscape(String),
    #[error("character `{}` is not allowed in a path", .0.escape_default())]
    ForbiddenCharacter(char),
    #[error("path has a raw non-ascii byte; non-ascii characters must be percent-encoded")]
    NonAscii,
    #[error("path has an encoded slash (`%2F`)")]
    EncodedSlash,
    #[error("path has a backslash, raw or encoded")]
    Backslash,
    #[error("path has an encoded dot (`%2E`)")]
    EncodedDot,
    #[error("path has a `.` or `..` segment")]
    DotSegment,
    #[error("path has an empty segment (`//`)")]
    EmptySegment,
    #[error("path has a control character (u+{0:04x})")]
    ControlCharacter(u32),
    #[error("path is not valid utf-8 after percent-decoding")]
    InvalidUtf8,
    #[error("path has an encoded percent sign (`%25`): double encoding is refused")]
    DoubleEncoding,
    #[error("path has a `#` fragment, raw or encoded")]
    Fragment,
    #[error("path has a `;` path parameter, raw or encoded")]
    PathParameter,
    #[error(
        "path has the look-alike character u+{0:04x} (resembles `.`, `/`, `\\`, `%`, `;` or `#`)"
    )]
    LookAlike(u32),
}

/// Characters a request path may carry raw besides ALPHA and DIGIT: RFC 3986 `pchar`
/// and `/`, minus `;` (path parameters are refused). The canonical encoding leaves
/// exactly these as they are.
const RAW_SAFE: &[u8] = b"-._~!$&'()*+,=:@/";

fn is_raw_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || RAW_SAFE.contains(&b)
}

/// Unicode characters that look like, or normalise (NFKC) to, a separator or one of
/// the characters refused above.
fn is_look_alike(c: char) -> bool {
    matches!(
        c,
        // full stops and dot leaders
        '\u{FF0E}' | '\u{FE52}' | '\u{2024}' | '\u{2025}' | '\u{2026}' | '\u{3002}' | '\u{FF61}'
        // slashes
        | '\u{FF0F}' | '\u{2215}' | '\u{2044}' | '\u{29F8}' | '\u{1735}' | '\u{2571}' | '\u{27CB}'
        // backslashes
        | '\u{FF3C}' | '\u{FE68}' | '\u{2216}' | '\u{29F9}' | '\u{2572}' | '\u{27CD}'
        // percent, semicolon, number sign, question mark
        | '\u{FF05}' | '\u{FE6A}' | '\u{FF1B}' | '\u{FE54}' | '\u{037E}' | '\u{FF03}'
        | '\u{FE5F}' | '\u{FF1F}' | '\u{FE56}'
        // invisible and direction-changing characters (log and display spoofing)
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}'
    )
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `raw` (the request path exactly as received, without the query) once and
/// refuses anything ambiguous. See [`PathError`] for what is refused.
pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    let bytes = raw.as_bytes();
    if bytes.is_empty() {
        return Err(PathError::Empty);
    }
    if bytes[0] != b'/' {
        return Err(PathError::NotAbsolute);
    }
    if bytes.len() > 3 * MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex_value);
            let lo = bytes.get(i + 2).copied().and_then(hex_value);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                let end = (i + 3).min(bytes.len());
                let shown = String::from_utf8_lossy(&bytes[i..end]);
                return Err(PathError::MalformedEscape(
                    shown.escape_default().to_string(),
                ));
            };
            let v = (hi << 4) | lo;
            match v {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::Backslash),
                b'.' => return Err(PathError::EncodedDot),
                b'%' => return Err(PathError::DoubleEncoding),
                b'#' => return Err(PathError::Fragment),
                b';' => return Err(PathError::PathParameter),
                0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter(u32::from(v))),
                _ => out.push(v),
            }
            i += 3;
        } else {
            match b {
                0x80..=0xff => return Err(PathError::NonAscii),
                0x00..=0x1f | 0x7f => return Err(PathError::ControlCharacter(u32::from(b))),
                b'\\' => return Err(PathError::Backslash),
                b'#' => return Err(PathError::Fragment),
                b';' => return Err(PathError::PathParameter),
                _ if is_raw_safe(b) => out.push(b),
                _ => return Err(PathError::ForbiddenCharacter(char::from(b))),
            }
            i += 1;
        }
    }
    // `from_utf8` also refuses overlong encodings and encoded surrogates.
    let decoded = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    check_decoded(&decoded)?;
    let encoded = encode(&decoded);
    Ok(NormalizedPath { decoded, encoded })
}

/// Checks an already decoded path (also used for catalog prefixes): absolute, not too
/// long, no dot or empty segments, no backslash, control, look-alike, `%`, `;` or `#`.
pub fn check_decoded(decoded: &str) -> Result<(), PathError> {
    if decoded.is_empty() {
        return Err(PathError::Empty);
    }
    if !decoded.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    if decoded.len() > MAX_PATH_BYTES {
        return Err(PathError::TooLong);
    }
    for c in decoded.chars() {
        match c {
            '\\' => return Err(PathError::Backslash),
            '%' => return Err(PathError::DoubleEncoding),
            '#' => return Err(PathError::Fragment),
            ';' => return Err(PathError::PathParameter),
            c if c.is_control() => return Err(PathError::ControlCharacter(u32::from(c))),
            c if is_look_alike(c) => return Err(PathError::LookAlike(u32::from(c))),
            _ => {}
        }
    }
    // Segments after the leading `/`; only the last may be empty (a trailing slash).
    let mut segments = decoded[1..].split('/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == "." || seg == ".." {
            return Err(PathError::DotSegment);
        }
        if seg.is_empty() && !last {
            return Err(PathError::EmptySegment);
        }
    }
    Ok(())
}

/// The canonical encoding of a decoded path: ALPHA, DIGIT, `/` and `-._~!$&'()*+,=:@`
/// as they are, every other byte as upper-case `%XX`.
pub fn encode(decoded: &str) -> String {
    let mut s = String::with_capacity(decoded.len() + 8);
    for &b in decoded.as_bytes() {
        if is_raw_safe(b) {
            s.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// True if `path` is `prefix` or lies below it on a segment boundary (`/eu` matches
/// `/eu` and `/eu/x`, never `/eu-mirror`).
pub fn segment_prefix_match(prefix: &str, path: &str) -> bool {
    let p = prefix.trim_end_matches('/');
    if p.is_empty() {
        return path.starts_with('/');
    }
    match path.strip_prefix(p) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
#[path = "path_tests.rs"]
mod tests;
