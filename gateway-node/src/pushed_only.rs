//! The artifact source of a node the publisher pushes to: there is no
//! upstream to ask, so every question gets an answer that says so.

use artisync_domain::runtime::{GatewayStatusReport, RuntimeArtifact};
use artisync_domain::{ApiId, GatewayLabel};
use artisync_ports::ArtifactSource;
use artisync_ports::source::{FetchedArtifact, MetadataAnswer, SourceError};
use async_trait::async_trait;
use tokio::sync::mpsc;

pub struct PushedOnly;

fn refused() -> SourceError {
    SourceError::Status {
        url: "gateway.artifact_source".into(),
        status: 409,
        message: "this node takes the deploys the publisher pushes and has no traffic manager to fetch from; publish the API again to push it".into(),
    }
}

#[async_trait]
impl ArtifactSource for PushedOnly {
    async fn metadata(
        &self,
        _labels: &[GatewayLabel],
        _etag: Option<&str>,
    ) -> Result<MetadataAnswer, SourceError> {
        Err(refused())
    }

    async fn artifact(
        &self,
        _api: ApiId,
        _labels: &[GatewayLabel],
        _traceparent: Option<&str>,
    ) -> Result<Option<FetchedArtifact>, SourceError> {
        Err(refused())
    }

    async fn bulk(
        &self,
        _labels: &[GatewayLabel],
        _apis: Option<Vec<ApiId>>,
        _sink: mpsc::Sender<RuntimeArtifact>,
    ) -> Result<usize, SourceError> {
        Err(refused())
    }

    async fn report(&self, _report: &GatewayStatusReport) -> Result<(), SourceError> {
        Err(refused())
    }
}
