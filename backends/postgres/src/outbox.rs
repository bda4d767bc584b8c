//! The outbox on PostgreSQL: rows written with their change, drained by
//! the relay that holds a session-level advisory lock on its own
//! connection, woken by `LISTEN/NOTIFY` (the insert trigger notifies).

use std::time::Duration;

use artisync_ports::outbox::{Backlog, OutboundEvent};
use artisync_ports::{Outbox, OutboxSession, StoreError};
use async_trait::async_trait;
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool, Row};

use crate::error::{Result, db};
use crate::{NOTIFY_CHANNEL, PgBackend};

/// Only one relay (across publisher replicas) drains, so events leave in
/// order: the one holding this session-level advisory lock. It keeps the
/// lock while its connection lives; the others try again and take over
/// when it is gone.
const RELAY_LOCK_KEY: i64 = 0x4152_5449_5359_4e43; // "ARTISYNC"

/// Settings of the relay's own connection. Marking events sent need not
/// wait for the WAL flush: a mark lost in a crash only means the events go
/// out again, which at-least-once delivery allows. The keepalives let the
/// server notice a vanished leader within about ten seconds and release
/// its lock, instead of after the kernel's two hours.
const RELAY_SESSION_SETUP: &str = "SET synchronous_commit = off;
     SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3";

#[async_trait]
impl Outbox for PgBackend {
    async fn session(&self) -> std::result::Result<Box<dyn OutboxSession>, StoreError> {
        Ok(Box::new(PgOutboxSession {
            pool: self.pool.clone(),
            connection: None,
            leading: false,
            listener: None,
        }))
    }

    async fn backlog(&self) -> std::result::Result<Backlog, StoreError> {
        let (unsent, oldest): (i64, Option<f64>) = sqlx::query_as(
            "SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at))::float8
             FROM outbox WHERE sent_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        Ok(Backlog {
            unsent: u64::try_from(unsent).unwrap_or(0),
            oldest_unsent: Duration::from_secs_f64(oldest.unwrap_or(0.0).max(0.0)),
        })
    }

    async fn prune(&self, retention: Duration) -> std::result::Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL
             AND sent_at < now() - make_interval(secs => $1)",
        )
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }
}

struct PgOutboxSession {
    pool: PgPool,
    /// The relay's own connection, out of the pool (so that it has the
    /// pool's connect options) and kept for the relay alone.
    connection: Option<PgConnection>,
    /// Whether `connection` holds the leader lock.
    leading: bool,
    listener: Option<PgListener>,
}

impl PgOutboxSession {
    async fn connection(&mut self) -> Result<&mut PgConnection> {
        if self.connection.is_none() {
            let mut connection = self.pool.acquire().await?.detach();
            sqlx::raw_sql(RELAY_SESSION_SETUP)
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
        let took: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *connection)
            .await?;
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
             WHERE sent_at IS NULL ORDER BY id LIMIT $1",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .fetch_all(&mut *connection)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OutboundEvent {
                    outbox_id: r.try_get("id")?,
                    event_id: r.try_get("event_id")?,
                    routing_key: r.try_get("routing_key")?,
                    payload: r.try_get("payload")?,
                    traceparent: r.try_get("traceparent")?,
                })
            })
            .collect()
    }

    async fn mark(&mut self, ids: &[i64]) -> Result<()> {
        let connection = self.connection().await?;
        sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
            .bind(ids)
            .execute(&mut *connection)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl OutboxSession for PgOutboxSession {
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
        let Some(listener) = self.listener.as_mut() else {
            // Listen first, then report a change: whatever was committed
            // before the LISTEN took effect is found by the next drain.
            let mut listener = PgListener::connect_with(&self.pool).await.map_err(db)?;
            listener.listen(NOTIFY_CHANNEL).await.map_err(db)?;
            self.listener = Some(listener);
            return Ok(());
        };
        match listener.recv().await {
            Ok(_) => Ok(()),
            Err(e) => {
                self.listener = None;
                Err(db(e))
            }
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(connection) = self.connection.take() {
            let _ = connection.close().await;
        }
    }
}
