//! The outbox relay: publishes committed events in order, marks them sent,
//! and resends whatever is unsent after a crash.

use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{ExponentialBuilder, Retryable};
use sqlx::postgres::PgListener;
use sqlx::{Connection, PgConnection, PgPool, Row};
use tokio_util::sync::CancellationToken;

use crate::bus::{EventBus, OutboundEvent};
use crate::metrics::PublisherMetrics;

/// Channel the `outbox` insert trigger notifies on.
pub const NOTIFY_CHANNEL: &str = "artisync_outbox";
/// Only one relay (across publisher replicas) drains, so events leave in
/// order: the one holding this session-level advisory lock on its own
/// connection. It keeps the lock while that connection lives; the others
/// try again every [`STANDBY_RETRY`] and take over when it is gone.
const RELAY_LOCK_KEY: i64 = 0x4152_5449_5359_4e43; // "ARTISYNC"
const BATCH: i64 = 256;
/// How often a relay that is not the leader tries to become it.
const STANDBY_RETRY: Duration = Duration::from_secs(1);

/// Settings of the relay's own connection. Marking events sent need not
/// wait for the WAL flush: a mark lost in a crash only means the events go
/// out again, which at-least-once delivery allows. The keepalives let the
/// server notice a vanished leader within about ten seconds and release
/// its lock, instead of after the kernel's two hours.
const RELAY_SESSION_SETUP: &str = "SET synchronous_commit = off;
     SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3";

pub struct OutboxRelay<B> {
    pool: PgPool,
    /// The relay's own connection and whether it holds the leader lock.
    session: Option<(PgConnection, bool)>,
    bus: B,
    poll_interval: Duration,
    retention: Duration,
    metrics: Arc<PublisherMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("outbox database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Bus(#[from] crate::bus::BusError),
}

impl<B: EventBus> OutboxRelay<B> {
    pub fn new(pool: PgPool, bus: B, poll_interval: Duration, retention: Duration) -> Self {
        OutboxRelay {
            pool,
            session: None,
            bus,
            poll_interval,
            retention,
            metrics: Arc::new(PublisherMetrics::new()),
        }
    }

    /// Records publish latency and counts into `metrics` (the ones the
    /// REST API's `/metrics` renders).
    pub fn with_metrics(mut self, metrics: Arc<PublisherMetrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `shutdown`; transient failures are retried with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut listener = None;
        let mut last_prune = tokio::time::Instant::now();
        let mut failures = 0u32;
        let mut delays = retry_delays();
        loop {
            if shutdown.is_cancelled() {
                self.close_session().await;
                return;
            }
            if listener.is_none() {
                listener = match PgListener::connect_with(&self.pool).await {
                    Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                        Ok(()) => Some(l),
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot LISTEN for outbox notifications; polling");
                            None
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for outbox notifications; polling");
                        None
                    }
                };
            }
            // Drain before waiting: notifications that arrived while we were
            // disconnected are covered by this pass.
            let wait = match self.drain().await {
                Ok(leading) => {
                    failures = 0;
                    delays = retry_delays();
                    if leading {
                        self.poll_interval
                    } else {
                        self.poll_interval.min(STANDBY_RETRY)
                    }
                }
                Err(e) => {
                    failures += 1;
                    self.metrics.relay_failures.inc();
                    let delay = delays.next().unwrap_or(Duration::from_secs(5));
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "outbox relay failed; events stay unsent and will be retried");
                    delay
                }
            };
            if last_prune.elapsed() > Duration::from_secs(600) {
                last_prune = tokio::time::Instant::now();
                if let Err(e) = self.prune().await {
                    tracing::warn!(error = %e, "pruning sent outbox rows failed");
                }
            }
            let notified = async {
                match listener.as_mut() {
                    Some(l) => l.recv().await.map(|_| ()),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // One last pass for what was committed just before.
                    if let Err(e) = self.drain().await {
                        tracing::warn!(error = %e, "final outbox pass failed; the events stay unsent and go out at the next start");
                    }
                    self.close_session().await;
                    return;
                }
                _ = tokio::time::sleep(wait) => {}
                result = notified, if failures == 0 => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "outbox notification connection lost");
                        listener = None;
                    }
                }
            }
        }
    }

    /// Publishes every unsent event, oldest first, in batches, if this
    /// relay is (or now becomes) the leader. Answers whether it is.
    pub async fn drain(&mut self) -> Result<bool, RelayError> {
        let result = self.drain_as_leader().await;
        if let Err(RelayError::Database(_)) = &result {
            // A fresh connection next time; if this one is broken, the
            // server drops it and its lock.
            self.session = None;
        }
        result
    }

    async fn drain_as_leader(&mut self) -> Result<bool, RelayError> {
        let Some(connection) = leader_connection(&self.pool, &mut self.session).await? else {
            return Ok(false);
        };
        loop {
            // Each statement commits on its own: the lock, not a
            // transaction, keeps other relays out.
            let rows = sqlx::query(
                "SELECT id, event_id, routing_key, payload, traceparent FROM outbox
                 WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            )
            .bind(BATCH)
            .fetch_all(&mut *connection)
            .await?;
            if rows.is_empty() {
                return Ok(true);
            }
            let events = rows
                .iter()
                .map(|r| {
                    Ok(OutboundEvent {
                        outbox_id: r.try_get("id")?,
                        event_id: r.try_get("event_id")?,
                        routing_key: r.try_get("routing_key")?,
                        payload: r.try_get("payload")?,
                        traceparent: r.try_get("traceparent")?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            let started = Instant::now();
            self.bus.publish(&events).await?;
            // `publish` returns once the broker confirmed every message.
            self.metrics
                .relay_publish_latency
                .observe(started.elapsed().as_secs_f64());
            self.metrics.relay_batches.inc();
            self.metrics.relay_events.inc_by(events.len() as u64);
            let ids: Vec<i64> = events.iter().map(|e| e.outbox_id).collect();
            // If this update is lost (crash), the events are sent again:
            // delivery is at-least-once and gateways ignore duplicates.
            sqlx::query("UPDATE outbox SET sent_at = now() WHERE id = ANY($1)")
                .bind(&ids)
                .execute(&mut *connection)
                .await?;
            for e in &events {
                tracing::debug!(event_id = %e.event_id, routing_key = %e.routing_key, "event published");
            }
            if (events.len() as i64) < BATCH {
                return Ok(true);
            }
        }
    }

    /// Closes the relay's connection, which releases the leader lock at
    /// once for another replica.
    async fn close_session(&mut self) {
        if let Some((connection, _)) = self.session.take() {
            let _ = connection.close().await;
        }
    }

    async fn prune(&self) -> Result<(), sqlx::Error> {
        let retention_secs = self.retention.as_secs() as f64;
        let prune = || async {
            sqlx::query(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL
                 AND sent_at < now() - make_interval(secs => $1)",
            )
            .bind(retention_secs)
            .execute(&self.pool)
            .await
        };
        prune
            .retry(ExponentialBuilder::default().with_max_times(3))
            .await
            .map(|_| ())
    }
}

/// The relay's connection if it holds the leader lock, taking the lock
/// if no other relay does; `None` while another one leads.
async fn leader_connection<'s>(
    pool: &PgPool,
    session: &'s mut Option<(PgConnection, bool)>,
) -> Result<Option<&'s mut PgConnection>, sqlx::Error> {
    if session.is_none() {
        // Out of the pool, so that it has the pool's connect options,
        // and kept for the relay alone.
        let mut connection = pool.acquire().await?.detach();
        sqlx::raw_sql(RELAY_SESSION_SETUP)
            .execute(&mut connection)
            .await?;
        *session = Some((connection, false));
    }
    let Some((connection, leading)) = session.as_mut() else {
        return Ok(None);
    };
    if !*leading {
        *leading = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(RELAY_LOCK_KEY)
            .fetch_one(&mut *connection)
            .await?;
        if *leading {
            tracing::info!("this relay now publishes the outbox");
        }
    }
    Ok(leading.then_some(connection))
}

/// 100 ms doubling to 5 s, with jitter: quick to recover from a broker
/// restart without hammering a broker that is down.
fn retry_delays() -> impl Iterator<Item = Duration> {
    use backon::BackoffBuilder;
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_jitter()
        .without_max_times()
        .build()
}
