#![forbid(unsafe_code)]
//! The artisync gateway node: subscribes to its labels' deployment events,
//! fetches and hot-deploys artifacts with retries, reconciles against the
//! traffic manager, keeps a disk cache, and serves API traffic.

pub mod admin;
pub mod cache;
pub mod config;
pub mod dataplane;
pub mod events;
pub mod metrics;
pub mod node;
pub mod source;
pub mod state;
pub mod sync;
