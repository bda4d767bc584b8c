//! Keeps this node's applied state equal to the desired state of its
//! labels: event handling, per-API deploys with retries, reconcile.
//!
//! Events are hints. Whatever an event says, the node asks the artifact
//! source what the API should run now and moves there, never to an older
//! revision; so duplicate, late and out-of-order events are harmless.
//! The one shortcut: a deploy event that carries its (small) artifact and
//! is newer than the last desired state the node loaded is deployed from
//! the event, after checking its digest. Moving up to the announced
//! revision is then what the source would answer too, and anything after
//! it comes as a later event. Older events (a backlog replayed after a
//! restart, whose changes the load already saw or superseded) and every
//! event before the first successful load ask the source.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use artisync_shared::event::{DeploymentEvent, EventType};
use artisync_shared::runtime::{ApiDeploymentStatus, RuntimeArtifact, RuntimeMetadata};
use artisync_shared::synapse::{ArtifactError, parse_artifact};
use artisync_shared::{ApiId, GatewayLabel, NodeId, Revision, Sha256Digest};
use backon::{ExponentialBuilder, Retryable};
use bytes::Bytes;
use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::cache::{CacheCommand, CacheWriter, HeldEntry, ManifestEntry};
use crate::config::RetryPolicy;
use crate::dataplane::CompiledApi;
use crate::metrics::Metrics;
use crate::source::{ArtifactSource, FetchedArtifact, MetadataAnswer, SourceError};
use crate::state::{AppliedRevision, Failure, NodeState};

/// Above this many differences, reconcile fetches with one streamed bulk
/// request instead of one request per API.
const BULK_THRESHOLD: usize = 16;
/// Deploys a reconcile runs at once.
const RECONCILE_CONCURRENCY: usize = 16;
/// An artifact inside an event older than this is not used: the event is
/// being replayed from a backlog, where later changes may be queued behind
/// it, so the source is asked instead.
const INLINE_ARTIFACT_MAX_AGE: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeployError {
    #[error("fetching the artifact failed: {0}")]
    Fetch(Arc<SourceError>),
    #[error("the artifact is invalid: {0}")]
    Invalid(ArtifactError),
    #[error("the artifact's digest is {actual}, but {announced} was announced")]
    DigestMismatch {
        announced: Sha256Digest,
        actual: Sha256Digest,
    },
    #[error(
        "the traffic manager still serves revision {served} but revision {expected} was announced"
    )]
    Stale {
        served: Revision,
        expected: Revision,
    },
}

impl DeployError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DeployError::Fetch(e) => e.is_retryable(),
            // The same bytes will fail the same way; the next revision or
            // the next reconcile is the way out.
            DeployError::Invalid(_) => false,
            DeployError::DigestMismatch { .. } | DeployError::Stale { .. } => true,
        }
    }
}

/// What one attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Deployed(Revision),
    Removed,
    /// Nothing to do: the node already runs this or a newer revision.
    UpToDate,
    /// Held off this node by an operator's local undeploy.
    Held,
    /// A newer retry chain took over.
    Superseded,
}

pub struct SyncConfig {
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub retry: RetryPolicy,
    pub event_waiting_time: Duration,
}

pub struct Synchronizer {
    config: SyncConfig,
    source: Arc<dyn ArtifactSource>,
    state: Arc<NodeState>,
    cache: CacheWriter,
    metrics: Arc<Metrics>,
    locks: Mutex<HashMap<ApiId, Arc<tokio::sync::Mutex<()>>>>,
    /// The last runtime-metadata answer and its ETag; also keeps reconcile
    /// runs from overlapping.
    last_metadata: tokio::sync::Mutex<Option<(Option<String>, Arc<RuntimeMetadata>)>>,
    /// The change number of the newest desired state loaded, -1 before
    /// the first load: events at or below it ask the source.
    loaded_sequence: AtomicI64,
}

impl Synchronizer {
    pub fn new(
        config: SyncConfig,
        source: Arc<dyn ArtifactSource>,
        state: Arc<NodeState>,
        cache: CacheWriter,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Synchronizer {
            config,
            source,
            state,
            cache,
            metrics,
            locks: Mutex::new(HashMap::new()),
            last_metadata: tokio::sync::Mutex::new(None),
            loaded_sequence: AtomicI64::new(-1),
        })
    }

    pub fn labels(&self) -> &[GatewayLabel] {
        &self.config.labels
    }

    pub fn state(&self) -> &Arc<NodeState> {
        &self.state
    }

    fn lock_for(&self, id: ApiId) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        if locks.len() > 4096 {
            // Forget locks nobody holds, so the map does not grow forever.
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id).or_default().clone()
    }

    /// Handles one deployment event; returns once its first deploy attempt
    /// is done (later retries run on their own schedule).
    pub async fn handle_event(
        self: &Arc<Self>,
        event: &DeploymentEvent,
        traceparent: Option<String>,
    ) {
        let received = Instant::now();
        let mine = event
            .gateway_labels
            .iter()
            .any(|l| self.config.labels.contains(l));
        if !mine {
            tracing::warn!(api_id = %event.api_id, labels = ?event.gateway_labels, "event for labels this node does not serve; ignored");
            return;
        }
        let hint = match event.event_type {
            EventType::DeployApiInGateway => {
                let applied = self
                    .state
                    .record(&event.api_id)
                    .and_then(|r| r.applied_revision());
                if applied.is_some_and(|a| a >= event.revision) {
                    tracing::debug!(api_id = %event.api_id, revision = %event.revision, "event for an applied or older revision; ignored");
                    return;
                }
                Some(event.revision)
            }
            // A removal from one label may leave the API deployed on another
            // label of this node: the artifact source decides.
            EventType::RemoveApiFromGateway => None,
        };
        let loaded = self.loaded_sequence.load(Ordering::SeqCst);
        let inline = hint
            .filter(|_| loaded >= 0 && event.sequence > loaded)
            .and_then(|revision| inline_artifact(event, revision));
        if !self.config.event_waiting_time.is_zero() {
            tokio::time::sleep(self.config.event_waiting_time).await;
        }
        let outcome = self
            .sync_api_with(event.api_id, hint, inline, traceparent)
            .await;
        if let Ok(Outcome::Deployed(_)) = outcome {
            self.metrics
                .observe_deploy(received.elapsed(), event.timestamp);
        }
    }

    /// Brings one API to its desired state. Starts a retry chain that
    /// supersedes any running one for the API; returns the first attempt's
    /// result.
    pub async fn sync_api(
        self: &Arc<Self>,
        id: ApiId,
        hint: Option<Revision>,
        traceparent: Option<String>,
    ) -> Result<Outcome, DeployError> {
        self.sync_api_with(id, hint, None, traceparent).await
    }

    /// [`Synchronizer::sync_api`], with the artifact an event carried: the
    /// first attempt deploys it instead of fetching; retries fetch.
    async fn sync_api_with(
        self: &Arc<Self>,
        id: ApiId,
        hint: Option<Revision>,
        inline: Option<FetchedArtifact>,
        traceparent: Option<String>,
    ) -> Result<Outcome, DeployError> {
        let generation = self.state.next_generation(id);
        let inline = Arc::new(Mutex::new(inline));
        let (first_tx, first_rx) = oneshot::channel();
        let first_tx = Arc::new(Mutex::new(Some(first_tx)));
        let this = self.clone();
        let span = tracing::info_span!("deploy", api_id = %id, trace_id = %trace_id(traceparent.as_deref()));
        let chain = async move {
            let attempts = Arc::new(Mutex::new(0u32));
            let attempt = || {
                let this = this.clone();
                let traceparent = traceparent.clone();
                let first_tx = first_tx.clone();
                let inline = inline.lock().unwrap_or_else(|p| p.into_inner()).take();
                async move {
                    let result = this
                        .attempt(id, hint, inline, traceparent.as_deref(), generation)
                        .await;
                    let first = first_tx.lock().unwrap_or_else(|p| p.into_inner()).take();
                    if let Some(tx) = first {
                        // Show the coming retry before the caller hears of
                        // the failure (start-up readiness waits for retries).
                        if let Err(e) = &result
                            && e.is_retryable()
                            && this.config.retry.max_retries > 0
                            && this.state.is_current(&id, generation)
                        {
                            let delay = this.config.retry.first_delay;
                            this.state.record_failure(
                                id,
                                Failure {
                                    revision: hint,
                                    error: e.to_string(),
                                    attempts: 1,
                                    next_retry_at: Some(
                                        Utc::now()
                                            + chrono::Duration::from_std(delay)
                                                .unwrap_or(chrono::Duration::zero()),
                                    ),
                                },
                            );
                        }
                        let _ = tx.send(result.clone());
                    }
                    result
                }
            };
            let result = attempt
                .retry(this.config.retry.backoff())
                .sleep(tokio::time::sleep)
                .when(|e: &DeployError| e.is_retryable() && this.state.is_current(&id, generation))
                .notify(|e: &DeployError, delay: Duration| {
                    let mut n = attempts.lock().unwrap_or_else(|p| p.into_inner());
                    *n += 1;
                    this.metrics.retries.inc();
                    tracing::warn!(api_id = %id, error = %e, attempt = *n, retry_in_ms = delay.as_millis() as u64, "deploy failed; will retry");
                    this.state.record_failure(
                        id,
                        Failure {
                            revision: hint,
                            error: e.to_string(),
                            attempts: *n,
                            next_retry_at: Some(
                                Utc::now()
                                    + chrono::Duration::from_std(delay)
                                        .unwrap_or(chrono::Duration::zero()),
                            ),
                        },
                    );
                })
                .await;
            if let Err(e) = result
                && this.state.is_current(&id, generation)
            {
                let n = *attempts.lock().unwrap_or_else(|p| p.into_inner()) + 1;
                tracing::error!(api_id = %id, error = %e, attempts = n, "deploy failed; retries spent, marked failed until the next reconcile");
                this.state.record_failure(
                    id,
                    Failure {
                        revision: hint,
                        error: e.to_string(),
                        attempts: n,
                        next_retry_at: None,
                    },
                );
            }
        }
        .instrument(span);
        tokio::spawn(chain);
        first_rx.await.unwrap_or(Ok(Outcome::Superseded))
    }

    /// One fetch-and-deploy of `id`, serialised per API.
    async fn attempt(
        &self,
        id: ApiId,
        hint: Option<Revision>,
        inline: Option<FetchedArtifact>,
        traceparent: Option<&str>,
        generation: u64,
    ) -> Result<Outcome, DeployError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        if !self.state.is_current(&id, generation) {
            return Ok(Outcome::Superseded);
        }
        let record = self.state.record(&id).unwrap_or_default();
        let applied = record.applied.as_ref().map(|a| (a.revision, a.sha256));
        if let (Some(h), Some((a, _))) = (hint, applied)
            && a >= h
        {
            return Ok(Outcome::UpToDate);
        }
        // A replica behind the primary may serve an older revision than the
        // event announced: ask again shortly rather than deploy it.
        let stale_retries = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(20))
            .with_max_delay(Duration::from_millis(500))
            .with_max_times(6);
        let fetch = || async {
            let fetched = self
                .source
                .artifact(id, &self.config.labels, traceparent)
                .await
                .map_err(|e| DeployError::Fetch(Arc::new(e)))?;
            // Whatever the node runs: deploying the older revision would be
            // wrong, and acking the event would lose the announced one
            // until the next reconcile.
            if let (Some(h), Some(f)) = (hint, &fetched)
                && f.revision < h
            {
                return Err(DeployError::Stale {
                    served: f.revision,
                    expected: h,
                });
            }
            Ok(fetched)
        };
        let fetched = match inline {
            Some(artifact) => Some(artifact),
            None => {
                fetch
                    .retry(stale_retries)
                    .sleep(tokio::time::sleep)
                    .when(|e| matches!(e, DeployError::Stale { .. }))
                    .await?
            }
        };
        let Some(fetched) = fetched else {
            if record.applied.is_some() {
                let removed = self.state.remove(id, false);
                self.cache.send(CacheCommand::Removed(id));
                tracing::info!(api_id = %id, revision = ?removed, "undeployed: no longer deployed on this node's labels");
                return Ok(Outcome::Removed);
            }
            self.state.clear_failure(id);
            return Ok(Outcome::UpToDate);
        };
        if let Some((a, sha)) = applied
            && (fetched.revision < a || (fetched.revision == a && fetched.sha256 == sha))
        {
            return Ok(Outcome::UpToDate);
        }
        if record.held_through.is_some_and(|h| fetched.revision <= h) {
            return Ok(Outcome::Held);
        }
        let actual = Sha256Digest::of(&fetched.xml);
        if actual != fetched.sha256 {
            return Err(DeployError::DigestMismatch {
                announced: fetched.sha256,
                actual,
            });
        }
        let applied = compile(id, fetched.revision, fetched.sha256, fetched.xml)
            .map_err(DeployError::Invalid)?;
        if !self.install(id, applied) {
            return Ok(Outcome::UpToDate);
        }
        tracing::info!(api_id = %id, revision = %fetched.revision, sha256 = %fetched.sha256, "deployed");
        Ok(Outcome::Deployed(fetched.revision))
    }

    fn install(&self, id: ApiId, applied: AppliedRevision) -> bool {
        let was_held = self
            .state
            .record(&id)
            .is_some_and(|r| r.held_through.is_some());
        let cached = applied_in_cache(id, &applied);
        let installed = self.state.install(id, applied);
        if installed {
            self.cache.send(cached);
            if was_held {
                self.write_held();
            }
        }
        installed
    }

    /// Persists the local undeploys, so they survive a restart.
    fn write_held(&self) {
        let entries = self
            .state
            .records_snapshot()
            .into_iter()
            .filter_map(|(api_id, r)| r.held_through.map(|through| HeldEntry { api_id, through }))
            .collect();
        self.cache.send(CacheCommand::Held(entries));
    }

    /// Restores the local undeploys read from the disk cache.
    pub fn restore_held(&self, held: Vec<HeldEntry>) {
        for entry in held {
            self.state.hold(entry.api_id, entry.through);
        }
    }

    /// Deploys artifacts read from the disk cache (digests already checked);
    /// call once, at start-up, before anything else is deployed.
    pub fn install_cached(&self, artifacts: Vec<(ManifestEntry, Bytes)>) -> usize {
        let mut batch = Vec::with_capacity(artifacts.len());
        for (entry, xml) in artifacts {
            match compile(entry.api_id, entry.revision, entry.sha256, xml) {
                Ok(applied) => batch.push((entry.api_id, applied)),
                Err(e) => {
                    tracing::warn!(api_id = %entry.api_id, revision = %entry.revision, error = %e, "cached artifact no longer validates; skipped")
                }
            }
        }
        let installed = self.state.install_many(batch);
        // The files are on disk already: the writer only learns what they are.
        self.cache.send(CacheCommand::Seed(
            installed
                .iter()
                .map(|(api_id, a)| ManifestEntry {
                    api_id: *api_id,
                    revision: a.revision,
                    sha256: a.sha256,
                })
                .collect(),
        ));
        self.metrics.cache_hits.inc_by(installed.len() as u64);
        installed.len()
    }

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
        let mut to_deploy = Vec::new();
        let desired: HashSet<ApiId> = metadata.apis.iter().map(|a| a.api_id).collect();
        for api in &metadata.apis {
            let record = self.state.record(&api.api_id).unwrap_or_default();
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
                // Never back to an older revision (the source may lag).
                Some(a) if a.revision > api.revision => {}
                _ => to_deploy.push(api.clone()),
            }
        }
        // What runs here but is no longer desired, and failures of APIs
        // that are no longer desired (a deploy that failed, then was
        // undeployed): the artifact source has the last word on each.
        let to_remove: Vec<ApiId> = self
            .state
            .records_snapshot()
            .into_iter()
            .filter(|(id, r)| {
                !desired.contains(id)
                    && (r.applied.is_some() || r.status() == ApiDeploymentStatus::Failed)
            })
            .map(|(id, _)| id)
            .collect();
        let drift = to_deploy.len() + to_remove.len();
        if drift > 0 {
            tracing::info!(
                deploy = to_deploy.len(),
                remove = to_remove.len(),
                sequence = metadata.sequence,
                "reconcile found drift"
            );
        }
        if to_deploy.len() > BULK_THRESHOLD {
            let ids = to_deploy.iter().map(|a| a.api_id).collect();
            self.bulk_deploy(Some(ids)).await?;
        } else {
            futures_util::stream::iter(to_deploy)
                .for_each_concurrent(RECONCILE_CONCURRENCY, |api| async move {
                    let _ = self.sync_api(api.api_id, Some(api.revision), None).await;
                })
                .await;
        }
        futures_util::stream::iter(to_remove)
            .for_each_concurrent(RECONCILE_CONCURRENCY, |id| async move {
                let _ = self.sync_api(id, None, None).await;
            })
            .await;
        self.metrics.observe_reconcile(started.elapsed(), drift);
        Ok(drift)
    }

    /// Fetches artifacts with one streamed request and installs them with
    /// one table swap; artifacts are validated on a blocking thread while
    /// the rest stream in.
    pub async fn bulk_deploy(
        self: &Arc<Self>,
        apis: Option<Vec<ApiId>>,
    ) -> Result<usize, SourceError> {
        let (tx, mut rx) = mpsc::channel::<RuntimeArtifact>(256);
        let source = self.source.clone();
        let labels = self.config.labels.clone();
        let fetch = tokio::spawn(async move { source.bulk(&labels, apis, tx).await });
        let mut compiled = Vec::new();
        let mut pending = Vec::new();
        let flush = |pending: Vec<RuntimeArtifact>| {
            tokio::task::spawn_blocking(move || {
                pending
                    .into_iter()
                    .map(|a| {
                        let xml = Bytes::from(a.artifact.into_bytes());
                        let actual = Sha256Digest::of(&xml);
                        let result = if actual != a.api.sha256 {
                            Err(DeployError::DigestMismatch {
                                announced: a.api.sha256,
                                actual,
                            })
                        } else {
                            compile(a.api.api_id, a.api.revision, a.api.sha256, xml)
                                .map_err(DeployError::Invalid)
                        };
                        (a.api.api_id, a.api.revision, result)
                    })
                    .collect::<Vec<_>>()
            })
        };
        let mut batches = Vec::new();
        while let Some(artifact) = rx.recv().await {
            pending.push(artifact);
            if pending.len() == 512 {
                batches.push(flush(std::mem::take(&mut pending)));
            }
        }
        if !pending.is_empty() {
            batches.push(flush(pending));
        }
        match fetch.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(e),
            Err(e) => {
                return Err(SourceError::Invalid {
                    url: "bulk".into(),
                    message: format!("bulk fetch task failed: {e}"),
                });
            }
        }
        for batch in batches {
            let Ok(results) = batch.await else { continue };
            for (id, revision, result) in results {
                match result {
                    Ok(applied) => compiled.push((id, applied)),
                    Err(e) => {
                        tracing::error!(api_id = %id, revision = %revision, error = %e, "cannot deploy artifact");
                        self.state.record_failure(
                            id,
                            Failure {
                                revision: Some(revision),
                                error: e.to_string(),
                                attempts: 1,
                                next_retry_at: None,
                            },
                        );
                    }
                }
            }
        }
        let installed = self.state.install_many(compiled);
        for (id, applied) in &installed {
            self.cache.send(applied_in_cache(*id, applied));
        }
        let n = installed.len();
        // A newer revision lifts a local undeploy.
        self.write_held();
        tracing::info!(deployed = n, "bulk deploy done");
        Ok(n)
    }

    /// Operator's local undeploy: off this node until a newer revision
    /// arrives or redeploy is called.
    pub async fn undeploy_locally(&self, id: ApiId) -> Option<Revision> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        // Stop any retry chain for it.
        self.state.next_generation(id);
        self.state.clear_failure(id);
        let removed = self.state.remove(id, true);
        self.cache.send(CacheCommand::Removed(id));
        self.write_held();
        removed
    }

    /// Operator's redeploy: fetch again and deploy, lifting a local hold.
    pub async fn redeploy(self: &Arc<Self>, id: ApiId) -> Result<Outcome, DeployError> {
        {
            let lock = self.lock_for(id);
            let _guard = lock.lock().await;
            if self.state.release_hold(id) {
                self.write_held();
            }
            if let Some(applied) = self.state.record(&id).and_then(|r| r.applied) {
                // Force a fresh install even if the revision is the same.
                let fetched = self
                    .source
                    .artifact(id, &self.config.labels, None)
                    .await
                    .map_err(|e| DeployError::Fetch(Arc::new(e)))?;
                if let Some(f) = fetched
                    && f.revision == applied.revision
                    && f.sha256 == applied.sha256
                {
                    return Ok(Outcome::UpToDate);
                }
            }
        }
        self.sync_api(id, None, None).await
    }
}

/// The cache's record of an installed revision.
/// The artifact a fresh deploy event carries for `revision`, if any.
fn inline_artifact(event: &DeploymentEvent, revision: Revision) -> Option<FetchedArtifact> {
    let xml = event.artifact.as_ref()?;
    let age = Utc::now().signed_duration_since(event.timestamp);
    let fresh = match age.to_std() {
        Ok(age) => age <= INLINE_ARTIFACT_MAX_AGE,
        // A timestamp slightly ahead of this clock is fresh too.
        Err(_) => true,
    };
    if !fresh {
        tracing::debug!(api_id = %event.api_id, %revision, age_ms = age.num_milliseconds(), "event too old to deploy its artifact; fetching");
        return None;
    }
    Some(FetchedArtifact {
        revision,
        sha256: event.sha256,
        xml: Bytes::copy_from_slice(xml.as_bytes()),
    })
}

fn applied_in_cache(api_id: ApiId, applied: &AppliedRevision) -> CacheCommand {
    CacheCommand::Applied {
        entry: ManifestEntry {
            api_id,
            revision: applied.revision,
            sha256: applied.sha256,
        },
        xml: applied.xml.clone(),
    }
}

/// Validates and compiles an artifact for the routing table.
fn compile(
    id: ApiId,
    revision: Revision,
    sha256: Sha256Digest,
    xml: Bytes,
) -> Result<AppliedRevision, ArtifactError> {
    let artifact = parse_artifact(&xml)?;
    for warning in &artifact.warnings {
        tracing::warn!(api_id = %id, revision = %revision, "{warning}");
    }
    Ok(AppliedRevision {
        revision,
        sha256,
        deployed_at: Utc::now(),
        api: Arc::new(CompiledApi::new(id, revision, sha256, artifact)),
        xml,
    })
}

fn trace_id(traceparent: Option<&str>) -> &str {
    traceparent
        .and_then(|tp| tp.split('-').nth(1))
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use artisync_shared::runtime::GatewayStatusReport;
    use async_trait::async_trait;

    use super::*;
    use crate::cache::DiskCache;
    use crate::source::FetchedArtifact;

    /// Answers artifact requests from a script; the rest is unused here.
    struct ScriptedSource {
        answers: Mutex<VecDeque<Option<FetchedArtifact>>>,
        fetches: Mutex<u32>,
    }

    #[async_trait]
    impl ArtifactSource for ScriptedSource {
        async fn metadata(
            &self,
            _: &[GatewayLabel],
            _: Option<&str>,
        ) -> Result<MetadataAnswer, SourceError> {
            // Nothing desired yet, as of change 0.
            Ok(MetadataAnswer::Changed {
                etag: None,
                metadata: RuntimeMetadata {
                    sequence: 0,
                    apis: Vec::new(),
                },
            })
        }

        async fn artifact(
            &self,
            _: ApiId,
            _: &[GatewayLabel],
            _: Option<&str>,
        ) -> Result<Option<FetchedArtifact>, SourceError> {
            *self.fetches.lock().unwrap() += 1;
            let mut answers = self.answers.lock().unwrap();
            // The last answer repeats.
            let answer = if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().cloned()
            };
            Ok(answer.flatten())
        }

        async fn bulk(
            &self,
            _: &[GatewayLabel],
            _: Option<Vec<ApiId>>,
            _: mpsc::Sender<RuntimeArtifact>,
        ) -> Result<usize, SourceError> {
            Ok(0)
        }

        async fn report(&self, _: &GatewayStatusReport) -> Result<(), SourceError> {
            Ok(())
        }
    }

    /// The cache writer may still be writing its last batch (on a blocking
    /// thread) when a test ends, so removal is retried until it sticks.
    async fn remove_cache_dir(dir: &std::path::Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = std::fs::remove_dir_all(dir) {
            if e.kind() == std::io::ErrorKind::NotFound {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cannot remove {}: {e}",
                dir.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn artifact(revision: i64) -> FetchedArtifact {
        let xml = Bytes::from(format!(
            r#"<api xmlns="http://ws.apache.org/ns/synapse" name="A" context="/a"><resource methods="GET"><inSequence><property name="r" value="{revision}"/><respond/></inSequence></resource></api>"#
        ));
        FetchedArtifact {
            revision: Revision::new(revision).unwrap(),
            sha256: Sha256Digest::of(&xml),
            xml,
        }
    }

    fn synchronizer(
        answers: Vec<Option<FetchedArtifact>>,
    ) -> (Arc<Synchronizer>, Arc<ScriptedSource>, std::path::PathBuf) {
        let dir = std::env::temp_dir().join(format!("artisync-sync-{}", uuid::Uuid::new_v4()));
        let cache = DiskCache::new(dir.clone());
        cache.prepare().unwrap();
        let (writer, _) = CacheWriter::spawn(cache);
        let source = Arc::new(ScriptedSource {
            answers: Mutex::new(answers.into()),
            fetches: Mutex::new(0),
        });
        let sync = Synchronizer::new(
            SyncConfig {
                node_id: NodeId::parse("gw-test").unwrap(),
                labels: vec![GatewayLabel::parse("Label1").unwrap()],
                retry: crate::config::RetryPolicy {
                    first_delay: Duration::from_millis(10),
                    max_delay: Duration::from_secs(1),
                    max_retries: 2,
                },
                event_waiting_time: Duration::ZERO,
            },
            source.clone(),
            Arc::new(NodeState::new()),
            writer,
            Arc::new(Metrics::new()),
        );
        (sync, source, dir)
    }

    #[tokio::test]
    async fn a_lagging_source_does_not_swallow_an_announced_revision() {
        // The node runs revision 1; the event announces 2; the source
        // still serves 1 twice (a replica behind), then 2.
        let (sync, source, dir) = synchronizer(vec![
            Some(artifact(1)),
            Some(artifact(1)),
            Some(artifact(1)),
            Some(artifact(2)),
        ]);
        let id = ApiId::new_random();
        assert_eq!(
            sync.sync_api(id, Some(Revision::FIRST), None)
                .await
                .unwrap(),
            Outcome::Deployed(Revision::FIRST)
        );
        let outcome = sync
            .sync_api(id, Some(Revision::new(2).unwrap()), None)
            .await
            .unwrap();
        assert_eq!(outcome, Outcome::Deployed(Revision::new(2).unwrap()));
        assert_eq!(*source.fetches.lock().unwrap(), 4);
        remove_cache_dir(&dir).await;
    }

    #[tokio::test]
    async fn an_install_never_replaces_a_newer_revision() {
        let (sync, _, dir) = synchronizer(vec![None]);
        let id = ApiId::new_random();
        let compiled = |r: i64| {
            let a = artifact(r);
            compile(id, a.revision, a.sha256, a.xml).unwrap()
        };
        assert!(sync.state.install(id, compiled(2)));
        assert!(!sync.state.install(id, compiled(1)), "older is refused");
        assert_eq!(
            sync.state.record(&id).and_then(|r| r.applied_revision()),
            Revision::new(2).ok()
        );
        assert!(sync.state.install(id, compiled(2)), "same is allowed");
        remove_cache_dir(&dir).await;
    }

    fn deploy_event(id: ApiId, a: &FetchedArtifact, age: chrono::Duration) -> DeploymentEvent {
        DeploymentEvent {
            event_id: uuid::Uuid::new_v4(),
            event_type: EventType::DeployApiInGateway,
            timestamp: Utc::now() - age,
            api_id: id,
            name: "A".into(),
            version: String::new(),
            context: "/a".into(),
            revision: a.revision,
            sha256: a.sha256,
            gateway_labels: vec![GatewayLabel::parse("Label1").unwrap()],
            sequence: 1,
            artifact: Some(String::from_utf8(a.xml.to_vec()).unwrap()),
        }
    }

    fn applied(sync: &Synchronizer, id: ApiId) -> Option<Revision> {
        sync.state.record(&id).and_then(|r| r.applied_revision())
    }

    #[tokio::test]
    async fn a_fresh_event_with_its_artifact_deploys_without_a_fetch() {
        let (sync, source, dir) = synchronizer(vec![Some(artifact(1))]);
        sync.reconcile().await.unwrap();
        let id = ApiId::new_random();
        let event = deploy_event(id, &artifact(2), chrono::Duration::zero());
        sync.handle_event(&event, None).await;
        assert_eq!(applied(&sync, id), Revision::new(2).ok());
        assert_eq!(*source.fetches.lock().unwrap(), 0);
        remove_cache_dir(&dir).await;
    }

    #[tokio::test]
    async fn an_inline_artifact_that_fails_its_digest_is_fetched_instead() {
        let (sync, source, dir) = synchronizer(vec![Some(artifact(2))]);
        sync.reconcile().await.unwrap();
        let id = ApiId::new_random();
        let mut event = deploy_event(id, &artifact(2), chrono::Duration::zero());
        event.artifact = Some(String::from_utf8(artifact(3).xml.to_vec()).unwrap());
        sync.handle_event(&event, None).await;
        // The first attempt fails on the digest; the retry fetches.
        eventually_applied(&sync, id, Revision::new(2).unwrap()).await;
        assert_eq!(applied(&sync, id), Revision::new(2).ok());
        assert_eq!(*source.fetches.lock().unwrap(), 1);
        remove_cache_dir(&dir).await;
    }

    #[tokio::test]
    async fn events_before_the_first_load_or_not_newer_than_it_ask_the_source() {
        // Replayed from a backlog: the API has been undeployed since.
        let (sync, source, dir) = synchronizer(vec![None]);
        let id = ApiId::new_random();
        let mut event = deploy_event(id, &artifact(2), chrono::Duration::zero());
        sync.handle_event(&event, None).await;
        assert_eq!(applied(&sync, id), None, "no desired state loaded yet");
        assert_eq!(*source.fetches.lock().unwrap(), 1);

        sync.reconcile().await.unwrap();
        event.sequence = 0;
        sync.handle_event(&event, None).await;
        assert_eq!(applied(&sync, id), None, "the load already saw change 0");
        assert_eq!(*source.fetches.lock().unwrap(), 2);
        remove_cache_dir(&dir).await;
    }

    #[tokio::test]
    async fn an_old_event_asks_the_source_instead_of_using_its_artifact() {
        // Replayed from a backlog: the API has been undeployed since.
        let (sync, source, dir) = synchronizer(vec![None]);
        sync.reconcile().await.unwrap();
        let id = ApiId::new_random();
        let event = deploy_event(id, &artifact(2), chrono::Duration::seconds(60));
        sync.handle_event(&event, None).await;
        assert_eq!(applied(&sync, id), None);
        assert_eq!(*source.fetches.lock().unwrap(), 1);
        remove_cache_dir(&dir).await;
    }

    async fn eventually_applied(sync: &Synchronizer, id: ApiId, revision: Revision) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while applied(sync, id) != Some(revision) {
            assert!(
                Instant::now() < deadline,
                "revision {revision} never applied"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}
