//! HTTP/1 request lines as they arrived, before the HTTP parser: the parser drops a raw
//! `#` and everything after it from the request target (the `http` crate reads it as a
//! fragment), so the gateway would decide, audit and forward a target the client did not
//! send. [`LineScan`] follows the connection's bytes with the same framing hyper uses
//! (request line, header lines, `content-length` or chunked body) and notes the first
//! request whose target holds a `#`; that request is refused with 400 and the connection
//! closed. Bytes it cannot follow as hyper does mark the request unchecked, which is
//! refused the same way (fail closed). HTTP/2 connections (the preface `PRI * HTTP/2.0`)
//! are not scanned: HPACK hides their `:path`, and the `h2` crate drops a fragment the
//! same way before the gateway sees it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request of a connection is refused before it is parsed further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawTarget {
    /// Its request target holds a raw `#`.
    Fragment,
    /// The connection's framing could not be followed up to this request.
    Unchecked,
}

/// What a connection's scanner tells its requests: the index of the first request it
/// refuses, and why. Shared through atomics; nothing is locked.
#[derive(Debug)]
pub struct Flags {
    first: AtomicU64,
    why: AtomicU64,
}

impl Default for Flags {
    fn default() -> Self {
        Flags {
            first: AtomicU64::new(u64::MAX),
            why: AtomicU64::new(0),
        }
    }
}

impl Flags {
    /// Whether the connection's `n`th request (from 0) is refused, and why.
    pub fn of(&self, n: u64) -> Option<RawTarget> {
        if n < self.first.load(Ordering::Acquire) {
            return None;
        }
        Some(match self.why.load(Ordering::Relaxed) {
            1 => RawTarget::Fragment,
            _ => RawTarget::Unchecked,
        })
    }

    fn set(&self, n: u64, why: RawTarget) {
        if self.first.load(Ordering::Relaxed) == u64::MAX {
            self.why.store(
                match why {
                    RawTarget::Fragment => 1,
                    RawTarget::Unchecked => 2,
                },
                Ordering::Relaxed,
            );
            self.first.store(n, Ordering::Release);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before or in a request line.
    RequestLine,
    /// In the header lines of a head.
    Headers,
    /// In a body of a known length: this many bytes left.
    Fixed(u64),
    /// In a chunk-size line.
    ChunkSize,
    /// In a chunk's data: this many bytes left.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// In the trailer lines after the last chunk.
    Trailers,
    /// Not followed any further (HTTP/2, or after a refused request).
    Off,
}

/// Follows one HTTP/1 connection's bytes; see the module doc.
pub struct LineScan {
    state: State,
    /// Request lines seen so far.
    heads: u64,
    line: Vec<u8>,
    max_line: usize,
    content_length: Option<u64>,
    te: bool,
    te_chunked: bool,
    bad: bool,
    flags: Arc<Flags>,
}

impl LineScan {
    /// A scanner whose lines may be `max_line` bytes long, and what it tells requests.
    pub fn new(max_line: usize) -> (LineScan, Arc<Flags>) {
        let flags = Arc::new(Flags::default());
        let s = LineScan {
            state: State::RequestLine,
            heads: 0,
            line: Vec::new(),
            max_line: max_line.max(1024),
            content_length: None,
            te: false,
            te_chunked: false,
            bad: false,
            flags: flags.clone(),
        };
        (s, flags)
    }

    /// Follows `bytes`, the next bytes read from the connection.
    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match self.state {
                State::Off => return,
                State::Fixed(n) | State::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(bytes.len());
                    bytes = &bytes[take..];
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (State::Fixed(_), 0) => State::RequestLine,
                        (State::Fixed(_), l) => State::Fixed(l),
                        (_, 0) => State::ChunkEnd,
                        (_, l) => State::ChunkData(l),
                    };
                }
                State::ChunkEnd => {
                    let (b, rest) = (bytes[0], &bytes[1..]);
                    bytes = rest;
                    self.byte(b);
                }
                State::RequestLine
                    if self.line.is_empty() && (bytes[0] == b'\r' || bytes[0] == b'\n') =>
                {
                    let (b, rest) = (bytes[0], &bytes[1..]);
                    bytes = rest;
                    self.byte(b);
                }
                State::RequestLine | State::Headers | State::ChunkSize | State::Trailers => {
                    // The rest of the line in one piece (a head is mostly one long
                    // `authorization` line): as if its bytes came one by one.
                    let end = memchr::memchr(b'\n', bytes);
                    let piece = &bytes[..end.unwrap_or(bytes.len())];
                    if self.line.len() + piece.len() > self.max_line {
                        self.lost();
                        return;
                    }
                    self.line.extend_from_slice(piece);
                    bytes = &bytes[piece.len()..];
                    if end.is_some() {
                        bytes = &bytes[1..];
                        self.byte(b'\n');
                    }
                }
            }
        }
    }

    fn lost(&mut self) {
        // In a request line, the request it begins (not counted yet); else the request
        // whose head or body this is.
        let n = if self.state == State::RequestLine {
            self.heads
        } else {
            self.heads.saturating_sub(1)
        };
        self.flags.set(n, RawTarget::Unchecked);
        self.state = State::Off;
    }

    fn byte(&mut self, b: u8) {
        if self.state == State::RequestLine && self.line.is_empty() && (b == b'\r' || b == b'\n') {
            // Empty lines before a request line are skipped, as httparse does.
            return;
        }
        if self.state == State::ChunkEnd {
            match b {
                b'\r' if self.line.is_empty() => self.line.push(b),
                b'\n' => {
                    self.line.clear();
                    self.state = State::ChunkSize;
                }
                _ => self.lost(),
            }
            return;
        }
        if b != b'\n' {
            if self.line.len() >= self.max_line {
                self.lost();
                return;
            }
            self.line.push(b);
            return;
        }
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        self.end_of_line(&line);
        line.clear();
        if self.state != State::Off {
            self.line = line;
        }
    }

    fn end_of_line(&mut self, line: &[u8]) {
        match self.state {
            State::RequestLine => self.request_line(line),
            State::Headers if line.is_empty() => self.end_of_head(),
            State::Headers => self.header(line),
            State::ChunkSize => {
                let size = line.split(|c| *c == b';').next().unwrap_or(&[]);
                let size = size
                    .iter()
                    .rposition(|c| *c != b' ' && *c != b'\t')
                    .map_or(&[][..], |i| &size[..=i]);
                match parse_hex(size) {
                    Some(0) => self.state = State::Trailers,
                    Some(n) => self.state = State::ChunkData(n),
                    None => self.lost(),
                }
            }
            State::Trailers if line.is_empty() => self.state = State::RequestLine,
            State::Trailers => {}
            State::Fixed(_) | State::ChunkData(_) | State::ChunkEnd | State::Off => {}
        }
    }

    fn request_line(&mut self, line: &[u8]) {
        let n = self.heads;
        self.heads += 1;
        let (Some(first), Some(last)) = (
            line.iter().position(|c| *c == b' '),
            line.iter().rposition(|c| *c == b' '),
        ) else {
            self.flags.set(n, RawTarget::Unchecked);
            self.state = State::Off;
            return;
        };
        if &line[..first] == b"PRI" && &line[last + 1..] == b"HTTP/2.0" {
            self.state = State::Off;
            return;
        }
        if first >= last {
            self.flags.set(n, RawTarget::Unchecked);
            self.state = State::Off;
            return;
        }
        if line[first + 1..last].contains(&b'#') {
            self.flags.set(n, RawTarget::Fragment);
            self.state = State::Off;
            return;
        }
        self.content_length = None;
        self.te = false;
        self.te_chunked = false;
        self.bad = false;
        self.state = State::Headers;
    }

    fn header(&mut self, line: &[u8]) {
        let Some(colon) = line.iter().position(|c| *c == b':') else {
            self.bad = true;
            return;
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            self.te = true;
            let last = value.rsplit(|c| *c == b',').next().unwrap_or(&[]);
            self.te_chunked = trim(last).eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n = (!value.is_empty() && value.iter().all(u8::is_ascii_digit))
                .then(|| std::str::from_utf8(value).ok()?.parse::<u64>().ok())
                .flatten();
            match (n, self.content_length) {
                (Some(n), None) => self.content_length = Some(n),
                (Some(n), Some(prev)) if n == prev => {}
                _ => self.bad = true,
            }
        }
    }

    fn end_of_head(&mut self) {
        if self.bad || (self.te && !self.te_chunked) {
            // hyper refuses this head: nothing after it is served on this connection.
            self.lost();
            return;
        }
        self.state = if self.te {
            State::ChunkSize
        } else {
            match self.content_length {
                Some(0) | None => State::RequestLine,
                Some(n) => State::Fixed(n),
            }
        };
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|c| *c != b' ' && *c != b'\t');
    let end = v.iter().rposition(|c| *c != b' ' && *c != b'\t');
    match (start, end) {
        (Some(s), Some(e)) => &v[s..=e],
        _ => &[],
    }
}

fn parse_hex(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 16 {
        return None;
    }
    let s = std::str::from_utf8(v).ok()?;
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Arc<Flags> {
        let (mut s, flags) = LineScan::new(8192);
        for c in chunks {
            s.feed(c);
        }
        flags
    }

    #[test]
    fn a_fragment_in_the_target_flags_its_request() {
        let f = scan(&[b"GET /a#/../b HTTP/1.1\r\nhost: x\r\n\r\n"]);
        assert_eq!(f.of(0), Some(RawTarget::Fragment));
        let f = scan(&[b"GET /a HTTP/1.1\r\nhost: x#y\r\n\r\n"]);
        assert_eq!(f.of(0), None, "a `#` in a header value is no fragment");
    }

    #[test]
    fn bodies_are_skipped_byte_by_byte_or_whole() {
        let req: &[u8] = b"PUT /a HTTP/1.1\r\nhost: x\r\ncontent-length: 23\r\n\r\nGET /x#y HTTP/1.1\r\n\r\n\r\nGET /b#c HTTP/1.1\r\nhost: x\r\n\r\n";
        let f = scan(&[req]);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(1), Some(RawTarget::Fragment));
        let pieces: Vec<&[u8]> = req.chunks(1).collect();
        let f = scan(&pieces);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(1), Some(RawTarget::Fragment));
    }

    #[test]
    fn any_split_of_the_stream_reads_alike() {
        // Lines are taken in pieces up to their end: every split must see what a byte-by-byte
        // reading sees, also for a line that runs over the limit.
        let req: &[u8] = b"\r\nPOST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n5\r\nGET #\r\n0\r\nx-t: #\r\n\r\nGET /ok HTTP/1.1\r\nauthorization: Bearer aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\nGET /no#pe HTTP/1.1\r\n\r\n";
        for limit in [8192, 40] {
            let mut want = Vec::new();
            for size in 1..=req.len() {
                let (mut s, flags) = LineScan::new(limit);
                for c in req.chunks(size) {
                    s.feed(c);
                }
                let got: Vec<_> = (0..4).map(|n| flags.of(n)).collect();
                if size == 1 {
                    want = got;
                } else {
                    assert_eq!(got, want, "pieces of {size} bytes, line limit {limit}");
                }
            }
            if limit == 8192 {
                assert!(want.contains(&Some(RawTarget::Fragment)), "{want:?}");
            }
        }
    }

    #[test]
    fn chunked_bodies_and_trailers_are_followed() {
        let req: &[u8] = b"POST /a HTTP/1.1\r\nhost: x\r\ntransfer-encoding: gzip, chunked\r\n\r\n5;ext=1\r\nGET #\r\n0\r\nx-t: #\r\n\r\nGET /ok HTTP/1.1\r\nhost: x\r\n\r\nGET /no#pe HTTP/1.1\r\n\r\n";
        let f = scan(&[req]);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(1), None);
        assert_eq!(f.of(2), Some(RawTarget::Fragment));
    }

    #[test]
    fn framing_it_cannot_follow_leaves_the_rest_unchecked() {
        let f = scan(&[b"POST /a HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"]);
        assert_eq!(f.of(0), Some(RawTarget::Unchecked));
        let f = scan(&[
            b"GET /a HTTP/1.1\r\nhost: x\r\n\r\nPOST /b HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
        ]);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(1), Some(RawTarget::Unchecked));
    }

    #[test]
    fn http2_is_not_scanned() {
        let f = scan(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00#"]);
        assert_eq!(f.of(0), None);
        assert_eq!(f.of(5), None);
    }
}
