//! Bodies that count what crosses the gateway and write the completion record when
//! a transfer ends, however it ends.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::BoxError;
use crate::audit::{AuditLog, CompletionRecord, Outcome, Record, record::now_rfc3339};

/// Writes one completion record for a forwarded request, exactly once.
pub struct Completion {
    audit: AuditLog,
    request_id: String,
    decision_seq: u64,
    status: u16,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    done: bool,
}

impl Completion {
    pub fn new(
        audit: AuditLog,
        request_id: String,
        decision_seq: u64,
        started: Instant,
        bytes_in: Arc<AtomicU64>,
    ) -> Self {
        Completion {
            audit,
            request_id,
            decision_seq,
            status: 0,
            started,
            bytes_in,
            done: false,
        }
    }

    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Records the end of the transfer (no-op after the first call).
    pub fn finish(&mut self, bytes_out: u64, outcome: Outcome, detail: Option<String>) {
        if self.done {
            return;
        }
        self.done = true;
        let bytes_in = self.bytes_in.load(Ordering::Relaxed);
        crate::metrics::global().transfer(bytes_in, bytes_out);
        let rec = CompletionRecord {
            time: now_rfc3339(),
            request_id: std::mem::take(&mut self.request_id),
            decision_seq: self.decision_seq,
            status: self.status,
            bytes_in,
            bytes_out,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            outcome,
            detail,
            recheck: None,
        };
        self.audit.append_nowait(Record::Completion(rec));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.finish(
                0,
                Outcome::Aborted,
                Some("transfer dropped before it started".into()),
            );
        }
    }
}

/// A response body that counts bytes out and completes the transfer's record.
pub struct Metered<B> {
    inner: B,
    bytes: u64,
    completion: Completion,
}

impl<B: Body> Metered<B> {
    pub fn new(inner: B, mut completion: Completion) -> Self {
        // An empty body (HEAD, 304, 204) is complete before anyone polls it.
        if inner.is_end_stream() {
            completion.finish(0, Outcome::Complete, None);
        }
        Metered {
            inner,
            bytes: 0,
            completion,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.bytes += d.len() as u64;
                }
                // A body that knows it is done (e.g. a whole small file) may never be
                // polled for its end: the last frame completes the transfer.
                if this.inner.is_end_stream() {
                    this.completion.finish(this.bytes, Outcome::Complete, None);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                this.completion.finish(
                    this.bytes,
                    Outcome::UpstreamError,
                    Some(format!("upstream body failed: {e}")),
                );
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                this.completion.finish(this.bytes, Outcome::Complete, None);
                Poll::Ready(None)
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Metered<B> {
    fn drop(&mut self) {
        if !self.completion.done {
            let bytes = self.bytes;
            self.completion.finish(
                bytes,
                Outcome::Aborted,
                Some("client went away before the transfer ended".into()),
            );
        }
    }
}

/// A request body that counts bytes in.
pub struct Counted<B> {
    inner: B,
    counter: Arc<AtomicU64>,
}

impl<B> Counted<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Counted { inner, counter }
    }
}

impl<B> Body for Counted<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.counter.fetch_add(d.len() as u64, Ordering::Relaxed);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
