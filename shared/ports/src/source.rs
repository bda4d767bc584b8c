//! Where a gateway node learns the desired state of its labels, fetches
//! artifacts, and reports what it runs.

use artisync_domain::runtime::{GatewayStatusReport, RuntimeArtifact, RuntimeMetadata};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("traffic manager unreachable at {url}: {message}")]
    Unreachable { url: String, message: String },
    #[error("traffic manager answered {status} for {url}: {message}")]
    Status {
        url: String,
        status: u16,
        message: String,
    },
    #[error("invalid answer from {url}: {message}")]
    Invalid { url: String, message: String },
}

impl SourceError {
    /// Whether trying again later may succeed. A 4xx other than 408/429
    /// means the request itself is wrong (bad token, label out of scope).
    pub fn is_retryable(&self) -> bool {
        match self {
            SourceError::Unreachable { .. } | SourceError::Invalid { .. } => true,
            SourceError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
        }
    }
}

/// An artifact as fetched for deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedArtifact {
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub xml: Bytes,
}

pub enum MetadataAnswer {
    /// Same as the state named by the `etag` passed in.
    Unchanged,
    Changed {
        etag: Option<String>,
        metadata: RuntimeMetadata,
    },
}

#[async_trait]
pub trait ArtifactSource: Send + Sync + 'static {
    /// The desired state of `labels`; `Unchanged` if it still matches `etag`.
    async fn metadata(
        &self,
        labels: &[GatewayLabel],
        etag: Option<&str>,
    ) -> Result<MetadataAnswer, SourceError>;
    /// The artifact `api` should run on `labels`; `None` when it is
    /// deployed on none of them.
    async fn artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
        traceparent: Option<&str>,
    ) -> Result<Option<FetchedArtifact>, SourceError>;
    /// Streams the artifacts of `labels` (all, or only `apis`) into `sink`
    /// as they arrive; returns how many were sent.
    async fn bulk(
        &self,
        labels: &[GatewayLabel],
        apis: Option<Vec<ApiId>>,
        sink: mpsc::Sender<RuntimeArtifact>,
    ) -> Result<usize, SourceError>;
    /// Sends a node's status report; returns once it is recorded.
    async fn report(&self, report: &GatewayStatusReport) -> Result<(), SourceError>;
}
