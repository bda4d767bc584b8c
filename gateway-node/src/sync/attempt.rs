//! One fetch-and-deploy of an API, serialised per API.

use std::sync::Arc;
use std::time::Duration;

use artisync_domain::{ApiId, Revision};
use artisync_ports::source::FetchedArtifact;
use backon::{ExponentialBuilder, Retryable};

use super::{DeployError, Outcome, Synchronizer};
use crate::cache::CacheCommand;

impl Synchronizer {
    /// One fetch-and-deploy of `id`, serialised per API.
    pub(super) async fn attempt(
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
        let applied = self
            .verify_and_compile_pooled(id, fetched.revision, fetched.sha256, fetched.xml)
            .await?;
        if !self.install(id, applied) {
            return Ok(Outcome::UpToDate);
        }
        tracing::info!(api_id = %id, revision = %fetched.revision, sha256 = %fetched.sha256, "deployed");
        Ok(Outcome::Deployed(fetched.revision))
    }
}
