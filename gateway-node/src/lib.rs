#![forbid(unsafe_code)]
//! The artisync gateway node: subscribes to its labels' deployment events,
//! fetches and hot-deploys artifacts with retries, reconciles against the
//! desired state, keeps a disk cache, and serves API traffic. It reaches
//! the artifact source and the event bus through the ports of
//! `artisync-ports`; the binary's composition root picks the backends.

pub mod admin;
pub mod cache;
pub mod config;
pub mod dataplane;
pub mod events;
pub mod metrics;
pub mod node;
mod pushed_only;
pub mod start;
pub mod state;
pub mod sync;
