//! The event bus boundary and its RabbitMQ implementation.

use std::future::Future;

use artisync_shared::amqp::Topology;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use thiserror::Error;
use uuid::Uuid;

/// An event taken from the outbox, ready to publish.
#[derive(Debug, Clone)]
pub struct OutboundEvent {
    pub outbox_id: i64,
    pub event_id: Uuid,
    pub routing_key: String,
    pub payload: Vec<u8>,
    pub traceparent: Option<String>,
}

#[derive(Debug, Error)]
pub enum BusError {
    #[error("cannot reach the broker at {url}: {source}")]
    Connect { url: String, source: lapin::Error },
    #[error("broker error while publishing event {event_id}: {source}")]
    Publish {
        event_id: Uuid,
        source: lapin::Error,
    },
    #[error("broker refused event {event_id} (negative confirm)")]
    Nacked { event_id: Uuid },
}

impl BusError {
    /// Every bus error is transient: the relay retries the same events.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Publishes events durably: `publish` returns only once the broker has
/// confirmed every event of the batch.
pub trait EventBus: Send + 'static {
    fn publish(
        &mut self,
        events: &[OutboundEvent],
    ) -> impl Future<Output = Result<(), BusError>> + Send;
}

/// RabbitMQ with publisher confirms; reconnects lazily after a failure.
pub struct RabbitBus {
    url: String,
    topology: Topology,
    channel: Option<(Connection, Channel)>,
}

impl RabbitBus {
    pub fn new(url: String, topology: Topology) -> Self {
        RabbitBus {
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
            let connect = |source| BusError::Connect {
                url: redact(&self.url),
                source,
            };
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
}

/// Declares the deployments exchange (durable, direct) as DESIGN.md §5 says.
pub async fn declare_exchange(channel: &Channel, exchange: &str) -> Result<(), lapin::Error> {
    channel
        .exchange_declare(
            exchange.into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
}

impl EventBus for RabbitBus {
    async fn publish(&mut self, events: &[OutboundEvent]) -> Result<(), BusError> {
        let exchange = self.topology.exchange.clone();
        let result = async {
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
                    .map_err(|source| BusError::Publish {
                        event_id: event.event_id,
                        source,
                    })?;
                pending.push((event.event_id, confirm));
            }
            for (event_id, confirm) in pending {
                match confirm
                    .await
                    .map_err(|source| BusError::Publish { event_id, source })?
                {
                    Confirmation::Ack(_) | Confirmation::NotRequested => {}
                    Confirmation::Nack(_) => return Err(BusError::Nacked { event_id }),
                }
            }
            Ok(())
        }
        .await;
        if result.is_err() {
            // Start from a fresh connection next time.
            self.channel = None;
        }
        result
    }
}

/// Hides the password of a URL for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            super::redact("amqp://guest:secret@host:5672/%2f"),
            "amqp://guest:***@host:5672/%2f"
        );
        assert_eq!(super::redact("amqp://host"), "amqp://host");
    }
}
