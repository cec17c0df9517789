//! The `file://DIR` upstream: a directory served as a dataset store (GET, HEAD, ranges, atomic PUT).
//!
//! Paths map under the root verbatim. Anything that resolves outside the root (a symlink that
//! escapes), any component starting with `.` (including our own temp files) and directories are
//! answered 404: there are no listings. Reads stream in 256 KiB chunks; writes stream into a temp
//! file beside the target that is fsynced and renamed over it, so a reader sees the old file or
//! the new one, never a partial one.

pub(crate) mod conditional;
#[cfg(test)]
mod tests;
mod walk;

use std::io::{self, SeekFrom};
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;

use bytes::Bytes;
use futures_util::Stream;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use tokio::fs::{self, File};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use tokio_util::io::ReaderStream;

use self::conditional::{ByteRange, Precondition};
use crate::proxy::{BoxError, ResBody};
use crate::respond::{Problem, StoreError};

/// Size of the chunks a file is streamed in. Each chunk is one read on the blocking pool and
/// a hand-off back to the connection's task: at 64 KiB those hand-offs were most of the CPU
/// of a large download (bench/transform.sh, plain points: 256 KiB chunks stream 1.5–2× the
/// MB/s at 0.4–0.7× the CPU per GiB). A stream holds about two chunks.
const CHUNK: usize = 256 * 1024;

/// Files up to this size are read whole in the same blocking call that opens them.
const SMALL: u64 = 256 * 1024;

/// Prefix of the temp files PUT writes; the leading dot keeps them from ever being served.
const TMP_PREFIX: &str = ".bordergate-tmp-";

/// A directory served as a dataset store.
#[derive(Debug, Clone)]
pub struct FileStore {
    root: PathBuf,
}

/// What the validators of a regular file are built from.
struct Validators {
    len: u64,
    etag: String,
    mtime_secs: u64,
    last_modified: String,
}

impl Validators {
    /// Strong ETag from (length, mtime nanoseconds, inode): changes whenever the content can
    /// have, without reading it.
    fn of(md: &std::fs::Metadata) -> Validators {
        let mtime = md.modified().unwrap_or(UNIX_EPOCH);
        let nanos = mtime.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        Validators {
            len: md.len(),
            etag: format!("\"{:x}-{:x}-{:x}\"", md.len(), nanos, inode(md)),
            mtime_secs: conditional::epoch_secs(mtime),
            last_modified: httpdate::fmt_http_date(mtime),
        }
    }

    fn current(&self) -> (&str, u64) {
        (&self.etag, self.mtime_secs)
    }
}

#[cfg(unix)]
fn inode(md: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(md)
}

#[cfg(not(unix))]
fn inode(_: &std::fs::Metadata) -> u64 {
    0
}

impl FileStore {
    /// Opens a store rooted at `root`, which must exist and be a directory.
    pub fn new(root: &Path) -> Result<FileStore, String> {
        let canonical = std::fs::canonicalize(root)
            .map_err(|e| format!("cannot open file store root `{}`: {e}", root.display()))?;
        if !canonical.is_dir() {
            return Err(format!(
                "file store root `{}` is not a directory",
                root.display()
            ));
        }
        Ok(FileStore { root: canonical })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers one request, the store's refusals as [`Problem`]s without a request id
    /// (see [`FileStore::answer`]).
    pub async fn handle<B>(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: B,
    ) -> Response<ResBody>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let head = *method == Method::HEAD;
        self.answer(method, path, headers, body)
            .await
            .unwrap_or_else(|e| Problem::from(e).into_response(head))
    }

    /// Answers one request. `path` is decoded and normalised: it starts with `/` and has no dot
    /// segments, backslashes or empty segments.
    pub async fn answer<B>(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        body: B,
    ) -> Result<Response<ResBody>, StoreError>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        match *method {
            Method::GET => self.read(false, path, headers).await,
            Method::HEAD => self.read(true, path, headers).await,
            Method::PUT => self
                .write(path, headers, body)
                .await
                .map_err(StoreError::from),
            _ => Err(StoreError::MethodNotAllowed),
        }
    }

    /// GET and HEAD.
    async fn read(
        &self,
        head: bool,
        path: &str,
        headers: &HeaderMap,
    ) -> Result<Response<ResBody>, StoreError> {
        let components = components(path).ok_or(StatusCode::NOT_FOUND)?;
        let lexical = components.iter().fold(self.root.clone(), |p, c| p.join(c));
        // Resolve, check, open, stat, and read a small file whole, inline: on a local
        // filesystem these are page-cache syscalls of microseconds, and each hop to the
        // blocking pool cost more than the work (bench/load.sh: +33% req/s for 1 KiB
        // objects). Large bodies still stream through tokio's file reader.
        let (std_file, md, small) = self.open_blocking(&lexical)?;
        let v = Validators::of(&md);

        match conditional::evaluate(headers, Some(v.current()), true) {
            Precondition::Proceed => {}
            Precondition::NotModified => {
                let mut resp = Response::new(empty());
                *resp.status_mut() = StatusCode::NOT_MODIFIED;
                set_validators(resp.headers_mut(), &v);
                return Ok(resp);
            }
            Precondition::Failed => return Err(StatusCode::PRECONDITION_FAILED.into()),
        }

        // Range applies to GET only (RFC 9110 §14.2), and only while If-Range holds.
        let range = match headers.get(header::RANGE).and_then(|r| r.to_str().ok()) {
            Some(r) if !head => {
                let fresh = headers
                    .get(header::IF_RANGE)
                    .is_none_or(|ir| conditional::if_range_holds(ir, &v.etag, v.mtime_secs));
                if fresh {
                    conditional::parse_range(r, v.len)
                } else {
                    ByteRange::Full
                }
            }
            _ => ByteRange::Full,
        };

        let (status, start, count) = match range {
            ByteRange::Full => (StatusCode::OK, 0, v.len),
            ByteRange::Partial { start, end } => {
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            ByteRange::Unsatisfiable => {
                return Err(StoreError::RangeNotSatisfiable(v.len));
            }
        };

        let body = if head {
            empty()
        } else if let Some(bytes) = small {
            let start = usize::try_from(start).map_err(|_| StatusCode::RANGE_NOT_SATISFIABLE)?;
            let end = usize::try_from(start as u64 + count)
                .map_err(|_| StatusCode::RANGE_NOT_SATISFIABLE)?;
            if end > bytes.len() {
                // The file grew or shrank between stat and read: serve nothing partial.
                return Err(StatusCode::SERVICE_UNAVAILABLE.into());
            }
            Full::new(bytes.slice(start..end))
                .map_err(|e| match e {})
                .boxed()
        } else {
            let mut file = File::from_std(std_file);
            if start > 0 {
                file.seek(SeekFrom::Start(start)).await.map_err(io_status)?;
            }
            FileBody {
                stream: ReaderStream::with_capacity(file.take(count), CHUNK),
                remaining: count,
            }
            .boxed()
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = status;
        let h = resp.headers_mut();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(content_type(path)),
        );
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        set_validators(h, &v);
        if status == StatusCode::PARTIAL_CONTENT {
            h.insert(
                header::CONTENT_RANGE,
                hv(format!("bytes {}-{}/{}", start, start + count - 1, v.len)),
            );
        }
        Ok(resp)
    }

    /// PUT: stream into a temp file, fsync, rename over the target, fsync the directory.
    async fn write<B>(
        &self,
        path: &str,
        headers: &HeaderMap,
        mut body: B,
    ) -> Result<Response<ResBody>, StatusCode>
    where
        B: Body<Data = Bytes> + Send + Unpin + 'static,
        B::Error: Into<BoxError>,
    {
        let components = components(path).ok_or(StatusCode::NOT_FOUND)?;
        let (name, dirs) = components.split_last().ok_or(StatusCode::NOT_FOUND)?;
        let parent = self.make_parents(dirs).await?;
        let target = parent.join(name);
        let existing = self.existing(&target).await?;

        if conditional::evaluate(headers, existing.as_ref().map(Validators::current), false)
            != Precondition::Proceed
        {
            return Err(StatusCode::PRECONDITION_FAILED);
        }

        let tmp_path = parent.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        // Opened synchronously (one quick syscall) so the guard exists the moment the file
        // does: a request dropped mid-open can never leave a temp file behind.
        let std_file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp_path)
            .map_err(write_status)?;
        let tmp = TempFile(Some(tmp_path.clone()));
        let mut file = fs::File::from_std(std_file);
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| {
                let e: BoxError = e.into();
                tracing::info!(path, error = %e, "file store upload aborted by the client");
                super::guard::BodyLimit::find(e.as_ref())
                    .map(|b| b.kind().status())
                    .unwrap_or(StatusCode::BAD_REQUEST)
            })?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).await.map_err(write_status)?;
            }
        }
        file.flush().await.map_err(write_status)?;
        file.sync_all().await.map_err(write_status)?;
        let md = file.metadata().await.map_err(write_status)?;
        drop(file);
        fs::rename(&tmp_path, &target).await.map_err(write_status)?;
        tmp.keep();
        sync_dir(&parent).await.map_err(write_status)?;

        let v = Validators::of(&md);
        let mut resp = Response::new(empty());
        *resp.status_mut() = if existing.is_some() {
            StatusCode::NO_CONTENT
        } else {
            StatusCode::CREATED
        };
        set_validators(resp.headers_mut(), &v);
        Ok(resp)
    }

    /// Walks `dirs` under the root, creating what is missing, and returns the canonical directory.
    /// A symlink on the way must stay inside the root; a file on the way is a conflict.
    async fn make_parents(&self, dirs: &[&str]) -> Result<PathBuf, StatusCode> {
        let mut dir = self.root.clone();
        for name in dirs {
            let next = dir.join(name);
            match fs::symlink_metadata(&next).await {
                Ok(md) if md.is_dir() => dir = next,
                Ok(md) if md.file_type().is_symlink() => {
                    let real = fs::canonicalize(&next).await.map_err(io_status)?;
                    if !self.contains(&real) {
                        return Err(StatusCode::NOT_FOUND);
                    }
                    if !fs::metadata(&real).await.map_err(io_status)?.is_dir() {
                        return Err(StatusCode::CONFLICT);
                    }
                    dir = real;
                }
                Ok(_) => return Err(StatusCode::CONFLICT),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match fs::create_dir(&next).await {
                        Ok(()) => sync_dir(&dir).await.map_err(write_status)?,
                        // Another writer created it meanwhile: fine if it is a real directory.
                        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                            if !fs::symlink_metadata(&next)
                                .await
                                .map_err(io_status)?
                                .is_dir()
                            {
                                return Err(StatusCode::CONFLICT);
                            }
                        }
                        Err(e) => return Err(write_status(e)),
                    }
                    dir = next;
                }
                Err(e) => return Err(io_status(e)),
            }
        }
        Ok(dir)
    }

    /// The validators of the file a PUT would replace, if there is one.
    async fn existing(&self, target: &Path) -> Result<Option<Validators>, StatusCode> {
        let md = match fs::symlink_metadata(target).await {
            Ok(md) => md,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_status(e)),
        };
        let md = if md.file_type().is_symlink() {
            // The rename replaces the link itself, but a link out of the root is refused anyway.
            let real = fs::canonicalize(target).await.map_err(io_status)?;
            if !self.contains(&real) {
                return Err(StatusCode::NOT_FOUND);
            }
            fs::metadata(&real).await.map_err(io_status)?
        } else {
            md
        };
        if !md.is_file() {
            return Err(StatusCode::CONFLICT);
        }
        Ok(Some(Validators::of(&md)))
    }

    /// Resolves `lexical`, refuses anything outside the root or not a regular file, opens
    /// it, and reads it whole when it is at most [`SMALL`] bytes. Meant for a local
    /// filesystem (a store on a network filesystem would block the worker).
    fn open_blocking(
        &self,
        lexical: &Path,
    ) -> Result<(std::fs::File, std::fs::Metadata, Option<Bytes>), StatusCode> {
        use std::io::Read;
        let real = std::fs::canonicalize(lexical).map_err(io_status)?;
        if !self.contains(&real) {
            return Err(StatusCode::NOT_FOUND);
        }
        // Checked before opening so that a FIFO or device never blocks an open.
        if !std::fs::metadata(&real).map_err(io_status)?.is_file() {
            return Err(StatusCode::NOT_FOUND);
        }
        let mut file = std::fs::File::open(&real).map_err(io_status)?;
        let md = file.metadata().map_err(io_status)?;
        if !md.is_file() {
            return Err(StatusCode::NOT_FOUND);
        }
        let small = if md.len() <= SMALL {
            let mut buf = Vec::with_capacity(usize::try_from(md.len()).unwrap_or(0));
            file.read_to_end(&mut buf).map_err(io_status)?;
            Some(Bytes::from(buf))
        } else {
            None
        };
        Ok((file, md, small))
    }

    /// Whether a canonical path is under the root with no hidden component below it.
    fn contains(&self, real: &Path) -> bool {
        real.strip_prefix(&self.root).is_ok_and(|rel| {
            rel.components().all(
                |c| matches!(c, Component::Normal(s) if !s.as_encoded_bytes().starts_with(b".")),
            )
        })
    }
}

/// The components of a request path, or `None` when any is empty, hidden or suspicious.
fn components(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    let parts: Vec<&str> = rest.split('/').collect();
    parts
        .iter()
        .all(|c| !c.is_empty() && !c.starts_with('.') && !c.contains(['\\', '\0']))
        .then_some(parts)
}

/// Content-Type by extension; everything else is opaque bytes.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    if ext.eq_ignore_ascii_case("csv") {
        "text/csv"
    } else if ext.eq_ignore_ascii_case("txt") {
        "text/plain"
    } else if ext.eq_ignore_ascii_case("json") {
        "application/json"
    } else {
        "application/octet-stream"
    }
}

/// Removes the temp file on drop unless kept: covers errors and a cancelled request alike.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take()
            && let Err(e) = std::fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove file store temp file");
        }
    }
}

/// Makes a rename or creation in `dir` durable.
async fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).await?.sync_all().await
}

fn set_validators(h: &mut HeaderMap, v: &Validators) {
    h.insert(header::ETAG, hv(v.etag.clone()));
    h.insert(header::LAST_MODIFIED, hv(v.last_modified.clone()));
}

/// A header value from text we built ourselves (always visible ASCII).
fn hv(s: String) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn io_status(e: io::Error) -> StatusCode {
    match e.kind() {
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory => StatusCode::NOT_FOUND,
        _ => {
            tracing::warn!(error = %e, "file store read failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

fn write_status(e: io::Error) -> StatusCode {
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            StatusCode::INSUFFICIENT_STORAGE
        }
        io::ErrorKind::NotADirectory => StatusCode::CONFLICT,
        _ => {
            tracing::warn!(error = %e, "file store write failed");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A file's bytes from `start`, `count` long, streamed in chunks. It knows how much is
/// left, so the last chunk says the body is complete: HTTP/1.1 stops polling a body once
/// its `content-length` is written, and without this the transfer would be recorded as
/// aborted although every byte was delivered. A file that ends early is an error, never
/// a short body that looks complete.
struct FileBody {
    stream: ReaderStream<tokio::io::Take<File>>,
    remaining: u64,
}

impl Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        use std::task::Poll;
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        match std::pin::Pin::new(&mut self.stream).poll_next(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                let n = chunk.len() as u64;
                self.remaining = self.remaining.saturating_sub(n);
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(Box::new(e)))),
            Poll::Ready(None) => Poll::Ready(Some(Err("the file shrank while it was read".into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.remaining)
    }
}

fn empty() -> ResBody {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed()
}
