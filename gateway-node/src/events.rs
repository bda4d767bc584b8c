//! The node's event loop: subscribe to its labels through the
//! [`EventSubscriber`] port, hand each event to the synchronizer, ack it
//! once handled, and subscribe again after any failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use artisync_domain::{GatewayLabel, NodeId};
use artisync_ports::EventSubscriber;
use artisync_ports::bus::{Delivery, Incoming, Subscription};
use backon::BackoffBuilder;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::sync::{Synchronizer, trace_id};

/// Shared facts about the subscription, for readiness and reconcile.
pub struct SubscriptionStatus {
    pub connected: AtomicBool,
    /// Counts successful (re)subscriptions; reconcile runs after each.
    pub subscriptions: watch::Sender<u64>,
    /// Counts gaps (events the bus dropped); reconcile runs after each.
    pub gaps: watch::Sender<u64>,
    /// Messages waiting in the node's queue as last counted; -1 when not
    /// known (not subscribed, or the bus cannot tell).
    pub backlog: std::sync::atomic::AtomicI64,
}

impl SubscriptionStatus {
    pub fn new() -> Self {
        SubscriptionStatus {
            connected: AtomicBool::new(false),
            subscriptions: watch::Sender::new(0),
            gaps: watch::Sender::new(0),
            backlog: std::sync::atomic::AtomicI64::new(-1),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// The queue backlog as last counted, if known.
    pub fn backlog(&self) -> Option<u64> {
        u64::try_from(self.backlog.load(Ordering::Relaxed)).ok()
    }
}

impl Default for SubscriptionStatus {
    fn default() -> Self {
        Self::new()
    }
}

/// What the node subscribes with.
pub struct EventLoop {
    pub events: Arc<dyn EventSubscriber>,
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub prefetch: u16,
}

/// What the loop hands events to and reports through.
pub struct EventContext {
    pub sync: Arc<Synchronizer>,
    /// Opens once the start-up load is done; deliveries wait for it, so
    /// the load and events never race (the queue holds them meanwhile).
    pub gate: watch::Receiver<bool>,
    pub status: Arc<SubscriptionStatus>,
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
    /// Event handlers still running; shutdown waits for their acks.
    pub in_flight: TaskTracker,
}

impl EventLoop {
    /// Consumes until shutdown.
    pub async fn run(self, cx: EventContext) {
        let mut delays = reconnect_delays();
        let queue = self.events.queue_name(&self.node_id);
        loop {
            let subscribed = self
                .events
                .subscribe(&self.node_id, &self.labels, self.prefetch)
                .await;
            let delay = match subscribed {
                Ok(subscription) => {
                    cx.status.connected.store(true, Ordering::Relaxed);
                    cx.status.subscriptions.send_modify(|n| *n += 1);
                    tracing::info!(%queue, labels = ?self.labels, "subscribed to deployment events");
                    let stopped = consume(subscription, &cx).await;
                    cx.status.connected.store(false, Ordering::Relaxed);
                    if stopped {
                        return;
                    }
                    // We were connected: start the backoff over.
                    delays = reconnect_delays();
                    tracing::warn!(%queue, "event subscription lost; the data plane keeps serving");
                    Duration::from_millis(100)
                }
                Err(e) => {
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, %queue, "cannot subscribe to deployment events; the data plane keeps serving");
                    delay
                }
            };
            tokio::select! {
                _ = cx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }
}

/// How often the queue backlog is counted while subscribed.
const BACKLOG_EVERY: Duration = Duration::from_secs(1);

/// Counts the queue's backlog until `stop`.
async fn count_backlog(
    probe: Box<dyn artisync_ports::bus::QueueBacklog>,
    status: Arc<SubscriptionStatus>,
    stop: CancellationToken,
) {
    loop {
        let waiting = probe
            .waiting()
            .await
            .ok()
            .and_then(|n| i64::try_from(n).ok());
        status
            .backlog
            .store(waiting.unwrap_or(-1), Ordering::Relaxed);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(BACKLOG_EVERY) => {}
        }
    }
    status.backlog.store(-1, Ordering::Relaxed);
}

/// One subscription's life; answers whether it ended for shutdown.
async fn consume(subscription: Box<dyn Subscription>, cx: &EventContext) -> bool {
    let stop = cx.shutdown.child_token();
    if let Some(probe) = subscription.backlog() {
        tokio::spawn(count_backlog(probe, Arc::clone(&cx.status), stop.clone()));
    }
    let stopped = consume_until_lost(subscription, cx).await;
    stop.cancel();
    stopped
}

async fn consume_until_lost(mut subscription: Box<dyn Subscription>, cx: &EventContext) -> bool {
    let mut gate = cx.gate.clone();
    loop {
        let incoming = tokio::select! {
            _ = cx.shutdown.cancelled() => {
                // Stop taking deliveries; let the handlers ack theirs, then
                // close (what is not acked goes back to the queue).
                cx.in_flight.close();
                cx.in_flight.wait().await;
                subscription.close().await;
                return true;
            }
            next = subscription.next() => next,
        };
        let delivery = match incoming {
            Some(Incoming::Delivery(d)) => d,
            Some(Incoming::Dropped { count }) => {
                tracing::warn!(
                    dropped = count,
                    "the event queue was full and dropped events; reconciling"
                );
                cx.status.gaps.send_modify(|n| *n += 1);
                continue;
            }
            None => return false,
        };
        if !*gate.borrow() {
            // Hold deliveries until the start-up load is done.
            let _ = gate.wait_for(|open| *open).await;
        }
        handle(*delivery, cx);
    }
}

fn handle(delivery: Delivery, cx: &EventContext) {
    cx.metrics.events_received.inc();
    let Delivery {
        event,
        message_id,
        traceparent,
        ack,
    } = delivery;
    let event = match event {
        Ok(event) => event,
        Err(e) => {
            cx.metrics.events_rejected.inc();
            tracing::error!(error = %e, message_id = ?message_id, "unparsable event moved to the dead-letter queue");
            cx.in_flight.spawn(async move {
                let _ = ack.reject().await;
            });
            return;
        }
    };
    let span = tracing::info_span!(
        "event",
        api_id = %event.api_id,
        revision = %event.revision,
        sequence = event.sequence,
        kind = ?event.event_type,
        trace_id = %trace_id(traceparent.as_deref()),
    );
    // Exported spans join the publisher's trace, not a new one.
    artisync_telemetry::continue_trace(
        &span,
        traceparent
            .as_deref()
            .and_then(artisync_telemetry::TraceParent::parse)
            .as_ref(),
    );
    let sync = cx.sync.clone();
    cx.in_flight.spawn(
        async move {
            tracing::debug!("event received");
            sync.handle_event(&event, traceparent).await;
            // Acked only once handled; if the ack is lost the event comes
            // again and is recognised as already applied.
            if let Err(e) = ack.ack().await {
                tracing::warn!(error = %e, "ack failed; the event will be redelivered");
            }
        }
        .instrument(span),
    );
}

fn reconnect_delays() -> impl Iterator<Item = Duration> {
    backon::ExponentialBuilder::default()
        // At most 5 s (10 s with jitter) between attempts: a node is back
        // on its events soon after the broker is.
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
