#![forbid(unsafe_code)]
//! What artisync's tests share: throwaway databases and broker names,
//! clusters of the real binaries, components started in-process, fault
//! proxies, a local HTTP backend, fixtures and the compose interpreter.

pub mod backend;
pub mod browser;
pub mod components;
pub mod compose;
pub mod conformance;
pub mod env;
pub mod fault;
pub mod fixtures;
pub mod mysql;
pub mod postgres;
pub mod up;

pub use artisync_cli::cluster;
pub use artisync_process as process;
pub use env::{TestCluster, TestEnv, amqp_url, eventually, tail};
pub use fixtures::{mock_api, too_large_to_inline};
