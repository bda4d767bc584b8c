//! The outbox on MySQL: rows written with their change, drained by the
//! relay that holds a `GET_LOCK` lock on its own connection. Commits made
//! through this backend wake the relay at once; MySQL has no notification
//! of commits made by other processes, so those are found by the relay's
//! poll.

use std::time::Duration;

use artisync_ports::outbox::{Backlog, OutboundEvent};
use artisync_ports::{Outbox, OutboxSession, StoreError};
use async_trait::async_trait;
use sqlx::{Connection, MySqlConnection, MySqlPool, Row};
use tokio::sync::watch;

use crate::error::{BACKEND, Result, db};
use crate::{MySqlBackend, placeholders};

/// The leader lock's name: one per database (GET_LOCK names are
/// server-wide, and one server may hold several artisync databases), at
/// most 64 characters.
const LOCK_NAME: &str = "CONCAT('artisync_relay_', MD5(DATABASE()))";

/// Settings of the relay's own connection. The relay uses it at least
/// once per poll interval (default 1 s); a connection silent for longer
/// than this is a vanished relay, and the server closes it, releasing the
/// lock for another relay, instead of after the default eight hours.
const RELAY_SESSION_SETUP: &str = "SET SESSION wait_timeout = 120";

/// Sent rows deleted per statement, so that pruning never holds one
/// long lock.
const PRUNE_BATCH: i64 = 5_000;

#[async_trait]
impl Outbox for MySqlBackend {
    async fn session(&self) -> std::result::Result<Box<dyn OutboxSession>, StoreError> {
        Ok(Box::new(MySqlOutboxSession {
            pool: self.pool.clone(),
            connection: None,
            leading: false,
            commits: self.outbox_commits.subscribe(),
        }))
    }

    async fn backlog(&self) -> std::result::Result<Backlog, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS unsent,
                    CAST(TIMESTAMPDIFF(MICROSECOND, MIN(created_at), UTC_TIMESTAMP(6)) AS SIGNED)
                        AS oldest_us
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        let unsent: i64 = row.try_get("unsent").map_err(db)?;
        let oldest: Option<i64> = row.try_get("oldest_us").map_err(db)?;
        Ok(Backlog {
            unsent: u64::try_from(unsent).unwrap_or(0),
            oldest_unsent: Duration::from_micros(u64::try_from(oldest.unwrap_or(0)).unwrap_or(0)),
        })
    }

    async fn prune(&self, retention: Duration) -> std::result::Result<u64, StoreError> {
        let micros = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let mut total = 0;
        loop {
            let done = sqlx::query(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL
                 AND sent_at < UTC_TIMESTAMP(6) - INTERVAL ? MICROSECOND
                 ORDER BY id LIMIT ?",
            )
            .bind(micros)
            .bind(PRUNE_BATCH)
            .execute(&self.pool)
            .await
            .map_err(db)?;
            total += done.rows_affected();
            if done.rows_affected() < PRUNE_BATCH as u64 {
                break;
            }
        }
        prune_change_numbers(&self.pool).await.map_err(db)?;
        Ok(total)
    }
}

/// Keeps only the highest row of `change_numbers`: the counter lives on
/// in it.
async fn prune_change_numbers(pool: &MySqlPool) -> std::result::Result<(), sqlx::Error> {
    let highest: Option<i64> = sqlx::query_scalar("SELECT MAX(n) FROM change_numbers")
        .fetch_one(pool)
        .await?;
    if let Some(highest) = highest {
        loop {
            let done = sqlx::query("DELETE FROM change_numbers WHERE n < ? LIMIT ?")
                .bind(highest)
                .bind(PRUNE_BATCH)
                .execute(pool)
                .await?;
            if done.rows_affected() < PRUNE_BATCH as u64 {
                break;
            }
        }
    }
    Ok(())
}

struct MySqlOutboxSession {
    pool: MySqlPool,
    /// The relay's own connection, out of the pool (so that it has the
    /// pool's connect options) and kept for the relay alone.
    connection: Option<MySqlConnection>,
    /// Whether `connection` holds the leader lock.
    leading: bool,
    commits: watch::Receiver<u64>,
}

impl MySqlOutboxSession {
    async fn connection(&mut self) -> Result<&mut MySqlConnection> {
        if self.connection.is_none() {
            let mut connection = self.pool.acquire().await?.detach();
            sqlx::query(RELAY_SESSION_SETUP)
                .execute(&mut connection)
                .await?;
            self.connection = Some(connection);
            self.leading = false;
        }
        match self.connection.as_mut() {
            Some(c) => Ok(c),
            None => unreachable!("the connection was just set"),
        }
    }

    /// On a database error, start over with a fresh connection: if this
    /// one is broken, the server drops it and its lock.
    fn forget_on_error<T>(&mut self, result: Result<T>) -> std::result::Result<T, StoreError> {
        if result.is_err() {
            self.connection = None;
            self.leading = false;
        }
        result.map_err(Into::into)
    }

    async fn try_lead(&mut self) -> Result<bool> {
        let leading = self.leading;
        let connection = self.connection().await?;
        if leading {
            return Ok(true);
        }
        // 1: taken; 0: another session holds it; NULL: an error.
        let took: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT CAST(GET_LOCK({LOCK_NAME}, 0) AS SIGNED)"
        )))
        .fetch_one(&mut *connection)
        .await?;
        let took = took == Some(1);
        self.leading = took;
        if took {
            tracing::info!("this relay now publishes the outbox");
        }
        Ok(took)
    }

    async fn claim(&mut self, max: usize) -> Result<Vec<OutboundEvent>> {
        let connection = self.connection().await?;
        // Each statement commits on its own: the lock, not a transaction,
        // keeps other relays out.
        let rows = sqlx::query(
            "SELECT id, event_id, routing_key, payload, traceparent FROM outbox
             WHERE sent_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *connection)
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

    async fn mark(&mut self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let connection = self.connection().await?;
        let sql = format!(
            "UPDATE outbox SET sent_at = UTC_TIMESTAMP(6) WHERE id IN ({})",
            placeholders(ids.len())
        );
        let mut update = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            update = update.bind(*id);
        }
        update.execute(&mut *connection).await?;
        Ok(())
    }
}

#[async_trait]
impl OutboxSession for MySqlOutboxSession {
    async fn lead(&mut self) -> std::result::Result<bool, StoreError> {
        let result = self.try_lead().await;
        self.forget_on_error(result)
    }

    async fn claim_batch(
        &mut self,
        max: usize,
    ) -> std::result::Result<Vec<OutboundEvent>, StoreError> {
        let result = self.claim(max).await;
        self.forget_on_error(result)
    }

    async fn mark_sent(&mut self, ids: &[i64]) -> std::result::Result<(), StoreError> {
        let result = self.mark(ids).await;
        self.forget_on_error(result)
    }

    async fn changed(&mut self) -> std::result::Result<(), StoreError> {
        // Resolves on the next local commit that wrote events. Without
        // one (the backend was dropped), never: the relay polls.
        if self.commits.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    async fn close(mut self: Box<Self>) {
        if let Some(mut connection) = self.connection.take() {
            if self.leading {
                // Released now, not when the server notices the
                // connection is gone.
                let _ = sqlx::query(sqlx::AssertSqlSafe(format!("DO RELEASE_LOCK({LOCK_NAME})")))
                    .execute(&mut connection)
                    .await;
            }
            let _ = connection.close().await;
        }
    }
}
