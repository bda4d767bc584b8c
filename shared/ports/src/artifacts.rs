//! The publisher's artifact store: APIs as revisions, their deployments to
//! labels, and what the gateway nodes report. Every write that changes what
//! a gateway should run also writes its events into the outbox, in the same
//! transaction: a change is committed with its events or not at all.

use std::time::Duration;

use artisync_domain::api::{ApiDetail, ApiSummary, DeployOutcome, GatewaySummary, NodeApiStatus};
use artisync_domain::fleet::{Fleet, FleetApi, FleetCell};
use artisync_domain::receipt::Receipt;
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::receipts::PropagationSample;

/// A validated artifact ready to be stored as a revision.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    pub name: String,
    pub version: String,
    pub context: String,
    pub xml: Vec<u8>,
    pub sha256: Sha256Digest,
}

/// Request-scoped facts recorded with the events of a change.
#[derive(Debug, Clone, Default)]
pub struct ChangeContext {
    /// W3C trace context of the request that made the change.
    pub traceparent: Option<String>,
}

#[derive(Debug, Clone)]
pub enum UpdateOutcome {
    NewRevision(ApiSummary),
    /// The body had the latest revision's digest: nothing was written.
    Unchanged(ApiSummary),
}

#[derive(Debug, Clone)]
pub struct StoredArtifact {
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub xml: Vec<u8>,
}

#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    /// Creates an API at revision 1 (409 when its name and version, or its
    /// context, are taken).
    async fn create_api(&self, new: NewArtifact) -> Result<ApiSummary, StoreError>;
    /// A new revision, unless the body has the latest revision's digest.
    async fn update_api(&self, id: ApiId, new: NewArtifact) -> Result<UpdateOutcome, StoreError>;
    async fn list_apis(&self) -> Result<Vec<ApiSummary>, StoreError>;
    async fn get_api(&self, id: ApiId) -> Result<ApiDetail, StoreError>;
    /// The API with this name and version, if any.
    async fn find_api(&self, name: &str, version: &str) -> Result<Option<ApiSummary>, StoreError>;
    async fn get_artifact(
        &self,
        id: ApiId,
        revision: Option<Revision>,
    ) -> Result<StoredArtifact, StoreError>;
    /// Deploys `revision` (the latest when `None`) to `labels`; one event
    /// per label whose deployment changes.
    async fn deploy(
        &self,
        id: ApiId,
        labels: &[GatewayLabel],
        revision: Option<Revision>,
        ctx: &ChangeContext,
    ) -> Result<DeployOutcome, StoreError>;
    /// Undeploys from one label; answers the change number.
    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> Result<i64, StoreError>;
    /// Undeploys from every label, then deletes the API and its revisions.
    async fn delete_api(&self, id: ApiId, ctx: &ChangeContext) -> Result<(), StoreError>;
    /// Per gateway node, how it runs this API.
    async fn api_status(
        &self,
        id: ApiId,
        stale_after: Duration,
    ) -> Result<Vec<NodeApiStatus>, StoreError>;
    /// The gateway nodes, with how many APIs each runs in sync.
    async fn gateways(&self, stale_after: Duration) -> Result<Vec<GatewaySummary>, StoreError>;
    /// The receipt of change `sequence` (`None` when there is no such
    /// change): where each node of its labels stands with it.
    async fn receipt(
        &self,
        sequence: i64,
        stale_after: Duration,
    ) -> Result<Option<Receipt>, StoreError>;
    /// Deploys that nodes were recorded as applying after `after`, oldest
    /// first, at most `limit`, each timed from its change's commit.
    async fn propagation_samples(
        &self,
        after: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<PropagationSample>, StoreError>;
    /// Every node, and every API with its deployments and how each node
    /// runs it. Stores with a cheaper way than one query per API override
    /// this.
    async fn fleet(&self, stale_after: Duration) -> Result<Fleet, StoreError> {
        one_api_at_a_time(self, stale_after).await
    }
}

/// The fleet read through the per-API calls: what every store's `fleet`
/// must answer (the stores' own faster reads are tested against it).
pub async fn one_api_at_a_time<S: ArtifactStore + ?Sized>(
    store: &S,
    stale_after: Duration,
) -> Result<Fleet, StoreError> {
    let nodes = store.gateways(stale_after).await?;
    let mut apis = Vec::new();
    for summary in store.list_apis().await? {
        let detail = match store.get_api(summary.id).await {
            Ok(detail) => detail,
            // Deleted since the list was read.
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        let statuses = match store.api_status(summary.id, stale_after).await {
            Ok(statuses) => statuses,
            Err(StoreError::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        apis.push(FleetApi {
            summary: detail.summary,
            deployments: detail.deployments,
            nodes: statuses.iter().map(FleetCell::from).collect(),
        });
    }
    Ok(Fleet {
        generated_at: Utc::now(),
        stale_after_ms: u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX),
        nodes,
        apis,
    })
}
