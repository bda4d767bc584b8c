//! The fleet view's data (DESIGN.md §14): every node, and every API with
//! where it is deployed and how each node runs it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::api::{ApiSummary, DeploymentInfo, GatewaySummary, NodeApiState, NodeApiStatus};

/// How one cell of the APIs × nodes grid reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum FleetCellState {
    /// The node runs what its labels' deployments say.
    InSync,
    /// The node has not caught up yet (pending, retrying, older revision,
    /// or still serving an API it should no longer serve).
    Behind,
    /// The node's retries are spent.
    Failed,
    /// The API is not meant for the node and the node does not run it.
    Absent,
}

impl FleetCellState {
    pub fn of(status: &NodeApiStatus) -> Self {
        if status.status == NodeApiState::Failed {
            FleetCellState::Failed
        } else if !status.expected && status.status != NodeApiState::Deployed {
            FleetCellState::Absent
        } else if status.in_sync {
            FleetCellState::InSync
        } else {
            FleetCellState::Behind
        }
    }
}

/// One node's cell for one API.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetCell {
    pub node_id: String,
    pub desired_revision: Option<i32>,
    pub applied_revision: Option<i32>,
    pub status: NodeApiState,
    pub state: FleetCellState,
    pub error: Option<String>,
}

impl From<&NodeApiStatus> for FleetCell {
    fn from(status: &NodeApiStatus) -> Self {
        FleetCell {
            node_id: status.node_id.clone(),
            desired_revision: status.desired_revision,
            applied_revision: status.applied_revision,
            status: status.status,
            state: FleetCellState::of(status),
            error: status.error.clone(),
        }
    }
}

/// One API row of the grid. Nodes missing from `nodes` are `absent`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetApi {
    #[serde(flatten)]
    pub summary: ApiSummary,
    pub deployments: Vec<DeploymentInfo>,
    pub nodes: Vec<FleetCell>,
}

/// `GET /api/v1/fleet`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Fleet {
    pub generated_at: DateTime<Utc>,
    /// A node without a heartbeat for this long is stale.
    pub stale_after_ms: u64,
    pub nodes: Vec<GatewaySummary>,
    pub apis: Vec<FleetApi>,
}
