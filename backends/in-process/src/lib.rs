#![forbid(unsafe_code)]
//! Backends for the embedded default, where the publisher, the traffic
//! manager and the gateway nodes share one process.

mod bus;
mod source;

pub use bus::{BusStats, InProcessBus};
pub use source::InProcessSource;
