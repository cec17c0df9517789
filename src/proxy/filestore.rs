//! STUB: replaced by the file store implementation.
use std::path::Path;

pub struct FileStore {}
impl FileStore {
    pub fn new(_root: &Path) -> Result<FileStore, String> {
        Ok(FileStore {})
    }
    pub async fn handle<B>(
        &self,
        _method: &http::Method,
        _path: &str,
        _headers: &http::HeaderMap,
        _body: B,
    ) -> http::Response<crate::proxy::ResBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
        B::Error: Into<crate::proxy::BoxError>,
    {
        use http_body_util::BodyExt;
        http::Response::new(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
    }
}
