//! Builds and runs the publisher from validated settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use artisync_shared::db::MIGRATOR;
use backon::{ExponentialBuilder, Retryable};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::bus::RabbitBus;
use crate::config::Settings;
use crate::metrics::PublisherMetrics;
use crate::outbox::OutboxRelay;
use crate::store::PgArtifactStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Database(#[source] sqlx::Error),
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A started publisher.
pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

/// Connects to PostgreSQL, waiting for it with backoff (it may still be
/// starting when the cluster comes up), and applies the schema migrations.
pub async fn connect_database(url: &str, max_connections: u32) -> Result<PgPool, StartError> {
    let connect = || async {
        artisync_shared::db::pool_options()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await
    };
    let pool = connect
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(15),
        )
        .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "database not reachable yet"))
        .await
        .map_err(StartError::Database)?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// Starts the REST API and the outbox relay; both stop on `shutdown`, the
/// relay last, after publishing what the last requests committed.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> Result<Running, StartError> {
    let pool = connect_database(&settings.database_url, settings.max_connections).await?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|source| StartError::Bind {
            addr: settings.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StartError::Bind {
        addr: settings.listen,
        source,
    })?;

    let metrics = Arc::new(PublisherMetrics::new());
    let relay = OutboxRelay::new(
        pool.clone(),
        RabbitBus::new(settings.amqp_url.clone(), settings.topology.clone()),
        settings.relay_poll_interval,
        settings.outbox_retention,
    )
    .with_metrics(metrics.clone());
    // The relay stops after the server: requests still in flight at
    // shutdown commit events that it publishes before it goes.
    let relay_shutdown = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));

    let state = Arc::new(ApiState {
        store: Arc::new(
            PgArtifactStore::new(pool.clone())
                .with_inline_artifact_limit(settings.inline_artifact_max_bytes),
        ),
        pool: pool.clone(),
        tokens: settings.tokens.clone(),
        max_body_bytes: settings.max_body_bytes,
        known_labels: settings.known_labels.clone(),
        gateway_stale_after: settings.gateway_stale_after,
        metrics,
    });
    let router = api::router(state);
    let server_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "publisher server failed");
        }
        // In-flight requests have finished; let the relay publish what they
        // committed before closing.
        relay_shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        pool.close().await;
    });
    tracing::info!(%addr, "publisher listening");
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}

/// The whole life of the binary (see
/// [`artisync_shared::signals::run_until_signalled`]).
pub async fn run_until_signalled(config: Option<&std::path::Path>) -> std::process::ExitCode {
    artisync_shared::signals::run_until_signalled(
        "publisher",
        crate::config::load(config),
        |settings, shutdown| async move { start(settings, shutdown).await.map(|r| r.task) },
    )
    .await
}
