//! Deploys pushed to the node by the publisher (`publish_directly_to_gateway`):
//! the same digest check, validation and atomic swap as a pulled artifact,
//! and the same rule that a node never goes back to an older revision.

use artisync_domain::{ApiId, Revision, Sha256Digest};
use bytes::Bytes;

use super::{DeployError, Outcome, Synchronizer};
use crate::cache::CacheCommand;
use crate::state::Failure;

/// Why a pushed deploy was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PushError {
    #[error("API {api_id}: {source}")]
    Refused {
        api_id: ApiId,
        revision: Revision,
        source: DeployError,
    },
    #[error(
        "API {api_id}: revision {pushed} is older than revision {applied}, which this node runs; nodes never go back"
    )]
    Older {
        api_id: ApiId,
        pushed: Revision,
        applied: Revision,
    },
    #[error(
        "API {api_id}: revision {revision} is already deployed here with sha256 {applied}, and a revision's artifact never changes"
    )]
    RevisionReused {
        api_id: ApiId,
        revision: Revision,
        applied: Sha256Digest,
    },
}

impl Synchronizer {
    /// Deploys an artifact pushed by the publisher. A refused artifact
    /// leaves the running revision in place and shows as a failure in the
    /// admin API and the status reports.
    pub async fn deploy_pushed(
        &self,
        id: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
    ) -> Result<Outcome, PushError> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        // Whatever retry chain ran for the API, this push supersedes it.
        self.state.next_generation(id);
        let record = self.state.record(&id).unwrap_or_default();
        if let Some(applied) = &record.applied {
            if applied.revision > revision {
                return Err(PushError::Older {
                    api_id: id,
                    pushed: revision,
                    applied: applied.revision,
                });
            }
            if applied.revision == revision {
                if applied.sha256 == sha256 {
                    self.state.clear_failure(id);
                    return Ok(Outcome::UpToDate);
                }
                return Err(PushError::RevisionReused {
                    api_id: id,
                    revision,
                    applied: applied.sha256,
                });
            }
        }
        if record.held_through.is_some_and(|h| revision <= h) {
            return Ok(Outcome::Held);
        }
        let applied = match self
            .verify_and_compile_pooled(id, revision, sha256, xml)
            .await
        {
            Ok(applied) => applied,
            Err(source) => {
                tracing::warn!(api_id = %id, revision = %revision, error = %source, "pushed artifact refused; the running revision keeps serving");
                self.state.record_failure(
                    id,
                    Failure {
                        revision: Some(revision),
                        error: source.to_string(),
                        attempts: 1,
                        next_retry_at: None,
                    },
                );
                return Err(PushError::Refused {
                    api_id: id,
                    revision,
                    source,
                });
            }
        };
        self.state.clear_failure(id);
        if !self.install(id, applied) {
            return Ok(Outcome::UpToDate);
        }
        tracing::info!(api_id = %id, revision = %revision, sha256 = %sha256, "deployed (pushed)");
        Ok(Outcome::Deployed(revision))
    }

    /// Removes an API the publisher undeployed; answers the revision that
    /// was running, `None` when the node ran none.
    pub async fn undeploy_pushed(&self, id: ApiId) -> Option<Revision> {
        let lock = self.lock_for(id);
        let _guard = lock.lock().await;
        self.state.next_generation(id);
        self.state.clear_failure(id);
        let removed = self.state.remove(id, false);
        if removed.is_some() {
            self.cache.send(CacheCommand::Removed(id));
            tracing::info!(api_id = %id, revision = ?removed, "undeployed (pushed)");
        }
        removed
    }
}
