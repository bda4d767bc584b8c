//! The relay's side: publish a batch, then wait for the broker's confirms.

use artisync_domain::topology::Topology;
use artisync_ports::bus::{BusError, EventPublisher};
use artisync_ports::outbox::OutboundEvent;
use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use crate::{declare_exchange, redact};

/// RabbitMQ with publisher confirms; reconnects lazily after a failure.
pub struct RabbitPublisher {
    url: String,
    topology: Topology,
    channel: Option<(Connection, Channel)>,
}

impl RabbitPublisher {
    pub fn new(url: String, topology: Topology) -> Self {
        RabbitPublisher {
            url,
            topology,
            channel: None,
        }
    }

    async fn channel(&mut self) -> Result<&Channel, BusError> {
        let usable = self
            .channel
            .as_ref()
            .is_some_and(|(conn, ch)| conn.status().connected() && ch.status().connected());
        if !usable {
            self.channel = None;
            let url = redact(&self.url);
            let connect =
                |e: lapin::Error| BusError::new(format!("cannot reach the broker at {url}: {e}"));
            let conn = Connection::connect(
                &self.url,
                ConnectionProperties::default().with_connection_name("artisync-publisher".into()),
            )
            .await
            .map_err(connect)?;
            let channel = conn.create_channel().await.map_err(connect)?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(connect)?;
            declare_exchange(&channel, &self.topology.exchange)
                .await
                .map_err(connect)?;
            tracing::info!(exchange = %self.topology.exchange, "connected to the broker");
            self.channel = Some((conn, channel));
        }
        match &self.channel {
            Some((_, channel)) => Ok(channel),
            None => unreachable!("the channel was just set"),
        }
    }

    async fn publish_batch(&mut self, events: &[OutboundEvent]) -> Result<(), BusError> {
        let exchange = self.topology.exchange.clone();
        let channel = self.channel().await?;
        // Publish the whole batch, then wait for the confirms: one round
        // trip per batch instead of one per event.
        let mut pending = Vec::with_capacity(events.len());
        for event in events {
            let mut headers = FieldTable::default();
            if let Some(tp) = &event.traceparent {
                headers.insert(
                    "traceparent".into(),
                    AMQPValue::LongString(tp.as_str().into()),
                );
            }
            let properties = BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type("application/json".into())
                .with_message_id(ShortString::from(event.event_id.to_string()))
                .with_headers(headers);
            let confirm = channel
                .basic_publish(
                    exchange.as_str().into(),
                    event.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &event.payload,
                    properties,
                )
                .await
                .map_err(|e| {
                    BusError::new(format!(
                        "broker error while publishing event {}: {e}",
                        event.event_id
                    ))
                })?;
            pending.push((event.event_id, confirm));
        }
        for (event_id, confirm) in pending {
            let confirmation = confirm.await.map_err(|e| {
                BusError::new(format!(
                    "broker error while publishing event {event_id}: {e}"
                ))
            })?;
            match confirmation {
                Confirmation::Ack(_) | Confirmation::NotRequested => {}
                Confirmation::Nack(_) => {
                    return Err(BusError::new(format!(
                        "broker refused event {event_id} (negative confirm)"
                    )));
                }
            }
        }
        Ok(())
    }
}

#[async_trait]
impl EventPublisher for RabbitPublisher {
    async fn publish(&mut self, events: &[OutboundEvent]) -> Result<(), BusError> {
        let result = self.publish_batch(events).await;
        if result.is_err() {
            // Start from a fresh connection next time.
            self.channel = None;
        }
        result
    }
}
