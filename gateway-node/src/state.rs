//! What this node runs: the routing table the data plane reads, and one
//! record per API for the admin API and the status reports.
//!
//! The records sit behind a std mutex that is never held across an
//! `.await`; the data plane never touches it (it reads the table through
//! `ArcSwap`, lock-free).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwap;
use artisync_domain::runtime::{ApiDeploymentStatus, AppliedApiState};
use artisync_domain::{ApiId, Revision, Sha256Digest};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::dataplane::{CompiledApi, RoutingTable, SharedRoutingTable};

/// A revision this node serves.
#[derive(Debug, Clone)]
pub struct AppliedRevision {
    pub revision: Revision,
    pub sha256: Sha256Digest,
    pub xml: Bytes,
    pub deployed_at: DateTime<Utc>,
    pub api: Arc<CompiledApi>,
}

/// One API's standing on this node.
#[derive(Debug, Clone, Default)]
pub struct ApiRecord {
    pub applied: Option<AppliedRevision>,
    /// The last failure, while it is unresolved.
    pub failure: Option<Failure>,
    /// Undeployed here by an operator: revisions up to this one stay off
    /// this node until a newer one arrives or redeploy is called.
    pub held_through: Option<Revision>,
    /// Identifies the current retry chain; a newer chain supersedes older ones.
    pub generation: u64,
}

#[derive(Debug, Clone)]
pub struct Failure {
    pub revision: Option<Revision>,
    pub error: String,
    pub attempts: u32,
    /// `None` once retries are spent (the API is failed until the next
    /// reconcile).
    pub next_retry_at: Option<DateTime<Utc>>,
}

impl ApiRecord {
    pub fn status(&self) -> ApiDeploymentStatus {
        match (&self.failure, &self.applied, self.held_through) {
            (Some(f), _, _) if f.next_retry_at.is_some() => ApiDeploymentStatus::Retrying,
            (Some(_), _, _) => ApiDeploymentStatus::Failed,
            (None, None, Some(_)) => ApiDeploymentStatus::Undeployed,
            _ => ApiDeploymentStatus::Deployed,
        }
    }

    pub fn applied_revision(&self) -> Option<Revision> {
        self.applied.as_ref().map(|a| a.revision)
    }

    fn is_empty(&self) -> bool {
        self.applied.is_none() && self.failure.is_none() && self.held_through.is_none()
    }

    pub fn report(&self, api_id: ApiId) -> AppliedApiState {
        AppliedApiState {
            api_id,
            revision: self.applied_revision(),
            sha256: self.applied.as_ref().map(|a| a.sha256),
            status: self.status(),
            failed_revision: self.failure.as_ref().and_then(|f| f.revision),
            error: self.failure.as_ref().map(|f| f.error.clone()),
            attempts: self.failure.as_ref().map_or(0, |f| f.attempts),
            next_retry_at: self.failure.as_ref().and_then(|f| f.next_retry_at),
            applied_at: self.applied.as_ref().map(|a| a.deployed_at),
        }
    }
}

/// What changed since the last status report.
#[derive(Debug, Default)]
pub struct Changes {
    pub apis: HashSet<ApiId>,
    /// Some API left this node entirely: only a full report says so.
    pub removals: bool,
}

pub struct NodeState {
    table: SharedRoutingTable,
    records: Mutex<HashMap<ApiId, ApiRecord>>,
    changes: Mutex<Changes>,
    /// Bumped after every change; admin long-polls and the reporter wait on it.
    version: watch::Sender<u64>,
}

impl NodeState {
    pub fn new() -> Self {
        NodeState {
            table: Arc::new(ArcSwap::from_pointee(RoutingTable::empty())),
            records: Mutex::new(HashMap::new()),
            changes: Mutex::new(Changes::default()),
            version: watch::Sender::new(0),
        }
    }

    pub fn table(&self) -> SharedRoutingTable {
        self.table.clone()
    }

    fn records(&self) -> MutexGuard<'_, HashMap<ApiId, ApiRecord>> {
        // A panic while holding the lock leaves consistent data (every
        // update is a single assignment), so poisoning is ignored.
        self.records.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self, ids: impl IntoIterator<Item = ApiId>, removal: bool) {
        {
            let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
            changes.apis.extend(ids);
            changes.removals |= removal;
        }
        self.version.send_modify(|v| *v += 1);
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    // A record with nothing applied, failed or held only carries the
    // generation of a deploy in progress (say, for an event about an API
    // this node does not run): it is not shown or reported as an API of
    // this node.

    pub fn record(&self, id: &ApiId) -> Option<ApiRecord> {
        self.records().get(id).filter(|r| !r.is_empty()).cloned()
    }

    pub fn records_snapshot(&self) -> Vec<(ApiId, ApiRecord)> {
        let mut all: Vec<_> = self
            .records()
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(id, r)| (*id, r.clone()))
            .collect();
        all.sort_by_key(|(id, _)| *id);
        all
    }

    pub fn reports(&self, only: Option<&HashSet<ApiId>>) -> Vec<AppliedApiState> {
        let records = self.records();
        match only {
            Some(ids) => ids
                .iter()
                .filter_map(|id| {
                    records
                        .get(id)
                        .filter(|r| !r.is_empty())
                        .map(|r| r.report(*id))
                })
                .collect(),
            None => records
                .iter()
                .filter(|(_, r)| !r.is_empty())
                .map(|(id, r)| r.report(*id))
                .collect(),
        }
    }

    pub fn applied_ids(&self) -> Vec<ApiId> {
        self.records()
            .iter()
            .filter(|(_, r)| r.applied.is_some())
            .map(|(id, _)| *id)
            .collect()
    }

    pub fn count_by_status(&self) -> (usize, usize) {
        let records = self.records();
        let deployed = records.values().filter(|r| r.applied.is_some()).count();
        let failed = records
            .values()
            .filter(|r| r.status() == ApiDeploymentStatus::Failed)
            .count();
        (deployed, failed)
    }

    pub fn any_retrying(&self) -> bool {
        self.records()
            .values()
            .any(|r| r.status() == ApiDeploymentStatus::Retrying)
    }

    /// Starts a new retry chain for `id`, superseding any running one.
    pub fn next_generation(&self, id: ApiId) -> u64 {
        let mut records = self.records();
        let record = records.entry(id).or_default();
        record.generation += 1;
        record.generation
    }

    pub fn is_current(&self, id: &ApiId, generation: u64) -> bool {
        self.records()
            .get(id)
            .is_some_and(|r| r.generation == generation)
    }

    /// Serves `applied` for `id`: one atomic swap of the routing table.
    /// Refuses (returns `false`) when the node already runs a newer
    /// revision: whatever raced this install, a node never goes back.
    ///
    /// Refuses too when another API already serves the revision's context
    /// (two APIs cannot share a path prefix): the API that serves it keeps
    /// serving, and this one is recorded as failed with the reason, so the
    /// records and the table always agree. The next reconcile tries again,
    /// and succeeds once the context is free.
    pub fn install(&self, id: ApiId, applied: AppliedRevision) -> bool {
        self.swap_in(id, applied, false)
    }

    /// Serves `applied` for `id` whatever the node runs now, an older
    /// revision included: for when the source says the running revision is
    /// not the desired state (one the publisher never deployed). A context
    /// clash refuses it as [`NodeState::install`] does.
    pub fn replace(&self, id: ApiId, applied: AppliedRevision) -> bool {
        self.swap_in(id, applied, true)
    }

    fn swap_in(&self, id: ApiId, applied: AppliedRevision, older_too: bool) -> bool {
        {
            // Every table write happens under the records lock, so the table
            // and the records never disagree.
            let mut records = self.records();
            let record = records.entry(id).or_default();
            if !older_too
                && record
                    .applied
                    .as_ref()
                    .is_some_and(|a| a.revision > applied.revision)
            {
                return false;
            }
            let table = self.table.load();
            if let Some(owner) = table.at_context(applied.api.context())
                && owner.api_id != id
            {
                let failure = clash_failure(&applied, owner);
                tracing::error!(
                    api_id = %id,
                    revision = %applied.revision,
                    context = applied.api.context(),
                    serving_api_id = %owner.api_id,
                    "not deployed: another API serves this context"
                );
                record.failure = Some(failure);
                drop(records);
                self.changed([id], false);
                return false;
            }
            let api = applied.api.clone();
            self.table.store(Arc::new(table.with_api(api)));
            record.applied = Some(applied);
            record.failure = None;
            record.held_through = None;
        }
        self.changed([id], false);
        true
    }

    /// Serves many revisions with a single table swap. An API that already
    /// runs the same or a newer revision keeps it. A revision whose context
    /// another API already serves, or one taken by an earlier entry of the
    /// batch, is not installed and is recorded as failed (as in
    /// [`NodeState::install`]).
    /// Returns what was installed.
    pub fn install_many(
        &self,
        batch: Vec<(ApiId, AppliedRevision)>,
    ) -> Vec<(ApiId, AppliedRevision)> {
        let mut installed = Vec::with_capacity(batch.len());
        let mut clashed = Vec::new();
        {
            let mut records = self.records();
            let current = self.table.load();
            // Who holds each context once the batch is in: the table's APIs
            // first, then the batch in order.
            let mut owners: HashMap<String, Arc<CompiledApi>> = current
                .apis()
                .map(|a| (a.context().to_owned(), Arc::clone(a)))
                .collect();
            for (id, applied) in batch {
                let record = records.entry(id).or_default();
                let newer = record
                    .applied
                    .as_ref()
                    .is_none_or(|a| a.revision < applied.revision);
                let held = record
                    .held_through
                    .is_some_and(|held| applied.revision <= held);
                if !newer || held {
                    continue;
                }
                if let Some(owner) = owners.get(applied.api.context())
                    && owner.api_id != id
                {
                    tracing::error!(
                        api_id = %id,
                        revision = %applied.revision,
                        context = applied.api.context(),
                        serving_api_id = %owner.api_id,
                        "not deployed: another API serves this context"
                    );
                    record.failure = Some(clash_failure(&applied, owner));
                    clashed.push(id);
                    continue;
                }
                if let Some(previous) = &record.applied {
                    owners.remove(previous.api.context());
                }
                owners.insert(applied.api.context().to_owned(), applied.api.clone());
                record.failure = None;
                record.held_through = None;
                installed.push((id, applied.clone()));
                record.applied = Some(applied);
            }
            if !installed.is_empty() {
                let replaced: HashSet<ApiId> = installed.iter().map(|(id, _)| *id).collect();
                let kept = current
                    .apis()
                    .filter(|a| !replaced.contains(&a.api_id))
                    .cloned();
                let table = RoutingTable::from_apis(
                    kept.chain(installed.iter().map(|(_, a)| a.api.clone())),
                );
                self.table.store(Arc::new(table));
            }
        }
        if !installed.is_empty() || !clashed.is_empty() {
            self.changed(installed.iter().map(|(id, _)| *id).chain(clashed), false);
        }
        installed
    }

    /// Stops serving `id` (if it was served); `hold` keeps it off this node
    /// until a newer revision or a redeploy.
    pub fn remove(&self, id: ApiId, hold: bool) -> Option<Revision> {
        let removed = {
            let mut records = self.records();
            let record = records.get_mut(&id)?;
            let removed = record.applied.take().map(|a| a.revision);
            if removed.is_some() {
                self.table
                    .store(Arc::new(self.table.load().without_api(&id)));
            }
            if hold {
                record.held_through = removed.or(record.held_through);
            } else {
                record.failure = None;
            }
            if record.is_empty() {
                records.remove(&id);
            }
            removed
        };
        self.changed([id], true);
        removed
    }

    /// Lifts a local undeploy; returns whether there was one.
    pub fn release_hold(&self, id: ApiId) -> bool {
        let released = {
            let mut records = self.records();
            let Some(record) = records.get_mut(&id) else {
                return false;
            };
            let released = record.held_through.take().is_some();
            if record.is_empty() {
                records.remove(&id);
            }
            released
        };
        if released {
            self.changed([id], true);
        }
        released
    }

    /// Keeps revisions up to `through` of `id` off this node (a local
    /// undeploy restored at start-up). Nothing changes if a revision is
    /// applied.
    pub fn hold(&self, id: ApiId, through: Revision) {
        {
            let mut records = self.records();
            let record = records.entry(id).or_default();
            if record.applied.is_some() {
                return;
            }
            record.held_through = Some(through);
        }
        self.changed([id], false);
    }

    pub fn record_failure(&self, id: ApiId, failure: Failure) {
        self.records().entry(id).or_default().failure = Some(failure);
        self.changed([id], false);
    }

    pub fn clear_failure(&self, id: ApiId) {
        let (cleared, gone) = {
            let mut records = self.records();
            let Some(record) = records.get_mut(&id) else {
                return;
            };
            let cleared = record.failure.take().is_some();
            let gone = record.is_empty();
            if gone {
                records.remove(&id);
            }
            (cleared, gone)
        };
        if cleared {
            // The status reports must hear that the failure is over.
            self.changed([id], gone);
        }
    }
}

/// The failure recorded for a revision whose context another API serves.
fn clash_failure(applied: &AppliedRevision, owner: &CompiledApi) -> Failure {
    Failure {
        revision: Some(applied.revision),
        error: format!(
            "the context {} is already served by API {} ({}); two APIs cannot share a context",
            applied.api.context(),
            owner.name(),
            owner.api_id,
        ),
        attempts: 1,
        next_retry_at: None,
    }
}

impl Default for NodeState {
    fn default() -> Self {
        Self::new()
    }
}
