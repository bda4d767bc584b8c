//! Feeds `artisync_propagation_seconds`: the nodes report what they
//! applied to the traffic manager, which records it in the store; this
//! task reads what was applied since its last look and times each from
//! its change's commit.

use std::sync::Arc;
use std::time::Duration;

use artisync_ports::ArtifactStore;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use crate::metrics::PublisherMetrics;

/// How often the store is read for new deploys.
pub const INTERVAL: Duration = Duration::from_millis(500);
/// The most samples read in one look; the rest come on the next.
const BATCH: u32 = 2_000;

pub async fn run(
    store: Arc<dyn ArtifactStore>,
    metrics: Arc<PublisherMetrics>,
    shutdown: CancellationToken,
) {
    // Only what is applied from now on: a restarted publisher does not
    // count old deploys again.
    let mut after = Utc::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(INTERVAL) => {}
        }
        loop {
            match store.propagation_samples(after, BATCH).await {
                Ok(samples) => {
                    let full = samples.len() == BATCH as usize;
                    for sample in &samples {
                        metrics.propagated(&sample.label, sample.seconds);
                        after = after.max(sample.applied_at);
                    }
                    if !full {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot read propagation samples; trying again");
                    break;
                }
            }
        }
    }
}
