//! HTTPS listeners (DESIGN.md §16): a certificate chain and key from PEM
//! files, optionally a CA whose client certificates are required (mutual
//! TLS). rustls on ring, TLS 1.2 and 1.3.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// Where a listener's TLS material is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsFiles {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// When set, clients must present a certificate signed by one of these
    /// CAs (PEM).
    pub client_ca_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Settings(String),
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let shown = path.display().to_string();
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: shown.clone(),
            reason: e.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate { path: shown });
    }
    Ok(certificates)
}

impl ServerTlsFiles {
    /// Reads the files and builds the acceptor; call before binding, so a
    /// bad file stops the binary before it listens.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        let chain = read_certificates(&self.cert_file)?;
        let key = PrivateKeyDer::from_pem_file(&self.key_file).map_err(|e| TlsError::Read {
            path: self.key_file.display().to_string(),
            reason: e.to_string(),
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        let builder = match &self.client_ca_file {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for certificate in read_certificates(ca)? {
                    roots
                        .add(certificate)
                        .map_err(|e| TlsError::Settings(format!("{}: {e}", ca.display())))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Settings(e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::Settings(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

/// `tls_cert_file` / `tls_key_file` (and `tls_client_ca_file`) as a
/// listener's config has them: both or neither.
pub fn server_tls_files(
    prefix: &str,
    cert_file: Option<&Path>,
    key_file: Option<&Path>,
    client_ca_file: Option<&Path>,
) -> Result<Option<ServerTlsFiles>, (String, String)> {
    match (cert_file, key_file) {
        (None, None) => match client_ca_file {
            None => Ok(None),
            Some(_) => Err((
                format!("{prefix}tls_client_ca_file"),
                "needs tls_cert_file and tls_key_file".to_owned(),
            )),
        },
        (Some(cert), Some(key)) => Ok(Some(ServerTlsFiles {
            cert_file: cert.to_path_buf(),
            key_file: key.to_path_buf(),
            client_ca_file: client_ca_file.map(Path::to_path_buf),
        })),
        (Some(_), None) => Err((
            format!("{prefix}tls_key_file"),
            "is required with tls_cert_file".to_owned(),
        )),
        (None, Some(_)) => Err((
            format!("{prefix}tls_cert_file"),
            "is required with tls_key_file".to_owned(),
        )),
    }
}
