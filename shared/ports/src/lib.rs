#![forbid(unsafe_code)]
//! The ports: small traits through which the core (publisher logic,
//! traffic-manager logic, the gateway synchronizer) reaches the world.
//! Backends implement them in crates the core does not depend on; only a
//! binary's composition root picks one.
//!
//! | port | used by | backends |
//! | --- | --- | --- |
//! | [`ArtifactStore`] + [`Outbox`] | publisher | PostgreSQL, SQLite, MySQL |
//! | [`DesiredState`] (desired state + status intake) | traffic manager; publisher (direct push) | PostgreSQL, SQLite, MySQL |
//! | [`ObjectStore`] | traffic manager | PostgreSQL, SQLite |
//! | [`EventPublisher`] / [`EventSubscriber`] | publisher relay / gateway | RabbitMQ, in-process |
//! | [`ArtifactSource`] | gateway | HTTP to the traffic manager, in-process |
//! | [`Health`] | every readiness probe | each storage backend |
//! | [`GatewayAdmin`](push::GatewayAdmin) | publisher (direct push) | HTTP to a gateway's admin API |

pub mod artifacts;
pub mod bus;
pub mod desired;
mod error;
pub mod fleet;
pub mod health;
pub mod object_store;
pub mod outbox;
pub mod push;
pub mod receipts;
pub mod rules;
pub mod source;

pub use artifacts::ArtifactStore;
pub use bus::{EventPublisher, EventSubscriber};
pub use desired::DesiredState;
pub use error::StoreError;
pub use health::Health;
pub use object_store::ObjectStore;
pub use outbox::{Outbox, OutboxSession};
pub use source::ArtifactSource;

use std::sync::Arc;

/// What the publisher reaches the world through.
pub struct PublisherBackends {
    pub store: Arc<dyn ArtifactStore>,
    pub outbox: Arc<dyn Outbox>,
    pub health: Arc<dyn Health>,
    /// Where the relay publishes the outbox.
    pub bus: Box<dyn EventPublisher>,
    /// The same store's desired state of each label: what the publisher
    /// pushes to gateways with `publish_directly_to_gateway`.
    pub desired: Arc<dyn DesiredState>,
    /// The gateways to push to (`publish_directly_to_gateway`); empty when
    /// gateways pull from the traffic manager.
    pub push_targets: Vec<push::PushTarget>,
}

/// What the traffic manager reaches the world through.
pub struct TrafficManagerBackends {
    pub desired: Arc<dyn DesiredState>,
    pub object_store: Arc<dyn ObjectStore>,
    pub health: Arc<dyn Health>,
}

/// What a gateway node reaches the world through.
pub struct GatewayBackends {
    pub source: Arc<dyn ArtifactSource>,
    pub events: Arc<dyn EventSubscriber>,
}
