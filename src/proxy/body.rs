//! Bodies that count what crosses the gateway and write the completion record when
//! a transfer ends, however it ends; and [`Hooked`], the one body wrapper they (and the
//! request-body limits of [`super::guard`]) are built on.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::BoxError;
use crate::audit::record::{Recheck, now_rfc3339};
use crate::audit::{AuditLog, CompletionRecord, Outcome, Record};

/// What a [`Hooked`] body does as its inner body's frames pass through.
pub trait Hook {
    /// Whether frames other than data (trailers) are passed on; when false they are dropped.
    const KEEP_TRAILERS: bool = true;

    /// Sees every frame the inner body yields, before it is passed on or dropped; an
    /// error is yielded instead of the frame.
    fn on_frame(&mut self, _frame: &Frame<Bytes>) -> Result<(), BoxError> {
        Ok(())
    }

    /// The inner body failed; `e` is yielded after this.
    fn on_error(&mut self, _e: &BoxError) {}

    /// The error yielded for a failure of the inner body (after [`Hook::on_error`]).
    fn map_error(&mut self, e: BoxError) -> BoxError {
        e
    }

    /// The body ended: the inner body yielded its end, or said after a frame that it is
    /// done (a body may never be polled for its end). Called at most once.
    fn on_end(&mut self) {}

    /// The inner body has nothing yet; an error (an idle timeout) is yielded instead of
    /// waiting. Register with `cx` to be woken for anything this may return later.
    fn on_pending(&mut self, _cx: &mut Context<'_>) -> Result<(), BoxError> {
        Ok(())
    }

    /// The body is being dropped, whether it ended or not.
    fn on_drop(&mut self) {}
}

/// A body that forwards its inner body's frames and calls `H` on the way.
pub struct Hooked<B, H: Hook> {
    inner: B,
    hook: H,
    ended: bool,
}

impl<B, H: Hook> Hooked<B, H> {
    /// Wraps `inner`, calling `hook` as it is polled.
    pub fn with_hook(inner: B, hook: H) -> Self {
        Hooked {
            inner,
            hook,
            ended: false,
        }
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.hook.on_end();
        }
    }
}

impl<B, H> Body for Hooked<B, H>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
    H: Hook + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    let e: BoxError = e.into();
                    this.hook.on_error(&e);
                    return Poll::Ready(Some(Err(this.hook.map_error(e))));
                }
                Poll::Ready(None) => {
                    this.end();
                    return Poll::Ready(None);
                }
                Poll::Pending => {
                    return match this.hook.on_pending(cx) {
                        Ok(()) => Poll::Pending,
                        Err(e) => Poll::Ready(Some(Err(e))),
                    };
                }
            };
            if let Err(e) = this.hook.on_frame(&frame) {
                return Poll::Ready(Some(Err(e)));
            }
            if H::KEEP_TRAILERS || frame.is_data() {
                if this.inner.is_end_stream() {
                    this.end();
                }
                return Poll::Ready(Some(Ok(frame)));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B, H: Hook> Drop for Hooked<B, H> {
    fn drop(&mut self) {
        self.hook.on_drop();
    }
}

/// Writes one completion record for a forwarded request, exactly once.
pub struct Completion {
    audit: AuditLog,
    request_id: String,
    decision_seq: u64,
    status: u16,
    started: Instant,
    bytes_in: Arc<AtomicU64>,
    recheck: Option<Recheck>,
    /// The digest of the bytes sent, when it is recorded (transformed transfers).
    sent: Option<aws_lc_rs::digest::Context>,
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
            recheck: None,
            sent: None,
            done: false,
        }
    }

    /// Records the SHA-256 of the bytes sent in the completion record.
    pub fn hash_sent(&mut self) {
        self.sent = Some(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
    }

    fn sent(&mut self, data: &[u8]) {
        if let Some(c) = &mut self.sent {
            c.update(data);
        }
    }

    pub fn set_status(&mut self, status: u16) {
        self.status = status;
    }

    /// Records the re-decision made on the upstream's metadata.
    pub fn set_recheck(&mut self, r: Recheck) {
        self.recheck = Some(r);
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
            recheck: self.recheck.take(),
            sent_sha256: self
                .sent
                .take()
                .map(|c| format!("sha256:{}", hex::encode(c.finish().as_ref()))),
        };
        self.audit.append_nowait(Record::Completion(rec));
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.finish(
            0,
            Outcome::Aborted,
            Some("transfer dropped before it started".into()),
        );
    }
}

/// A response body that counts bytes out and completes the transfer's record.
pub type Metered<B> = Hooked<B, Meter>;

/// The hook of [`Metered`]: bytes out so far and the record to complete.
pub struct Meter {
    bytes: u64,
    completion: Completion,
}

impl<B: Body> Metered<B> {
    pub fn new(inner: B, mut completion: Completion) -> Self {
        // An empty body (HEAD, 304, 204) is complete before anyone polls it.
        if inner.is_end_stream() {
            completion.finish(0, Outcome::Complete, None);
        }
        Hooked::with_hook(
            inner,
            Meter {
                bytes: 0,
                completion,
            },
        )
    }
}

impl Hook for Meter {
    fn on_frame(&mut self, frame: &Frame<Bytes>) -> Result<(), BoxError> {
        if let Some(d) = frame.data_ref() {
            self.bytes += d.len() as u64;
            self.completion.sent(d);
        }
        Ok(())
    }

    fn on_error(&mut self, e: &BoxError) {
        self.completion.finish(
            self.bytes,
            Outcome::UpstreamError,
            Some(format!("upstream body failed: {e}")),
        );
    }

    fn on_end(&mut self) {
        self.completion.finish(self.bytes, Outcome::Complete, None);
    }

    fn on_drop(&mut self) {
        self.completion.finish(
            self.bytes,
            Outcome::Aborted,
            Some("client went away before the transfer ended".into()),
        );
    }
}

/// A request body that counts bytes in.
pub type Counted<B> = Hooked<B, Count>;

/// The hook of [`Counted`]: the counter bytes in are added to.
pub struct Count(Arc<AtomicU64>);

impl<B> Counted<B> {
    pub fn new(inner: B, counter: Arc<AtomicU64>) -> Self {
        Hooked::with_hook(inner, Count(counter))
    }
}

impl Hook for Count {
    fn on_frame(&mut self, frame: &Frame<Bytes>) -> Result<(), BoxError> {
        if let Some(d) = frame.data_ref() {
            self.0.fetch_add(d.len() as u64, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Empty, Full, StreamBody};
    use serde_json::Value;

    type Frames = Vec<Result<Frame<Bytes>, BoxError>>;

    fn stream(frames: Frames) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        StreamBody::new(futures_util::stream::iter(frames))
    }

    /// Runs `f` with a completion on a fresh log; returns the completion records written.
    async fn completions<F, Fut>(f: F) -> Vec<Value>
    where
        F: FnOnce(Completion) -> Fut,
        Fut: Future<Output = ()>,
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = AuditLog::open(&path, 8).unwrap();
        let bytes_in = Arc::new(AtomicU64::new(3));
        f(Completion::new(
            log.clone(),
            "r1".into(),
            7,
            Instant::now(),
            bytes_in,
        ))
        .await;
        log.shutdown().await;
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .filter(|v| v["kind"] == "completion")
            .collect()
    }

    #[tokio::test]
    async fn metered_completes_once_at_the_end_with_the_bytes_out() {
        let recs = completions(|c| async {
            let frames: Frames = vec![
                Ok(Frame::data(Bytes::from_static(b"abc"))),
                Ok(Frame::data(Bytes::from_static(b"de"))),
            ];
            let got = Metered::new(stream(frames), c).collect().await.unwrap();
            assert_eq!(got.to_bytes().as_ref(), b"abcde");
        })
        .await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["outcome"], "complete");
        assert_eq!(recs[0]["bytes_out"], 5);
        assert_eq!(recs[0]["bytes_in"], 3);
        assert_eq!(recs[0]["decision_seq"], 7);
    }

    #[tokio::test]
    async fn metered_completes_on_the_last_frame_of_a_body_that_knows_its_end() {
        let recs = completions(|c| async {
            let mut b = Metered::new(Full::new(Bytes::from_static(b"whole")), c);
            let f = b.frame().await.unwrap().unwrap();
            assert_eq!(f.into_data().unwrap().as_ref(), b"whole");
            // Never polled for its end, then dropped: still complete, not aborted.
            drop(b);
        })
        .await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["outcome"], "complete");
        assert_eq!(recs[0]["bytes_out"], 5);
    }

    #[tokio::test]
    async fn metered_empty_body_is_complete_before_it_is_polled() {
        let recs = completions(|c| async {
            drop(Metered::new(Empty::<Bytes>::new(), c));
        })
        .await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["outcome"], "complete");
    }

    #[tokio::test]
    async fn metered_records_upstream_errors_and_aborts() {
        let recs = completions(|c| async {
            let frames: Frames = vec![
                Ok(Frame::data(Bytes::from_static(b"ab"))),
                Err("reset by upstream".into()),
            ];
            assert!(Metered::new(stream(frames), c).collect().await.is_err());
        })
        .await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["outcome"], "upstream-error");
        assert_eq!(recs[0]["bytes_out"], 2);
        assert!(
            recs[0]["detail"]
                .as_str()
                .unwrap()
                .contains("reset by upstream")
        );

        let recs = completions(|c| async {
            let frames: Frames = vec![
                Ok(Frame::data(Bytes::from_static(b"abcd"))),
                Ok(Frame::data(Bytes::from_static(b"efgh"))),
            ];
            let mut b = Metered::new(stream(frames), c);
            assert!(b.frame().await.is_some());
            drop(b);
        })
        .await;
        assert_eq!(recs.len(), 1, "{recs:?}");
        assert_eq!(recs[0]["outcome"], "aborted");
        assert_eq!(recs[0]["bytes_out"], 4);
    }

    #[tokio::test]
    async fn counted_adds_data_bytes_and_keeps_trailers() {
        let n = Arc::new(AtomicU64::new(0));
        let mut t = http::HeaderMap::new();
        t.insert("x-t", http::HeaderValue::from_static("1"));
        let frames: Frames = vec![
            Ok(Frame::data(Bytes::from_static(b"abc"))),
            Ok(Frame::data(Bytes::from_static(b"defg"))),
            Ok(Frame::trailers(t)),
        ];
        let got = Counted::new(stream(frames), n.clone())
            .collect()
            .await
            .unwrap();
        assert_eq!(n.load(Ordering::Relaxed), 7);
        assert!(got.trailers().is_some());
    }
}
