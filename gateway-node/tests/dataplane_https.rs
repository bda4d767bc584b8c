//! The data-plane listener over HTTPS (`tls_cert_file`, `tls_key_file`):
//! a client that trusts the test's CA gets the API's answer over TLS, and
//! a plain-HTTP request on the same port gets no answer.

use std::sync::Arc;

use arc_swap::ArcSwap;
use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_gateway::dataplane::{
    CompiledApi, DataPlane, DataPlaneConfig, RoutingTable, SharedRoutingTable, serve,
};
use artisync_synapse::parse_artifact;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const API: &str = r#"<api xmlns="http://ws.apache.org/ns/synapse" name="Secure" context="/secure">
    <resource methods="GET">
        <inSequence>
            <payloadFactory media-type="json"><format>{"api": "secure"}</format><args/></payloadFactory>
            <respond/>
        </inSequence>
    </resource>
</api>"#;

struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA and a certificate for `localhost` it signed, in PEM files.
fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "artisync listener test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("artisync-https-{}", ApiId::new_random()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("cert.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
    }
}

async fn get(stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin) -> String {
    let mut stream = stream;
    stream
        .write_all(b"GET /secure HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn the_listener_serves_https_with_its_certificate() {
    let pki = pki();
    let artifact = parse_artifact(API.as_bytes()).unwrap();
    let api = Arc::new(CompiledApi::new(
        ApiId::new_random(),
        Revision::FIRST,
        Sha256Digest::of(API.as_bytes()),
        artifact,
        Default::default(),
    ));
    let table: SharedRoutingTable =
        Arc::new(ArcSwap::from_pointee(RoutingTable::from_apis(vec![api])));
    let config = DataPlaneConfig {
        tls_cert_file: Some(pki.dir.join("cert.pem")),
        tls_key_file: Some(pki.dir.join("key.pem")),
        ..DataPlaneConfig::default()
    };
    let data_plane = Arc::new(DataPlane::new(table, config, Default::default()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let server = tokio::spawn(serve(listener, data_plane, shutdown.clone()));

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::pem::PemObject::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the TLS handshake with the listener's certificate");
    let answer = get(tls).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.contains(r#""api": "secure""#) || answer.contains(r#""api":"secure""#),
        "{answer}"
    );

    // Plain HTTP on the TLS port is not served.
    let plain = get(TcpStream::connect(addr).await.unwrap()).await;
    assert!(
        !plain.contains("200 OK") && !plain.contains("secure"),
        "{plain}"
    );

    shutdown.cancel();
    server.await.unwrap().unwrap();
}

#[test]
fn a_certificate_without_its_key_is_a_config_error() {
    let config = DataPlaneConfig {
        tls_cert_file: Some("/etc/artisync/cert.pem".into()),
        ..DataPlaneConfig::default()
    };
    let (key, message) = config.tls_files().unwrap_err();
    assert_eq!(key, "gateway.data_plane.tls_key_file");
    assert!(message.contains("required"), "{message}");
}
