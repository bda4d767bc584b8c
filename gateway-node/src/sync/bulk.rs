//! Bulk deploys: many artifacts in one streamed request, validated on
//! blocking threads while the rest stream in, installed with one swap.

use std::sync::Arc;

use artisync_domain::ApiId;
use artisync_domain::runtime::RuntimeArtifact;
use artisync_ports::source::SourceError;
use bytes::Bytes;
use tokio::sync::mpsc;

use super::{Synchronizer, applied_in_cache};
use crate::state::Failure;

impl Synchronizer {
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
            let this = self.clone();
            tokio::task::spawn_blocking(move || {
                pending
                    .into_iter()
                    .map(|a| {
                        let xml = Bytes::from(a.artifact.into_bytes());
                        let result = this.verify_and_compile(
                            a.api.api_id,
                            a.api.revision,
                            a.api.sha256,
                            xml,
                        );
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
}
