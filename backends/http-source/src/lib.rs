#![forbid(unsafe_code)]
//! [`ArtifactSource`] over HTTP: the traffic manager's internal data API
//! (DESIGN.md §6), authenticated with the node's label-scoped token; and
//! [`GatewayAdminClient`], a gateway's admin API that the publisher pushes
//! to with `publish_directly_to_gateway`.

mod gateway_admin;

pub use gateway_admin::GatewayAdminClient;

use std::time::Duration;

use artisync_domain::runtime::{GatewayStatusReport, RetrieveArtifactsRequest, RuntimeArtifact};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use artisync_http::REVISION_HEADER;
use artisync_ports::ArtifactSource;
use artisync_ports::source::{FetchedArtifact, MetadataAnswer, SourceError};
use async_trait::async_trait;
use bytes::BytesMut;
use futures_util::StreamExt;
use reqwest::StatusCode;
use tokio::sync::mpsc;

/// The traffic manager over HTTP, with pooled keep-alive connections.
pub struct TrafficManagerClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// How the gateway's client trusts the traffic manager over `https://`, and
/// the certificate it presents when the traffic manager requires one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// Trust only the CAs of this PEM file (instead of the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// A client certificate chain and its key (PEM), for mutual TLS.
    pub identity: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

impl TrafficManagerClient {
    pub fn new(base: &str, token: &str, timeout: Duration) -> Result<Self, SourceError> {
        Self::with_tls(base, token, timeout, &ClientTls::default())
    }

    /// [`TrafficManagerClient::new`], trusting and presenting what `tls` says.
    pub fn with_tls(
        base: &str,
        token: &str,
        timeout: Duration,
        tls: &ClientTls,
    ) -> Result<Self, SourceError> {
        let invalid = |message: String| SourceError::Invalid {
            url: base.to_owned(),
            message,
        };
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(2).min(timeout))
            .read_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true);
        if let Some(ca_file) = &tls.ca_file {
            let certificates = reqwest::Certificate::from_pem_bundle(&read(ca_file)?)
                .map_err(|e| invalid(format!("{}: {e}", ca_file.display())))?;
            if certificates.is_empty() {
                return Err(invalid(format!(
                    "{} holds no certificate",
                    ca_file.display()
                )));
            }
            builder = builder.tls_certs_only(certificates);
        }
        if let Some((cert_file, key_file)) = &tls.identity {
            let mut pem = read(cert_file)?;
            pem.push(b'\n');
            pem.extend(read(key_file)?);
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| invalid(format!("{}: {e}", cert_file.display())))?;
            builder = builder.identity(identity);
        }
        let http = builder
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(TrafficManagerClient {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http,
        })
    }

    fn labels_query(labels: &[GatewayLabel]) -> String {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for l in labels {
            q.append_pair("gatewayLabel", l.as_str());
        }
        q.finish()
    }

    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, SourceError> {
        request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| SourceError::Unreachable {
                url: url.to_owned(),
                message: error_chain(&e),
            })
    }

    async fn status_error(url: &str, response: reqwest::Response) -> SourceError {
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<artisync_http::ErrorBody>(&body)
            .map(|e| e.message)
            .unwrap_or(body);
        SourceError::Status {
            url: url.to_owned(),
            status,
            message,
        }
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

#[async_trait]
impl ArtifactSource for TrafficManagerClient {
    async fn metadata(
        &self,
        labels: &[GatewayLabel],
        etag: Option<&str>,
    ) -> Result<MetadataAnswer, SourceError> {
        let url = format!(
            "{}/internal/data/v1/runtime-metadata?{}",
            self.base,
            Self::labels_query(labels)
        );
        let mut request = self.http.get(&url);
        if let Some(etag) = etag {
            request = request.header(reqwest::header::IF_NONE_MATCH, etag);
        }
        let response = self.send(&url, request).await?;
        match response.status() {
            StatusCode::NOT_MODIFIED => Ok(MetadataAnswer::Unchanged),
            StatusCode::OK => {
                let etag = response
                    .headers()
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let body = response
                    .bytes()
                    .await
                    .map_err(|e| SourceError::Unreachable {
                        url: url.clone(),
                        message: error_chain(&e),
                    })?;
                let metadata = serde_json::from_slice(&body).map_err(|e| SourceError::Invalid {
                    url: url.clone(),
                    message: e.to_string(),
                })?;
                Ok(MetadataAnswer::Changed { etag, metadata })
            }
            _ => Err(Self::status_error(&url, response).await),
        }
    }

    async fn artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
        traceparent: Option<&str>,
    ) -> Result<Option<FetchedArtifact>, SourceError> {
        let url = format!(
            "{}/internal/data/v1/runtime-artifacts/{api}?{}",
            self.base,
            Self::labels_query(labels)
        );
        let mut request = self.http.get(&url);
        if let Some(tp) = traceparent {
            request = request.header("traceparent", tp);
        }
        let response = self.send(&url, request).await?;
        match response.status() {
            StatusCode::NOT_FOUND => Ok(None),
            StatusCode::OK => {
                let invalid = |message: String| SourceError::Invalid {
                    url: url.clone(),
                    message,
                };
                let headers = response.headers();
                let revision = headers
                    .get(REVISION_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| invalid(format!("no {REVISION_HEADER} header")))?
                    .parse::<Revision>()
                    .map_err(|e| invalid(e.to_string()))?;
                let sha256 = headers
                    .get(reqwest::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.trim_matches('"'))
                    .ok_or_else(|| invalid("no ETag header".into()))?
                    .parse::<Sha256Digest>()
                    .map_err(|e| invalid(e.to_string()))?;
                let xml = response
                    .bytes()
                    .await
                    .map_err(|e| SourceError::Unreachable {
                        url: url.clone(),
                        message: error_chain(&e),
                    })?;
                Ok(Some(FetchedArtifact {
                    revision,
                    sha256,
                    xml,
                }))
            }
            _ => Err(Self::status_error(&url, response).await),
        }
    }

    async fn bulk(
        &self,
        labels: &[GatewayLabel],
        apis: Option<Vec<ApiId>>,
        sink: mpsc::Sender<RuntimeArtifact>,
    ) -> Result<usize, SourceError> {
        let url = format!("{}/internal/data/v1/retrieve-runtime-artifacts", self.base);
        let body = RetrieveArtifactsRequest {
            gateway_labels: labels.to_vec(),
            api_ids: apis,
        };
        let response = self.send(&url, self.http.post(&url).json(&body)).await?;
        if response.status() != StatusCode::OK {
            return Err(Self::status_error(&url, response).await);
        }
        let mut stream = response.bytes_stream();
        let mut buffer = BytesMut::new();
        let mut count = 0;
        loop {
            let chunk = stream.next().await;
            let done = chunk.is_none();
            match chunk {
                Some(Ok(bytes)) => buffer.extend_from_slice(&bytes),
                Some(Err(e)) => {
                    return Err(SourceError::Unreachable {
                        url,
                        message: format!("bulk transfer broke off: {}", error_chain(&e)),
                    });
                }
                None => {}
            }
            while let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(end + 1);
                let line = &line[..end];
                if line.is_empty() {
                    continue;
                }
                let artifact: RuntimeArtifact =
                    serde_json::from_slice(line).map_err(|e| SourceError::Invalid {
                        url: url.clone(),
                        message: format!("bulk line {}: {e}", count + 1),
                    })?;
                count += 1;
                if sink.send(artifact).await.is_err() {
                    return Ok(count);
                }
            }
            if done {
                if !buffer.is_empty() {
                    return Err(SourceError::Invalid {
                        url,
                        message: "bulk answer ended in the middle of a line".into(),
                    });
                }
                return Ok(count);
            }
        }
    }

    async fn report(&self, report: &GatewayStatusReport) -> Result<(), SourceError> {
        let url = format!("{}/internal/data/v1/gateway-status", self.base);
        let response = self.send(&url, self.http.post(&url).json(report)).await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(Self::status_error(&url, response).await)
        }
    }
}
