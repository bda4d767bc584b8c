#![forbid(unsafe_code)]
//! The MySQL / MariaDB backend (MySQL 8, MariaDB ≥ 10.6): the publisher's
//! artifact store and outbox, the traffic manager's desired state and
//! status intake, on one schema (`migrations/mysql`). The persistence
//! store is not here: it stays on PostgreSQL or SQLite.
//!
//! The guarantees are PostgreSQL's: each change commits in one
//! transaction with its outbox rows; changes to one API are serialised by
//! a row lock on the API (`SELECT … FOR UPDATE`); one relay leads, the one
//! holding a `GET_LOCK` lock on its own connection; commits made through
//! this backend wake the relay at once, commits of other publishers are
//! found by its poll.

mod artifacts;
mod desired;
mod error;
mod fleet;
mod outbox;
mod receipts;
mod setup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use artisync_ports::{Health, StoreError};
use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use sqlx::MySqlPool;
use sqlx::mysql::MySqlPoolOptions;
use tokio::sync::watch;

pub use error::BACKEND;
pub use setup::ensure_database;
pub use sqlx::mysql::MySqlConnectOptions;

/// Embedded migrations from `migrations/mysql`; run them with [`migrate`].
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/mysql");

/// How long a process waits for another one's migrations to finish.
const MIGRATION_LOCK_WAIT_SECONDS: i64 = 120;

/// Runs [`MIGRATOR`], serialised across processes (a publisher and a
/// traffic manager starting together on a new database) by a `GET_LOCK`
/// lock of this database, held on the connection that migrates. sqlx's
/// own lock waits with a timeout of -1, which MariaDB answers with NULL
/// at once instead of waiting.
pub async fn migrate(pool: &MySqlPool) -> Result<(), OpenError> {
    const LOCK: &str = "CONCAT('artisync_migrate_', MD5(DATABASE()))";
    let mut conn = pool.acquire().await.map_err(OpenError::Connect)?;
    let took: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT CAST(GET_LOCK({LOCK}, {MIGRATION_LOCK_WAIT_SECONDS}) AS SIGNED)"
    )))
    .fetch_one(&mut *conn)
    .await
    .map_err(OpenError::Connect)?;
    if took != Some(1) {
        return Err(OpenError::MigrationLock(MIGRATION_LOCK_WAIT_SECONDS));
    }
    // `run_direct` on the connection itself, which holds the lock (`run`
    // on it trips over sqlx's "Acquire is not general enough" in callers'
    // futures).
    let result = MIGRATOR.run_direct(None, &mut *conn, false).await;
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DO RELEASE_LOCK({LOCK})")))
        .execute(&mut *conn)
        .await;
    Ok(result?)
}

/// A pooled connection idle for longer than this is checked with a round
/// trip before it is handed out.
pub const PING_CONNECTIONS_IDLE_FOR: Duration = Duration::from_secs(10);

/// Set on every connection: READ COMMITTED, as PostgreSQL runs by default,
/// so that a read after `SELECT … FOR UPDATE` sees every change committed
/// before the lock was granted, and upserts take no gap locks (fewer
/// deadlocks between changes to different APIs).
const SESSION_ISOLATION: &str = "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED";
/// `GROUP_CONCAT` builds the label lists of the desired state; its
/// default limit (1 KiB) would cut them.
const SESSION_GROUP_CONCAT: &str = "SET SESSION group_concat_max_len = 16777216";

/// Pool options for the services: every connection in READ COMMITTED; a
/// connection is pinged only when it sat idle.
pub fn pool_options() -> MySqlPoolOptions {
    use sqlx::Connection;
    MySqlPoolOptions::new()
        .test_before_acquire(false)
        .after_connect(|connection, _meta| {
            Box::pin(async move {
                sqlx::query(SESSION_ISOLATION)
                    .execute(&mut *connection)
                    .await?;
                sqlx::query(SESSION_GROUP_CONCAT)
                    .execute(&mut *connection)
                    .await?;
                Ok(())
            })
        })
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
    #[error("invalid MySQL URL (from {origin}): {source}")]
    InvalidUrl { origin: String, source: sqlx::Error },
    #[error("cannot connect to MySQL: {0}")]
    Connect(#[source] sqlx::Error),
    #[error("cannot migrate the MySQL schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database name {0:?} must be letters, digits, '_' or '-'")]
    InvalidName(String),
    #[error("another process kept migrating the MySQL schema for more than {0} s")]
    MigrationLock(i64),
}

/// Parses a `mysql://` URL (`mariadb://` too); the error names where it
/// came from, never the URL (it holds a password).
pub fn parse_url(url: &str, origin: &str) -> Result<MySqlConnectOptions, OpenError> {
    let url = url.trim();
    let url = match url.strip_prefix("mariadb:") {
        Some(rest) => format!("mysql:{rest}"),
        None => url.to_owned(),
    };
    url.parse::<MySqlConnectOptions>()
        .map_err(|source| OpenError::InvalidUrl {
            origin: origin.to_owned(),
            source,
        })
}

/// Every port on one pool.
#[derive(Clone)]
pub struct MySqlBackend {
    pool: MySqlPool,
    /// Deploy events carry artifacts up to this size.
    inline_artifact_max_bytes: usize,
    /// Counts commits that wrote outbox rows through any backend of this
    /// process on the same database; the relay's sessions wait on it.
    outbox_commits: Arc<watch::Sender<u64>>,
}

impl MySqlBackend {
    /// Artifacts up to this size travel inside their deploy events.
    pub const DEFAULT_INLINE_ARTIFACT_MAX_BYTES: usize = 64 * 1024;

    /// Connects, waiting for the server with backoff (it may still be
    /// starting when the cluster comes up), and migrates the schema.
    pub async fn connect(
        options: MySqlConnectOptions,
        pool: &PoolSettings,
    ) -> Result<Self, OpenError> {
        let pool = Self::connect_pool(options, pool).await?;
        migrate(&pool).await?;
        Ok(MySqlBackend::from_pool(pool))
    }

    /// Connects as [`MySqlBackend::connect`] does, without touching the
    /// schema.
    pub async fn connect_pool(
        options: MySqlConnectOptions,
        pool: &PoolSettings,
    ) -> Result<MySqlPool, OpenError> {
        let connect = || async {
            pool_options()
                .max_connections(pool.max_connections)
                .acquire_timeout(pool.acquire_timeout)
                .max_lifetime(pool.max_lifetime)
                .connect_with(options.clone())
                .await
        };
        connect
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(15),
            )
            .when(error::worth_waiting_for)
            .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "MySQL not reachable yet"))
            .await
            .map_err(OpenError::Connect)
    }

    /// On a pool made elsewhere (its schema already migrated; its
    /// connections set up by [`pool_options`]).
    pub fn from_pool(pool: MySqlPool) -> Self {
        let outbox_commits = commits_of(&pool);
        MySqlBackend {
            pool,
            inline_artifact_max_bytes: Self::DEFAULT_INLINE_ARTIFACT_MAX_BYTES,
            outbox_commits,
        }
    }

    /// Deploy events carry the artifact itself up to `max_bytes` (0:
    /// never), so that gateways deploy without fetching it.
    pub fn with_inline_artifact_limit(mut self, max_bytes: usize) -> Self {
        self.inline_artifact_max_bytes = max_bytes;
        self
    }

    pub fn pool(&self) -> &MySqlPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Wakes the relay: a commit wrote outbox rows.
    fn outbox_committed(&self) {
        self.outbox_commits.send_modify(|n| *n = n.wrapping_add(1));
    }
}

#[async_trait]
impl Health for MySqlBackend {
    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM apis LIMIT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(error::db)
    }
}

/// The commit counter of the database `pool` reaches: one per database
/// in this process, whichever backend value (or pool) commits, so that
/// every relay of the process on that database is woken.
fn commits_of(pool: &MySqlPool) -> Arc<watch::Sender<u64>> {
    static COMMITS: OnceLock<Mutex<HashMap<String, Weak<watch::Sender<u64>>>>> = OnceLock::new();
    let options = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    );
    let mut commits = COMMITS
        .get_or_init(|| Mutex::new(HashMap::new()))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(existing) = commits.get(&key).and_then(Weak::upgrade) {
        return existing;
    }
    commits.retain(|_, w| w.strong_count() > 0);
    let fresh = Arc::new(watch::Sender::new(0));
    commits.insert(key, Arc::downgrade(&fresh));
    fresh
}

/// `?, ?, ?` for `n` values (`NULL` for none, which matches nothing in
/// an `IN` list; never use it in a `NOT IN`, which it would make match
/// nothing too).
pub(crate) fn placeholders(n: usize) -> String {
    if n == 0 {
        return "NULL".to_owned();
    }
    let mut out = String::with_capacity(n * 3);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('?');
    }
    out
}

/// `(?, ?), (?, ?)` for `rows` rows of `columns` values.
pub(crate) fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", placeholders(columns));
    vec![row; rows].join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(0), "NULL");
        assert_eq!(placeholders(3), "?, ?, ?");
        assert_eq!(value_rows(2, 2), "(?, ?), (?, ?)");
    }

    #[test]
    fn urls_are_parsed_and_never_shown() {
        let options = parse_url(" mysql://svc:p%40ss%2Fw%3Ard@db.example:3307/apim ", "test")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(options.get_username(), "svc");
        assert_eq!(options.get_host(), "db.example");
        assert_eq!(options.get_port(), 3307);
        assert_eq!(options.get_database(), Some("apim"));
        let maria =
            parse_url("mariadb://root@127.0.0.1/x", "test").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(maria.get_database(), Some("x"));
        let err = parse_url("mysql://u:secret@[bad", "cfg")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("secret"), "{err}");
    }
}
