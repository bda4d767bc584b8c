//! Gateway status reports, written with group commit.
//!
//! Every node reports after each change it applies, so a change deployed
//! to N nodes brings N reports within milliseconds of each other. One
//! writer takes whatever reports are waiting and records them in one
//! transaction: N commits become one or two, and each report is still
//! answered only once it is durable.

use std::sync::Arc;

use artisync_domain::runtime::GatewayStatusReport;
use tokio::sync::{mpsc, oneshot};

use artisync_ports::{DesiredState, StoreError};

/// The most reports written in one transaction.
const MAX_BATCH: usize = 64;

type Reply = oneshot::Sender<Result<(), Arc<StoreError>>>;

/// Why a report was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error(transparent)]
    Write(Arc<StoreError>),
    #[error("the status writer has stopped")]
    Stopped,
}

/// The handle request handlers record reports through.
#[derive(Clone)]
pub struct StatusIntake {
    queue: mpsc::Sender<(GatewayStatusReport, Reply)>,
}

impl StatusIntake {
    /// Starts the writer; it stops when every handle is dropped.
    pub fn spawn(reader: Arc<dyn DesiredState>) -> Self {
        let (queue, pending) = mpsc::channel(1024);
        tokio::spawn(write_batches(reader, pending));
        StatusIntake { queue }
    }

    /// Records one report; returns once it is committed.
    pub async fn record(&self, report: GatewayStatusReport) -> Result<(), IntakeError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send((report, reply))
            .await
            .map_err(|_| IntakeError::Stopped)?;
        answer
            .await
            .map_err(|_| IntakeError::Stopped)?
            .map_err(IntakeError::Write)
    }
}

async fn write_batches(
    reader: Arc<dyn DesiredState>,
    mut pending: mpsc::Receiver<(GatewayStatusReport, Reply)>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Waits for the first report only; whatever queued up behind it while
    // the previous batch was committing joins this one.
    while pending.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (reports, replies): (Vec<_>, Vec<_>) = batch.drain(..).unzip();
        match reader.record_statuses(&reports).await {
            Ok(()) => {
                for reply in replies {
                    let _ = reply.send(Ok(()));
                }
            }
            Err(err) if reports.len() == 1 => {
                let err = Arc::new(err);
                for reply in replies {
                    let _ = reply.send(Err(err.clone()));
                }
            }
            Err(err) => {
                // One bad report must not fail the others: write each alone.
                tracing::warn!(error = %err, reports = reports.len(), "writing a batch of status reports failed; writing them one by one");
                for (report, reply) in reports.into_iter().zip(replies) {
                    let result = reader
                        .record_statuses(std::slice::from_ref(&report))
                        .await
                        .map_err(Arc::new);
                    let _ = reply.send(result);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use artisync_domain::runtime::{RuntimeArtifact, RuntimeMetadata};
    use artisync_domain::{ApiId, GatewayLabel, NodeId};
    use async_trait::async_trait;
    use chrono::Utc;

    use super::*;

    /// Records the node ids of each batch; a batch holding node "bad"
    /// fails as a whole, as a transaction would. Writes wait on `gate`.
    struct RecordingReader {
        started: AtomicUsize,
        gate: tokio::sync::Semaphore,
        batches: Mutex<Vec<Vec<String>>>,
    }

    #[async_trait]
    impl DesiredState for RecordingReader {
        async fn runtime_metadata(
            &self,
            _: &[GatewayLabel],
        ) -> Result<RuntimeMetadata, StoreError> {
            Err(StoreError::broken("test", "unused"))
        }
        async fn runtime_artifact(
            &self,
            _: ApiId,
            _: &[GatewayLabel],
        ) -> Result<Option<RuntimeArtifact>, StoreError> {
            Err(StoreError::broken("test", "unused"))
        }
        async fn stream_artifacts(
            &self,
            _: &[GatewayLabel],
            _: Option<&[ApiId]>,
            _: mpsc::Sender<Result<RuntimeArtifact, StoreError>>,
        ) {
        }
        async fn record_statuses(&self, reports: &[GatewayStatusReport]) -> Result<(), StoreError> {
            self.started.fetch_add(1, Ordering::SeqCst);
            drop(self.gate.acquire().await);
            let ids: Vec<String> = reports.iter().map(|r| r.node_id.to_string()).collect();
            let bad = ids.iter().any(|id| id == "bad");
            self.batches.lock().unwrap().push(ids);
            if bad {
                Err(StoreError::Unprocessable("bad report".into()))
            } else {
                Ok(())
            }
        }
    }

    fn report(node: &str) -> GatewayStatusReport {
        GatewayStatusReport {
            node_id: NodeId::parse(node).unwrap(),
            labels: vec![GatewayLabel::parse("Label1").unwrap()],
            ready: true,
            started_at: Utc::now(),
            full: false,
            apis: Vec::new(),
            details: serde_json::Value::Null,
        }
    }

    async fn until(what: &str, condition: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn reports_waiting_together_share_one_write_and_a_bad_one_fails_alone() {
        let reader = Arc::new(RecordingReader {
            started: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            batches: Mutex::new(Vec::new()),
        });
        let intake = StatusIntake::spawn(reader.clone());
        let record = |node: &'static str| {
            let intake = intake.clone();
            tokio::spawn(async move { intake.record(report(node)).await.is_ok() })
        };
        let first = record("gw-1");
        until("the first write started", || {
            reader.started.load(Ordering::SeqCst) == 1
        })
        .await;
        let rest = [record("gw-2"), record("bad"), record("gw-3")];
        until("three reports queued behind it", || {
            intake.queue.max_capacity() - intake.queue.capacity() == 3
        })
        .await;
        reader.gate.add_permits(100);

        assert!(first.await.unwrap());
        let mut results = Vec::new();
        for task in rest {
            results.push(task.await.unwrap());
        }
        assert_eq!(results, [true, false, true]);
        let batches = reader.batches.lock().unwrap().clone();
        assert_eq!(batches[0], ["gw-1"]);
        assert_eq!(batches[1], ["gw-2", "bad", "gw-3"]);
        assert_eq!(&batches[2..], [["gw-2"], ["bad"], ["gw-3"]]);
    }
}
