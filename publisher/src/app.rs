//! Builds and runs the publisher from validated settings and the backends
//! the composition root chose.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use artisync_http::BearerTokens;
pub use artisync_ports::PublisherBackends;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::config::Settings;
use crate::metrics::PublisherMetrics;
use crate::push::GatewayPusher;
use crate::relay::OutboxRelay;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("publisher.tls_cert_file: {0}")]
    Tls(#[from] artisync_http::tls::TlsError),
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

/// Starts the REST API, the outbox relay and, with direct publishing, the
/// gateway pushers; all stop on `shutdown`, the relay last, after
/// publishing what the last requests committed.
pub async fn start(
    settings: Settings,
    backends: PublisherBackends,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let tls = settings.tls.as_ref().map(|f| f.acceptor()).transpose()?;
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
        backends.outbox.clone(),
        backends.bus,
        settings.relay_poll_interval,
        settings.outbox_retention,
    )
    .with_metrics(metrics.clone())
    .with_signer(settings.signing_key.clone());
    // The relay stops after the server: requests still in flight at
    // shutdown commit events that it publishes before it goes.
    let relay_shutdown = CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(relay_shutdown.clone()));

    let push_task = (!backends.push_targets.is_empty()).then(|| {
        let resync_interval = settings
            .direct_push
            .as_ref()
            .map_or(Duration::from_secs(30), |d| d.resync_interval);
        let pusher = GatewayPusher {
            targets: backends.push_targets,
            desired: backends.desired.clone(),
            outbox: backends.outbox.clone(),
            poll_interval: settings.relay_poll_interval,
            resync_interval,
            metrics: metrics.clone(),
        };
        tokio::spawn(pusher.run(shutdown.clone()))
    });
    let propagation_task = tokio::spawn(crate::propagation::run(
        backends.store.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let state = Arc::new(ApiState {
        store: backends.store,
        outbox: backends.outbox,
        health: backends.health,
        tokens: Arc::new(BearerTokens::new(settings.tokens.clone())),
        max_body_bytes: settings.max_body_bytes,
        max_apply_bytes: settings.max_apply_bytes,
        fleet: api::FleetCache::default(),
        known_labels: settings.known_labels.clone(),
        gateway_stale_after: settings.gateway_stale_after,
        metrics,
        parse_pool: artisync_http::ParsePool::for_cores(),
    });
    let router = api::router(state);
    let server_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let limits = artisync_http::ServeLimits::default();
        if let Err(e) =
            artisync_http::serve_on(listener, router, server_shutdown, limits, tls).await
        {
            tracing::error!(error = %e, "publisher server failed");
        }
        // In-flight requests have finished; let the relay publish what they
        // committed before closing.
        relay_shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(5), relay_task).await;
        let _ = propagation_task.await;
        if let Some(push_task) = push_task {
            let _ = push_task.await;
        }
    });
    tracing::info!(%addr, "publisher listening");
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}
