//! The event bus: the relay publishes deployment events routed by gateway
//! label; each gateway node consumes its own durable queue, bound once per
//! label it serves, and acks an event only once it is handled.

use artisync_domain::event::DeploymentEvent;
use artisync_domain::{GatewayLabel, NodeId};
use async_trait::async_trait;
use thiserror::Error;

use crate::outbox::OutboundEvent;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
#[error("{message}")]
pub struct BusError {
    pub message: String,
}

impl BusError {
    pub fn new(message: impl Into<String>) -> Self {
        BusError {
            message: message.into(),
        }
    }

    /// Every bus failure is transient: the same events go out again.
    pub fn is_retryable(&self) -> bool {
        true
    }
}

/// Publishes events durably: `publish` returns only once the bus has
/// taken every event of the batch (publisher confirms).
#[async_trait]
pub trait EventPublisher: Send + 'static {
    async fn publish(&mut self, events: &[OutboundEvent]) -> Result<(), BusError>;
}

/// Where a gateway node's events come from.
#[async_trait]
pub trait EventSubscriber: Send + Sync + 'static {
    /// Declares the node's queue, binds it to each label and starts
    /// consuming, with at most `prefetch` deliveries unacked.
    async fn subscribe(
        &self,
        node: &NodeId,
        labels: &[GatewayLabel],
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, BusError>;
    /// The node's queue, for logs.
    fn queue_name(&self, node: &NodeId) -> String;
}

/// One live subscription.
#[async_trait]
pub trait Subscription: Send {
    /// The next delivery. `None` when the subscription ended (the
    /// connection was lost): subscribe again.
    async fn next(&mut self) -> Option<Incoming>;
    /// Stops consuming; deliveries not acked go back to the queue.
    async fn close(self: Box<Self>);
    /// A handle that counts the messages waiting in the node's queue,
    /// usable while the subscription consumes (the fleet view's backlog).
    fn backlog(&self) -> Option<Box<dyn QueueBacklog>> {
        None
    }
}

/// Counts what waits in one node's queue.
#[async_trait]
pub trait QueueBacklog: Send + Sync {
    /// Messages ready for the node, not yet delivered.
    async fn waiting(&self) -> Result<u64, BusError>;
}

pub enum Incoming {
    Delivery(Box<Delivery>),
    /// The bus dropped events for this node (its queue was full). The
    /// node reconciles, which repairs whatever they were.
    Dropped {
        count: u64,
    },
}

/// One message: its event (or why it is not one), the trace context of
/// the change, and the handle that acks it.
pub struct Delivery {
    pub event: Result<DeploymentEvent, String>,
    pub message_id: Option<String>,
    pub traceparent: Option<String>,
    pub ack: Box<dyn Acker>,
}

#[async_trait]
pub trait Acker: Send {
    /// Done with it: the bus forgets it.
    async fn ack(self: Box<Self>) -> Result<(), BusError>;
    /// It can never be handled (unparsable): off to the dead-letter queue.
    async fn reject(self: Box<Self>) -> Result<(), BusError>;
}
