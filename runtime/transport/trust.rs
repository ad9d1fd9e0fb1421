//! The roots upstream TLS certificates are checked against: webpki's built-in roots, plus the
//! PEM certificates `SSL_CERT_FILE` (a bundle) and `SSL_CERT_DIR` (a directory of them) name, the
//! convention OpenSSL, Python and Go follow. A private CA's upstream, or a corporate proxy that
//! re-signs traffic, is trusted by pointing one of them at its certificate. Read once, at the
//! first upstream client.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// The certificates the environment adds to the built-in roots.
pub fn extra_roots() -> &'static [CertificateDer<'static>] {
    static EXTRA: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    EXTRA.get_or_init(|| {
        let file = std::env::var_os("SSL_CERT_FILE").map(std::path::PathBuf::from);
        let dir = std::env::var_os("SSL_CERT_DIR").map(std::path::PathBuf::from);
        let mut found = Vec::new();
        if let Some(file) = file {
            found.extend(read_pem(&file));
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(&dir).map_err(|e| {
                tracing::warn!("SSL_CERT_DIR {}: {e}; its certificates are not trusted", dir.display());
            });
            let mut paths: Vec<_> = entries.into_iter().flatten().flatten().map(|e| e.path()).collect();
            paths.sort();
            for path in paths.iter().filter(|p| p.is_file()) {
                found.extend(read_pem(path));
            }
        }
        found
    })
}

/// The certificates of one PEM file; a file that cannot be read, or holds none, is warned about.
fn read_pem(path: &Path) -> Vec<CertificateDer<'static>> {
    let certificates: Result<Vec<_>, _> = match CertificateDer::pem_file_iter(path) {
        Ok(iter) => iter.collect(),
        Err(e) => {
            tracing::warn!("{}: {e}; its certificates are not trusted", path.display());
            return Vec::new();
        }
    };
    match certificates {
        Ok(list) if !list.is_empty() => list,
        Ok(_) => {
            tracing::warn!("{}: no PEM certificate in it", path.display());
            Vec::new()
        }
        Err(e) => {
            tracing::warn!("{}: {e}; its certificates are not trusted", path.display());
            Vec::new()
        }
    }
}

/// The TLS client configuration of every upstream connection: TLS 1.2 and 1.3 over ring, the
/// built-in roots and the environment's. Built once and shared (a copy shares its roots): the
/// roots take some hundreds of kilobytes, and every upstream client has its own configuration
/// (two for each lane and for the controller, and the lanes' own connector).
pub fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    static CONFIG: OnceLock<Result<rustls::ClientConfig, rustls::Error>> = OnceLock::new();
    CONFIG.get_or_init(build_client_config).clone()
}

fn build_client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let (added, ignored) = roots.add_parsable_certificates(extra_roots().iter().cloned());
    if ignored > 0 {
        tracing::warn!("{ignored} certificate(s) of SSL_CERT_FILE / SSL_CERT_DIR are not usable roots");
    }
    if added > 0 {
        tracing::debug!("{added} root certificate(s) from SSL_CERT_FILE / SSL_CERT_DIR");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider).with_safe_default_protocol_versions()?;
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}
