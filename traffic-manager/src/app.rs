//! Builds and runs the traffic manager from validated settings.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use artisync_shared::db::MIGRATOR;
use artisync_shared::telemetry::{self, TRACEPARENT, TraceParent};
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use backon::{ExponentialBuilder, Retryable};
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::auth::{self, TokenRegistry};
use crate::config::Settings;
use crate::db;
use crate::deployments::{DeploymentReader, PgDeploymentReader};
use crate::error::ApiError;
use crate::internal_api as h;
use crate::metrics::TrafficManagerMetrics;
use crate::object_store::{self, ObjectStoreState};
use crate::status_intake::StatusIntake;

pub struct AppState {
    pub reader: Arc<dyn DeploymentReader>,
    pub status: StatusIntake,
    pub pool: PgPool,
    pub metrics: Arc<TrafficManagerMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot connect to the database: {0}")]
    Database(#[from] db::DbError),
    #[error("cannot migrate the database schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
    Router::new()
        .route("/health/live", get(|| async { "ok" }))
        .route("/health/ready", get(h::ready).with_state(state))
        .route("/metrics", get(render_metrics).with_state(metrics.clone()))
        .merge(object_store::ready_router(object_store))
        .merge(authenticated)
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(middleware::from_fn(artisync_shared::http::json_errors))
        .layer(middleware::from_fn_with_state(metrics, observe_request))
}

async fn render_metrics(State(metrics): State<Arc<TrafficManagerMetrics>>) -> Response {
    (
        [(header::CONTENT_TYPE, artisync_shared::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

/// Counts every request by its endpoint (the matched route template, so
/// ids do not explode the label set), and runs it in a span that continues
/// the caller's trace when it sent a `traceparent` (gateway fetches carry
/// the trace of the change that caused them).
async fn observe_request(
    State(metrics): State<Arc<TrafficManagerMetrics>>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let method = request.method().clone();
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceParent::parse);
    let span = tracing::info_span!(
        "request",
        method = %method,
        route = %route,
        trace_id = tracing::field::Empty,
    );
    if let Some(parent) = &incoming {
        let ours = telemetry::continue_trace(&span, Some(parent));
        span.record("trace_id", tracing::field::display(&ours.trace_id));
        if let Ok(value) = HeaderValue::from_str(&ours.to_string()) {
            request.headers_mut().insert(TRACEPARENT, value);
        }
    }
    let response = next.run(request).instrument(span).await;
    let status = response.status();
    metrics
        .http_requests
        .with(&[method.as_str(), &route, status.as_str()])
        .inc();
    metrics
        .http_latency
        .with(&[method.as_str(), &route])
        .observe(started.elapsed().as_secs_f64());
    response
}

/// Starts the data API, the persistence store and its purge job.
pub async fn start(settings: Settings, shutdown: CancellationToken) -> Result<Running, StartError> {
    let connect = || db::connect(&settings.database);
    let pool = connect
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_max_delay(Duration::from_secs(2))
                .with_max_times(15),
        )
        .when(|e| matches!(e, db::DbError::Connect(_)))
        .notify(|e, d| tracing::warn!(error = %e, retry_in_ms = d.as_millis() as u64, "database not reachable yet"))
        .await?;
    MIGRATOR.run(&pool).await?;
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

    let mut background = Vec::new();
    if let Some(path) = settings.database.credentials_file.clone() {
        background.push(db::watch_credentials_file(
            pool.clone(),
            path,
            shutdown.clone(),
        ));
    }
    background.push(object_store::spawn_purge_job(
        pool.clone(),
        &settings.object_store,
        shutdown.clone(),
    ));
    let object_store = ObjectStoreState::new(pool.clone(), settings.object_store.clone())
        .map_err(|e| StartError::Config(e.to_string()))?;
    let reader: Arc<dyn DeploymentReader> = Arc::new(PgDeploymentReader::new(pool.clone()));
    let state = Arc::new(AppState {
        status: StatusIntake::spawn(reader.clone()),
        reader,
        pool: pool.clone(),
        metrics: Arc::new(TrafficManagerMetrics::new()),
    });
    let app = router(
        state,
        settings.tokens.clone(),
        object_store,
        settings.max_status_body_bytes,
    );
    let server_shutdown = shutdown.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(server_shutdown.cancelled_owned())
            .await
        {
            tracing::error!(error = %e, "traffic manager server failed");
        }
        for task in background {
            let _ = task.await;
        }
        pool.close().await;
    });
    tracing::info!(%addr, "traffic manager listening");
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
        "traffic-manager",
        crate::config::load(config),
        |settings, shutdown| async move { start(settings, shutdown).await.map(|r| r.task) },
    )
    .await
}
