#![forbid(unsafe_code)]
//! HTTP plumbing shared by the publisher, the traffic manager and the
//! gateway admin API.

mod auth;
mod error;
mod observe;
mod openapi;
mod pool;
mod serve;
pub mod tls;

pub use auth::{BearerTokens, bearer_token, constant_time_eq, presented_token, require_bearer};
pub use error::{ApiError, ErrorBody, json_errors, store_status};
pub use observe::{HttpMetrics, RequestObserver, observe_requests};
pub use openapi::BearerAuth;
pub use pool::{ParsePool, PoolError};
pub use serve::{
    HEADER_READ_TIMEOUT, MAX_CONNECTIONS, SHUTDOWN_GRACE, ServeLimits, serve, serve_on, serve_with,
    serve_with_grace,
};

/// Response headers of `runtime-artifacts`.
pub const REVISION_HEADER: &str = "x-artisync-revision";
/// SHA-256 (hex) of a pushed artifact, checked before it is deployed.
pub const SHA256_HEADER: &str = "x-artisync-sha256";
pub const API_ID_HEADER: &str = "x-artisync-api-id";
pub const SEQUENCE_HEADER: &str = "x-artisync-sequence";
