//! From bytes to a deployable revision, the same way for every path: an
//! event's inline artifact, a fetch, a bulk line, the disk cache.

use std::sync::Arc;

use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_synapse::parse_artifact;
use bytes::Bytes;
use chrono::Utc;

use super::{DeployError, Synchronizer};
use crate::dataplane::CompiledApi;
use crate::state::AppliedRevision;

impl Synchronizer {
    /// Checks the artifact against its announced digest, validates it with
    /// the publisher's rules and compiles it for the routing table.
    pub(crate) fn verify_and_compile(
        &self,
        id: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
    ) -> Result<AppliedRevision, DeployError> {
        let actual = Sha256Digest::of(&xml);
        if actual != sha256 {
            return Err(DeployError::DigestMismatch {
                announced: sha256,
                actual,
            });
        }
        let artifact = parse_artifact(&xml).map_err(DeployError::Invalid)?;
        for warning in &artifact.warnings {
            tracing::warn!(api_id = %id, revision = %revision, "{warning}");
        }
        let traffic = self.metrics.traffic.for_api(id);
        Ok(AppliedRevision {
            revision,
            sha256,
            deployed_at: Utc::now(),
            api: Arc::new(CompiledApi::new(id, revision, sha256, artifact, traffic)),
            xml,
        })
    }
}
