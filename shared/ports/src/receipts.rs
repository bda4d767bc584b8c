//! How every artifact store turns a recorded change and the nodes'
//! reports into a receipt, whatever its database.

use std::collections::HashMap;
use std::time::Duration;

use artisync_domain::api::NodeApiState;
use artisync_domain::receipt::{ChangeKind, NodeReceipt, Receipt, ReceiptState, ReceiptSummary};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use chrono::{DateTime, Utc};

use crate::rules::{self, NodeReportRow};

/// A change as the store records it, in the transaction that commits it.
#[derive(Debug, Clone)]
pub struct ChangeRecord {
    pub sequence: i64,
    pub kind: ChangeKind,
    pub api_id: ApiId,
    pub name: String,
    pub version: String,
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub labels: Vec<GatewayLabel>,
    pub committed_at: DateTime<Utc>,
}

/// What a change's events (all of one sequence) record: the first event,
/// its kind, and every label of them, sorted and without repeats.
pub fn change_of(
    events: &[artisync_domain::event::DeploymentEvent],
) -> Option<(
    &artisync_domain::event::DeploymentEvent,
    ChangeKind,
    Vec<&str>,
)> {
    use artisync_domain::event::EventType;
    let first = events.first()?;
    let mut labels: Vec<&str> = events
        .iter()
        .flat_map(|e| e.gateway_labels.iter().map(GatewayLabel::as_str))
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let kind = match first.event_type {
        EventType::DeployApiInGateway => ChangeKind::Deploy,
        EventType::RemoveApiFromGateway => ChangeKind::Remove,
    };
    Some((first, kind, labels))
}

/// One node's deploy, timed from the commit of its change: what feeds
/// `artisync_propagation_seconds`.
#[derive(Debug, Clone)]
pub struct PropagationSample {
    pub node_id: String,
    /// The change's label that the node serves.
    pub label: String,
    pub applied_at: DateTime<Utc>,
    pub seconds: f64,
}

/// What a node reported of the change's API, with when it was recorded as
/// serving its current revision.
#[derive(Debug, Clone)]
pub struct NodeRow {
    pub report: NodeReportRow,
    pub applied_at: Option<DateTime<Utc>>,
}

fn millis_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let micros = (to - from).num_microseconds().unwrap_or(i64::MAX).max(0);
    micros as f64 / 1000.0
}

/// The receipt of `change`, from the current deployments of its API
/// (label to revision) and every node's report of that API.
pub fn receipt(
    change: ChangeRecord,
    deployments: &HashMap<String, i32>,
    nodes: Vec<NodeRow>,
    now: DateTime<Utc>,
    stale_after: Duration,
) -> Receipt {
    let labels: Vec<&str> = change.labels.iter().map(GatewayLabel::as_str).collect();
    let mut out = Vec::new();
    for node in nodes {
        let report = node.report;
        if !report.labels.iter().any(|l| labels.contains(&l.as_str())) {
            continue;
        }
        let status = report
            .status
            .as_deref()
            .and_then(|s| rules::stored_status(s).ok())
            .map(NodeApiState::from);
        let serves = |revision: i32| {
            status == Some(NodeApiState::Deployed) && report.revision.is_some_and(|r| r >= revision)
        };
        let applied = match change.kind {
            ChangeKind::Deploy => serves(change.revision.as_i32()),
            // Removed when the node no longer serves the API, or serves it
            // only because another of its labels still deploys it.
            ChangeKind::Remove => {
                let desired = report
                    .labels
                    .iter()
                    .filter_map(|l| deployments.get(l).copied())
                    .max();
                match desired {
                    Some(d) => serves(d),
                    None => status != Some(NodeApiState::Deployed),
                }
            }
        };
        let state = if applied {
            ReceiptState::Applied
        } else if status == Some(NodeApiState::Failed) {
            ReceiptState::Failed
        } else if rules::is_stale(now, report.last_heartbeat, stale_after) {
            ReceiptState::Offline
        } else {
            ReceiptState::Pending
        };
        // A node's applied time is the change's only when it serves the
        // change's own revision, recorded after the commit.
        let applied_at = match (change.kind, state) {
            (ChangeKind::Deploy, ReceiptState::Applied)
                if report.revision == Some(change.revision.as_i32()) =>
            {
                node.applied_at
            }
            _ => None,
        };
        let latency_ms = applied_at
            .filter(|at| *at >= change.committed_at)
            .map(|at| millis_between(change.committed_at, at));
        out.push(NodeReceipt {
            node_id: report.node_id,
            labels: report.labels,
            state,
            applied_revision: report
                .revision
                .filter(|_| status == Some(NodeApiState::Deployed)),
            applied_at,
            latency_ms,
            error: if state == ReceiptState::Applied {
                None
            } else {
                report.error
            },
            last_heartbeat: report.last_heartbeat,
        });
    }
    let summary = ReceiptSummary::of(&out);
    Receipt {
        sequence: change.sequence,
        kind: change.kind,
        api_id: change.api_id,
        name: change.name,
        version: change.version,
        revision: change.revision,
        sha256: change.sha256,
        labels: change.labels,
        committed_at: change.committed_at,
        nodes: out,
        summary,
    }
}

/// The seconds from `committed_at` to `applied_at`, for the histogram.
pub fn sample_seconds(committed_at: DateTime<Utc>, applied_at: DateTime<Utc>) -> f64 {
    millis_between(committed_at, applied_at) / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kind: ChangeKind, revision: i64) -> ChangeRecord {
        ChangeRecord {
            sequence: 9,
            kind,
            api_id: ApiId::new_random(),
            name: "A".into(),
            version: "1".into(),
            revision: Revision::new(revision).unwrap(),
            sha256: Sha256Digest::of(b"a"),
            labels: vec![GatewayLabel::parse("L1").unwrap()],
            committed_at: Utc::now() - chrono::Duration::seconds(1),
        }
    }

    fn node(id: &str, labels: &[&str], status: Option<&str>, revision: Option<i32>) -> NodeRow {
        NodeRow {
            report: NodeReportRow {
                node_id: id.into(),
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                last_heartbeat: Utc::now(),
                revision,
                sha256: None,
                status: status.map(str::to_owned),
                error: status.filter(|s| *s == "FAILED").map(|_| "boom".to_owned()),
                attempts: None,
                updated_at: None,
            },
            applied_at: revision.map(|_| Utc::now()),
        }
    }

    #[test]
    fn each_node_of_the_labels_is_applied_failed_pending_or_offline() {
        let mut offline = node("gw-4", &["L1"], None, None);
        offline.report.last_heartbeat = Utc::now() - chrono::Duration::seconds(60);
        let receipt = receipt(
            change(ChangeKind::Deploy, 2),
            &[("L1".to_owned(), 2)].into(),
            vec![
                node("gw-1", &["L1"], Some("DEPLOYED"), Some(2)),
                node("gw-2", &["L1"], Some("FAILED"), Some(1)),
                node("gw-3", &["L1"], Some("DEPLOYED"), Some(1)),
                offline,
                node("gw-5", &["L2"], None, None),
            ],
            Utc::now(),
            Duration::from_secs(15),
        );
        let states: Vec<_> = receipt.nodes.iter().map(|n| n.state).collect();
        assert_eq!(
            states,
            [
                ReceiptState::Applied,
                ReceiptState::Failed,
                ReceiptState::Pending,
                ReceiptState::Offline
            ]
        );
        assert_eq!(receipt.nodes[1].error.as_deref(), Some("boom"));
        assert!(receipt.nodes[0].latency_ms.is_some_and(|ms| ms >= 1000.0));
        assert_eq!(receipt.summary.targets, 4);
        assert!(!receipt.summary.complete, "gw-3 is still pending");
        assert_eq!(receipt.summary.slowest_node.as_deref(), Some("gw-1"));
    }

    #[test]
    fn a_later_revision_applies_an_earlier_change_without_its_latency() {
        let receipt = receipt(
            change(ChangeKind::Deploy, 2),
            &HashMap::new(),
            vec![node("gw-1", &["L1"], Some("DEPLOYED"), Some(3))],
            Utc::now(),
            Duration::from_secs(15),
        );
        assert_eq!(receipt.nodes[0].state, ReceiptState::Applied);
        assert_eq!(receipt.nodes[0].latency_ms, None);
        assert!(receipt.summary.complete);
    }

    #[test]
    fn a_removal_is_applied_when_the_node_stops_serving_or_another_label_keeps_it() {
        let receipt = receipt(
            change(ChangeKind::Remove, 2),
            &[("L2".to_owned(), 2)].into(),
            vec![
                node("gw-1", &["L1"], None, None),
                node("gw-2", &["L1"], Some("DEPLOYED"), Some(2)),
                node("gw-3", &["L1", "L2"], Some("DEPLOYED"), Some(2)),
            ],
            Utc::now(),
            Duration::from_secs(15),
        );
        let states: Vec<_> = receipt.nodes.iter().map(|n| n.state).collect();
        assert_eq!(
            states,
            [
                ReceiptState::Applied,
                ReceiptState::Pending,
                ReceiptState::Applied
            ]
        );
    }
}
