//! STUB: replaced by the TLS implementation.
use std::path::Path;
use std::sync::Arc;
pub fn install_crypto_provider() {}
pub fn server_config(_cfg: &crate::config::TlsListen) -> Result<Arc<rustls::ServerConfig>, String> {
    Err("stub".into())
}
pub fn generate_dev_cert(_cert: &Path, _key: &Path) -> Result<bool, String> {
    Err("stub".into())
}
pub fn upstream_client_config(_ca: Option<&Path>, _c: Option<&Path>, _k: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    Err("stub".into())
}
