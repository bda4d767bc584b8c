//! The data plane (DESIGN.md §7): serves API traffic from an atomically
//! swapped routing table, runs each resource's mediation and proxies to
//! endpoints with a pooled HTTP/1.1 client.
//!
//! Hot path per request: one `ArcSwap` load, at most a handful of hash
//! lookups to find the API by its context, a linear scan of its resources,
//! then mediation on a message context that borrows the request line and
//! moves (never copies) headers and body. No lock is taken; bodies stream
//! through unless a mediator reads them.

mod body;
mod config;
mod context;
mod error_body;
mod expression;
mod headers;
mod matcher;
mod mediation;
mod path;
mod proxy;
mod routing;
mod server;
mod tls;
mod traffic;

#[cfg(test)]
mod tests;

pub use config::DataPlaneConfig;
pub use routing::{CompiledApi, RoutingTable, SharedRoutingTable};
pub use server::{DataPlane, serve, serve_per_core};
pub use tls::{EndpointTlsError, endpoint_tls};
pub use traffic::{ApiTraffic, TrafficRegistry, UpstreamError, render_traffic};
