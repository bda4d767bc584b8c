//! The transactional outbox: events committed with their change, drained
//! in order by one relay (the leader) across every publisher replica.

use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::StoreError;

/// An event taken from the outbox, ready to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundEvent {
    /// Position in the outbox: events leave in this order.
    pub outbox_id: i64,
    /// The broker's `message_id`, unique per routed copy.
    pub event_id: Uuid,
    /// The gateway label the event is for.
    pub routing_key: String,
    /// The JSON of the deployment event.
    pub payload: Vec<u8>,
    /// The trace of the request that made the change.
    pub traceparent: Option<String>,
}

/// How much is waiting, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Backlog {
    /// Events committed but not yet confirmed by the bus.
    pub unsent: u64,
    /// Age of the oldest of them (zero when there is none).
    pub oldest_unsent: Duration,
}

#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// A relay's own session (its own connection, where the backend has
    /// them). Leadership, once taken, lives as long as the session does.
    async fn session(&self) -> Result<Box<dyn OutboxSession>, StoreError>;
    async fn backlog(&self) -> Result<Backlog, StoreError>;
    /// Deletes sent events older than `retention`; answers how many.
    async fn prune(&self, retention: Duration) -> Result<u64, StoreError>;
}

/// One relay's hold on the outbox.
#[async_trait]
pub trait OutboxSession: Send {
    /// Whether this session leads, taking the lead when no other session
    /// holds it. Only the leader claims, so events leave in order.
    async fn lead(&mut self) -> Result<bool, StoreError>;
    /// The oldest unsent events, at most `max`.
    async fn claim_batch(&mut self, max: usize) -> Result<Vec<OutboundEvent>, StoreError>;
    /// Marks events the bus confirmed. A mark lost in a crash only means
    /// the events go out again, which at-least-once delivery allows.
    async fn mark_sent(&mut self, ids: &[i64]) -> Result<(), StoreError>;
    /// Resolves when events may have been committed since the last call.
    /// A backend that cannot tell never resolves, and the relay polls.
    /// An error means the notifications were lost; the next call sets
    /// them up again and resolves at once, so nothing committed meanwhile
    /// waits for the poll.
    async fn changed(&mut self) -> Result<(), StoreError>;
    /// Ends the session, releasing the lead at once for another relay.
    async fn close(self: Box<Self>);
}
