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
