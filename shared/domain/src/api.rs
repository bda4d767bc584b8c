//! The publisher REST API's answers (DESIGN.md §4) that the artifact store
//! builds: what is published, where it is deployed, and what the gateway
//! nodes report.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::runtime::ApiDeploymentStatus;
use crate::{ApiId, GatewayLabel, Revision, Sha256Digest};

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionInfo {
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub sha256: Sha256Digest,
    pub size_bytes: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    #[schema(value_type = String)]
    pub label: GatewayLabel,
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    pub sequence: i64,
    pub deployed_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApiDetail {
    #[serde(flatten)]
    pub summary: ApiSummary,
    pub revisions: Vec<RevisionInfo>,
    pub deployments: Vec<DeploymentInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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

/// How one API stands on one node, as the publisher reports it: what the
/// node said ([`ApiDeploymentStatus`]), or `Pending` while it has said
/// nothing about an API it should run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeApiState {
    Deployed,
    Retrying,
    Failed,
    Undeployed,
    Pending,
}

impl From<ApiDeploymentStatus> for NodeApiState {
    fn from(s: ApiDeploymentStatus) -> Self {
        match s {
            ApiDeploymentStatus::Deployed => NodeApiState::Deployed,
            ApiDeploymentStatus::Retrying => NodeApiState::Retrying,
            ApiDeploymentStatus::Failed => NodeApiState::Failed,
            ApiDeploymentStatus::Undeployed => NodeApiState::Undeployed,
        }
    }
}

/// One gateway node's view of one API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
    pub status: NodeApiState,
    pub in_sync: bool,
    pub error: Option<String>,
    pub attempts: i32,
    pub last_report: Option<DateTime<Utc>>,
    pub last_heartbeat: DateTime<Utc>,
    pub stale: bool,
}

impl NodeApiStatus {
    /// Whether the node does what the deployments of its labels say: runs
    /// the desired revision, or nothing when nothing is desired.
    pub fn is_in_sync(desired: Option<i32>, applied: Option<i32>, status: NodeApiState) -> bool {
        match desired {
            Some(d) => applied == Some(d) && status == NodeApiState::Deployed,
            None => status != NodeApiState::Deployed,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
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
