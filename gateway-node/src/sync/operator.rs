//! What an operator does to one node through its admin API: a local
//! undeploy, and a redeploy that fetches again.

use std::sync::Arc;

use artisync_domain::{ApiId, Revision};

use super::{DeployError, Outcome, Synchronizer};
use crate::cache::CacheCommand;

impl Synchronizer {
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

    /// Operator's redeploy: fetch again and deploy what the source says,
    /// lifting a local hold. The node moves to the desired revision
    /// whichever way it differs, an older one included (the running one was
    /// then never deployed by the publisher).
    pub async fn redeploy(self: &Arc<Self>, id: ApiId) -> Result<Outcome, DeployError> {
        {
            let lock = self.lock_for(id);
            let _guard = lock.lock().await;
            if self.state.release_hold(id) {
                self.write_held();
            }
        }
        self.correct(id).await
    }

    /// Moves `id` to exactly what the source says it should run, whichever
    /// way the running revision differs from it.
    pub async fn correct(&self, id: ApiId) -> Result<Outcome, DeployError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        // Any retry chain for the API is superseded.
        self.state.next_generation(id);
        let fetched = self
            .source
            .artifact(id, &self.config.labels, None)
            .await
            .map_err(|e| DeployError::Fetch(Arc::new(e)))?;
        let applied = self.state.record(&id).and_then(|r| r.applied);
        let Some(fetched) = fetched else {
            if applied.is_some() {
                let removed = self.state.remove(id, false);
                self.cache.send(CacheCommand::Removed(id));
                tracing::warn!(api_id = %id, revision = ?removed, "undeployed: not deployed on this node's labels");
                return Ok(Outcome::Removed);
            }
            self.state.clear_failure(id);
            return Ok(Outcome::UpToDate);
        };
        if let Some(a) = &applied
            && a.revision == fetched.revision
            && a.sha256 == fetched.sha256
        {
            self.state.clear_failure(id);
            return Ok(Outcome::UpToDate);
        }
        let revision = fetched.revision;
        let replacement = self
            .verify_and_compile_pooled(id, fetched.revision, fetched.sha256, fetched.xml)
            .await?;
        let cached = super::applied_in_cache(id, &replacement);
        if !self.state.replace(id, replacement) {
            // Another API serves its context; the record says so.
            return Ok(Outcome::UpToDate);
        }
        self.cache.send(cached);
        match applied {
            Some(a) if a.revision > revision => tracing::warn!(
                api_id = %id,
                running = %a.revision,
                %revision,
                "the running revision is not the desired state; replaced by the desired one"
            ),
            _ => tracing::info!(api_id = %id, %revision, "deployed"),
        }
        Ok(Outcome::Deployed(revision))
    }
}
