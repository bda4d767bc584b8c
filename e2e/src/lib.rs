#![forbid(unsafe_code)]
//! The end-to-end tests and benchmarks; their harness is the shared
//! test-support crate.

pub use artisync_test_support::*;
