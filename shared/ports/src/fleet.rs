//! The fleet from a few whole-table reads, for stores that can read
//! every API, deployment and node report at once instead of one API at a
//! time.

use std::collections::HashMap;
use std::time::Duration;

use artisync_domain::ApiId;
use artisync_domain::api::{ApiSummary, DeploymentInfo, GatewaySummary};
use artisync_domain::fleet::{Fleet, FleetApi, FleetCell};
use chrono::{DateTime, Utc};

use crate::StoreError;
use crate::rules::{self, NodeReportRow};

/// A node as the fleet needs it: who it is and when it last spoke.
#[derive(Debug, Clone)]
pub struct FleetNode {
    pub node_id: String,
    pub labels: Vec<String>,
    pub last_heartbeat: DateTime<Utc>,
}

/// One node's report of one API.
#[derive(Debug, Clone)]
pub struct FleetReport {
    pub node_id: String,
    pub api_id: ApiId,
    pub revision: Option<i32>,
    pub sha256: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub attempts: i32,
    pub updated_at: DateTime<Utc>,
}

/// What the whole-table reads gave, from one snapshot.
pub struct FleetRows {
    pub summaries: Vec<GatewaySummary>,
    pub apis: Vec<ApiSummary>,
    pub deployments: Vec<(ApiId, DeploymentInfo)>,
    pub nodes: Vec<FleetNode>,
    pub reports: Vec<FleetReport>,
    pub now: DateTime<Utc>,
}

/// Assembles the fleet exactly as [`crate::ArtifactStore::fleet`]'s one
/// API at a time reading would.
pub fn assemble(rows: FleetRows, stale_after: Duration) -> Result<Fleet, StoreError> {
    let mut deployments: HashMap<ApiId, Vec<DeploymentInfo>> = HashMap::new();
    for (api, d) in rows.deployments {
        deployments.entry(api).or_default().push(d);
    }
    let mut reports: HashMap<ApiId, HashMap<String, FleetReport>> = HashMap::new();
    for r in rows.reports {
        reports
            .entry(r.api_id)
            .or_default()
            .insert(r.node_id.clone(), r);
    }
    let mut apis = Vec::with_capacity(rows.apis.len());
    for summary in rows.apis {
        let mut deployed = deployments.remove(&summary.id).unwrap_or_default();
        deployed.sort_by(|a, b| a.label.as_str().cmp(b.label.as_str()));
        let by_label: HashMap<String, i32> = deployed
            .iter()
            .map(|d| (d.label.as_str().to_owned(), d.revision.as_i32()))
            .collect();
        let of_api = reports.remove(&summary.id).unwrap_or_default();
        let node_rows = rows
            .nodes
            .iter()
            .map(|n| {
                let r = of_api.get(&n.node_id);
                NodeReportRow {
                    node_id: n.node_id.clone(),
                    labels: n.labels.clone(),
                    last_heartbeat: n.last_heartbeat,
                    revision: r.and_then(|r| r.revision),
                    sha256: r.and_then(|r| r.sha256.clone()),
                    status: r.map(|r| r.status.clone()),
                    error: r.and_then(|r| r.error.clone()),
                    attempts: r.map(|r| r.attempts),
                    updated_at: r.map(|r| r.updated_at),
                }
            })
            .collect();
        let statuses = rules::node_api_statuses(&by_label, node_rows, rows.now, stale_after)?;
        apis.push(FleetApi {
            summary,
            deployments: deployed,
            nodes: statuses.iter().map(FleetCell::from).collect(),
        });
    }
    Ok(Fleet {
        generated_at: rows.now,
        stale_after_ms: u64::try_from(stale_after.as_millis()).unwrap_or(u64::MAX),
        nodes: rows.summaries,
        apis,
    })
}
