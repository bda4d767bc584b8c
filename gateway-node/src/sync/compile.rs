//! From bytes to a deployable revision, the same way for every path: an
//! event's inline artifact, a fetch, a bulk line, the disk cache.

use std::sync::Arc;

use artisync_domain::{ApiId, Revision, Sha256Digest};
use artisync_synapse::{Artifact, parse_artifact};
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
        let artifact = verify(sha256, &xml)?;
        Ok(self.compile(id, revision, sha256, xml, artifact))
    }

    /// [`Self::verify_and_compile`] with the digest and validation on the
    /// parse pool: called from async code, it keeps a large artifact from
    /// holding up the threads that serve requests.
    pub(crate) async fn verify_and_compile_pooled(
        &self,
        id: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
    ) -> Result<AppliedRevision, DeployError> {
        let bytes = xml.clone();
        let artifact = self
            .parse_pool
            .run_waiting(move || verify(sha256, &bytes))
            .await??;
        Ok(self.compile(id, revision, sha256, xml, artifact))
    }

    fn compile(
        &self,
        id: ApiId,
        revision: Revision,
        sha256: Sha256Digest,
        xml: Bytes,
        artifact: Artifact,
    ) -> AppliedRevision {
        for warning in &artifact.warnings {
            tracing::warn!(api_id = %id, revision = %revision, "{warning}");
        }
        let traffic = self.metrics.traffic.for_api(id);
        AppliedRevision {
            revision,
            sha256,
            deployed_at: Utc::now(),
            api: Arc::new(CompiledApi::new(id, revision, sha256, artifact, traffic)),
            xml,
        }
    }
}

/// The digest check and validation (within `artisync_synapse::LIMITS`,
/// the publisher's caps).
fn verify(sha256: Sha256Digest, xml: &[u8]) -> Result<Artifact, DeployError> {
    let actual = Sha256Digest::of(xml);
    if actual != sha256 {
        return Err(DeployError::DigestMismatch {
            announced: sha256,
            actual,
        });
    }
    parse_artifact(xml).map_err(DeployError::Invalid)
}
