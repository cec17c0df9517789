//! Tests of the file store against real temp directories.

#![allow(clippy::unwrap_used)]

use super::*;
use futures_util::StreamExt;
use http::Method;
use http_body_util::{BodyExt, Empty, Full, StreamBody};

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::new(dir.path()).unwrap();
    (dir, store)
}

fn write(dir: &Path, rel: &str, data: &[u8]) {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(k.clone(), HeaderValue::from_str(v).unwrap());
    }
    h
}

async fn get(store: &FileStore, path: &str, h: &HeaderMap) -> Response<ResBody> {
    store
        .handle(&Method::GET, path, h, Empty::<Bytes>::new())
        .await
}

async fn put(
    store: &FileStore,
    path: &str,
    h: &HeaderMap,
    data: &'static [u8],
) -> Response<ResBody> {
    store
        .handle(&Method::PUT, path, h, Full::new(Bytes::from_static(data)))
        .await
}

async fn body(resp: Response<ResBody>) -> Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

fn hdr(resp: &Response<ResBody>, name: header::HeaderName) -> &str {
    resp.headers().get(name).unwrap().to_str().unwrap()
}

#[test]
fn new_requires_a_directory() {
    let (dir, _) = store();
    write(dir.path(), "f", b"x");
    assert!(FileStore::new(&dir.path().join("f")).is_err());
    assert!(FileStore::new(&dir.path().join("missing")).is_err());
}

#[tokio::test]
async fn get_full_and_head_headers() {
    let (dir, store) = store();
    write(dir.path(), "datasets/a/b.csv", b"id,x\n1,2\n");
    let resp = get(&store, "/datasets/a/b.csv", &HeaderMap::new()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hdr(&resp, header::CONTENT_TYPE), "text/csv");
    assert_eq!(hdr(&resp, header::CONTENT_LENGTH), "9");
    assert_eq!(hdr(&resp, header::ACCEPT_RANGES), "bytes");
    let etag = hdr(&resp, header::ETAG).to_owned();
    assert!(etag.starts_with("\"9-") && etag.ends_with('"'));
    let lm = hdr(&resp, header::LAST_MODIFIED).to_owned();
    assert!(httpdate::parse_http_date(&lm).is_ok());
    assert_eq!(body(resp).await, &b"id,x\n1,2\n"[..]);

    let resp = store
        .handle(
            &Method::HEAD,
            "/datasets/a/b.csv",
            &headers(&[(header::RANGE, "bytes=0-1")]),
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(hdr(&resp, header::CONTENT_LENGTH), "9");
    assert_eq!(hdr(&resp, header::ETAG), etag);
    assert_eq!(hdr(&resp, header::LAST_MODIFIED), lm);
    assert!(body(resp).await.is_empty());

    for (name, ty) in [
        ("x.json", "application/json"),
        ("x.TXT", "text/plain"),
        ("x.bin", "application/octet-stream"),
        ("noext", "application/octet-stream"),
    ] {
        write(dir.path(), name, b"{}");
        let resp = get(&store, &format!("/{name}"), &HeaderMap::new()).await;
        assert_eq!(hdr(&resp, header::CONTENT_TYPE), ty);
    }
}

#[tokio::test]
async fn missing_hidden_and_directories_are_404() {
    let (dir, store) = store();
    write(dir.path(), "d/f", b"x");
    write(dir.path(), ".secret", b"x");
    write(dir.path(), "d/.hidden/f", b"x");
    for path in [
        "/nope",
        "/d",
        "/d/",
        "/",
        "/.secret",
        "/d/.hidden/f",
        "/d/f/g",
        "relative",
    ] {
        let resp = get(&store, path, &HeaderMap::new()).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{path}");
        assert_eq!(hdr(&resp, header::CONTENT_TYPE), "application/problem+json");
        let b = body(resp).await;
        let v: serde_json::Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["status"], 404);
    }
}

#[cfg(unix)]
#[tokio::test]
async fn symlinks_escaping_the_root_are_refused() {
    let outside = tempfile::tempdir().unwrap();
    write(outside.path(), "secret.txt", b"top secret");
    let (dir, store) = store();
    write(dir.path(), "real/ok.txt", b"fine");
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        dir.path().join("leak.txt"),
    )
    .unwrap();
    std::os::unix::fs::symlink(outside.path(), dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("real/ok.txt"), dir.path().join("alias.txt"))
        .unwrap();
    std::os::unix::fs::symlink(dir.path().join(".priv"), dir.path().join("priv")).unwrap();
    write(dir.path(), ".priv/p.txt", b"hidden");

    for path in ["/leak.txt", "/out/secret.txt", "/priv/p.txt"] {
        assert_eq!(
            get(&store, path, &HeaderMap::new()).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // A symlink that stays inside the root is followed.
    let resp = get(&store, "/alias.txt", &HeaderMap::new()).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, &b"fine"[..]);

    // PUT through an escaping directory link writes nothing outside.
    let resp = put(&store, "/out/new.txt", &HeaderMap::new(), b"x").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert!(!outside.path().join("new.txt").exists());
    let resp = put(&store, "/leak.txt", &HeaderMap::new(), b"x").await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        std::fs::read(outside.path().join("secret.txt")).unwrap(),
        b"top secret"
    );
}

#[tokio::test]
async fn range_forms() {
    let (dir, store) = store();
    write(dir.path(), "f.bin", b"0123456789");
    let cases = [
        ("bytes=2-4", "bytes 2-4/10", &b"234"[..]),
        ("bytes=7-", "bytes 7-9/10", b"789"),
        ("bytes=-3", "bytes 7-9/10", b"789"),
        ("bytes=-30", "bytes 0-9/10", b"0123456789"),
        ("bytes=8-100", "bytes 8-9/10", b"89"),
    ];
    for (range, content_range, want) in cases {
        let resp = get(&store, "/f.bin", &headers(&[(header::RANGE, range)])).await;
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(hdr(&resp, header::CONTENT_RANGE), content_range);
        assert_eq!(hdr(&resp, header::CONTENT_LENGTH), want.len().to_string());
        assert_eq!(body(resp).await, want);
    }
    for range in ["bytes=10-", "bytes=-0", "bytes=50-60"] {
        let resp = get(&store, "/f.bin", &headers(&[(header::RANGE, range)])).await;
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(hdr(&resp, header::CONTENT_RANGE), "bytes */10");
    }
    // Malformed and multiple ranges: the whole file.
    for range in ["bytes=4-2", "lines=1-2", "bytes=0-1,3-4"] {
        let resp = get(&store, "/f.bin", &headers(&[(header::RANGE, range)])).await;
        assert_eq!(resp.status(), StatusCode::OK, "{range}");
        assert_eq!(body(resp).await, &b"0123456789"[..]);
    }
}

#[tokio::test]
async fn conditional_get() {
    let (dir, store) = store();
    write(dir.path(), "f.txt", b"hello");
    let resp = get(&store, "/f.txt", &HeaderMap::new()).await;
    let etag = hdr(&resp, header::ETAG).to_owned();
    let lm = hdr(&resp, header::LAST_MODIFIED).to_owned();

    let inm = format!("\"nope\", W/{etag}");
    let resp = get(&store, "/f.txt", &headers(&[(header::IF_NONE_MATCH, &inm)])).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(hdr(&resp, header::ETAG), etag);
    assert!(body(resp).await.is_empty());
    let resp = get(&store, "/f.txt", &headers(&[(header::IF_NONE_MATCH, "*")])).await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let resp = get(
        &store,
        "/f.txt",
        &headers(&[(header::IF_NONE_MATCH, "\"other\"")]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = get(
        &store,
        "/f.txt",
        &headers(&[(header::IF_MODIFIED_SINCE, &lm)]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    let old = "Thu, 01 Jan 1970 00:00:00 GMT";
    let resp = get(
        &store,
        "/f.txt",
        &headers(&[(header::IF_MODIFIED_SINCE, old)]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    let resp = get(
        &store,
        "/f.txt",
        &headers(&[(header::IF_MATCH, "\"other\"")]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    let resp = get(&store, "/f.txt", &headers(&[(header::IF_MATCH, &etag)])).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = get(
        &store,
        "/f.txt",
        &headers(&[(header::IF_UNMODIFIED_SINCE, old)]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
}

#[tokio::test]
async fn if_range() {
    let (dir, store) = store();
    write(dir.path(), "f.txt", b"hello");
    let resp = get(&store, "/f.txt", &HeaderMap::new()).await;
    let etag = hdr(&resp, header::ETAG).to_owned();
    let lm = hdr(&resp, header::LAST_MODIFIED).to_owned();

    for (if_range, status) in [
        (etag.as_str(), StatusCode::PARTIAL_CONTENT),
        (lm.as_str(), StatusCode::PARTIAL_CONTENT),
        ("\"stale\"", StatusCode::OK),
        ("Thu, 01 Jan 1970 00:00:00 GMT", StatusCode::OK),
    ] {
        let h = headers(&[(header::RANGE, "bytes=1-2"), (header::IF_RANGE, if_range)]);
        let resp = get(&store, "/f.txt", &h).await;
        assert_eq!(resp.status(), status, "{if_range}");
        let want: &[u8] = if status == StatusCode::OK {
            b"hello"
        } else {
            b"el"
        };
        assert_eq!(body(resp).await, want);
    }
    let weak = format!("W/{etag}");
    let h = headers(&[(header::RANGE, "bytes=1-2"), (header::IF_RANGE, &weak)]);
    assert_eq!(get(&store, "/f.txt", &h).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn put_create_replace_and_preconditions() {
    let (dir, store) = store();
    let resp = put(&store, "/new/deep/x.csv", &HeaderMap::new(), b"a,b\n").await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let etag = hdr(&resp, header::ETAG).to_owned();
    assert_eq!(
        std::fs::read(dir.path().join("new/deep/x.csv")).unwrap(),
        b"a,b\n"
    );
    let resp = get(&store, "/new/deep/x.csv", &HeaderMap::new()).await;
    assert_eq!(hdr(&resp, header::ETAG), etag);

    let star = headers(&[(header::IF_NONE_MATCH, "*")]);
    let resp = put(&store, "/new/deep/x.csv", &star, b"zzz").await;
    assert_eq!(resp.status(), StatusCode::PRECONDITION_FAILED);
    assert_eq!(
        std::fs::read(dir.path().join("new/deep/x.csv")).unwrap(),
        b"a,b\n"
    );
    assert_eq!(
        put(&store, "/other.csv", &star, b"o").await.status(),
        StatusCode::CREATED
    );

    let stale = headers(&[(header::IF_MATCH, "\"stale\"")]);
    assert_eq!(
        put(&store, "/new/deep/x.csv", &stale, b"zzz")
            .await
            .status(),
        StatusCode::PRECONDITION_FAILED
    );
    assert_eq!(
        put(
            &store,
            "/absent.csv",
            &headers(&[(header::IF_MATCH, "*")]),
            b"z"
        )
        .await
        .status(),
        StatusCode::PRECONDITION_FAILED
    );

    let resp = put(
        &store,
        "/new/deep/x.csv",
        &headers(&[(header::IF_MATCH, &etag)]),
        b"c,d,e\n",
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_ne!(hdr(&resp, header::ETAG), etag);
    assert_eq!(
        std::fs::read(dir.path().join("new/deep/x.csv")).unwrap(),
        b"c,d,e\n"
    );

    // No temp files left behind, and none can be read.
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("new/deep"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(TMP_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // Conflicts: a directory as target, a file as a parent; hidden names refused.
    assert_eq!(
        put(&store, "/new/deep", &HeaderMap::new(), b"x")
            .await
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        put(&store, "/other.csv/x", &HeaderMap::new(), b"x")
            .await
            .status(),
        StatusCode::CONFLICT
    );
    assert_eq!(
        put(&store, "/.hidden", &HeaderMap::new(), b"x")
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn body_error_leaves_no_file() {
    let (dir, store) = store();
    let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"partial data"))),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "client went away",
        )),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let resp = store
        .handle(&Method::PUT, "/up/f.bin", &HeaderMap::new(), body)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(!dir.path().join("up/f.bin").exists());
    assert_eq!(std::fs::read_dir(dir.path().join("up")).unwrap().count(), 0);

    // An existing file stays intact too.
    write(dir.path(), "up/f.bin", b"original");
    let frames: Vec<Result<Frame<Bytes>, io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"new"))),
        Err(io::Error::other("boom")),
    ];
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let resp = store
        .handle(&Method::PUT, "/up/f.bin", &HeaderMap::new(), body)
        .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        std::fs::read(dir.path().join("up/f.bin")).unwrap(),
        b"original"
    );
    assert_eq!(std::fs::read_dir(dir.path().join("up")).unwrap().count(), 1);
}

#[tokio::test]
async fn cancelled_upload_leaves_no_file() {
    let (dir, store) = store();
    let first: Result<Frame<Bytes>, io::Error> = Ok(Frame::data(Bytes::from_static(b"some")));
    let stalled = futures_util::stream::iter([first]).chain(futures_util::stream::pending());
    let task = tokio::spawn(async move {
        store
            .handle(
                &Method::PUT,
                "/up/f.bin",
                &HeaderMap::new(),
                StreamBody::new(stalled),
            )
            .await
    });
    // Wait until the temp file exists, then drop the request as a vanished client would.
    let up = dir.path().join("up");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_dir(&up).map_or(0, |d| d.count()) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "temp file never appeared"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    assert_eq!(std::fs::read_dir(&up).unwrap().count(), 0);
}

#[tokio::test]
async fn sparse_gib_file_range_at_end() {
    let (dir, store) = store();
    let path = dir.path().join("big.bin");
    let f = std::fs::File::create(&path).unwrap();
    let len: u64 = 1 << 30;
    f.set_len(len).unwrap();
    {
        use std::io::{Seek, Write};
        let mut f = f;
        f.seek(SeekFrom::Start(len - 4)).unwrap();
        f.write_all(b"TAIL").unwrap();
    }
    let resp = get(&store, "/big.bin", &headers(&[(header::RANGE, "bytes=-6")])).await;
    assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        hdr(&resp, header::CONTENT_RANGE),
        format!("bytes {}-{}/{len}", len - 6, len - 1)
    );
    assert_eq!(hdr(&resp, header::CONTENT_LENGTH), "6");
    // Only the slice is streamed: one small frame, not a GiB of reads.
    let mut body = resp.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(frames.len(), 1);
    assert_eq!(frames[0], &b"\0\0TAIL"[..]);

    let resp = store
        .handle(
            &Method::HEAD,
            "/big.bin",
            &HeaderMap::new(),
            Empty::<Bytes>::new(),
        )
        .await;
    assert_eq!(hdr(&resp, header::CONTENT_LENGTH), len.to_string());
}

#[tokio::test]
async fn full_reads_stream_in_chunks() {
    let (dir, store) = store();
    // Larger than SMALL, so it streams rather than being read whole.
    let data: Vec<u8> = (0..(super::SMALL as usize + 3 * CHUNK + 100))
        .map(|i| (i % 251) as u8)
        .collect();
    std::fs::write(dir.path().join("m.bin"), &data).unwrap();
    let mut body = get(&store, "/m.bin", &HeaderMap::new()).await.into_body();
    let mut got = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        let chunk = frame.unwrap().into_data().unwrap();
        assert!(chunk.len() <= CHUNK);
        got.extend_from_slice(&chunk);
        frames += 1;
    }
    assert!(frames >= 4);
    assert_eq!(got, data);
}

#[tokio::test]
async fn other_methods_are_405() {
    let (dir, store) = store();
    write(dir.path(), "f", b"x");
    for m in [Method::POST, Method::DELETE, Method::OPTIONS, Method::PATCH] {
        let resp = store
            .handle(&m, "/f", &HeaderMap::new(), Empty::<Bytes>::new())
            .await;
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{m}");
        assert_eq!(hdr(&resp, header::ALLOW), "GET, HEAD, PUT");
    }
    assert!(dir.path().join("f").exists());
}
