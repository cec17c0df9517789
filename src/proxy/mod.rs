//! The request path: normalise, authenticate, resolve, decide, audit, forward.

pub mod filestore;

use bytes::Bytes;

/// Errors carried inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body type of every response the gateway produces.
pub type ResBody = http_body_util::combinators::BoxBody<Bytes, BoxError>;
