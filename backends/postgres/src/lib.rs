#![forbid(unsafe_code)]
//! The PostgreSQL backend: the publisher's artifact store and outbox, the
//! traffic manager's desired state and status intake, and the persistence
//! store, on one schema (`migrations/postgres`).

mod artifacts;
mod credentials;
mod desired;
mod error;
mod fleet;
mod object_store;
mod outbox;
mod receipts;
mod setup;

use std::time::Duration;

use artisync_ports::{Health, StoreError};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub use credentials::{CredentialsError, read_credentials_file, watch_credentials_file};
pub use error::BACKEND;
pub use setup::ensure_database;
pub use sqlx::postgres::PgConnectOptions;

/// Embedded migrations from `migrations/postgres`. Running them
/// concurrently from several processes is safe: sqlx serialises them with
/// an advisory lock.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/postgres");

/// A pooled connection idle for longer than this is checked with a round
/// trip before it is handed out; one used more recently is handed out
/// as is.
pub const PING_CONNECTIONS_IDLE_FOR: Duration = Duration::from_secs(10);

/// Channel the `outbox` insert trigger notifies on.
pub const NOTIFY_CHANNEL: &str = "artisync_outbox";

/// Pool options for the services. sqlx's default pings every connection
/// before handing it out, one extra round trip per request; a connection
/// that was just used is alive, and one that broke since fails its query
/// and is discarded, so only connections that sat idle are checked.
pub fn pool_options() -> PgPoolOptions {
    use sqlx::Connection;
    PgPoolOptions::new()
        .test_before_acquire(false)
        .before_acquire(|connection, meta| {
            Box::pin(async move {
                if meta.idle_for >= PING_CONNECTIONS_IDLE_FOR {
                    connection.ping().await?;
                }
                Ok(true)
            })
        })
}

/// How the pool behaves.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// How long a request waits for a free connection before failing.
    pub acquire_timeout: Duration,
    /// Connections older than this are closed and reopened.
    pub max_lifetime: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            max_lifetime: Duration::from_secs(1800),
        }
    }
}

/// Why the backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    // The URL itself is never part of a message: it holds a password.
    #[error("invalid PostgreSQL URL (from {origin}): {source}")]
    InvalidUrl { origin: String, source: sqlx::Error },
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the PostgreSQL schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database name {0:?} must be letters, digits, '_' or '-'")]
    InvalidName(String),
}

/// Parses a `postgres://` URL; the error names where it came from, never
/// the URL (it holds a password).
pub fn parse_url(url: &str, origin: &str) -> Result<PgConnectOptions, OpenError> {
    url.trim()
        .parse::<PgConnectOptions>()
        .map_err(|source| OpenError::InvalidUrl {
            origin: origin.to_owned(),
            source,
        })
}

/// Connection errors that a retry cannot mend: TLS refused (a certificate
/// the CA does not vouch for surfaces as invalid data) or a bad setting.
fn is_permanent(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Tls(_) | sqlx::Error::Configuration(_) => true,
        sqlx::Error::Io(io) => io.kind() == std::io::ErrorKind::InvalidData,
        _ => false,
    }
}

/// Every port on one pool.
#[derive(Clone)]
pub struct PgBackend {
    pool: PgPool,
    /// Deploy events carry artifacts up to this size.
    inline_artifact_max_bytes: usize,
}

impl PgBackend {
    /// Artifacts up to this size travel inside their deploy events.
    pub const DEFAULT_INLINE_ARTIFACT_MAX_BYTES: usize = 64 * 1024;

    /// Connects, waiting for the database with backoff (it may still be
    /// starting when the cluster comes up), and migrates the schema.
    pub async fn connect(
        options: PgConnectOptions,
        pool: &PoolSettings,
    ) -> Result<Self, OpenError> {
        let pool = Self::connect_pool(options, pool).await?;
        MIGRATOR.run(&pool).await?;
        Ok(PgBackend::from_pool(pool))
    }

    /// Connects as [`PgBackend::connect`] does, without touching the
    /// schema (for a role that may only read and write rows).
    pub async fn connect_pool(
        options: PgConnectOptions,
        pool: &PoolSettings,
    ) -> Result<PgPool, OpenError> {
        let connect = || async {
            pool_options()
                .max_connections(pool.max_connections)
                .acquire_timeout(pool.acquire_timeout)
                .max_lifetime(pool.max_lifetime)
                .connect_with(options.clone())
                .await
        };
        let pool = connect
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(15),
            )
            // A certificate the CA does not vouch for, or a bad setting,
            // fails the same way every time.
            .when(|e| !is_permanent(e))
            .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "PostgreSQL not reachable yet"))
            .await
            .map_err(OpenError::Connect)?;
        Ok(pool)
    }

    /// On a pool made elsewhere (its schema already migrated).
    pub fn from_pool(pool: PgPool) -> Self {
        PgBackend {
            pool,
            inline_artifact_max_bytes: Self::DEFAULT_INLINE_ARTIFACT_MAX_BYTES,
        }
    }

    /// Deploy events carry the artifact itself up to `max_bytes` (0:
    /// never), so that gateways deploy without fetching it.
    pub fn with_inline_artifact_limit(mut self, max_bytes: usize) -> Self {
        self.inline_artifact_max_bytes = max_bytes;
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[async_trait]
impl Health for PgBackend {
    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM apis LIMIT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(error::db)
    }
}
