//! The retry chain of one API: attempts until it is deployed, the error
//! cannot be retried, the retries are spent, or a newer chain takes over.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use artisync_domain::{ApiId, Revision};
use artisync_ports::source::FetchedArtifact;
use backon::Retryable;
use chrono::Utc;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::{DeployError, Outcome, Synchronizer, trace_id};
use crate::state::Failure;

impl Synchronizer {
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
    pub(super) async fn sync_api_with(
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
}
