#![forbid(unsafe_code)]
//! The artisync traffic manager: serves gateways the desired state of their
//! labels and the artifacts, takes their status reports, and hosts the
//! persistence store.

pub mod app;
pub mod auth;
pub mod config;
pub mod db;
pub mod internal_api;
pub mod metrics;
pub mod object_store;
pub mod state;
pub mod status_intake;
