//! The artifact store boundary: everything the REST API reads and writes.
//!
//! Every write that changes what a gateway should run also writes its
//! deployment events into the outbox, in the same transaction.

mod postgres;

use artisync_shared::{ApiId, GatewayLabel, Revision, Sha256Digest};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use thiserror::Error;

pub use postgres::PgArtifactStore;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl StoreError {
    /// Whether the same call may succeed later (the database was unreachable
    /// or busy), as opposed to a request that can never succeed as it is.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Database(_))
    }
}

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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiSummary {
    #[schema(value_type = String, format = Uuid)]
    pub id: ApiId,
    pub name: String,
    pub version: String,
    pub context: String,
    /// The latest revision.
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub sha256: Sha256Digest,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub sha256: Sha256Digest,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    #[schema(value_type = String)]
    pub label: GatewayLabel,
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    pub sequence: i64,
    pub deployed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiDetail {
    #[serde(flatten)]
    pub summary: ApiSummary,
    pub revisions: Vec<RevisionInfo>,
    pub deployments: Vec<DeploymentInfo>,
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

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeployOutcome {
    #[schema(value_type = String, format = Uuid)]
    pub api_id: ApiId,
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    /// Labels whose deployment changed (an event was written for each).
    #[schema(value_type = Vec<String>)]
    pub changed_labels: Vec<GatewayLabel>,
    /// Labels that already ran this revision.
    #[schema(value_type = Vec<String>)]
    pub unchanged_labels: Vec<GatewayLabel>,
    /// The change number, when anything changed.
    pub sequence: Option<i64>,
}

/// One gateway node's view of one API.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeApiStatus {
    pub node_id: String,
    pub labels: Vec<String>,
    /// Whether the node serves one of the labels the API is deployed on.
    pub expected: bool,
    /// The revision the node should run, from the deployments of its labels.
    pub desired_revision: Option<i32>,
    pub applied_revision: Option<i32>,
    pub sha256: Option<String>,
    /// `DEPLOYED`, `FAILED`, `RETRYING`, `UNDEPLOYED`, `NOT_DEPLOYED`
    /// (never reported) ...
    pub status: String,
    pub in_sync: bool,
    pub error: Option<String>,
    pub attempts: i32,
    pub last_report: Option<DateTime<Utc>>,
    pub last_heartbeat: DateTime<Utc>,
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySummary {
    pub node_id: String,
    pub labels: Vec<String>,
    pub ready: bool,
    pub started_at: Option<DateTime<Utc>>,
    pub last_heartbeat: DateTime<Utc>,
    /// No heartbeat within the stale threshold.
    pub stale: bool,
    pub apis_in_sync: i64,
    pub apis_failed: i64,
    pub apis_behind: i64,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

#[async_trait]
pub trait ArtifactStore: Send + Sync + 'static {
    async fn create_api(&self, new: NewArtifact) -> Result<ApiSummary, StoreError>;
    async fn update_api(&self, id: ApiId, new: NewArtifact) -> Result<UpdateOutcome, StoreError>;
    async fn list_apis(&self) -> Result<Vec<ApiSummary>, StoreError>;
    async fn get_api(&self, id: ApiId) -> Result<ApiDetail, StoreError>;
    async fn get_artifact(
        &self,
        id: ApiId,
        revision: Option<Revision>,
    ) -> Result<StoredArtifact, StoreError>;
    /// Deploys `revision` (the latest when `None`) to `labels`.
    async fn deploy(
        &self,
        id: ApiId,
        labels: &[GatewayLabel],
        revision: Option<Revision>,
        ctx: &ChangeContext,
    ) -> Result<DeployOutcome, StoreError>;
    async fn undeploy(
        &self,
        id: ApiId,
        label: &GatewayLabel,
        ctx: &ChangeContext,
    ) -> Result<i64, StoreError>;
    /// Undeploys from every label, then deletes the API and its revisions.
    async fn delete_api(&self, id: ApiId, ctx: &ChangeContext) -> Result<(), StoreError>;
    async fn api_status(
        &self,
        id: ApiId,
        stale_after: std::time::Duration,
    ) -> Result<Vec<NodeApiStatus>, StoreError>;
    async fn gateways(
        &self,
        stale_after: std::time::Duration,
    ) -> Result<Vec<GatewaySummary>, StoreError>;
}
