//! Event triage: is an event for this node, is it news, and may its
//! inline artifact be deployed as it is?
//!
//! Events are hints. Whatever an event says, the node asks the artifact
//! source what the API should run now, and moves there. The one shortcut:
//! a deploy event that carries its (small) artifact, is fresh, and is newer
//! than the last desired state the node loaded is deployed from the event,
//! after checking its digest.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use artisync_domain::Revision;
use artisync_domain::event::{DeploymentEvent, EventType};
use artisync_domain::signature::SignatureError;
use artisync_ports::source::FetchedArtifact;
use bytes::Bytes;
use chrono::Utc;

use super::{Outcome, Synchronizer};
use crate::state::Failure;

/// An artifact inside an event older than this is not used: the event is
/// being replayed from a backlog, where later changes may be queued behind
/// it, so the source is asked instead.
const INLINE_ARTIFACT_MAX_AGE: Duration = Duration::from_secs(2);
/// How far ahead of this node's clock an event's timestamp may be and the
/// event still count as fresh.
const MAX_CLOCK_SKEW: Duration = Duration::from_secs(2);

impl Synchronizer {
    /// Handles one deployment event; returns once its first deploy attempt
    /// is done (later retries run on their own schedule).
    pub async fn handle_event(
        self: &Arc<Self>,
        event: &DeploymentEvent,
        traceparent: Option<String>,
    ) {
        let received = Instant::now();
        if let Some(key) = &self.config.publisher_key
            && let Err(e) = key.verify(event)
        {
            self.refuse_unverified(event, e);
            return;
        }
        let mine = event
            .gateway_labels
            .iter()
            .any(|l| self.config.labels.contains(l));
        if !mine {
            tracing::warn!(api_id = %event.api_id, labels = ?event.gateway_labels, "event for labels this node does not serve; ignored");
            return;
        }
        let hint = match event.event_type {
            EventType::DeployApiInGateway => {
                let applied = self
                    .state
                    .record(&event.api_id)
                    .and_then(|r| r.applied_revision());
                if applied.is_some_and(|a| a >= event.revision) {
                    tracing::debug!(api_id = %event.api_id, revision = %event.revision, "event for an applied or older revision; ignored");
                    return;
                }
                Some(event.revision)
            }
            // A removal from one label may leave the API deployed on another
            // label of this node: the artifact source decides.
            EventType::RemoveApiFromGateway => None,
        };
        let loaded = self.loaded_sequence.load(Ordering::SeqCst);
        let inline = hint
            .filter(|_| loaded >= 0 && event.sequence > loaded)
            .and_then(|revision| inline_artifact(event, revision));
        // WSO2's event_waiting_time: a pause after the event and before
        // the node fetches from the source, so that a database replica
        // behind it has caught up with the change. An event that brings
        // its artifact needs no fetch, so it waits for nothing. Each event
        // waits on its own (events are handled side by side), so pauses
        // do not add up.
        if inline.is_none() && !self.config.event_waiting_time.is_zero() {
            tracing::debug!(
                wait_ms = self.config.event_waiting_time.as_millis() as u64,
                "waiting event_waiting_time before the fetch"
            );
            tokio::time::sleep(self.config.event_waiting_time).await;
        }
        let outcome = self
            .sync_api_with(event.api_id, hint, inline, traceparent)
            .await;
        if let Ok(Outcome::Deployed(_)) = outcome {
            self.metrics
                .observe_deploy(received.elapsed(), event.timestamp);
        }
    }
}

impl Synchronizer {
    /// An event the publisher did not sign: nothing of it is used, and the
    /// API shows the refusal until its next deploy.
    fn refuse_unverified(&self, event: &DeploymentEvent, error: SignatureError) {
        self.metrics.events_unverified.inc();
        tracing::warn!(
            event_id = %event.event_id,
            api_id = %event.api_id,
            revision = %event.revision,
            labels = ?event.gateway_labels,
            error = %error,
            "refused an event without a valid publisher signature; the node keeps what it runs"
        );
        self.state.record_failure(
            event.api_id,
            Failure {
                revision: Some(event.revision),
                error: format!(
                    "refused an event for revision {} without a valid publisher signature ({error}); the node keeps what it runs",
                    event.revision
                ),
                attempts: 1,
                next_retry_at: None,
            },
        );
    }
}

/// The artifact a fresh deploy event carries for `revision`, if any.
fn inline_artifact(event: &DeploymentEvent, revision: Revision) -> Option<FetchedArtifact> {
    let xml = event.artifact.as_ref()?;
    let age = Utc::now().signed_duration_since(event.timestamp);
    let fresh = match age.to_std() {
        Ok(age) => age <= INLINE_ARTIFACT_MAX_AGE,
        // Slightly ahead of this clock is clock skew; further ahead, the
        // timestamp is not the publisher's and the source is asked.
        Err(_) => (-age).to_std().is_ok_and(|ahead| ahead <= MAX_CLOCK_SKEW),
    };
    if !fresh {
        tracing::debug!(api_id = %event.api_id, %revision, age_ms = age.num_milliseconds(), "event too old to deploy its artifact; fetching");
        return None;
    }
    Some(FetchedArtifact {
        revision,
        sha256: event.sha256,
        xml: Bytes::copy_from_slice(xml.as_bytes()),
    })
}
