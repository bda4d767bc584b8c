//! The outbox on SQLite. The relay that holds an exclusive lock on
//! `<database>.relay-lock` leads (one per database file, whichever process
//! opened it); commits that wrote events wake it at once.

use std::fs::File;
use std::path::PathBuf;
use std::time::Duration;

use artisync_ports::outbox::{Backlog, OutboundEvent};
use artisync_ports::{Outbox, OutboxSession, StoreError};
use async_trait::async_trait;
use sqlx::Row;
use tokio::sync::watch;

use crate::SqliteBackend;
use crate::error::{BACKEND, Result, db};
use crate::time::now;

#[async_trait]
impl Outbox for SqliteBackend {
    async fn session(&self) -> std::result::Result<Box<dyn OutboxSession>, StoreError> {
        let mut lock_path = self.inner.path.clone().into_os_string();
        lock_path.push(".relay-lock");
        Ok(Box::new(SqliteOutboxSession {
            backend: self.clone(),
            lock_path: PathBuf::from(lock_path),
            lock: None,
            commits: self.inner.outbox_commits.subscribe(),
            published_through: 0,
        }))
    }

    async fn backlog(&self) -> std::result::Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT count(*) AS n, min(created_at) AS oldest FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.inner.readers)
        .await
        .map_err(db)?;
        let unsent: i64 = row.try_get("n").map_err(db)?;
        let oldest: Option<i64> = row.try_get("oldest").map_err(db)?;
        let age = oldest
            .map(|t| Duration::from_micros(u64::try_from(now() - t).unwrap_or(0)))
            .unwrap_or_default();
        Ok(Backlog {
            unsent: u64::try_from(unsent).unwrap_or(0),
            oldest_unsent: age,
        })
    }

    async fn prune(&self, retention: Duration) -> std::result::Result<u64, StoreError> {
        let before = now() - i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        self.inner
            .writer
            .write(false, move |c| {
                Box::pin(async move {
                    let done = sqlx::query(
                        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?1",
                    )
                    .bind(before)
                    .execute(&mut *c)
                    .await?;
                    Ok(done.rows_affected())
                })
            })
            .await
    }
}

struct SqliteOutboxSession {
    backend: SqliteBackend,
    lock_path: PathBuf,
    /// Held while this session leads; the OS releases it if the process
    /// dies.
    lock: Option<File>,
    commits: watch::Receiver<u64>,
    /// The highest outbox id this session published. Ids grow in commit
    /// order (one writer), so everything above it is new.
    published_through: i64,
}

impl SqliteOutboxSession {
    async fn claim(&self, max: usize) -> Result<Vec<OutboundEvent>> {
        let rows = sqlx::query(
            "SELECT id, event_id, routing_key, payload, traceparent FROM outbox
             WHERE sent_at IS NULL AND id > ?2 ORDER BY id LIMIT ?1",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .bind(self.published_through)
        .fetch_all(&self.backend.inner.readers)
        .await?;
        rows.iter()
            .map(|r| {
                let event_id: &str = r.try_get("event_id")?;
                Ok(OutboundEvent {
                    outbox_id: r.try_get("id")?,
                    event_id: event_id.parse().map_err(|e| {
                        StoreError::broken(BACKEND, format!("stored event id: {e}"))
                    })?,
                    routing_key: r.try_get("routing_key")?,
                    payload: r.try_get("payload")?,
                    traceparent: r.try_get("traceparent")?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl OutboxSession for SqliteOutboxSession {
    async fn lead(&mut self) -> std::result::Result<bool, StoreError> {
        if self.lock.is_some() {
            return Ok(true);
        }
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_path)
            .map_err(|e| {
                StoreError::unavailable(
                    BACKEND,
                    format!("cannot open {}: {e}", self.lock_path.display()),
                )
            })?;
        match file.try_lock() {
            Ok(()) => {
                tracing::info!("this relay now publishes the outbox");
                self.lock = Some(file);
                Ok(true)
            }
            Err(std::fs::TryLockError::WouldBlock) => Ok(false),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::unavailable(
                BACKEND,
                format!("cannot lock {}: {e}", self.lock_path.display()),
            )),
        }
    }

    async fn claim_batch(
        &mut self,
        max: usize,
    ) -> std::result::Result<Vec<OutboundEvent>, StoreError> {
        Ok(self.claim(max).await?)
    }

    async fn mark_sent(&mut self, ids: &[i64]) -> std::result::Result<(), StoreError> {
        // Deferred: it rides with the next change's commit. A mark lost in
        // a crash only means the events go out again (at-least-once), and
        // the relay never reads them again in this process: it claims
        // after the highest id it published.
        let ids_json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".to_owned());
        if let Some(max) = ids.iter().max() {
            self.published_through = self.published_through.max(*max);
        }
        self.backend.inner.writer.defer(move |c| {
            Box::pin(async move {
                sqlx::query(
                    "UPDATE outbox SET sent_at = ?1 WHERE id IN (SELECT value FROM json_each(?2))",
                )
                .bind(now())
                .bind(ids_json)
                .execute(&mut *c)
                .await?;
                Ok(())
            })
        });
        Ok(())
    }

    async fn changed(&mut self) -> std::result::Result<(), StoreError> {
        if self.commits.changed().await.is_err() {
            // The backend is closing; nothing more will be committed.
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn close(self: Box<Self>) {
        if let Some(lock) = &self.lock {
            let _ = lock.unlock();
        }
    }
}
