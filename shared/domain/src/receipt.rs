//! Receipts (DESIGN.md §13): for one change, which nodes of its labels
//! have applied it, which failed and why, which are still pending or
//! offline, and how long each took from the commit.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{ApiId, GatewayLabel, Revision, Sha256Digest};

/// What a change did to its labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ChangeKind {
    /// A revision was deployed to the labels.
    Deploy,
    /// The API was removed from the labels.
    Remove,
}

impl ChangeKind {
    /// The name stored in databases and sent on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Deploy => "DEPLOY",
            ChangeKind::Remove => "REMOVE",
        }
    }
}

impl std::str::FromStr for ChangeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "DEPLOY" => Ok(ChangeKind::Deploy),
            "REMOVE" => Ok(ChangeKind::Remove),
            other => Err(format!("{other:?} is not a change kind")),
        }
    }
}

/// Where one node stands with one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReceiptState {
    /// The node runs the change (or a later one of the same API).
    Applied,
    /// The node's retries are spent; the error says why.
    Failed,
    /// The node is live and has not applied it yet.
    Pending,
    /// The node has not applied it and sent no heartbeat within the stale
    /// time.
    Offline,
}

/// One node's part of a receipt.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeReceipt {
    pub node_id: String,
    pub labels: Vec<String>,
    pub state: ReceiptState,
    /// The revision the node serves now, if any.
    pub applied_revision: Option<i32>,
    /// When the node was recorded as serving the change's revision.
    pub applied_at: Option<DateTime<Utc>>,
    /// Milliseconds from the commit to `applied_at`.
    pub latency_ms: Option<f64>,
    /// The node's last error for this API (failed, or retrying).
    pub error: Option<String>,
    pub last_heartbeat: DateTime<Utc>,
}

/// The counts of a receipt.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReceiptSummary {
    /// Nodes that serve one of the change's labels.
    pub targets: usize,
    pub applied: usize,
    pub failed: usize,
    pub pending: usize,
    pub offline: usize,
    /// The node that took longest to apply, and how long.
    pub slowest_node: Option<String>,
    pub slowest_ms: Option<f64>,
    /// No node is pending: every target applied, failed or is offline.
    pub complete: bool,
}

/// `GET /api/v1/changes/{sequence}`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub sequence: i64,
    pub kind: ChangeKind,
    #[schema(value_type = String, format = Uuid)]
    pub api_id: ApiId,
    pub name: String,
    pub version: String,
    #[schema(value_type = u32, minimum = 1)]
    pub revision: Revision,
    #[schema(value_type = String, pattern = "^[0-9a-f]{64}$")]
    pub sha256: Sha256Digest,
    #[schema(value_type = Vec<String>)]
    pub labels: Vec<GatewayLabel>,
    pub committed_at: DateTime<Utc>,
    pub nodes: Vec<NodeReceipt>,
    pub summary: ReceiptSummary,
}

impl ReceiptSummary {
    /// The counts of `nodes`.
    pub fn of(nodes: &[NodeReceipt]) -> Self {
        let mut summary = ReceiptSummary {
            targets: nodes.len(),
            ..ReceiptSummary::default()
        };
        for node in nodes {
            match node.state {
                ReceiptState::Applied => summary.applied += 1,
                ReceiptState::Failed => summary.failed += 1,
                ReceiptState::Pending => summary.pending += 1,
                ReceiptState::Offline => summary.offline += 1,
            }
            if let Some(ms) = node.latency_ms
                && summary.slowest_ms.is_none_or(|slowest| ms > slowest)
            {
                summary.slowest_ms = Some(ms);
                summary.slowest_node = Some(node.node_id.clone());
            }
        }
        summary.complete = summary.pending == 0;
        summary
    }
}
