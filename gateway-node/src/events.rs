//! The event source: this node's durable queue on RabbitMQ, bound once per
//! label, consumed with manual acks and re-established after any failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use artisync_shared::amqp::Topology;
use artisync_shared::event::DeploymentEvent;
use artisync_shared::{GatewayLabel, NodeId};
use backon::BackoffBuilder;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::sync::Synchronizer;

pub struct Subscriber {
    pub url: String,
    pub topology: Topology,
    pub node_id: NodeId,
    pub labels: Vec<GatewayLabel>,
    pub prefetch: u16,
}

/// Shared facts about the subscription, for readiness and reconcile.
pub struct SubscriptionStatus {
    pub connected: AtomicBool,
    /// Counts successful (re)subscriptions; reconcile runs after each.
    pub subscriptions: watch::Sender<u64>,
}

impl SubscriptionStatus {
    pub fn new() -> Self {
        SubscriptionStatus {
            connected: AtomicBool::new(false),
            subscriptions: watch::Sender::new(0),
        }
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }
}

impl Default for SubscriptionStatus {
    fn default() -> Self {
        Self::new()
    }
}

#[derive(Debug, thiserror::Error)]
enum SubscribeError {
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the consumer stream ended")]
    Ended,
}

impl Subscriber {
    /// Consumes until `shutdown`. Deliveries wait for `gate` to open (the
    /// start-up load), so the load and events never race; the queue holds
    /// them meanwhile.
    pub async fn run(
        self,
        sync: Arc<Synchronizer>,
        gate: watch::Receiver<bool>,
        status: Arc<SubscriptionStatus>,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
        in_flight: TaskTracker,
    ) {
        let mut delays = reconnect_delays();
        loop {
            let result = self
                .consume(
                    &sync,
                    gate.clone(),
                    &status,
                    &metrics,
                    &shutdown,
                    &in_flight,
                )
                .await;
            status.connected.store(false, Ordering::Relaxed);
            if shutdown.is_cancelled() {
                return;
            }
            let delay = match result {
                // We were connected: start the backoff over.
                Ok(()) => {
                    delays = reconnect_delays();
                    Duration::from_millis(100)
                }
                Err(_) => delays.next().unwrap_or(Duration::from_secs(5)),
            };
            if let Err(e) = &result {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, queue = %self.topology.queue_for(&self.node_id), "event subscription lost; the data plane keeps serving");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One connection's life: declare, bind, consume. `Ok` after it was
    /// established and later lost; `Err` if it could not be established.
    async fn consume(
        &self,
        sync: &Arc<Synchronizer>,
        gate: watch::Receiver<bool>,
        status: &SubscriptionStatus,
        metrics: &Arc<Metrics>,
        shutdown: &CancellationToken,
        in_flight: &TaskTracker,
    ) -> Result<(), SubscribeError> {
        let queue = self.topology.queue_for(&self.node_id);
        let dead_letter = self.topology.dead_letter_queue_for(&self.node_id);
        let conn = Connection::connect(
            &self.url,
            ConnectionProperties::default()
                .with_connection_name(format!("artisync-gateway-{}", self.node_id).into()),
        )
        .await?;
        let channel = conn.create_channel().await?;
        channel
            .exchange_declare(
                self.topology.exchange.as_str().into(),
                ExchangeKind::Direct,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(dead_letter.as_str().into(), durable, FieldTable::default())
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_letter.as_str().into()),
        );
        channel
            .queue_declare(queue.as_str().into(), durable, args)
            .await?;
        for label in &self.labels {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.topology.exchange.as_str().into(),
                    label.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let consumer_tag = format!("artisync-{}", self.node_id);
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        status.connected.store(true, Ordering::Relaxed);
        status.subscriptions.send_modify(|n| *n += 1);
        tracing::info!(%queue, labels = ?self.labels, "subscribed to deployment events");

        let mut gate = gate;
        loop {
            let delivery = tokio::select! {
                _ = shutdown.cancelled() => {
                    // Stop taking new deliveries; unacked ones go back to
                    // the queue when the channel closes.
                    let _ = channel
                        .basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default())
                        .await;
                    in_flight.close();
                    in_flight.wait().await;
                    let _ = conn.close(200, "shutting down".into()).await;
                    return Ok(());
                }
                next = consumer.next() => next,
            };
            let delivery = match delivery {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "broker connection lost");
                    return Ok(());
                }
                None => return Err(SubscribeError::Ended),
            };
            if !*gate.borrow() {
                // Hold deliveries until the start-up load is done.
                let _ = gate.wait_for(|open| *open).await;
            }
            metrics.events_received.inc();
            let event = match DeploymentEvent::from_json(&delivery.data) {
                Ok(event) => event,
                Err(e) => {
                    metrics.events_rejected.inc();
                    tracing::error!(error = %e, message_id = ?delivery.properties.message_id(), dead_letter_queue = %dead_letter, "unparsable event moved to the dead-letter queue");
                    let _ = delivery
                        .acker
                        .reject(BasicRejectOptions { requeue: false })
                        .await;
                    continue;
                }
            };
            let traceparent = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("traceparent").cloned())
                .and_then(|v| match v {
                    AMQPValue::LongString(s) => Some(s.to_string()),
                    _ => None,
                });
            let trace_id = traceparent
                .as_deref()
                .and_then(|tp| tp.split('-').nth(1))
                .unwrap_or("")
                .to_owned();
            let span = tracing::info_span!(
                "event",
                api_id = %event.api_id,
                revision = %event.revision,
                sequence = event.sequence,
                kind = ?event.event_type,
                trace_id = %trace_id,
            );
            // Exported spans join the publisher's trace, not a new one.
            artisync_shared::telemetry::continue_trace(
                &span,
                traceparent
                    .as_deref()
                    .and_then(artisync_shared::telemetry::TraceParent::parse)
                    .as_ref(),
            );
            let sync = sync.clone();
            in_flight.spawn(
                async move {
                    tracing::debug!("event received");
                    sync.handle_event(&event, traceparent).await;
                    // Acked only once handled; if the ack is lost the event
                    // comes again and is recognised as already applied.
                    if let Err(e) = delivery.acker.ack(BasicAckOptions::default()).await {
                        tracing::warn!(error = %e, "ack failed; the event will be redelivered");
                    }
                }
                .instrument(span),
            );
        }
    }
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
