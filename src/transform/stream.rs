//! Transformers driven on blocking threads between an upstream body and a response body:
//! the input is read frame by frame (CSV and JSON Lines transformed in batches on several
//! cores, [`super::batch`]), the output sent through a channel of [`DEPTH`] chunks, so a
//! slow client slows the read instead of filling memory. The first message says whether
//! the file matched its schema, before any byte is sent.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body::Body;
use http_body_util::BodyExt;
use parquet::file::reader::{ChunkReader, Length};
use tokio::sync::mpsc;

use super::Plan;
use super::batch::{self, Batches, Stop};
use super::tabular::{TransformError, Transformer};

/// Chunks in flight between the transformer and the client.
pub const DEPTH: usize = 4;
/// Output is sent in chunks of about this size.
pub const CHUNK: usize = 64 << 10;

/// What the response body is made of: transformed chunks, or the error that ended them.
pub type Chunks = mpsc::Receiver<Result<Bytes, TransformError>>;

/// Started transformation: the first chunk (the header matched the schema) or the error
/// that stopped it before any byte, then the rest.
pub struct Started {
    pub first: Result<Option<Bytes>, TransformError>,
    pub rest: Chunks,
}

async fn start(mut rx: Chunks) -> Started {
    let first = match rx.recv().await {
        None => Ok(None),
        Some(Ok(b)) => Ok(Some(b)),
        Some(Err(e)) => Err(e),
    };
    Started { first, rest: rx }
}

/// Transforms a CSV or JSON Lines `body` with `t`: read on a blocking thread, transformed in
/// batches on as many as the process has cores ([`super::batch`]).
pub async fn tabular<B>(body: B, t: Box<dyn Transformer>) -> Started
where
    B: Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display,
{
    let (tx, rx) = mpsc::channel(DEPTH);
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut body = body;
        let out = tx.clone();
        let send = move |b: Vec<u8>| {
            if b.is_empty() {
                return Ok(());
            }
            out.blocking_send(Ok(Bytes::from(b)))
                .map_err(|_| Stop::Gone)
        };
        let mut batches = Batches::new(t, batch::window(), handle.clone(), send);
        let stopped = loop {
            let frame = match handle.block_on(body.frame()) {
                None => break batches.finish(),
                Some(Err(e)) => {
                    break Err(Stop::Failed(TransformError::Source(format!(
                        "the upstream body failed: {e}"
                    ))));
                }
                Some(Ok(f)) => f,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if let Err(e) = batches.feed(&data) {
                break Err(e);
            }
        };
        if let Err(Stop::Failed(e)) = stopped {
            let _ = tx.blocking_send(Err(e));
        }
    });
    start(rx).await
}

/// Fetches `len` bytes from `start` of the source file (a Range request).
pub type Fetch = Arc<dyn Fn(u64, u64) -> BoxFuture<'static, Result<Bytes, String>> + Send + Sync>;

/// A Parquet file read by ranges: the footer first, then the column chunks.
pub struct Ranged {
    fetch: Fetch,
    len: u64,
    handle: tokio::runtime::Handle,
}

impl Length for Ranged {
    fn len(&self) -> u64 {
        self.len
    }
}

impl Ranged {
    fn get(&self, start: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let b = self
            .handle
            .block_on((self.fetch)(start, len))
            .map_err(|m| parquet::errors::ParquetError::External(m.into()))?;
        if b.len() as u64 != len {
            return Err(parquet::errors::ParquetError::General(format!(
                "the upstream sent {} bytes for a range of {len}",
                b.len()
            )));
        }
        Ok(b)
    }
}

/// A sequential reader over ranges of [`RANGE`] bytes.
pub struct RangeRead {
    src: Arc<Ranged>,
    pos: u64,
    buf: Bytes,
}

/// Bytes fetched at once by a sequential read.
pub const RANGE: u64 = 1 << 20;

impl Read for RangeRead {
    fn read(&mut self, into: &mut [u8]) -> std::io::Result<usize> {
        if self.buf.is_empty() {
            let left = self.src.len.saturating_sub(self.pos);
            if left == 0 {
                return Ok(0);
            }
            let n = left.min(RANGE);
            self.buf = self
                .src
                .get(self.pos, n)
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            self.pos += n;
        }
        let n = into.len().min(self.buf.len());
        into[..n].copy_from_slice(&self.buf[..n]);
        let _ = self.buf.split_to(n);
        Ok(n)
    }
}

/// The shared source handed to the Parquet reader.
#[derive(Clone)]
pub struct Source(Arc<Ranged>);

impl Length for Source {
    fn len(&self) -> u64 {
        self.0.len
    }
}

impl ChunkReader for Source {
    type T = RangeRead;

    fn get_read(&self, start: u64) -> parquet::errors::Result<RangeRead> {
        Ok(RangeRead {
            src: self.0.clone(),
            pos: start,
            buf: Bytes::new(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        self.0.get(start, length as u64)
    }
}

/// Output written to the channel in chunks.
struct ChannelWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Result<Bytes, TransformError>>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.tx
            .blocking_send(Ok(Bytes::from(std::mem::take(&mut self.buf))))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Transforms the Parquet file of `len` bytes that `fetch` reads, on a blocking thread.
pub async fn parquet(fetch: Fetch, len: u64, plan: Plan) -> Started {
    let (tx, rx) = mpsc::channel(DEPTH);
    let handle = tokio::runtime::Handle::current();
    let src = Source(Arc::new(Ranged { fetch, len, handle }));
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter {
            buf: Vec::with_capacity(CHUNK * 2),
            tx: tx.clone(),
        };
        // A mismatch stops the transform before any byte is written; it is the first message.
        match super::parquet::transform(src, &plan, &mut w, |_| {}) {
            Ok(()) => {
                let _ = w.send();
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
            }
        }
    });
    start(rx).await
}
