//! Messages of the traffic manager's internal data API (DESIGN.md §6),
//! shared by the traffic manager (server) and the gateway (client).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ApiId, GatewayLabel, NodeId, Revision, Sha256Digest};

/// What one API should run on the requested labels: the highest revision
/// deployed on any of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeApi {
    pub api_id: ApiId,
    pub name: String,
    pub version: String,
    pub context: String,
    pub revision: Revision,
    pub sha256: Sha256Digest,
    /// The requested labels the API is deployed on.
    pub labels: Vec<GatewayLabel>,
}

/// `GET /internal/data/v1/runtime-metadata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeMetadata {
    /// The highest change number of the requested labels.
    pub sequence: i64,
    pub apis: Vec<RuntimeApi>,
}

/// One line of the streamed `retrieve-runtime-artifacts` answer
/// (`application/x-ndjson`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeArtifact {
    #[serde(flatten)]
    pub api: RuntimeApi,
    /// The artifact XML.
    pub artifact: String,
}

/// `POST /internal/data/v1/retrieve-runtime-artifacts`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetrieveArtifactsRequest {
    pub gateway_labels: Vec<GatewayLabel>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_ids: Option<Vec<ApiId>>,
}

/// How an API stands on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApiDeploymentStatus {
    /// Serving `revision`.
    Deployed,
    /// The last attempt failed; another is scheduled.
    Retrying,
    /// Retries are spent; the next reconcile tries again.
    Failed,
    /// Undeployed on this node only, by an operator.
    Undeployed,
}

impl ApiDeploymentStatus {
    /// The name stored in databases and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiDeploymentStatus::Deployed => "DEPLOYED",
            ApiDeploymentStatus::Retrying => "RETRYING",
            ApiDeploymentStatus::Failed => "FAILED",
            ApiDeploymentStatus::Undeployed => "UNDEPLOYED",
        }
    }
}

impl std::str::FromStr for ApiDeploymentStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "DEPLOYED" => ApiDeploymentStatus::Deployed,
            "RETRYING" => ApiDeploymentStatus::Retrying,
            "FAILED" => ApiDeploymentStatus::Failed,
            "UNDEPLOYED" => ApiDeploymentStatus::Undeployed,
            other => return Err(format!("{other:?} is not a deployment status")),
        })
    }
}

/// One API in a node's status report (an ACK when deployed, a NACK with
/// the error otherwise).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppliedApiState {
    pub api_id: ApiId,
    /// The revision being served, if any.
    pub revision: Option<Revision>,
    pub sha256: Option<Sha256Digest>,
    pub status: ApiDeploymentStatus,
    /// The revision that failed, when the status is not `Deployed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_revision: Option<Revision>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<DateTime<Utc>>,
    /// When the node started serving `revision` (its clock); receipts time
    /// a change from its commit to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_at: Option<DateTime<Utc>>,
}

/// `POST /internal/data/v1/gateway-status`: a heartbeat with the node's
/// applied state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatusReport {
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub ready: bool,
    pub started_at: DateTime<Utc>,
    /// Whether `apis` is the node's whole state (APIs missing from it are no
    /// longer on the node) or only what changed.
    pub full: bool,
    pub apis: Vec<AppliedApiState>,
    /// Free-form facts for operators (version, mode, cache use ...).
    #[serde(default)]
    pub details: serde_json::Value,
}
