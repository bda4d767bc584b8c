//! The persistence store (DESIGN.md §8): an Object Store v2-compatible REST
//! API on the storage backend (PostgreSQL or SQLite), the equivalent of MuleSoft's Persistence Gateway.
//!
//! Routes (all JSON; errors are `{"code", "message"}`):
//!
//! | method | path | answer |
//! | --- | --- | --- |
//! | GET | `/api/v1/status/ready` | 200 / 503, no authentication |
//! | GET | `/api/v1/organizations/{orgId}/environments/{envId}/stores` | page of stores |
//! | GET, PUT, DELETE | `.../stores/{storeId}` | store; PUT creates or updates |
//! | GET | `.../stores/{storeId}/partitions` | page of partition names |
//! | DELETE | `.../stores/{storeId}/partitions/{partitionId}` | 204, atomically |
//! | GET | `.../partitions/{partitionId}/keys` | page of `{"keyId"}` |
//! | GET, PUT, POST, DELETE | `.../partitions/{partitionId}/keys/{keyId}` | item with `ETag` |
//!
//! Authentication happens outside this router: the caller's middleware
//! inserts a [`ClientIdentity`] request extension, which the API routes
//! require and use as the rate limiter's key.
//!
//! Store flags `persistent` and `encrypted` are recorded and returned as
//! Object Store v2 clients expect, but change nothing: every item lives in
//! PostgreSQL (persistent), and encryption at rest is the database's
//! (volume or TDE) concern, as with the Persistence Gateway.
//!
//! Conditional requests: items carry a version, sent as `ETag: "<n>"`.
//! `If-Match` on PUT/DELETE answers 412 when no listed version matches (or
//! the key is absent); `If-None-Match: *` on PUT inserts only, answering
//! 201, or 412 when the key exists (RFC 9110's answer to a failed
//! precondition; POST answers 409 for the same case); `If-None-Match` on
//! GET answers 304 while the version is unchanged.

mod error;
mod handlers;
mod model;
mod rate_limit;
mod tenancy;

pub use tenancy::{NameScope, StoreScope};

use std::sync::Arc;
use std::time::Duration;

use artisync_ports::{ObjectStore, StoreError};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use artisync_ports::object_store::ROLLING_REFRESH_FRACTION;
pub use error::ApiError;
pub use model::{DEFAULT_PAGE_SIZE, MAX_KEY_BYTES, MAX_PAGE_SIZE, MAX_TTL_SECONDS};
pub use rate_limit::RateLimiter;

/// The authenticated client of a request, inserted as a request extension
/// by the authentication middleware in front of [`router`]. Requests to the
/// API routes without it are answered 401.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The token's name: the rate limiter's key.
    pub name: String,
    /// The stores it may use.
    pub stores: StoreScope,
}

impl ClientIdentity {
    /// A client that may use every store (an operator's token).
    pub fn unrestricted(name: impl Into<String>) -> Self {
        ClientIdentity {
            name: name.into(),
            stores: StoreScope::Within {
                organizations: NameScope::All,
                environments: NameScope::All,
            },
        }
    }
}

/// `[object_store]`: the persistence store's behaviour.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectStoreConfig {
    /// Where the persistence store's data is, when not in `[database]`:
    /// `postgres://…` or `sqlite://PATH`. MySQL does not hold it, so with
    /// a MySQL `[database]` it defaults to
    /// `sqlite://artisync-object-store.db` (in the working directory):
    /// give every traffic manager replica the same PostgreSQL here
    /// instead, so that they share one store.
    #[serde(default)]
    pub database_url: Option<String>,
    /// Seconds between two runs of the job that deletes expired items.
    /// Default 3600 (60 minutes). Expired items are invisible before that.
    #[serde(default = "default_purge_interval_seconds")]
    pub purge_interval_seconds: u64,
    /// Items deleted per statement by the purge job; it loops until a batch
    /// comes back short, so a large backlog never holds one long lock.
    /// Default 1000.
    #[serde(default = "default_purge_batch_size")]
    pub purge_batch_size: u32,
    /// Requests per second allowed to each authenticated client (token
    /// bucket); beyond it the answer is 429 with `Retry-After`. Absent:
    /// unlimited.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Requests a client may send in a burst above its rate (the bucket
    /// size). Default: `rate_limit_per_second`, i.e. one second's worth.
    #[serde(default)]
    pub rate_limit_burst: Option<u32>,
    /// Largest value accepted, in bytes: the base64 text of a BINARY value,
    /// the UTF-8 bytes of a STRING, the literal of a NUMBER. Larger values
    /// are answered 413. Default 10485760 (10 MiB). Request bodies may be
    /// up to twice this (plus 64 KiB) to leave room for JSON escaping.
    #[serde(default = "default_max_value_bytes")]
    pub max_value_bytes: usize,
    /// Requests served at once, across clients; one that finds them all
    /// busy waits up to 2 s, then gets 503 with `Retry-After`. Keeps a
    /// flood of persistence-store requests from taking every database
    /// connection the gateways' data API needs: keep it below `[database]
    /// max_backend_connection_pool`. Default 8.
    #[serde(default = "default_max_concurrent_requests")]
    pub max_concurrent_requests: usize,
}

fn default_max_concurrent_requests() -> usize {
    8
}

fn default_purge_interval_seconds() -> u64 {
    3600
}

fn default_purge_batch_size() -> u32 {
    1000
}

fn default_max_value_bytes() -> usize {
    10 * 1024 * 1024
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            database_url: None,
            purge_interval_seconds: default_purge_interval_seconds(),
            purge_batch_size: default_purge_batch_size(),
            rate_limit_per_second: None,
            rate_limit_burst: None,
            max_value_bytes: default_max_value_bytes(),
            max_concurrent_requests: default_max_concurrent_requests(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid persistence store configuration: `{key}` {reason}")]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: &'static str,
}

impl ObjectStoreConfig {
    /// Checks the configuration; the error names the offending key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, reason| Err(ConfigError { key, reason });
        if self.purge_interval_seconds == 0 {
            return fail("purge_interval_seconds", "must be at least 1");
        }
        if self.purge_batch_size == 0 {
            return fail("purge_batch_size", "must be at least 1");
        }
        if self.rate_limit_per_second == Some(0) {
            return fail(
                "rate_limit_per_second",
                "must be at least 1 (leave it out for no limit)",
            );
        }
        if self.rate_limit_burst == Some(0) {
            return fail("rate_limit_burst", "must be at least 1");
        }
        if self.rate_limit_burst.is_some() && self.rate_limit_per_second.is_none() {
            return fail(
                "rate_limit_burst",
                "needs `rate_limit_per_second` to be set",
            );
        }
        if self.max_value_bytes == 0 {
            return fail("max_value_bytes", "must be at least 1");
        }
        if self.max_concurrent_requests == 0 {
            return fail("max_concurrent_requests", "must be at least 1");
        }
        Ok(())
    }

    /// The request body limit of the item routes.
    fn body_limit(&self) -> usize {
        self.max_value_bytes
            .saturating_mul(2)
            .saturating_add(64 * 1024)
    }
}

/// What the handlers share: the store, the configuration and the limiter.
#[derive(Clone)]
pub struct ObjectStoreState {
    store: Arc<dyn ObjectStore>,
    config: Arc<ObjectStoreConfig>,
    limiter: Option<Arc<RateLimiter>>,
    /// `max_concurrent_requests` slots.
    slots: Arc<tokio::sync::Semaphore>,
}

impl ObjectStoreState {
    pub fn new(
        store: Arc<dyn ObjectStore>,
        config: ObjectStoreConfig,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let limiter = config.rate_limit_per_second.map(|rate| {
            Arc::new(RateLimiter::new(
                rate,
                config.rate_limit_burst.unwrap_or(rate),
            ))
        });
        Ok(ObjectStoreState {
            store,
            slots: Arc::new(tokio::sync::Semaphore::new(
                config
                    .max_concurrent_requests
                    .min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            config: Arc::new(config),
            limiter,
        })
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }
}

/// All the persistence store's routes: [`ready_router`] merged with
/// [`api_router`]. Mount it behind the authentication middleware that
/// inserts [`ClientIdentity`] only if that middleware lets
/// `/api/v1/status/ready` through; otherwise mount the two parts
/// separately, the readiness route outside authentication.
pub fn router(state: ObjectStoreState) -> Router {
    ready_router(state.clone()).merge(api_router(state))
}

/// `GET /api/v1/status/ready` alone: needs no [`ClientIdentity`] and is not
/// rate limited, so probes work without a token.
pub fn ready_router(state: ObjectStoreState) -> Router {
    Router::new()
        .route("/api/v1/status/ready", get(handlers::ready))
        .with_state(state)
}

/// The Object Store v2 resources under
/// `/api/v1/organizations/{orgId}/environments/{envId}/stores`. Requests
/// without a [`ClientIdentity`] extension are answered 401.
pub fn api_router(state: ObjectStoreState) -> Router {
    use handlers as h;
    const ENV: &str = "/api/v1/organizations/{orgId}/environments/{envId}";
    Router::new()
        .route(&format!("{ENV}/stores"), get(h::list_stores))
        .route(
            &format!("{ENV}/stores/{{storeId}}"),
            get(h::get_store).put(h::put_store).delete(h::delete_store),
        )
        .route(
            &format!("{ENV}/stores/{{storeId}}/partitions"),
            get(h::list_partitions),
        )
        .route(
            &format!("{ENV}/stores/{{storeId}}/partitions/{{partitionId}}"),
            axum::routing::delete(h::delete_partition),
        )
        .route(
            &format!("{ENV}/stores/{{storeId}}/partitions/{{partitionId}}/keys"),
            get(h::list_keys),
        )
        .route(
            &format!("{ENV}/stores/{{storeId}}/partitions/{{partitionId}}/keys/{{keyId}}"),
            get(h::get_item)
                .put(h::put_item)
                .post(h::post_item)
                .delete(h::delete_item),
        )
        // route_layer: unmatched paths stay 404 instead of 401/429.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            h::identify_and_limit,
        ))
        .layer(DefaultBodyLimit::max(state.config.body_limit()))
        .with_state(state)
}

/// Deletes expired items until none is left, in batches of `batch_size`.
/// Returns how many were deleted.
pub async fn purge_expired(store: &dyn ObjectStore, batch_size: u32) -> Result<u64, StoreError> {
    purge_until(store, batch_size, None).await
}

async fn purge_until(
    store: &dyn ObjectStore,
    batch_size: u32,
    shutdown: Option<&CancellationToken>,
) -> Result<u64, StoreError> {
    let batch = i64::from(batch_size.max(1));
    let mut total = 0;
    loop {
        let deleted = store.purge_expired_batch(batch).await?;
        total += deleted;
        // A short batch means the backlog is done (or the rest is being
        // purged by another replica, whose rows SKIP LOCKED passed over).
        if deleted < batch as u64 || shutdown.is_some_and(CancellationToken::is_cancelled) {
            return Ok(total);
        }
        // Let request traffic use the connection between batches.
        tokio::task::yield_now().await;
    }
}

/// Runs the purge every `purge_interval_seconds` (first run right away)
/// until `shutdown` is cancelled. Several traffic managers may run it at
/// once against one database.
pub fn spawn_purge_job(
    store: Arc<dyn ObjectStore>,
    config: &ObjectStoreConfig,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let interval = Duration::from_secs(config.purge_interval_seconds.max(1));
    let batch_size = config.purge_batch_size;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = ticker.tick() => {}
            }
            let run = tokio::select! {
                _ = shutdown.cancelled() => return,
                run = purge_until(store.as_ref(), batch_size, Some(&shutdown)) => run,
            };
            match run {
                Ok(0) => tracing::debug!("persistence store purge: nothing expired"),
                Ok(deleted) => {
                    tracing::info!(deleted, "persistence store purge: expired items deleted")
                }
                Err(error) => {
                    tracing::warn!(%error, "persistence store purge failed; retrying at the next interval")
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let config: ObjectStoreConfig =
            serde_json::from_str("{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(config.purge_interval_seconds, 3600);
        assert_eq!(config.purge_batch_size, 1000);
        assert_eq!(config.rate_limit_per_second, None);
        assert_eq!(config.max_value_bytes, 10 * 1024 * 1024);
        assert!(config.validate().is_ok());
        let bad = ObjectStoreConfig {
            rate_limit_per_second: Some(0),
            ..ObjectStoreConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError {
                key: "rate_limit_per_second",
                ..
            })
        ));
    }
}
