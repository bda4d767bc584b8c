//! AMQP topology names (DESIGN.md §5). Configurable so that tests and
//! several clusters can share one broker.

use serde::Deserialize;

use crate::NodeId;

pub const DEFAULT_EXCHANGE: &str = "artisync.deployments";
pub const DEFAULT_QUEUE_PREFIX: &str = "artisync.gateway.";

/// Where deployment events go on the broker.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topology {
    /// The durable direct exchange events are published to; the routing key
    /// is the gateway label.
    pub exchange: String,
    /// Each gateway node's durable queue is this prefix plus its node id.
    pub queue_prefix: String,
    /// A node queue left unused this long (no consumer, not declared
    /// again), in ms, is deleted by the broker (`x-expires`): a node gone
    /// for good does not leave a queue growing forever. A node back after
    /// that declares it anew and its reconcile loads what it missed.
    pub queue_expires_ms: u64,
    /// Most events a node queue holds; past it the oldest are dropped
    /// (`x-max-length`, `x-overflow = drop-head`, dead-lettered): a stuck
    /// node cannot hold back publishing to the others, and its reconcile
    /// repairs what was dropped.
    pub queue_max_length: u32,
    /// Most messages a node's dead-letter queue keeps (oldest dropped).
    pub dead_letter_max_length: u32,
}

/// Default of [`Topology::queue_expires_ms`]: 7 days.
pub const DEFAULT_QUEUE_EXPIRES_MS: u64 = 7 * 24 * 3600 * 1000;
/// Default of [`Topology::queue_max_length`].
pub const DEFAULT_QUEUE_MAX_LENGTH: u32 = 100_000;
/// Default of [`Topology::dead_letter_max_length`].
pub const DEFAULT_DEAD_LETTER_MAX_LENGTH: u32 = 10_000;

impl Default for Topology {
    fn default() -> Self {
        Topology {
            exchange: DEFAULT_EXCHANGE.to_owned(),
            queue_prefix: DEFAULT_QUEUE_PREFIX.to_owned(),
            queue_expires_ms: DEFAULT_QUEUE_EXPIRES_MS,
            queue_max_length: DEFAULT_QUEUE_MAX_LENGTH,
            dead_letter_max_length: DEFAULT_DEAD_LETTER_MAX_LENGTH,
        }
    }
}

impl Topology {
    pub fn queue_for(&self, node: &NodeId) -> String {
        format!("{}{}", self.queue_prefix, node)
    }

    /// Where messages that cannot be parsed are parked.
    pub fn dead_letter_queue_for(&self, node: &NodeId) -> String {
        format!("{}{}.dead-letter", self.queue_prefix, node)
    }
}
