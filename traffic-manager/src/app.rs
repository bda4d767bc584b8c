//! Builds and runs the traffic manager from validated settings and the
//! backends the composition root chose.

use std::net::SocketAddr;
use std::sync::Arc;

use artisync_http::{ApiError, RequestObserver};
use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use artisync_ports::TrafficManagerBackends;

use crate::auth::{self, TokenRegistry};
use crate::config::Settings;
use crate::internal_api as h;
use crate::metrics::TrafficManagerMetrics;
use crate::object_store::{self, ObjectStoreState};
use crate::state::AppState;
use crate::status_intake::StatusIntake;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Running {
    pub addr: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: JoinHandle<()>,
}

pub fn router(
    state: Arc<AppState>,
    tokens: Arc<TokenRegistry>,
    object_store: ObjectStoreState,
    max_status_body_bytes: usize,
) -> Router {
    let internal = Router::new()
        .route(
            "/internal/data/v1/runtime-metadata",
            get(h::runtime_metadata),
        )
        .route(
            "/internal/data/v1/runtime-artifacts/{apiId}",
            get(h::runtime_artifact),
        )
        .route(
            "/internal/data/v1/retrieve-runtime-artifacts",
            post(h::retrieve_artifacts),
        )
        .route(
            "/internal/data/v1/gateway-status",
            post(h::gateway_status).layer(DefaultBodyLimit::max(max_status_body_bytes)),
        )
        .with_state(state.clone());
    // The persistence store's readiness route stays open; everything else
    // needs a token.
    let authenticated = internal
        .merge(object_store::api_router(object_store.clone()))
        .route_layer(middleware::from_fn_with_state(tokens, auth::authenticate));
    let metrics = state.metrics.clone();
    let observer = RequestObserver {
        metrics: metrics.http.clone(),
        start_traces: false,
    };
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(h::ready).with_state(state))
        .route("/metrics", get(render_metrics).with_state(metrics))
        .merge(object_store::ready_router(object_store))
        .merge(authenticated)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(artisync_http::json_errors))
        .layer(middleware::from_fn_with_state(
            observer,
            artisync_http::observe_requests,
        ))
}

async fn render_metrics(State(metrics): State<Arc<TrafficManagerMetrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            artisync_telemetry::metrics::CONTENT_TYPE,
        )],
        metrics.render(),
    )
        .into_response()
}

/// Starts the data API, the persistence store and its purge job.
pub async fn start(
    settings: Settings,
    backends: TrafficManagerBackends,
    shutdown: CancellationToken,
) -> Result<Running, StartError> {
    let object_store = ObjectStoreState::new(backends.object_store, settings.object_store.clone())
        .map_err(|e| StartError::Config(e.to_string()))?;
    let tls = match &settings.tls {
        Some(files) => Some(
            files
                .acceptor()
                .map_err(|e| StartError::Config(format!("traffic_manager.tls_cert_file: {e}")))?,
        ),
        None => None,
    };
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
    let purge = object_store::spawn_purge_job(
        object_store.store().clone(),
        &settings.object_store,
        shutdown.clone(),
    );
    let state = Arc::new(AppState {
        status: StatusIntake::spawn(backends.desired.clone()),
        desired: backends.desired,
        health: backends.health,
        metrics: Arc::new(TrafficManagerMetrics::new()),
        bulk_send_timeout: settings.bulk_send_timeout,
    });
    let app = router(
        state,
        settings.tokens.clone(),
        object_store,
        settings.max_status_body_bytes,
    );
    let server_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        let limits = artisync_http::ServeLimits::default();
        if let Err(e) = artisync_http::serve_on(listener, app, server_shutdown, limits, tls).await {
            tracing::error!(error = %e, "traffic manager server failed");
        }
        let _ = purge.await;
    });
    tracing::info!(%addr, "traffic manager listening");
    Ok(Running {
        addr,
        shutdown,
        task,
    })
}
