//! [`ArtifactSource`] for a gateway node in the control plane's process:
//! it reads the desired state and records status reports directly, with
//! no HTTP hop and no token (the process trusts itself).

use std::sync::Arc;

use artisync_domain::runtime::{GatewayStatusReport, RuntimeArtifact};
use artisync_domain::{ApiId, GatewayLabel};
use artisync_ports::source::{FetchedArtifact, MetadataAnswer, SourceError};
use artisync_ports::{ArtifactSource, DesiredState, StoreError};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

pub struct InProcessSource {
    desired: Arc<dyn DesiredState>,
}

impl InProcessSource {
    pub fn new(desired: Arc<dyn DesiredState>) -> Self {
        InProcessSource { desired }
    }
}

/// Errors read like the traffic manager's answers would, so that the
/// synchronizer retries what is worth retrying.
fn source_error(what: &str, e: StoreError) -> SourceError {
    let url = format!("in-process:{what}");
    match e {
        StoreError::NotFound(message) => SourceError::Status {
            url,
            status: 404,
            message,
        },
        StoreError::Conflict(message) | StoreError::Unprocessable(message) => SourceError::Status {
            url,
            status: 422,
            message,
        },
        e @ StoreError::Unavailable { .. } if e.is_retryable() => SourceError::Unreachable {
            url,
            message: e.to_string(),
        },
        e => SourceError::Status {
            url,
            status: 500,
            message: e.to_string(),
        },
    }
}

/// The change number is a complete tag of a set of labels' desired state:
/// every deploy and removal on a label raises it.
fn etag_of(sequence: i64) -> String {
    format!("\"seq-{sequence}\"")
}

#[async_trait]
impl ArtifactSource for InProcessSource {
    async fn metadata(
        &self,
        labels: &[GatewayLabel],
        etag: Option<&str>,
    ) -> Result<MetadataAnswer, SourceError> {
        let metadata = self
            .desired
            .runtime_metadata(labels)
            .await
            .map_err(|e| source_error("runtime-metadata", e))?;
        let tag = etag_of(metadata.sequence);
        if etag == Some(tag.as_str()) {
            return Ok(MetadataAnswer::Unchanged);
        }
        Ok(MetadataAnswer::Changed {
            etag: Some(tag),
            metadata,
        })
    }

    async fn artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
        _traceparent: Option<&str>,
    ) -> Result<Option<FetchedArtifact>, SourceError> {
        let found = self
            .desired
            .runtime_artifact(api, labels)
            .await
            .map_err(|e| source_error("runtime-artifacts", e))?;
        Ok(found.map(|a| FetchedArtifact {
            revision: a.api.revision,
            sha256: a.api.sha256,
            xml: Bytes::from(a.artifact.into_bytes()),
        }))
    }

    async fn bulk(
        &self,
        labels: &[GatewayLabel],
        apis: Option<Vec<ApiId>>,
        sink: mpsc::Sender<RuntimeArtifact>,
    ) -> Result<usize, SourceError> {
        let (tx, mut rx) = mpsc::channel(16);
        let desired = self.desired.clone();
        let labels = labels.to_vec();
        let reader = tokio::spawn(async move {
            desired.stream_artifacts(&labels, apis.as_deref(), tx).await;
        });
        let mut count = 0;
        while let Some(item) = rx.recv().await {
            let artifact = item.map_err(|e| source_error("retrieve-runtime-artifacts", e))?;
            count += 1;
            if sink.send(artifact).await.is_err() {
                break;
            }
        }
        let _ = reader.await;
        Ok(count)
    }

    async fn report(&self, report: &GatewayStatusReport) -> Result<(), SourceError> {
        self.desired
            .record_statuses(std::slice::from_ref(report))
            .await
            .map_err(|e| source_error("gateway-status", e))
    }
}
