//! A tiny raw HTTP/2 client over TLS (ALPN h2) for frames the `h2` crate won't send:
//! endless CONTINUATION, zero WINDOW_UPDATE, DATA on closed streams, CR/LF in values.
//! HPACK: literal header fields without indexing, no Huffman (enough to send anything).
#![allow(clippy::unwrap_used, dead_code)]

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::Gateway;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame received.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.ty {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// The `:status` of a response HEADERS frame, when the server wrote it as an indexed
    /// static-table entry or as a plain literal with the `:status` name (as `h2` does).
    pub fn status(&self) -> Option<u16> {
        if self.ty != HEADERS {
            return None;
        }
        let mut p = &self.payload[..];
        if self.flags & 0x8 != 0 {
            let pad = *p.first()? as usize;
            p = p.get(1..p.len().checked_sub(pad)?)?;
        }
        if self.flags & 0x20 != 0 {
            p = p.get(5..)?;
        }
        let first = *p.first()?;
        let indexed = [200, 204, 206, 304, 400, 404, 500];
        if (0x88..=0x8e).contains(&first) {
            return Some(indexed[(first - 0x88) as usize]);
        }
        // Literal with name index 8..=14 (`:status`), 4- or 6-bit prefix.
        if matches!(first, 0x48..=0x4e | 0x08..=0x0e | 0x18..=0x1e) {
            let len = *p.get(1)?;
            if len & 0x80 == 0 {
                let v = p.get(2..2 + len as usize)?;
                return std::str::from_utf8(v).ok()?.parse().ok();
            }
        }
        None
    }
}

/// Encodes an HPACK integer with an `n`-bit prefix, `first` holding the pattern bits.
fn int(out: &mut Vec<u8>, first: u8, n: u8, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// One header as a literal without indexing, new name, no Huffman (bytes sent as given).
pub fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x00);
    int(out, 0, 7, name.len());
    out.extend_from_slice(name);
    int(out, 0, 7, value.len());
    out.extend_from_slice(value);
}

/// An HPACK block of literal headers.
pub fn block(headers: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (n, v) in headers {
        literal(&mut out, n.as_bytes(), v);
    }
    out
}

/// A request header block: `:method`, `:scheme https`, `:authority localhost`, `:path`,
/// a bearer token, and `extra`.
pub fn request(method: &str, path: &str, token: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let auth = format!("Bearer {token}");
    let mut h: Vec<(&str, &[u8])> = vec![
        (":method", method.as_bytes()),
        (":scheme", b"https"),
        (":authority", b"localhost"),
        (":path", path.as_bytes()),
        ("authorization", auth.as_bytes()),
    ];
    h.extend_from_slice(extra);
    block(&h)
}

/// One frame's bytes.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(ty);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

/// A raw HTTP/2 connection to the gateway.
pub struct H2Raw {
    pub io: TlsStream<TcpStream>,
    buf: Vec<u8>,
    /// Every frame received so far.
    pub frames: Vec<Frame>,
    /// The server closed the connection (EOF or error).
    pub closed: bool,
}

impl H2Raw {
    /// TLS with ALPN h2, the preface, an empty SETTINGS, and the ACK of the server's SETTINGS.
    pub async fn connect(gw: &Gateway) -> H2Raw {
        let cfg = super::raw::tls_config(gw, None, &[&rustls::version::TLS13], &[b"h2"]);
        let io = super::raw::tls_connect(gw, cfg).await.unwrap();
        assert_eq!(io.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut c = H2Raw {
            io,
            buf: Vec::new(),
            frames: Vec::new(),
            closed: false,
        };
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        c.send(&hello).await.unwrap();
        for _ in 0..50 {
            if c.frames
                .iter()
                .any(|f| f.ty == SETTINGS && f.flags & ACK == 0)
            {
                break;
            }
            c.read_for(Duration::from_millis(100)).await;
        }
        c.send(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
        c
    }

    pub async fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.io.write_all(bytes).await?;
        self.io.flush().await
    }

    /// Reads whatever arrives within `wait` (answering PINGs), parsing complete frames.
    pub async fn read_for(&mut self, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let mut chunk = vec![0u8; 65536];
        while !self.closed {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match tokio::time::timeout(left, self.io.read(&mut chunk)).await {
                Err(_) => break,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(n)) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    self.parse().await;
                }
            }
        }
    }

    async fn parse(&mut self) {
        while self.buf.len() >= 9 {
            let len = u32::from_be_bytes([0, self.buf[0], self.buf[1], self.buf[2]]) as usize;
            if self.buf.len() < 9 + len {
                return;
            }
            let f = Frame {
                ty: self.buf[3],
                flags: self.buf[4],
                stream: u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                    & 0x7fff_ffff,
                payload: self.buf[9..9 + len].to_vec(),
            };
            self.buf.drain(..9 + len);
            if f.ty == PING && f.flags & ACK == 0 {
                let _ = self.send(&frame(PING, ACK, 0, &f.payload)).await;
            }
            self.frames.push(f);
        }
    }

    /// The GOAWAY received, if any.
    pub fn goaway(&self) -> Option<&Frame> {
        self.frames.iter().find(|f| f.ty == GOAWAY)
    }

    /// Frames received on `stream`.
    pub fn on(&self, stream: u32) -> Vec<&Frame> {
        self.frames.iter().filter(|f| f.stream == stream).collect()
    }

    /// The response status on `stream`, if a HEADERS frame with a readable one came.
    pub fn status(&self, stream: u32) -> Option<u16> {
        self.on(stream).into_iter().find_map(Frame::status)
    }

    /// The RST_STREAM error code on `stream`, if the server reset it.
    pub fn reset(&self, stream: u32) -> Option<u32> {
        self.on(stream)
            .into_iter()
            .find(|f| f.ty == RST_STREAM)
            .and_then(Frame::error_code)
    }
}
