//! The traffic manager's view of the store: the desired state of gateway
//! labels (what each label should run, and the artifacts), and the intake
//! of what the gateway nodes report back.

use artisync_domain::runtime::{GatewayStatusReport, RuntimeArtifact, RuntimeMetadata};
use artisync_domain::{ApiId, GatewayLabel};
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::StoreError;

#[async_trait]
pub trait DesiredState: Send + Sync + 'static {
    /// What `labels` should run, with the change number it is as of (one
    /// consistent snapshot).
    async fn runtime_metadata(
        &self,
        labels: &[GatewayLabel],
    ) -> Result<RuntimeMetadata, StoreError>;
    /// The artifact of the highest revision of `api` deployed on `labels`;
    /// `None` when it is deployed on none of them.
    async fn runtime_artifact(
        &self,
        api: ApiId,
        labels: &[GatewayLabel],
    ) -> Result<Option<RuntimeArtifact>, StoreError>;
    /// Streams the artifacts of `labels` (all, or only `apis`) into `sink`
    /// as they are read, so that memory stays bounded however many there
    /// are. Stops at the first error (sent into `sink`) or when the
    /// receiver is gone.
    async fn stream_artifacts(
        &self,
        labels: &[GatewayLabel],
        apis: Option<&[ApiId]>,
        sink: mpsc::Sender<Result<RuntimeArtifact, StoreError>>,
    );
    /// Records gateway status reports, all in one transaction.
    async fn record_statuses(&self, reports: &[GatewayStatusReport]) -> Result<(), StoreError>;
}
