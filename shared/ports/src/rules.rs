//! What every artifact store decides the same way, whatever its database:
//! the events a change writes (one routed copy per label), whether a
//! deploy may go ahead, how a node's report of an API reads, and the
//! messages callers see.

use std::collections::HashMap;

use artisync_domain::api::{NodeApiState, NodeApiStatus};
use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::{ApiId, GatewayLabel, Revision, Sha256Digest};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StoreError;

/// The columns of an API that its events carry.
#[derive(Debug, Clone)]
pub struct ApiIdentity {
    pub id: ApiId,
    pub name: String,
    pub version: String,
    pub context: String,
}

/// The event of a change, for the labels it concerns.
pub fn event(
    event_type: EventType,
    api: &ApiIdentity,
    revision: Revision,
    sha256: Sha256Digest,
    labels: Vec<GatewayLabel>,
    sequence: i64,
    now: DateTime<Utc>,
) -> DeploymentEvent {
    DeploymentEvent {
        event_id: Uuid::new_v4(),
        event_type,
        timestamp: now,
        api_id: api.id,
        name: api.name.clone(),
        version: api.version.clone(),
        context: api.context.clone(),
        revision,
        sha256,
        gateway_labels: labels,
        sequence,
        artifact: None,
        signature: None,
    }
}

/// One outbox row: a copy of an event routed by one of its labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    /// Each routed copy has its own id, so that the broker's
    /// `message_id` stays unique per message.
    pub event_id: Uuid,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub sequence: i64,
}

/// The outbox rows of some events: one per label, routed by that label.
pub fn outbox_rows(events: &[DeploymentEvent]) -> Vec<OutboxRow> {
    let mut rows = Vec::new();
    for event in events {
        for label in &event.gateway_labels {
            let mut copy = event.clone();
            copy.event_id = Uuid::new_v4();
            rows.push(OutboxRow {
                event_id: copy.event_id,
                routing_key: label.as_str().to_owned(),
                payload: copy.to_json(),
                sequence: event.sequence,
            });
        }
    }
    rows
}

/// Which labels a deploy of `target` changes and which already run it;
/// a label that runs a newer revision refuses the deploy (gateways never
/// go back to an older revision).
pub fn plan_deploy(
    id: ApiId,
    labels: &[GatewayLabel],
    current: &HashMap<String, i32>,
    target: Revision,
) -> Result<(Vec<GatewayLabel>, Vec<GatewayLabel>), StoreError> {
    let mut changed = Vec::new();
    let mut unchanged = Vec::new();
    for label in labels {
        match current.get(label.as_str()) {
            Some(&deployed) if deployed == target.as_i32() => unchanged.push(label.clone()),
            Some(&deployed) if deployed > target.as_i32() => {
                return Err(StoreError::Conflict(format!(
                    "label {label:?} runs revision {deployed} of API {id}; gateways never go \
                     back to an older revision. To roll back, PUT the older artifact again: \
                     it becomes a new revision"
                )));
            }
            _ => changed.push(label.clone()),
        }
    }
    Ok((changed, unchanged))
}

/// What a node reported of an API, as one store row.
#[derive(Debug, Clone)]
pub struct NodeReportRow {
    pub node_id: String,
    pub labels: Vec<String>,
    pub last_heartbeat: DateTime<Utc>,
    /// The report of this API, if the node made one.
    pub revision: Option<i32>,
    pub sha256: Option<String>,
    pub status: Option<String>,
    pub error: Option<String>,
    pub attempts: Option<i32>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Per node, how it runs an API deployed as `deployments` (label to
/// revision); nodes that neither should run it nor reported it are left
/// out.
pub fn node_api_statuses(
    deployments: &HashMap<String, i32>,
    rows: Vec<NodeReportRow>,
    now: DateTime<Utc>,
    stale_after: std::time::Duration,
) -> Result<Vec<NodeApiStatus>, StoreError> {
    let stale_after =
        chrono::Duration::from_std(stale_after).unwrap_or_else(|_| chrono::Duration::seconds(60));
    let mut out = Vec::new();
    for row in rows {
        let desired = row
            .labels
            .iter()
            .filter_map(|l| deployments.get(l).copied())
            .max();
        if desired.is_none() && row.status.is_none() {
            continue;
        }
        let status = match &row.status {
            Some(s) => NodeApiState::from(stored_status(s)?),
            None => NodeApiState::Pending,
        };
        out.push(NodeApiStatus {
            in_sync: NodeApiStatus::is_in_sync(desired, row.revision, status),
            node_id: row.node_id,
            labels: row.labels,
            expected: desired.is_some(),
            desired_revision: desired,
            applied_revision: row.revision,
            sha256: row.sha256,
            status,
            error: row.error,
            attempts: row.attempts.unwrap_or(0),
            last_report: row.updated_at,
            last_heartbeat: row.last_heartbeat,
            stale: now - row.last_heartbeat > stale_after,
        });
    }
    Ok(out)
}

/// Whether a node without a heartbeat since `last_heartbeat` is stale.
pub fn is_stale(
    now: DateTime<Utc>,
    last_heartbeat: DateTime<Utc>,
    stale_after: std::time::Duration,
) -> bool {
    let stale_after =
        chrono::Duration::from_std(stale_after).unwrap_or_else(|_| chrono::Duration::seconds(60));
    now - last_heartbeat > stale_after
}

// ---- messages -------------------------------------------------------------

pub fn api_not_found(id: ApiId) -> StoreError {
    StoreError::NotFound(format!("API {id} not found"))
}

pub fn revision_not_found(id: ApiId, revision: Option<Revision>) -> StoreError {
    StoreError::NotFound(format!(
        "API {id} has no revision {}",
        revision.map(|r| r.to_string()).unwrap_or_default()
    ))
}

pub fn no_such_revision(id: ApiId, target: Revision, latest: Revision) -> StoreError {
    StoreError::Unprocessable(format!(
        "API {id} has no revision {target} (latest is {latest})"
    ))
}

pub fn not_deployed(id: ApiId, label: &GatewayLabel) -> StoreError {
    StoreError::NotFound(format!("API {id} is not deployed on {label:?}"))
}

pub fn name_version_taken(name: &str, version: &str) -> StoreError {
    StoreError::Conflict(format!(
        "an API named {name:?} with version {version:?} already exists"
    ))
}

pub fn context_taken(context: &str) -> StoreError {
    StoreError::Conflict(format!("another API already uses the context {context:?}"))
}

// ---- stored values ----------------------------------------------------------
// What a backend reads back was valid when written; anything else means
// the database was changed behind artisync's back.

pub fn stored_revision(backend: &'static str, n: i64) -> Result<Revision, StoreError> {
    Revision::new(n).map_err(|e| StoreError::broken(backend, format!("stored revision: {e}")))
}

pub fn stored_digest(backend: &'static str, raw: &str) -> Result<Sha256Digest, StoreError> {
    Sha256Digest::parse(raw).map_err(|e| StoreError::broken(backend, format!("stored digest: {e}")))
}

pub fn stored_label(backend: &'static str, raw: &str) -> Result<GatewayLabel, StoreError> {
    GatewayLabel::parse(raw).map_err(|e| StoreError::broken(backend, format!("stored label: {e}")))
}

/// A node's reported status, typed.
pub fn stored_status(
    raw: &str,
) -> Result<artisync_domain::runtime::ApiDeploymentStatus, StoreError> {
    raw.parse()
        .map_err(|e: String| StoreError::broken("store", format!("stored status: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(l: &str) -> GatewayLabel {
        GatewayLabel::parse(l).unwrap()
    }

    #[test]
    fn every_label_gets_its_own_routed_copy() {
        let api = ApiIdentity {
            id: ApiId::new_random(),
            name: "A".into(),
            version: "1".into(),
            context: "/a".into(),
        };
        let e = event(
            EventType::DeployApiInGateway,
            &api,
            Revision::FIRST,
            Sha256Digest::of(b"x"),
            vec![label("L1"), label("L2")],
            7,
            Utc::now(),
        );
        let rows = outbox_rows(&[e]);
        assert_eq!(rows.len(), 2);
        assert_ne!(rows[0].event_id, rows[1].event_id);
        assert_eq!(rows[0].routing_key, "L1");
        assert_eq!(rows[1].sequence, 7);
        let copy = DeploymentEvent::from_json(&rows[1].payload).unwrap();
        assert_eq!(copy.event_id, rows[1].event_id);
    }

    #[test]
    fn a_deploy_never_goes_back_to_an_older_revision() {
        let id = ApiId::new_random();
        let current: HashMap<String, i32> = [("L1".to_owned(), 2), ("L2".to_owned(), 1)].into();
        let (changed, unchanged) = plan_deploy(
            id,
            &[label("L1"), label("L2"), label("L3")],
            &current,
            Revision::new(2).unwrap(),
        )
        .unwrap();
        assert_eq!(changed, [label("L2"), label("L3")]);
        assert_eq!(unchanged, [label("L1")]);
        let older = plan_deploy(id, &[label("L1")], &current, Revision::FIRST);
        assert!(matches!(older, Err(StoreError::Conflict(_))));
    }

    #[test]
    fn a_node_that_never_reported_an_api_it_should_run_is_pending() {
        let deployments: HashMap<String, i32> = [("L1".to_owned(), 3)].into();
        let row = |node: &str, labels: &[&str], status: Option<&str>, revision| NodeReportRow {
            node_id: node.into(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            last_heartbeat: Utc::now(),
            revision,
            sha256: None,
            status: status.map(str::to_owned),
            error: None,
            attempts: None,
            updated_at: None,
        };
        let statuses = node_api_statuses(
            &deployments,
            vec![
                row("gw-1", &["L1"], None, None),
                row("gw-2", &["L1"], Some("DEPLOYED"), Some(3)),
                row("gw-3", &["L2"], None, None),
            ],
            Utc::now(),
            std::time::Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(statuses.len(), 2, "gw-3 has nothing to do with it");
        assert_eq!(statuses[0].status, NodeApiState::Pending);
        assert!(!statuses[0].in_sync);
        assert!(statuses[1].in_sync);
    }
}
