//! TLS for both sides of the gateway: the listener's server config (optional mTLS),
//! verified upstream client configs, and self-signed development certificates.
//!
//! Everything uses the aws-lc-rs provider explicitly and TLS 1.2 or 1.3 only.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsListen;

/// TLS versions the gateway speaks, on both sides.
const VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// ALPN protocols offered and accepted, in preference order.
fn alpn() -> Vec<Vec<u8>> {
    vec![b"h2".to_vec(), b"http/1.1".to_vec()]
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Installs the aws-lc-rs provider as rustls' process default. Safe to call many times.
pub fn install_crypto_provider() {
    // Err only means some provider is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Reads every certificate of a PEM file; at least one is required.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates `{}`: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM certificate in `{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("no certificate in `{}`", path.display()));
    }
    Ok(certs)
}

/// Reads the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read a private key from `{}`: {e}", path.display()))
}

fn root_store(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| format!("unusable CA certificate in `{}`: {e}", path.display()))?;
    }
    Ok(roots)
}

/// Builds the listener's TLS config: TLS 1.2+, ALPN `h2` and `http/1.1`, the PEM
/// chain and key, and client certificates verified against `client_ca` (required
/// when `require_client_cert`, otherwise optional). Generates a dev certificate first
/// when `generate_dev_cert` is set and the files are missing.
pub fn server_config(cfg: &TlsListen) -> Result<Arc<ServerConfig>, String> {
    if cfg.generate_dev_cert {
        generate_dev_cert(&cfg.cert, &cfg.key)?;
    }
    let certs = load_certs(&cfg.cert)?;
    let key = load_key(&cfg.key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("cannot configure TLS versions: {e}"))?;
    let builder = match &cfg.client_ca {
        Some(ca) => {
            let roots = Arc::new(root_store(ca)?);
            let mut v = WebPkiClientVerifier::builder_with_provider(roots, provider);
            if !cfg.require_client_cert {
                v = v.allow_unauthenticated();
            }
            let v = v
                .build()
                .map_err(|e| format!("cannot use client CA `{}`: {e}", ca.display()))?;
            builder.with_client_cert_verifier(v)
        }
        None if cfg.require_client_cert => {
            return Err("`require_client_cert` needs `client_ca`".into());
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        format!(
            "certificate `{}` and key `{}` are not usable together: {e}",
            cfg.cert.display(),
            cfg.key.display()
        )
    })?;
    config.alpn_protocols = alpn();
    Ok(Arc::new(config))
}

/// Builds the config for connections to an upstream. The server is always verified:
/// against `ca` when given, else the Mozilla roots (webpki-roots). A client
/// certificate is presented when both `client_cert` and `client_key` are given.
pub fn upstream_client_config(
    ca: Option<&Path>,
    client_cert: Option<&Path>,
    client_key: Option<&Path>,
) -> Result<ClientConfig, String> {
    let roots = match ca {
        Some(p) => root_store(p)?,
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("cannot configure TLS versions: {e}"))?
        .with_root_certificates(roots);
    let mut config = match (client_cert, client_key) {
        (Some(c), Some(k)) => {
            let certs = load_certs(c)?;
            let key = load_key(k)?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                format!(
                    "client certificate `{}` and key `{}` are not usable together: {e}",
                    c.display(),
                    k.display()
                )
            })?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => {
            return Err(
                "an upstream client certificate needs both `client_cert` and `client_key`".into(),
            );
        }
    };
    config.alpn_protocols = alpn();
    Ok(config)
}

/// Writes a self-signed certificate for `localhost`, `127.0.0.1` and `::1` and its key
/// (mode 0600), creating parent directories, unless both files exist. Returns whether
/// it created them. One file without the other is an error, never overwritten.
pub fn generate_dev_cert(cert: &Path, key: &Path) -> Result<bool, String> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok(false),
        (true, false) | (false, true) => {
            return Err(format!(
                "only one of `{}` and `{}` exists; remove it or provide both",
                cert.display(),
                key.display()
            ));
        }
        (false, false) => {}
    }
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| format!("cannot generate a development certificate: {e}"))?;
    for p in [cert, key] {
        if let Some(dir) = p.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create directory `{}`: {e}", dir.display()))?;
        }
    }
    write_new(key, generated.signing_key.serialize_pem().as_bytes(), 0o600)?;
    write_new(cert, generated.cert.pem().as_bytes(), 0o644)?;
    Ok(true)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts
        .open(path)
        .map_err(|e| format!("cannot create `{}`: {e}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write `{}`: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};
    use std::path::PathBuf;

    fn listen(dir: &Path) -> TlsListen {
        TlsListen {
            cert: dir.join("certs/dev.crt"),
            key: dir.join("certs/dev.key"),
            generate_dev_cert: false,
            client_ca: None,
            require_client_cert: false,
        }
    }

    /// Runs a handshake in memory; returns the negotiated ALPN protocol.
    fn handshake(
        client: ClientConfig,
        server: Arc<ServerConfig>,
        name: &str,
    ) -> Result<Option<Vec<u8>>, rustls::Error> {
        let mut c = ClientConnection::new(
            Arc::new(client),
            ServerName::try_from(name.to_string()).unwrap(),
        )?;
        let mut s = ServerConnection::new(server)?;
        let mut buf = Vec::new();
        for _ in 0..20 {
            buf.clear();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                s.read_tls(&mut rd).unwrap();
            }
            s.process_new_packets()?;
            buf.clear();
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            let mut rd = buf.as_slice();
            while !rd.is_empty() {
                c.read_tls(&mut rd).unwrap();
            }
            c.process_new_packets()?;
            if !c.is_handshaking() && !s.is_handshaking() {
                return Ok(s.alpn_protocol().map(<[u8]>::to_vec));
            }
        }
        panic!("handshake did not finish");
    }

    fn gen_pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (c, k) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        assert!(generate_dev_cert(&c, &k).unwrap());
        (c, k)
    }

    #[test]
    fn dev_cert_is_created_once_and_served() {
        install_crypto_provider();
        install_crypto_provider();
        let d = tempfile::tempdir().unwrap();
        let cfg = listen(d.path());
        assert!(generate_dev_cert(&cfg.cert, &cfg.key).unwrap());
        let before = std::fs::read(&cfg.cert).unwrap();
        assert!(!generate_dev_cert(&cfg.cert, &cfg.key).unwrap());
        assert_eq!(std::fs::read(&cfg.cert).unwrap(), before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cfg.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let server = server_config(&cfg).unwrap();
        assert_eq!(
            server.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let client = upstream_client_config(Some(&cfg.cert), None, None).unwrap();
        for name in ["localhost", "127.0.0.1", "::1"] {
            let alpn = handshake(client.clone(), server.clone(), name).unwrap();
            assert_eq!(alpn.as_deref(), Some(&b"h2"[..]), "{name}");
        }
        // the certificate is not valid for other names
        assert!(handshake(client, server.clone(), "example.com").is_err());
        // and unknown to the public roots
        let public = upstream_client_config(None, None, None).unwrap();
        assert!(handshake(public, server, "localhost").is_err());
    }

    #[test]
    fn generate_flag_creates_missing_files_and_half_pairs_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = listen(d.path());
        assert!(
            server_config(&cfg).is_err(),
            "missing files without the flag"
        );
        cfg.generate_dev_cert = true;
        assert!(server_config(&cfg).is_ok());
        std::fs::remove_file(&cfg.key).unwrap();
        assert!(generate_dev_cert(&cfg.cert, &cfg.key).is_err());
    }

    #[test]
    fn tls12_is_accepted_and_client_certificates_are_checked() {
        let d = tempfile::tempdir().unwrap();
        let mut cfg = listen(d.path());
        cfg.generate_dev_cert = true;
        let (client_crt, client_key) = gen_pair(d.path(), "client");
        let (other_crt, other_key) = gen_pair(d.path(), "other");
        cfg.client_ca = Some(client_crt.clone());
        cfg.require_client_cert = true;
        let server = server_config(&cfg).unwrap();

        // TLS 1.2 only client works
        let tls12 = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(root_store(&cfg.cert).unwrap())
            .with_client_auth_cert(
                load_certs(&client_crt).unwrap(),
                load_key(&client_key).unwrap(),
            )
            .unwrap();
        assert!(handshake(tls12, server.clone(), "localhost").is_ok());

        let good =
            upstream_client_config(Some(&cfg.cert), Some(&client_crt), Some(&client_key)).unwrap();
        assert!(handshake(good, server.clone(), "localhost").is_ok());
        let none = upstream_client_config(Some(&cfg.cert), None, None).unwrap();
        assert!(handshake(none.clone(), server.clone(), "localhost").is_err());
        let wrong =
            upstream_client_config(Some(&cfg.cert), Some(&other_crt), Some(&other_key)).unwrap();
        assert!(handshake(wrong.clone(), server, "localhost").is_err());

        // optional client certificates: none is fine, a wrong one is not
        cfg.require_client_cert = false;
        let server = server_config(&cfg).unwrap();
        assert!(handshake(none, server.clone(), "localhost").is_ok());
        assert!(handshake(wrong, server, "localhost").is_err());

        // half a client identity is a configuration error
        assert!(upstream_client_config(None, Some(&client_crt), None).is_err());
        // a key that does not belong to the certificate
        assert!(upstream_client_config(None, Some(&client_crt), Some(&other_key)).is_err());
    }

    #[test]
    fn bad_files_are_reported_with_their_path() {
        let d = tempfile::tempdir().unwrap();
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let e = load_certs(&empty).unwrap_err();
        assert!(e.contains("empty.pem"), "{e}");
        assert!(load_key(&empty).is_err());
        assert!(upstream_client_config(Some(&empty), None, None).is_err());
        let mut cfg = listen(d.path());
        cfg.require_client_cert = true;
        cfg.generate_dev_cert = true;
        assert!(server_config(&cfg).is_err());
    }
}
