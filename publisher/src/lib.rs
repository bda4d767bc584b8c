#![forbid(unsafe_code)]
//! The artisync publisher: stores API artifacts as revisions in PostgreSQL,
//! records deployments, and relays deployment events to RabbitMQ through a
//! transactional outbox.

pub mod api;
pub mod app;
pub mod bus;
pub mod config;
pub mod metrics;
pub mod outbox;
pub mod store;
