#![forbid(unsafe_code)]
//! The artisync publisher: stores API artifacts as revisions, records
//! deployments, and relays deployment events through a transactional
//! outbox. It reaches storage and the bus only through the ports of
//! `artisync-ports`; the binary's composition root picks the backends.

pub mod api;
pub mod app;
pub mod config;
mod environments;
pub mod metrics;
pub mod propagation;
pub mod push;
pub mod relay;
pub mod ui;
