#![forbid(unsafe_code)]
//! The SQLite backend of the embedded default: the publisher's artifact
//! store and outbox, the traffic manager's desired state and status
//! intake, and the persistence store, in one file (`migrations/sqlite`).
//!
//! Durability: WAL with `synchronous = FULL`, so every commit is synced to
//! disk before it is answered, and a 2xx survives a power loss, not only a
//! crash. One writer task owns the only write connection and commits what
//! is waiting in one transaction (group commit), each change inside its own
//! savepoint: one sync serves many changes, and a change that fails rolls
//! back alone. Reads go to a pool of connections that see the last commit.

mod artifacts;
mod desired;
mod error;
mod fleet;
mod object_store;
mod open;
mod outbox;
mod receipts;
mod time;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use artisync_ports::{Health, StoreError};
use async_trait::async_trait;
use sqlx::SqlitePool;
use tokio::sync::watch;

pub use error::BACKEND;
pub use open::OpenError;

use writer::Writer;

/// `PRAGMA application_id` of an artisync database ("ARTS"): a file with
/// another id belongs to another program and is not touched.
pub const APPLICATION_ID: i32 = 0x4152_5453;

/// Embedded migrations from `migrations/sqlite`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../../migrations/sqlite");

/// Every port on one database file.
#[derive(Clone)]
pub struct SqliteBackend {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: SqlitePool,
    writer: Writer,
    /// Counts commits that wrote outbox rows; the relay waits on it.
    outbox_commits: watch::Sender<u64>,
    /// The last change number drawn (only the writer draws them).
    sequence: Arc<AtomicI64>,
    inline_artifact_max_bytes: usize,
}

impl SqliteBackend {
    /// Artifacts up to this size travel inside their deploy events.
    pub const DEFAULT_INLINE_ARTIFACT_MAX_BYTES: usize = 64 * 1024;

    /// Opens the database at `path`, creating it (and its directory) if
    /// needed and migrating its schema. A file that is not an artisync
    /// database is refused, with the path named.
    pub async fn open(path: &Path) -> Result<Self, OpenError> {
        let (readers, connection) = open::open(path).await?;
        let last: i64 =
            sqlx::query_scalar("SELECT coalesce(max(sequence), 0) FROM label_sequences")
                .fetch_one(&readers)
                .await
                .map_err(|source| OpenError::Open {
                    path: path.to_owned(),
                    source,
                })?;
        let (outbox_commits, _) = watch::channel(0);
        let writer = Writer::spawn(connection, outbox_commits.clone());
        Ok(SqliteBackend {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers,
                writer,
                outbox_commits,
                sequence: Arc::new(AtomicI64::new(last)),
                inline_artifact_max_bytes: Self::DEFAULT_INLINE_ARTIFACT_MAX_BYTES,
            }),
        })
    }

    /// Deploy events carry the artifact itself up to `max_bytes` (0:
    /// never), so that gateways deploy without fetching it. Call before
    /// sharing the backend.
    pub fn with_inline_artifact_limit(self, max_bytes: usize) -> Self {
        match Arc::try_unwrap(self.inner) {
            Ok(mut inner) => {
                inner.inline_artifact_max_bytes = max_bytes;
                SqliteBackend {
                    inner: Arc::new(inner),
                }
            }
            Err(inner) => SqliteBackend { inner },
        }
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Finishes the writes queued so far and closes every connection.
    pub async fn close(&self) {
        self.inner.writer.close().await;
        self.inner.readers.close().await;
    }
}

#[async_trait]
impl Health for SqliteBackend {
    async fn check(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM apis LIMIT 1")
            .execute(&self.inner.readers)
            .await
            .map(|_| ())
            .map_err(error::db)
    }
}
