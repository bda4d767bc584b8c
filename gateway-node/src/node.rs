//! A gateway node as the admin API and the status reports see it: what it
//! runs, its start-up phase and its readiness.

use std::sync::{Arc, Mutex};

use artisync_domain::runtime::GatewayStatusReport;
use artisync_domain::{GatewayLabel, NodeId};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::config::{DeploySource, RetrievalMode};
use crate::events::SubscriptionStatus;
use crate::metrics::Metrics;
use crate::state::NodeState;
use crate::sync::Synchronizer;

/// Where the start-up deployment stands.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", tag = "phase", content = "message")]
pub enum Startup {
    /// Loading the desired state from the traffic manager.
    Loading,
    Done,
    /// Retries were spent: serving what the node has, still retrying.
    GaveUp(String),
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    pub ready: bool,
    pub node_id: NodeId,
    pub mode: &'static str,
    pub startup: Startup,
    pub amqp_connected: bool,
    pub deployed: usize,
    pub failed: usize,
    pub retrying: bool,
}

pub struct Node {
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub admin_token: String,
    pub mode: RetrievalMode,
    /// Pulled from the traffic manager, or pushed by the publisher.
    pub deploy_source: DeploySource,
    pub state: Arc<NodeState>,
    pub sync: Arc<Synchronizer>,
    pub metrics: Arc<Metrics>,
    pub subscription: Arc<SubscriptionStatus>,
    pub started_at: DateTime<Utc>,
    pub(crate) startup: Mutex<Startup>,
}

impl Node {
    pub fn startup(&self) -> Startup {
        self.startup
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub(crate) fn set_startup(&self, s: Startup) {
        *self.startup.lock().unwrap_or_else(|p| p.into_inner()) = s;
    }

    pub fn readiness(&self) -> Readiness {
        let startup = self.startup();
        let (deployed, failed) = self.state.count_by_status();
        let retrying = self.state.any_retrying();
        // Start-up is `Done` once the start-up deploys have settled (their
        // retries included); an API that fails later never takes the node
        // out of rotation: it keeps serving everything else.
        let ready = match self.mode {
            RetrievalMode::Async => true,
            RetrievalMode::Sync => !matches!(startup, Startup::Loading),
        };
        Readiness {
            ready,
            node_id: self.node_id.clone(),
            mode: match self.mode {
                RetrievalMode::Sync => "sync",
                RetrievalMode::Async => "async",
            },
            startup,
            amqp_connected: self.subscription.is_connected(),
            deployed,
            failed,
            retrying,
        }
    }

    pub(crate) fn status_report(
        &self,
        full: bool,
        only: Option<&std::collections::HashSet<artisync_domain::ApiId>>,
    ) -> GatewayStatusReport {
        let readiness = self.readiness();
        GatewayStatusReport {
            node_id: self.node_id.clone(),
            labels: self.labels.clone(),
            ready: readiness.ready,
            started_at: self.started_at,
            full,
            apis: self.state.reports(if full { None } else { only }),
            details: serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "mode": readiness.mode,
                "startup": readiness.startup,
                "amqpConnected": readiness.amqp_connected,
                // Events waiting in the node's queue (null when unknown).
                "queueBacklog": self.subscription.backlog(),
            }),
        }
    }
}
