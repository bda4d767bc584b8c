//! Starting a node: the order of things at start-up, and the background
//! loops (reconcile, status reports) that keep it converged.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artisync_ports::source::SourceError;
use artisync_ports::{ArtifactSource, GatewayBackends};
use backon::Retryable;
use chrono::Utc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::{CacheWriter, DiskCache};
use crate::config::Settings;
use crate::dataplane;
use crate::events::{EventContext, EventLoop, SubscriptionStatus};
use crate::metrics::Metrics;
use crate::node::{Node, Startup};
use crate::state::NodeState;
use crate::sync::{SyncConfig, Synchronizer};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use the cache directory {dir}: {source}")]
    Cache { dir: String, source: std::io::Error },
    #[error("{key}: {message}")]
    Tls { key: &'static str, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Running {
    pub node: Arc<Node>,
    pub data_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?;
    Ok((listener, local))
}

/// Starts a node: serve the cached state at once, subscribe to events,
/// then load the desired state (events wait for that load), then keep
/// reconciling and reporting.
pub async fn start(
    settings: Settings,
    backends: GatewayBackends,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    start_with(settings, Some(backends), shutdown).await
}

/// Starts a node that takes the deploys the publisher pushes to its admin
/// API (`gateway.artifact_source = "publisher"`): it serves its cached
/// state at once and neither subscribes, fetches nor reconciles.
pub async fn start_pushed(
    settings: Settings,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    start_with(settings, None, shutdown).await
}

async fn start_with(
    settings: Settings,
    backends: Option<GatewayBackends>,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let (source, events) = match backends {
        Some(GatewayBackends { source, events }) => (source, Some(events)),
        None => (
            Arc::new(crate::pushed_only::PushedOnly) as Arc<dyn ArtifactSource>,
            None,
        ),
    };
    let cache = DiskCache::new(settings.cache_dir.clone());
    cache.prepare().map_err(|source| StartError::Cache {
        dir: settings.cache_dir.display().to_string(),
        source,
    })?;
    let admin_tls = match &settings.admin_tls {
        Some(files) => Some(files.acceptor().map_err(|e| StartError::Tls {
            key: "gateway.admin_tls_cert_file",
            message: e.to_string(),
        })?),
        None => None,
    };
    let (data_listener, data_addr) = bind(settings.listen).await?;
    let (admin_listener, admin_addr) = bind(settings.admin_listen).await?;

    let state = Arc::new(NodeState::new());
    let metrics = Arc::new(Metrics::new());
    let (cache_writer, cache_task) = CacheWriter::spawn(cache.clone());
    let sync = Synchronizer::new(
        SyncConfig {
            node_id: settings.node_id.clone(),
            labels: settings.labels.clone(),
            retry: settings.retry,
            event_waiting_time: settings.event_waiting_time,
            publisher_key: settings.publisher_key.clone(),
        },
        source.clone(),
        state.clone(),
        cache_writer.clone(),
        metrics.clone(),
    );
    let subscription = Arc::new(SubscriptionStatus::new());
    let node = Arc::new(Node {
        node_id: settings.node_id.clone(),
        labels: settings.labels.clone(),
        admin_token: settings.admin_token.clone(),
        mode: settings.mode,
        deploy_source: settings.deploy_source,
        state: state.clone(),
        sync: sync.clone(),
        metrics: metrics.clone(),
        subscription: subscription.clone(),
        started_at: Utc::now(),
        startup: Mutex::new(Startup::Loading),
    });

    // 1. Serve the last known good state at once.
    let (cached, held) = tokio::task::spawn_blocking(move || (cache.load(), cache.load_held()))
        .await
        .unwrap_or_default();
    if !held.is_empty() {
        tracing::info!(
            apis = held.len(),
            "keeping the local undeploys made before the restart"
        );
        sync.restore_held(held);
    }
    // Also when the cache is empty: this tells the cache writer what the
    // cache holds now.
    let n = sync.install_cached(cached.into_iter().map(|c| (c.entry, c.xml)).collect());
    if n > 0 {
        tracing::info!(apis = n, "serving the cached state");
    }
    let data_task = tokio::spawn(dataplane::serve_per_core(
        data_listener,
        state.table(),
        settings.data_plane.clone(),
        metrics.unrouted.clone(),
        shutdown.clone(),
    ));
    let admin_shutdown = shutdown.clone();
    let admin_app = crate::admin::router(node.clone());
    let admin_task = tokio::spawn(artisync_http::serve_on(
        admin_listener,
        admin_app,
        admin_shutdown,
        artisync_http::ServeLimits::default(),
        admin_tls,
    ));
    tracing::info!(node_id = %settings.node_id, %data_addr, %admin_addr, labels = ?settings.labels, mode = ?settings.mode, "gateway node listening");

    let Some(events) = events else {
        // Pushed deploys: nothing to load, the publisher sends the state.
        node.set_startup(Startup::Done);
        let task = shutdown_task(
            settings.shutdown_grace_period,
            shutdown.clone(),
            async move {
                let _ = data_task.await;
                let _ = admin_task.await;
            },
            cache_writer,
            cache_task,
        );
        return Ok(Running {
            node,
            data_addr,
            admin_addr,
            shutdown,
            task,
        });
    };
    // 2. Subscribe before loading, so nothing published meanwhile is missed.
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
    let in_flight = TaskTracker::new();
    let event_loop = EventLoop {
        events,
        node_id: settings.node_id.clone(),
        labels: settings.labels.clone(),
        prefetch: settings.event_prefetch,
    };
    let subscriber_task = tokio::spawn(event_loop.run(EventContext {
        sync: sync.clone(),
        gate: gate_rx,
        status: subscription.clone(),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        in_flight: in_flight.clone(),
    }));
    let mut subscribed = subscription.subscriptions.subscribe();
    if tokio::time::timeout(Duration::from_secs(5), subscribed.wait_for(|n| *n > 0))
        .await
        .is_err()
    {
        tracing::warn!(
            "the broker is not reachable yet; loading the desired state anyway and reconciling once subscribed"
        );
    }

    // 3. Load the desired state; then keep reconciling and reporting.
    let loops = tokio::spawn(run_background(
        node.clone(),
        source,
        settings.clone(),
        gate_tx,
        shutdown.clone(),
    ));

    let task = shutdown_task(
        settings.shutdown_grace_period,
        shutdown.clone(),
        async move {
            let _ = subscriber_task.await;
            let _ = data_task.await;
            let _ = admin_task.await;
            let _ = loops.await;
        },
        cache_writer,
        cache_task,
    );
    Ok(Running {
        node,
        data_addr,
        admin_addr,
        shutdown,
        task,
    })
}

/// Waits for shutdown, gives `drain` (the node's tasks ending) the grace
/// period, then lets queued cache writes finish.
fn shutdown_task<C: Send + 'static>(
    grace: Duration,
    shutdown: CancellationToken,
    drain: impl std::future::Future<Output = ()> + Send + 'static,
    cache_writer: CacheWriter,
    cache_task: JoinHandle<C>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        shutdown.cancelled().await;
        let drained = tokio::time::timeout(grace, drain).await;
        if drained.is_err() {
            tracing::warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period over; stopping anyway"
            );
        }
        cache_writer.send(crate::cache::CacheCommand::Close);
        let _ = tokio::time::timeout(Duration::from_secs(5), cache_task).await;
    })
}

async fn run_background(
    node: Arc<Node>,
    source: Arc<dyn ArtifactSource>,
    settings: Settings,
    gate: tokio::sync::watch::Sender<bool>,
    shutdown: CancellationToken,
) {
    let sync = node.sync.clone();
    // The first attempt opens the event gate whatever its result: events
    // fetch on their own and must not wait for a long retry schedule.
    let mut first = true;
    let load = || {
        let sync = sync.clone();
        async move { sync.reconcile().await }
    };
    let initial = tokio::select! {
        _ = shutdown.cancelled() => return,
        r = load
            .retry(settings.retry.backoff())
            .sleep(tokio::time::sleep)
            .when(|e: &SourceError| e.is_retryable())
            .notify(|e: &SourceError, delay: Duration| {
                if std::mem::take(&mut first) {
                    let _ = gate.send(true);
                }
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot load the desired state yet");
            }) => r,
    };
    let _ = gate.send(true);
    match initial {
        Ok(drift) => {
            tracing::info!(
                changes = drift,
                "desired state loaded; waiting for the start-up deploys to settle"
            );
            tokio::spawn(settle_startup(node.clone(), shutdown.clone()));
        }
        Err(e) => {
            let message = format!(
                "retries spent loading the desired state: {e}; serving what this node has and retrying every reconcile"
            );
            tracing::error!("{message}");
            node.set_startup(Startup::GaveUp(message));
        }
    }
    let reconcile = tokio::spawn(reconcile_loop(
        node.clone(),
        settings.reconcile_interval,
        shutdown.clone(),
    ));
    report_loop(node, source, settings.status_interval, shutdown).await;
    let _ = reconcile.await;
}

/// Marks the start-up done once no start-up deploy is retrying any more
/// (each one deployed, or its retries spent).
async fn settle_startup(node: Arc<Node>, shutdown: CancellationToken) {
    let mut changes = node.state.subscribe();
    while node.state.any_retrying() {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = changes.changed() => if changed.is_err() { return },
        }
    }
    let settled = {
        let mut startup = node.startup.lock().unwrap_or_else(|p| p.into_inner());
        let loading = *startup == Startup::Loading;
        if loading {
            *startup = Startup::Done;
        }
        loading
    };
    if settled {
        let (deployed, failed) = node.state.count_by_status();
        if failed > 0 {
            tracing::warn!(
                deployed,
                failed,
                "start-up deployment done; some APIs failed and are retried at every reconcile"
            );
        } else {
            tracing::info!(deployed, "start-up deployment done");
        }
    }
}

async fn reconcile_loop(node: Arc<Node>, interval: Duration, shutdown: CancellationToken) {
    let mut subscriptions = node.subscription.subscriptions.subscribe();
    subscriptions.mark_unchanged();
    let mut gaps = node.subscription.gaps.subscribe();
    gaps.mark_unchanged();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
            changed = subscriptions.changed() => {
                if changed.is_err() { return; }
                tracing::info!("event subscription re-established; reconciling");
            }
            changed = gaps.changed() => {
                if changed.is_err() { return; }
            }
        }
        match node.sync.reconcile().await {
            Ok(_) => {
                if matches!(node.startup(), Startup::GaveUp(_)) {
                    node.set_startup(Startup::Done);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "reconcile failed; the node keeps serving what it has")
            }
        }
    }
}

async fn report_loop(
    node: Arc<Node>,
    source: Arc<dyn ArtifactSource>,
    interval: Duration,
    shutdown: CancellationToken,
) {
    let mut changes = node.state.subscribe();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut need_full = true;
    loop {
        let periodic = tokio::select! {
            _ = shutdown.cancelled() => {
                // Tell the fleet view this node is going away.
                let mut report = node.status_report(true, None);
                report.ready = false;
                let _ = tokio::time::timeout(Duration::from_secs(2), source.report(&report)).await;
                return;
            }
            _ = ticker.tick() => true,
            changed = changes.changed() => {
                if changed.is_err() { return; }
                // Coalesce a burst of changes into one report: with many
                // nodes, every report is a database commit upstream.
                tokio::time::sleep(Duration::from_millis(200)).await;
                false
            }
        };
        let pending = node.state.take_changes();
        let full = periodic || need_full || pending.removals;
        if !full && pending.apis.is_empty() {
            continue;
        }
        let report = node.status_report(full, Some(&pending.apis));
        match source.report(&report).await {
            Ok(()) => need_full = false,
            Err(e) => {
                // The next report re-sends everything.
                need_full = true;
                tracing::debug!(error = %e, "status report failed");
            }
        }
    }
}
