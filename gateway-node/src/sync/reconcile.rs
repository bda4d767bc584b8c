//! Reconcile: compare what this node runs with the desired state of its
//! labels, plan what differs, and carry the plan out. A lost event can
//! delay a change, never lose it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use artisync_domain::ApiId;
use artisync_domain::runtime::{ApiDeploymentStatus, RuntimeApi, RuntimeMetadata};
use artisync_ports::source::{MetadataAnswer, SourceError};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;

use super::Synchronizer;
use crate::state::ApiRecord;

/// Above this many differences, reconcile fetches with one streamed bulk
/// request instead of one request per API.
const BULK_THRESHOLD: usize = 16;
/// Deploys a reconcile runs at once.
const RECONCILE_CONCURRENCY: usize = 16;

/// What a reconcile changes.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcilePlan {
    /// APIs to deploy or update, at the desired revision.
    pub deploy: Vec<RuntimeApi>,
    /// APIs this node runs (or failed) that are not desired any more; the
    /// artifact source has the last word on each.
    pub remove: Vec<ApiId>,
    /// APIs this node runs at a revision newer than the desired one, for
    /// longer than a source can lag: that revision was never deployed (a
    /// forged event, say), and the node goes to the desired one.
    pub correct: Vec<RuntimeApi>,
}

/// How long a revision newer than the desired state is taken for the
/// source lagging behind the event that brought it (a replica catching up)
/// before it is corrected.
pub const SOURCE_LAG_GRACE: Duration = Duration::from_secs(30);

impl ReconcilePlan {
    /// Plans from the desired state and this node's records, at `now`.
    pub fn of(
        metadata: &RuntimeMetadata,
        records: &[(ApiId, ApiRecord)],
        now: DateTime<Utc>,
    ) -> ReconcilePlan {
        let find = |id: &ApiId| records.iter().find(|(r, _)| r == id).map(|(_, r)| r);
        let mut deploy = Vec::new();
        let mut correct = Vec::new();
        let grace = chrono::Duration::from_std(SOURCE_LAG_GRACE).unwrap_or_default();
        for api in &metadata.apis {
            let record = find(&api.api_id).cloned().unwrap_or_default();
            match record.status() {
                // A retry chain is running; let it keep its schedule.
                ApiDeploymentStatus::Retrying => continue,
                ApiDeploymentStatus::Undeployed
                    if record.held_through.is_some_and(|h| api.revision <= h) =>
                {
                    continue;
                }
                _ => {}
            }
            match &record.applied {
                Some(a) if a.revision == api.revision && a.sha256 == api.sha256 => {}
                // Not back to an older revision while the source may lag.
                Some(a) if a.revision > api.revision => {
                    if a.deployed_at + grace < now {
                        correct.push(api.clone());
                    }
                }
                _ => deploy.push(api.clone()),
            }
        }
        let desired: HashSet<ApiId> = metadata.apis.iter().map(|a| a.api_id).collect();
        let remove = records
            .iter()
            .filter(|(id, r)| {
                !desired.contains(id)
                    && (r.applied.is_some() || r.status() == ApiDeploymentStatus::Failed)
            })
            .map(|(id, _)| *id)
            .collect();
        ReconcilePlan {
            deploy,
            remove,
            correct,
        }
    }

    pub fn drift(&self) -> usize {
        self.deploy.len() + self.remove.len() + self.correct.len()
    }
}

impl Synchronizer {
    /// Compares the applied state with the desired state of this node's
    /// labels and deploys, updates and removes what differs. Returns how
    /// many differences it found.
    pub async fn reconcile(self: &Arc<Self>) -> Result<usize, SourceError> {
        let started = Instant::now();
        let mut last = self.last_metadata.lock().await;
        let metadata = {
            let etag = last.as_ref().and_then(|(e, _)| e.clone());
            match self
                .source
                .metadata(&self.config.labels, etag.as_deref())
                .await?
            {
                MetadataAnswer::Changed { etag, metadata } => {
                    self.loaded_sequence
                        .fetch_max(metadata.sequence, Ordering::SeqCst);
                    let metadata = Arc::new(metadata);
                    *last = Some((etag, metadata.clone()));
                    metadata
                }
                MetadataAnswer::Unchanged => match last.as_ref() {
                    Some((_, m)) => m.clone(),
                    None => return Ok(0),
                },
            }
        };
        let plan = ReconcilePlan::of(&metadata, &self.state.records_snapshot(), Utc::now());
        let drift = plan.drift();
        if drift > 0 {
            tracing::info!(
                deploy = plan.deploy.len(),
                remove = plan.remove.len(),
                correct = plan.correct.len(),
                sequence = metadata.sequence,
                "reconcile found drift"
            );
        }
        if plan.deploy.len() > BULK_THRESHOLD {
            let ids = plan.deploy.iter().map(|a| a.api_id).collect();
            self.bulk_deploy(Some(ids)).await?;
        } else {
            futures_util::stream::iter(plan.deploy)
                .for_each_concurrent(RECONCILE_CONCURRENCY, |api| async move {
                    let _ = self.sync_api(api.api_id, Some(api.revision), None).await;
                })
                .await;
        }
        futures_util::stream::iter(plan.correct)
            .for_each_concurrent(RECONCILE_CONCURRENCY, |api| async move {
                if let Err(e) = self.correct(api.api_id).await {
                    tracing::warn!(api_id = %api.api_id, error = %e, "cannot correct the API to its desired revision yet");
                }
            })
            .await;
        futures_util::stream::iter(plan.remove)
            .for_each_concurrent(RECONCILE_CONCURRENCY, |id| async move {
                let _ = self.sync_api(id, None, None).await;
            })
            .await;
        self.metrics.observe_reconcile(started.elapsed(), drift);
        Ok(drift)
    }
}
