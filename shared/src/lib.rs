#![forbid(unsafe_code)]
//! Types and code shared by every artisync component.

pub mod amqp;
pub mod config;
#[cfg(feature = "db")]
pub mod db;
pub mod event;
pub mod http;
pub mod ids;
pub mod metrics;
pub mod runtime;
#[cfg(feature = "signals")]
pub mod signals;
pub mod synapse;
pub mod telemetry;

pub use ids::{ApiId, GatewayLabel, IdError, NodeId, Revision, Sha256Digest};
