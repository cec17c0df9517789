//! The S3 API the gateway answers itself, for SDKs that speak only S3: the access keys it
//! issues ([`keys`]), SigV4 verification of inbound requests ([`verify`]), and
//! ListObjectsV2 filtered to what the caller may read ([`list`]), in S3's XML ([`xml`]).

pub mod keys;
pub mod list;
pub mod verify;
pub mod xml;

pub use keys::KeyStore;
