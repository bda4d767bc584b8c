//! Direct publishing (`publish_directly_to_gateway`): every gateway of a
//! label is brought to the label's desired state through its admin API.
//!
//! The push is level-triggered. A change commits its desired state with its
//! outbox rows in one transaction; each commit wakes the pushers (through
//! an outbox session's change notifications), and each pusher compares
//! what its gateway runs with what its labels should run and sends the
//! difference. Nothing committed is lost: a failed pass is retried with
//! backoff until the gateway answers, a gateway that was down gets the
//! state as it is when it is back, and a periodic pass repairs a gateway
//! that lost what it ran. An artifact a gateway refuses is offered again
//! only by that periodic pass (it shows as failed on the gateway meanwhile).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use artisync_domain::ApiId;
use artisync_ports::push::{PushError, PushTarget, Pushed, RunningApi};
use artisync_ports::{DesiredState, Outbox, StoreError};
use backon::BackoffBuilder;
use bytes::Bytes;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::metrics::PublisherMetrics;

#[derive(Debug, thiserror::Error)]
pub enum PassError {
    #[error("reading the desired state: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Gateway(#[from] PushError),
}

/// What one pass did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassSummary {
    pub deployed: usize,
    pub undeployed: usize,
    pub refused: usize,
}

/// Pushes the desired state of each target's labels to it.
pub struct GatewayPusher {
    pub targets: Vec<PushTarget>,
    pub desired: Arc<dyn DesiredState>,
    pub outbox: Arc<dyn Outbox>,
    /// How often to look for commits made by other publisher replicas (and
    /// by this one, should notifications be lost).
    pub poll_interval: Duration,
    /// How often each gateway is compared with the desired state even when
    /// the state did not change.
    pub resync_interval: Duration,
    pub metrics: Arc<PublisherMetrics>,
}

impl GatewayPusher {
    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let (commits_tx, commits) = watch::channel(0u64);
        let watcher = tokio::spawn(watch_commits(
            self.outbox.clone(),
            commits_tx,
            shutdown.clone(),
        ));
        let mut tasks = Vec::with_capacity(self.targets.len());
        for target in self.targets {
            let span = tracing::info_span!("push", gateway = %target.gateway.url());
            let pusher = TargetPusher {
                target,
                desired: self.desired.clone(),
                metrics: self.metrics.clone(),
                poll_interval: self.poll_interval,
                resync_interval: self.resync_interval,
            };
            tasks.push(tokio::spawn(
                pusher
                    .run(commits.clone(), shutdown.clone())
                    .instrument(span),
            ));
        }
        for task in tasks {
            let _ = task.await;
        }
        let _ = watcher.await;
    }
}

/// Counts the commits an outbox session hears of; a lost session is opened
/// again (the pushers poll meanwhile).
async fn watch_commits(
    outbox: Arc<dyn Outbox>,
    commits: watch::Sender<u64>,
    shutdown: CancellationToken,
) {
    let mut delays = retry_delays();
    loop {
        let session = tokio::select! {
            _ = shutdown.cancelled() => return,
            s = outbox.session() => s,
        };
        let mut session = match session {
            Ok(s) => s,
            Err(e) => {
                let delay = delays.next().unwrap_or(Duration::from_secs(5));
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot watch the outbox for commits; pushes poll meanwhile");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
        };
        loop {
            let changed = tokio::select! {
                _ = shutdown.cancelled() => {
                    session.close().await;
                    return;
                }
                c = session.changed() => c,
            };
            match changed {
                Ok(()) => {
                    delays = retry_delays();
                    commits.send_modify(|n| *n = n.wrapping_add(1));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox notifications lost; pushes poll until they are back");
                    break;
                }
            }
        }
        session.close().await;
    }
}

struct TargetPusher {
    target: PushTarget,
    desired: Arc<dyn DesiredState>,
    metrics: Arc<PublisherMetrics>,
    poll_interval: Duration,
    resync_interval: Duration,
}

impl TargetPusher {
    async fn run(self, mut commits: watch::Receiver<u64>, shutdown: CancellationToken) {
        // The change number the gateway was last brought to.
        let mut pushed_sequence: Option<i64> = None;
        let mut last_full: Option<Instant> = None;
        let mut last_report: Option<Instant> = None;
        let mut delays = retry_delays();
        loop {
            commits.mark_unchanged();
            let full = last_full.is_none_or(|t| t.elapsed() >= self.resync_interval);
            let wait = match self.pass(pushed_sequence, full).await {
                Ok((sequence, summary)) => {
                    if summary != PassSummary::default() {
                        tracing::info!(
                            sequence,
                            deployed = summary.deployed,
                            undeployed = summary.undeployed,
                            refused = summary.refused,
                            "gateway brought to the desired state"
                        );
                    }
                    let state_changed = full || pushed_sequence != Some(sequence);
                    if state_changed {
                        // The pass compared the gateway with the state.
                        last_full = Some(Instant::now());
                    }
                    if state_changed
                        || last_report.is_none_or(|t: Instant| t.elapsed() >= REPORT_EVERY)
                    {
                        self.record_status().await;
                        last_report = Some(Instant::now());
                    }
                    pushed_sequence = Some(sequence);
                    delays = retry_delays();
                    self.poll_interval.min(self.resync_interval)
                }
                Err(e) => {
                    self.metrics.push_failures.inc();
                    pushed_sequence = None;
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "push to the gateway failed; retrying");
                    // A failed pass waits out its backoff: a commit must
                    // not turn retries against a down gateway into a storm.
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    continue;
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
                changed = commits.changed() => {
                    if changed.is_err() {
                        // The watcher stopped: only the timer wakes us.
                        tokio::select! {
                            _ = shutdown.cancelled() => return,
                            _ = tokio::time::sleep(wait) => {}
                        }
                    }
                }
            }
        }
    }

    /// Records the gateway's status report, as a pulling node sends its own
    /// to the traffic manager: the fleet view, receipts and propagation
    /// times then cover pushed gateways too.
    async fn record_status(&self) {
        let report = match self.target.gateway.status().await {
            Ok(report) => report,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the gateway's status report");
                return;
            }
        };
        if let Err(e) = self.desired.record_statuses(&[report]).await {
            tracing::warn!(error = %e, "cannot record the gateway's status report");
        }
    }

    /// Brings the gateway to its labels' desired state; skips the gateway
    /// when the state is still the one last pushed, unless `full`.
    async fn pass(
        &self,
        pushed_sequence: Option<i64>,
        full: bool,
    ) -> Result<(i64, PassSummary), PassError> {
        let labels = &self.target.labels;
        let metadata = self.desired.runtime_metadata(labels).await?;
        if !full && pushed_sequence == Some(metadata.sequence) {
            return Ok((metadata.sequence, PassSummary::default()));
        }
        let gateway = &self.target.gateway;
        let running: HashMap<ApiId, RunningApi> = gateway
            .running()
            .await?
            .into_iter()
            .map(|a| (a.api_id, a))
            .collect();
        let mut summary = PassSummary::default();
        let mut wanted = HashSet::with_capacity(metadata.apis.len());
        for api in &metadata.apis {
            wanted.insert(api.api_id);
            let now = running.get(&api.api_id);
            let runs_it = now
                .is_some_and(|r| r.revision == Some(api.revision) && r.sha256 == Some(api.sha256));
            if runs_it {
                continue;
            }
            // The highest revision on these labels, read now: newer than the
            // metadata if a change committed meanwhile, which is fine.
            let Some(artifact) = self.desired.runtime_artifact(api.api_id, labels).await? else {
                continue;
            };
            let revision = artifact.api.revision;
            match gateway
                .deploy(
                    api.api_id,
                    revision,
                    artifact.api.sha256,
                    Bytes::from(artifact.artifact),
                )
                .await?
            {
                Pushed::Applied => {
                    summary.deployed += 1;
                    self.metrics.push_deploys.inc();
                    tracing::debug!(api_id = %api.api_id, revision = %revision, "pushed");
                }
                Pushed::Refused(message) => {
                    summary.refused += 1;
                    self.metrics.push_refused.inc();
                    tracing::warn!(api_id = %api.api_id, revision = %revision, %message, "the gateway refused the pushed artifact and keeps what it runs");
                }
            }
        }
        for (id, api) in &running {
            if api.revision.is_some() && !wanted.contains(id) {
                gateway.undeploy(*id).await?;
                summary.undeployed += 1;
                self.metrics.push_undeploys.inc();
                tracing::debug!(api_id = %id, "undeploy pushed");
            }
        }
        Ok((metadata.sequence, summary))
    }
}

/// How often a pushed gateway's status is recorded when nothing changed:
/// its heartbeat in the fleet view.
const REPORT_EVERY: Duration = Duration::from_secs(5);

/// 100 ms doubling to 5 s, with jitter: a gateway back from a restart gets
/// the state within seconds, and a gateway that stays down is not hammered.
fn retry_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
