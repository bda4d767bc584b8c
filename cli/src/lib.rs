#![forbid(unsafe_code)]
//! The `artisync` command's library: the operator's client of the
//! publisher REST API, and the local cluster launcher used by `artisync
//! up` and by the end-to-end tests.

pub mod client;
pub mod cluster;
pub mod commands;
pub mod components;
pub mod connection;
pub mod embedded;
pub use artisync_process as process;
pub mod output;
pub mod up;
