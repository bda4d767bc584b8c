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
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            exchange: DEFAULT_EXCHANGE.to_owned(),
            queue_prefix: DEFAULT_QUEUE_PREFIX.to_owned(),
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
