//! The outbox relay: publishes committed events in order, marks them sent,
//! and resends whatever is unsent after a crash. It leads through an
//! [`OutboxSession`] (one relay across every publisher replica drains) and
//! publishes through an [`EventPublisher`]; which database and which bus
//! are the composition root's choice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use artisync_domain::event::DeploymentEvent;
use artisync_domain::signature::EventSigningKey;
use artisync_ports::bus::BusError;
use artisync_ports::outbox::OutboundEvent;
use artisync_ports::{EventPublisher, Outbox, OutboxSession, StoreError};
use backon::BackoffBuilder;
use tokio_util::sync::CancellationToken;

use crate::metrics::PublisherMetrics;

const BATCH: usize = 256;
/// How often a relay that is not the leader tries to become it.
const STANDBY_RETRY: Duration = Duration::from_secs(1);
/// How often sent events past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox: {0}")]
    Store(#[from] StoreError),
    #[error("event bus: {0}")]
    Bus(#[from] BusError),
}

/// What ended a wait between two passes.
enum Woke {
    Shutdown,
    Timer,
    Changed(Result<(), StoreError>),
}

pub struct OutboxRelay {
    outbox: Arc<dyn Outbox>,
    session: Option<Box<dyn OutboxSession>>,
    bus: Box<dyn EventPublisher>,
    poll_interval: Duration,
    retention: Duration,
    metrics: Arc<PublisherMetrics>,
    signer: Option<Arc<EventSigningKey>>,
}

impl OutboxRelay {
    pub fn new(
        outbox: Arc<dyn Outbox>,
        bus: Box<dyn EventPublisher>,
        poll_interval: Duration,
        retention: Duration,
    ) -> Self {
        OutboxRelay {
            outbox,
            session: None,
            bus,
            poll_interval,
            retention,
            metrics: Arc::new(PublisherMetrics::new()),
            signer: None,
        }
    }

    /// Signs every event before it is published (`signing_key_file`).
    pub fn with_signer(mut self, signer: Option<Arc<EventSigningKey>>) -> Self {
        self.signer = signer;
        self
    }

    /// Records publish latency and counts into `metrics` (the ones the
    /// REST API's `/metrics` renders).
    pub fn with_metrics(mut self, metrics: Arc<PublisherMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown`; transient failures are retried with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut last_prune = Instant::now();
        let mut failures = 0u32;
        let mut delays = retry_delays();
        // Whether waiting on the session's change notifications works; if
        // it failed, this pass polls and the next one sets them up again.
        let mut notifications = true;
        loop {
            if shutdown.is_cancelled() {
                self.close_session().await;
                return;
            }
            // Drain before waiting: notifications that arrived while we
            // were disconnected are covered by this pass.
            let wait = match self.drain().await {
                Ok(leading) => {
                    failures = 0;
                    delays = retry_delays();
                    if leading {
                        self.poll_interval
                    } else {
                        self.poll_interval.min(STANDBY_RETRY)
                    }
                }
                Err(e) => {
                    failures += 1;
                    self.metrics.relay_failures.inc();
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay failed; events stay unsent and will be retried");
                    delay
                }
            };
            if last_prune.elapsed() > PRUNE_EVERY {
                last_prune = Instant::now();
                if let Err(e) = self.outbox.prune(self.retention).await {
                    tracing::warn!(error = %e, "pruning sent outbox rows failed");
                }
            }
            let listen = failures == 0 && notifications;
            notifications = true;
            let changed = async {
                match self.session.as_mut() {
                    Some(session) if listen => session.changed().await,
                    _ => std::future::pending().await,
                }
            };
            let woke = tokio::select! {
                _ = shutdown.cancelled() => Woke::Shutdown,
                _ = tokio::time::sleep(wait) => Woke::Timer,
                result = changed => Woke::Changed(result),
            };
            match woke {
                Woke::Shutdown => {
                    // One last pass for what was committed just before.
                    if let Err(e) = self.drain().await {
                        tracing::warn!(error = %e, "final outbox pass failed; the events stay unsent and go out at the next start");
                    }
                    self.close_session().await;
                    return;
                }
                Woke::Timer | Woke::Changed(Ok(())) => {}
                Woke::Changed(Err(e)) => {
                    tracing::warn!(error = %e, "outbox notifications lost; polling until they are back");
                    notifications = false;
                }
            }
        }
    }

    /// Publishes every unsent event, oldest first, in batches, if this
    /// relay is (or now becomes) the leader. Answers whether it is.
    pub async fn drain(&mut self) -> Result<bool, RelayError> {
        if self.session.is_none() {
            self.session = Some(self.outbox.session().await?);
        }
        let Some(session) = self.session.as_mut() else {
            return Ok(false);
        };
        if !session.lead().await? {
            return Ok(false);
        }
        loop {
            let mut events = session.claim_batch(BATCH).await?;
            if events.is_empty() {
                return Ok(true);
            }
            if let Some(signer) = &self.signer {
                sign_all(signer, &mut events);
            }
            let started = Instant::now();
            self.bus.publish(&events).await?;
            // `publish` returns once the bus confirmed every message.
            self.metrics
                .relay_publish_latency
                .observe(started.elapsed().as_secs_f64());
            self.metrics.relay_batches.inc();
            self.metrics.relay_events.inc_by(events.len() as u64);
            let ids: Vec<i64> = events.iter().map(|e| e.outbox_id).collect();
            // If this mark is lost (crash), the events are sent again:
            // delivery is at-least-once and gateways ignore duplicates.
            session.mark_sent(&ids).await?;
            for e in &events {
                tracing::debug!(event_id = %e.event_id, routing_key = %e.routing_key, "event published");
            }
            if events.len() < BATCH {
                return Ok(true);
            }
        }
    }

    /// Ends the session, which releases the lead at once for another
    /// replica.
    async fn close_session(&mut self) {
        if let Some(session) = self.session.take() {
            session.close().await;
        }
    }
}

/// Signs each event's payload. The outbox holds events unsigned: the key
/// stays in this process, and a key rotation signs what is still unsent
/// with the new key.
fn sign_all(signer: &EventSigningKey, events: &mut [OutboundEvent]) {
    for e in events {
        match DeploymentEvent::from_json(&e.payload) {
            Ok(mut event) => {
                signer.sign(&mut event);
                e.payload = event.to_json();
            }
            // Every payload is written by this product; one that does not
            // parse goes out unsigned and gateways that check refuse it.
            Err(err) => {
                tracing::error!(event_id = %e.event_id, error = %err, "outbox event is not a deployment event; published unsigned")
            }
        }
    }
}

/// 100 ms doubling to 5 s, with jitter: quick to recover from a broker
/// restart without hammering a broker that is down.
fn retry_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
