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

//!
//! The jobs, one module each: [`triage`] of events, the retry [`chain`] of
//! one API, one deploy [`attempt`], [`reconcile`] planning, [`bulk`]
//! deploys, [`operator`] actions, [`pushed`] deploys, and [`compile`] (verify and compile an
//! artifact, for every path that deploys one).

mod attempt;
mod bulk;
mod chain;
mod compile;
mod operator;
mod pushed;
mod reconcile;
mod triage;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artisync_domain::runtime::RuntimeMetadata;
use artisync_domain::signature::PublisherPublicKey;
use artisync_domain::{ApiId, GatewayLabel, NodeId, Revision, Sha256Digest};
use artisync_ports::ArtifactSource;
use artisync_ports::source::SourceError;
use artisync_synapse::ArtifactError;
use bytes::Bytes;

use crate::cache::{CacheCommand, CacheWriter, HeldEntry, ManifestEntry};
use crate::config::RetryPolicy;
use crate::metrics::Metrics;
use crate::state::{AppliedRevision, NodeState};

pub use pushed::PushError;
pub use reconcile::ReconcilePlan;

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
    /// Validation could not run (it panicked: a bug).
    #[error("validating the artifact failed: {0}")]
    Validation(#[from] artisync_http::PoolError),
}

impl DeployError {
    pub fn is_retryable(&self) -> bool {
        match self {
            DeployError::Fetch(e) => e.is_retryable(),
            // The same bytes will fail the same way; the next revision or
            // the next reconcile is the way out.
            DeployError::Invalid(_) => false,
            DeployError::DigestMismatch { .. } | DeployError::Stale { .. } => true,
            DeployError::Validation(_) => false,
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
    /// With it, events without the publisher's valid signature are refused.
    pub publisher_key: Option<PublisherPublicKey>,
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
    /// Where fetched artifacts are validated, off the async threads that
    /// serve the data plane and the admin API.
    parse_pool: artisync_http::ParsePool,
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
            parse_pool: artisync_http::ParsePool::for_cores(),
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

    /// Deploys artifacts read from the disk cache; call once, at start-up,
    /// before anything else is deployed.
    pub fn install_cached(&self, artifacts: Vec<(ManifestEntry, Bytes)>) -> usize {
        let mut batch = Vec::with_capacity(artifacts.len());
        for (entry, xml) in artifacts {
            match self.verify_and_compile(entry.api_id, entry.revision, entry.sha256, xml) {
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

pub(crate) fn trace_id(traceparent: Option<&str>) -> &str {
    traceparent
        .and_then(|tp| tp.split('-').nth(1))
        .unwrap_or("")
}
