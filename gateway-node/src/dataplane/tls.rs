//! TLS to `https://` endpoints: rustls (ring), trusting the webpki roots
//! plus the CAs of `endpoint_ca_file` (for endpoints behind a private CA).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};
use thiserror::Error;

/// Why the TLS settings for endpoints could not be built.
#[derive(Debug, Error)]
pub enum EndpointTlsError {
    #[error("cannot read the CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("the CA file {path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("a certificate in the CA file {path} is not usable as a CA: {reason}")]
    BadCertificate { path: String, reason: String },
    #[error("the TLS settings cannot be built: {0}")]
    Settings(String),
}

/// The client TLS settings for endpoints: the webpki roots, plus every
/// certificate of `ca_file` (PEM) when there is one.
pub fn endpoint_tls(ca_file: Option<&Path>) -> Result<Arc<ClientConfig>, EndpointTlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = ca_file {
        let shown = path.display().to_string();
        let certificates = CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| EndpointTlsError::CaFile {
                path: shown.clone(),
                reason: e.to_string(),
            })?;
        if certificates.is_empty() {
            return Err(EndpointTlsError::NoCertificate { path: shown });
        }
        for certificate in certificates {
            roots
                .add(certificate)
                .map_err(|e| EndpointTlsError::BadCertificate {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| EndpointTlsError::Settings(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webpki_roots_alone_make_settings() {
        assert!(endpoint_tls(None).is_ok());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_refused() {
        let missing = std::env::temp_dir().join(format!("no-such-ca-{}.pem", std::process::id()));
        assert!(matches!(
            endpoint_tls(Some(&missing)),
            Err(EndpointTlsError::CaFile { .. })
        ));
        let empty =
            std::env::temp_dir().join(format!("empty-ca-{}-{}.pem", std::process::id(), line!()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let result = endpoint_tls(Some(&empty));
        let _ = std::fs::remove_file(&empty);
        assert!(
            matches!(result, Err(EndpointTlsError::NoCertificate { .. })),
            "{result:?}"
        );
    }
}
