//! Request-path normalisation: decode once, refuse anything ambiguous.
//! STUB: replaced by the catalog implementation.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NormalizedPath {
    /// The decoded path, used for matching and in the audit log.
    pub decoded: String,
    /// The canonical percent-encoded form, forwarded upstream.
    pub encoded: String,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is not valid")]
    Invalid,
}

pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    Ok(NormalizedPath {
        decoded: raw.to_string(),
        encoded: raw.to_string(),
    })
}
