//! A gateway node's side: its durable queue, bound once per label,
//! consumed with manual acks. Messages that cannot be parsed are rejected
//! into the node's dead-letter queue.

use artisync_domain::event::DeploymentEvent;
use artisync_domain::topology::Topology;
use artisync_domain::{GatewayLabel, NodeId};
use artisync_ports::bus::{Acker, BusError, Delivery, EventSubscriber, Incoming, Subscription};
use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

use crate::{declare_exchange, redact};

pub struct RabbitSubscriber {
    url: String,
    topology: Topology,
}

impl RabbitSubscriber {
    pub fn new(url: String, topology: Topology) -> Self {
        RabbitSubscriber { url, topology }
    }
}

fn broker(e: lapin::Error) -> BusError {
    BusError::new(format!("broker error: {e}"))
}

#[async_trait]
impl EventSubscriber for RabbitSubscriber {
    async fn subscribe(
        &self,
        node: &NodeId,
        labels: &[GatewayLabel],
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BusError> {
        let queue = self.topology.queue_for(node);
        let dead_letter = self.topology.dead_letter_queue_for(node);
        let conn = Connection::connect(
            &self.url,
            ConnectionProperties::default()
                .with_connection_name(format!("artisync-gateway-{node}").into()),
        )
        .await
        .map_err(|e| {
            BusError::new(format!(
                "cannot reach the broker at {}: {e}",
                redact(&self.url)
            ))
        })?;
        let channel = conn.create_channel().await.map_err(broker)?;
        declare_exchange(&channel, &self.topology.exchange)
            .await
            .map_err(broker)?;
        let mut dead_letter_args = FieldTable::default();
        dead_letter_args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::from(self.topology.dead_letter_max_length)),
        );
        dead_letter_args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let channel = declare_bounded(&conn, channel, &dead_letter, dead_letter_args).await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString("".into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dead_letter.as_str().into()),
        );
        args.insert(
            "x-expires".into(),
            AMQPValue::LongLongInt(
                i64::try_from(self.topology.queue_expires_ms).unwrap_or(i64::MAX),
            ),
        );
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(i64::from(self.topology.queue_max_length)),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let channel = declare_bounded(&conn, channel, &queue, args).await?;
        for label in labels {
            channel
                .queue_bind(
                    queue.as_str().into(),
                    self.topology.exchange.as_str().into(),
                    label.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(broker)?;
        }
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(broker)?;
        let consumer_tag = format!("artisync-{node}");
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        // Its own channel: a failed passive declare closes the channel it
        // runs on, and must not take the consumer with it.
        let probe = conn.create_channel().await.ok();
        Ok(Box::new(RabbitSubscription {
            conn,
            channel,
            consumer,
            consumer_tag,
            probe: probe.map(|channel| RabbitBacklog { channel, queue }),
        }))
    }

    fn queue_name(&self, node: &NodeId) -> String {
        self.topology.queue_for(node)
    }
}

/// Declares a durable queue with `args`. A queue of that name declared
/// with other arguments (by a version that did not bound its queues) makes
/// the broker refuse the declare and close the channel: it is then deleted
/// and declared again on a new channel, which is returned. The events it
/// held are lost to this node, which its reconcile repairs.
async fn declare_bounded(
    conn: &Connection,
    channel: Channel,
    name: &str,
    args: FieldTable,
) -> Result<Channel, BusError> {
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    match channel
        .queue_declare(name.into(), durable, args.clone())
        .await
    {
        Ok(_) => Ok(channel),
        Err(e) if precondition_failed(&e) => {
            tracing::warn!(
                queue = name,
                "the queue exists with other arguments (declared by an earlier version); \
                 deleting it and declaring it again with its bounds"
            );
            let channel = conn.create_channel().await.map_err(broker)?;
            channel
                .queue_delete(name.into(), QueueDeleteOptions::default())
                .await
                .map_err(broker)?;
            channel
                .queue_declare(name.into(), durable, args)
                .await
                .map_err(broker)?;
            Ok(channel)
        }
        Err(e) => Err(broker(e)),
    }
}

fn precondition_failed(e: &lapin::Error) -> bool {
    use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
    matches!(
        e.kind(),
        lapin::ErrorKind::ProtocolError(amqp)
            if matches!(amqp.kind(), AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED))
    )
}

struct RabbitSubscription {
    conn: Connection,
    channel: Channel,
    consumer: Consumer,
    consumer_tag: String,
    probe: Option<RabbitBacklog>,
}

/// Reads the queue's ready count with a passive declare.
#[derive(Clone)]
struct RabbitBacklog {
    channel: Channel,
    queue: String,
}

#[async_trait]
impl artisync_ports::bus::QueueBacklog for RabbitBacklog {
    async fn waiting(&self) -> Result<u64, BusError> {
        let queue = self
            .channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(broker)?;
        Ok(u64::from(queue.message_count()))
    }
}

fn traceparent(properties: &lapin::BasicProperties) -> Option<String> {
    properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("traceparent").cloned())
        .and_then(|v| match v {
            AMQPValue::LongString(s) => Some(s.to_string()),
            _ => None,
        })
}

#[async_trait]
impl Subscription for RabbitSubscription {
    fn backlog(&self) -> Option<Box<dyn artisync_ports::bus::QueueBacklog>> {
        self.probe
            .as_ref()
            .map(|p| Box::new(p.clone()) as Box<dyn artisync_ports::bus::QueueBacklog>)
    }

    async fn next(&mut self) -> Option<Incoming> {
        let delivery = match self.consumer.next().await? {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "broker connection lost");
                return None;
            }
        };
        let event = DeploymentEvent::from_json(&delivery.data).map_err(|e| e.to_string());
        Some(Incoming::Delivery(Box::new(Delivery {
            event,
            message_id: delivery
                .properties
                .message_id()
                .as_ref()
                .map(|m| m.to_string()),
            traceparent: traceparent(&delivery.properties),
            ack: Box::new(RabbitAcker(delivery.acker)),
        })))
    }

    async fn close(self: Box<Self>) {
        let _ = self
            .channel
            .basic_cancel(
                self.consumer_tag.as_str().into(),
                BasicCancelOptions::default(),
            )
            .await;
        let _ = self.conn.close(200, "shutting down".into()).await;
    }
}

struct RabbitAcker(lapin::Acker);

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(self: Box<Self>) -> Result<(), BusError> {
        self.0
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(broker)
    }

    async fn reject(self: Box<Self>) -> Result<(), BusError> {
        self.0
            .reject(BasicRejectOptions { requeue: false })
            .await
            .map(|_| ())
            .map_err(broker)
    }
}
