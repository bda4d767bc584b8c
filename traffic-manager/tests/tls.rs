//! The traffic manager over HTTPS with mutual TLS (`tls_cert_file`,
//! `tls_key_file`, `tls_client_ca_file`): a client with a certificate the
//! CA signed is served; one without a certificate, or speaking plain HTTP,
//! is not.

use std::sync::Arc;

use artisync_test_support::components;
use artisync_test_support::postgres::TestDatabase;
use artisync_traffic_manager::config::{RawConfig, RawToken};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN: &str = "tls-test-token-0123456789";

struct Pki {
    dir: std::path::PathBuf,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "artisync mTLS test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    let client_key = KeyPair::generate().unwrap();
    let client = CertificateParams::new(vec!["gw-1".to_owned()])
        .unwrap()
        .signed_by(&client_key, &ca)
        .unwrap();
    let dir = std::env::temp_dir().join(format!("artisync-tm-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.join("server.key"), server_key.serialize_pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

fn connector(pki: &Pki, with_client_cert: bool) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = if with_client_cert {
        builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(pki.client_cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(pki.client_key_pem.as_bytes()).unwrap(),
            )
            .unwrap()
    } else {
        builder.with_no_client_auth()
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET path` over `stream`; whatever came back, empty when nothing did.
async fn get(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    path: &str,
) -> String {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    String::from_utf8_lossy(&answer).into_owned()
}

/// A traffic manager on its own database, HTTPS with mutual TLS.
async fn start_mutual_tls(pki: &Pki) -> (TestDatabase, components::Started) {
    let db = TestDatabase::create().await.expect("test database");
    let mut raw = RawConfig::default();
    raw.traffic_manager.listen = "127.0.0.1:0".into();
    raw.traffic_manager.tokens = vec![RawToken {
        name: Some("gw-1".into()),
        token: TOKEN.into(),
        labels: vec!["Label1".into()],
        node: Some("gw-1".into()),
        organizations: None,
        environments: None,
    }];
    raw.traffic_manager.tls_cert_file = Some(pki.dir.join("server.pem"));
    raw.traffic_manager.tls_key_file = Some(pki.dir.join("server.key"));
    raw.traffic_manager.tls_client_ca_file = Some(pki.dir.join("ca.pem"));
    raw.database.url = Some(db.url.clone());
    let settings = raw.validate().expect("valid config");
    let running = components::traffic_manager(settings)
        .await
        .expect("traffic manager starts");
    (db, running)
}

#[tokio::test]
async fn mutual_tls_serves_clients_with_a_certificate_and_no_one_else() {
    let pki = pki();
    let (_db, running) = start_mutual_tls(&pki).await;
    let addr = running.addr;
    let name = ServerName::try_from("localhost").unwrap();

    // With the CA's client certificate and the token: served over TLS.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector(&pki, true)
        .connect(name.clone(), tcp)
        .await
        .expect("handshake with a client certificate");
    let answer = get(
        tls,
        "/internal/data/v1/runtime-metadata?gatewayLabel=Label1",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"sequence\""), "{answer}");

    // Without a client certificate: no answer (TLS 1.3 refuses after the
    // client's side of the handshake, so the refusal shows on the request).
    let tcp = TcpStream::connect(addr).await.unwrap();
    let answer = match connector(&pki, false).connect(name, tcp).await {
        Ok(tls) => get(tls, "/health/live").await,
        Err(_) => String::new(),
    };
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");

    // Plain HTTP on the TLS port: no answer either.
    let answer = get(TcpStream::connect(addr).await.unwrap(), "/health/live").await;
    assert!(!answer.contains("HTTP/1.1 200"), "{answer}");
    running.stop().await;
}

#[test]
fn a_client_ca_without_a_certificate_is_a_config_error() {
    let mut raw = RawConfig::default();
    raw.traffic_manager.tokens = vec![RawToken {
        name: None,
        token: TOKEN.into(),
        labels: vec!["*".into()],
        node: None,
        organizations: None,
        environments: None,
    }];
    raw.database.url = Some("postgres://postgres@127.0.0.1/x".into());
    raw.traffic_manager.tls_client_ca_file = Some("/etc/artisync/ca.pem".into());
    let err = raw.validate().unwrap_err().to_string();
    assert!(err.contains("traffic_manager.tls_client_ca_file"), "{err}");
}

#[tokio::test]
async fn a_gateway_fetches_over_mutual_tls_with_its_certificate_and_the_ca_file() {
    use artisync_backends::ClientTls;
    use artisync_domain::GatewayLabel;
    use artisync_domain::topology::Topology;
    use artisync_ports::source::MetadataAnswer;

    let pki = pki();
    std::fs::write(pki.dir.join("client.pem"), &pki.client_cert_pem).unwrap();
    std::fs::write(pki.dir.join("client.key"), &pki.client_key_pem).unwrap();
    let (_db, running) = start_mutual_tls(&pki).await;
    let url = format!("https://localhost:{}", running.addr.port());
    let labels = [GatewayLabel::parse("Label1").unwrap()];
    let source = |tls: ClientTls| {
        artisync_backends::gateway_with_tls(
            &url,
            TOKEN,
            std::time::Duration::from_secs(5),
            &tls,
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            &Topology::default(),
        )
        .expect("gateway backends")
        .source
    };
    let both = ClientTls {
        ca_file: Some(pki.dir.join("ca.pem")),
        identity: Some((pki.dir.join("client.pem"), pki.dir.join("client.key"))),
    };
    let answer = source(both.clone()).metadata(&labels, None).await;
    assert!(
        matches!(answer, Ok(MetadataAnswer::Changed { .. })),
        "{:?}",
        answer.err()
    );
    // Without the client certificate, or without trusting the CA: refused.
    let no_identity = ClientTls {
        identity: None,
        ..both.clone()
    };
    assert!(source(no_identity).metadata(&labels, None).await.is_err());
    let no_ca = ClientTls {
        ca_file: None,
        ..both
    };
    assert!(source(no_ca).metadata(&labels, None).await.is_err());
    running.stop().await;
}
