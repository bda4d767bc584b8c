#![forbid(unsafe_code)]
//! The domain model and the wire contracts every artisync component
//! shares: identifiers built once at the edge (`ApiId`, `GatewayLabel`,
//! `Revision`, `Sha256Digest`, `NodeId`), the deployment event of the bus,
//! the messages of the traffic manager's runtime data API, and the names
//! of the broker topology.

pub mod api;
pub mod event;
pub mod fleet;
pub mod ids;
pub mod receipt;
pub mod runtime;
pub mod signature;
pub mod topology;

pub use ids::{ApiId, GatewayLabel, IdError, NodeId, Revision, Sha256Digest};
