//! `[gateway.data_plane]`: tuning of the API traffic listener.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Settings of the data plane (the `[gateway.data_plane]` table of the node's
/// TOML config). Every key is optional; unknown keys are refused so that a
/// typo does not silently fall back to a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataPlaneConfig {
    /// How long to wait for an endpoint's response headers, in milliseconds,
    /// when the endpoint has no `<timeout>` of its own; beyond it the client
    /// gets 504. Default 30000.
    pub endpoint_timeout_ms: u64,
    /// How long to wait for a TCP connection to an endpoint, in milliseconds.
    /// Default 5000.
    pub connect_timeout_ms: u64,
    /// The largest request body the gateway accepts (413 beyond it), and the
    /// largest response body it buffers for a mediator that reads it.
    /// Default 10 MiB.
    pub max_request_body_bytes: usize,
    /// Idle keep-alive connections kept per endpoint host (per worker).
    /// Default 64.
    pub pool_idle_per_host: usize,
    /// Threads serving API traffic, each with its own single-threaded
    /// runtime and upstream connection pool, so a request, its client
    /// connection and its endpoint connection stay on one core. 0 (the
    /// default) means one per available core.
    pub workers: usize,
    /// How long the gateway waits for the next bytes of a request body, in
    /// milliseconds; a client that sends nothing for longer gets 408.
    /// Default 30000.
    pub body_read_timeout_ms: u64,
    /// How long a whole request body may take to arrive, in milliseconds,
    /// however steadily it trickles; beyond it the client gets 408.
    /// Default 300000 (5 minutes).
    pub body_total_timeout_ms: u64,
    /// How long a client may take to send its request line and headers, in
    /// milliseconds; beyond it the connection is closed. Default 30000.
    pub header_read_timeout_ms: u64,
    /// Client connections served at once (per listener); further ones wait
    /// in the kernel's backlog until one closes. Default 10000.
    pub max_connections: usize,
    /// `OUT_ONLY` messages (sent to an endpoint in the background) in flight
    /// at once, per worker; beyond it a client gets 503 instead of another
    /// background send. Default 1024.
    pub max_out_only_in_flight: usize,
    /// A PEM file of CA certificates that `https://` endpoints may be
    /// signed by, besides the public (webpki) roots: for endpoints behind a
    /// private CA. Unset by default.
    pub endpoint_ca_file: Option<PathBuf>,
}

impl DataPlaneConfig {
    pub const DEFAULT_ENDPOINT_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
    pub const DEFAULT_MAX_REQUEST_BODY_BYTES: usize = 10 * 1024 * 1024;
    pub const DEFAULT_POOL_IDLE_PER_HOST: usize = 64;
    pub const DEFAULT_BODY_READ_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_BODY_TOTAL_TIMEOUT_MS: u64 = 300_000;
    pub const DEFAULT_HEADER_READ_TIMEOUT_MS: u64 = 30_000;
    pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
    pub const DEFAULT_MAX_OUT_ONLY_IN_FLIGHT: usize = 1024;

    pub fn endpoint_timeout(&self) -> Duration {
        Duration::from_millis(self.endpoint_timeout_ms)
    }

    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    pub fn body_total_timeout(&self) -> Duration {
        Duration::from_millis(self.body_total_timeout_ms)
    }

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_millis(self.header_read_timeout_ms)
    }

    /// How many data-plane threads to run: `workers`, or one per core.
    pub fn worker_count(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for DataPlaneConfig {
    fn default() -> Self {
        DataPlaneConfig {
            endpoint_timeout_ms: Self::DEFAULT_ENDPOINT_TIMEOUT_MS,
            connect_timeout_ms: Self::DEFAULT_CONNECT_TIMEOUT_MS,
            max_request_body_bytes: Self::DEFAULT_MAX_REQUEST_BODY_BYTES,
            pool_idle_per_host: Self::DEFAULT_POOL_IDLE_PER_HOST,
            workers: 0,
            body_read_timeout_ms: Self::DEFAULT_BODY_READ_TIMEOUT_MS,
            body_total_timeout_ms: Self::DEFAULT_BODY_TOTAL_TIMEOUT_MS,
            header_read_timeout_ms: Self::DEFAULT_HEADER_READ_TIMEOUT_MS,
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            max_out_only_in_flight: Self::DEFAULT_MAX_OUT_ONLY_IN_FLIGHT,
            endpoint_ca_file: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_keys_take_their_defaults() {
        let config: DataPlaneConfig =
            serde_json::from_str(r#"{"endpoint_timeout_ms": 1500}"#).unwrap();
        assert_eq!(config.endpoint_timeout_ms, 1500);
        assert_eq!(config.connect_timeout_ms, 5000);
        assert_eq!(config.max_request_body_bytes, 10 * 1024 * 1024);
        assert_eq!(config.pool_idle_per_host, 64);
        assert_eq!(config.workers, 0);
        assert_eq!(config.body_read_timeout_ms, 30_000);
        assert_eq!(config.body_total_timeout_ms, 300_000);
        assert_eq!(config.header_read_timeout_ms, 30_000);
        assert_eq!(config.max_connections, 10_000);
        assert_eq!(config.max_out_only_in_flight, 1024);
        assert!(config.worker_count() >= 1);
    }

    #[test]
    fn an_explicit_worker_count_is_kept() {
        let config: DataPlaneConfig = serde_json::from_str(r#"{"workers": 3}"#).unwrap();
        assert_eq!(config.worker_count(), 3);
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(serde_json::from_str::<DataPlaneConfig>(r#"{"endpoint_timeout": 1}"#).is_err());
    }
}
